package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"
)

// Kind is what a record says.
type Kind uint8

// Record kinds.
const (
	KindGenesis    Kind = 1 // the chain's first record: its owner's public key
	KindWork       Kind = 2 // work this node served, countersigned by the client
	KindSpend      Kind = 3 // work this node consumed as a client
	KindReputation Kind = 4 // a verification outcome this node saw about a peer
	KindForkProof  Kind = 5 // two valid records of one seq from another node's chain
)

var kindNames = map[Kind]string{KindGenesis: "genesis", KindWork: "work", KindSpend: "spend",
	KindReputation: "reputation", KindForkProof: "fork-proof"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Format constants; see the package doc.
const (
	Version    = 1
	headerLen  = 54
	SigLen     = 64
	MaxPayload = 1 << 20
	// MaxRecordLen is the longest valid encoded record.
	MaxRecordLen = headerLen + MaxPayload + SigLen
)

// sigDomain prefixes the signed bytes so that a record signature can never
// be taken for a signature of anything else the identity signs.
const sigDomain = "strata/ledger/v1\x00"

// Errors. Verification errors wrap ErrInvalid and name the record.
var (
	ErrInvalid = errors.New("ledger: invalid record")
	ErrClosed  = errors.New("ledger: closed")
)

// Record is one entry of a node's chain.
type Record struct {
	Seq     uint64
	Prev    [32]byte // BLAKE3 of the previous record's encoding; zero for genesis
	Kind    Kind
	Time    int64 // Unix nanoseconds
	Payload []byte
	Sig     []byte // Ed25519 over sigDomain || the encoding up to the payload's end
}

// body is the encoding without the signature.
func (r *Record) body() []byte {
	b := make([]byte, headerLen, headerLen+len(r.Payload)+SigLen)
	b[0] = Version
	binary.BigEndian.PutUint64(b[1:], r.Seq)
	copy(b[9:41], r.Prev[:])
	b[41] = byte(r.Kind)
	binary.BigEndian.PutUint64(b[42:], uint64(r.Time))
	binary.BigEndian.PutUint32(b[50:], uint32(len(r.Payload)))
	return append(b, r.Payload...)
}

func (r *Record) signedBytes() []byte {
	return append([]byte(sigDomain), r.body()...)
}

// Encode returns the record's canonical encoding.
func (r *Record) Encode() []byte {
	return append(r.body(), r.Sig...)
}

// Hash is BLAKE3 of the record's encoding: the next record's Prev.
func (r *Record) Hash() [32]byte {
	return blake3.Sum256(r.Encode())
}

// sign fills in the signature.
func (r *Record) sign(key crypto.PrivKey) error {
	sig, err := key.Sign(r.signedBytes())
	if err != nil {
		return err
	}
	if len(sig) != SigLen {
		return fmt.Errorf("ledger: a %d-byte signature; only Ed25519 identities keep ledgers", len(sig))
	}
	r.Sig = sig
	return nil
}

// DecodeRecord parses one encoded record, strictly: version, kind, lengths
// and the payload's form for its kind. It does not check the record's
// signature or its link (see [Verifier]).
func DecodeRecord(b []byte) (Record, error) {
	r, err := decodeFrame(b)
	if err != nil {
		return r, err
	}
	if err := checkPayload(r.Kind, r.Payload); err != nil {
		return r, fmt.Errorf("%w: %s payload: %w", ErrInvalid, r.Kind, err)
	}
	return r, nil
}

// decodeFrame parses a record's framing (everything but the payload's
// contents), in time linear in its length.
func decodeFrame(b []byte) (Record, error) {
	var r Record
	if len(b) < headerLen+SigLen {
		return r, fmt.Errorf("%w: %d bytes, shorter than a record's %d", ErrInvalid, len(b), headerLen+SigLen)
	}
	if b[0] != Version {
		return r, fmt.Errorf("%w: format version %d, want %d", ErrInvalid, b[0], Version)
	}
	r.Seq = binary.BigEndian.Uint64(b[1:])
	copy(r.Prev[:], b[9:41])
	r.Kind = Kind(b[41])
	r.Time = int64(binary.BigEndian.Uint64(b[42:]))
	n := binary.BigEndian.Uint32(b[50:])
	if n > MaxPayload {
		return r, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrInvalid, n, MaxPayload)
	}
	if want := headerLen + int(n) + SigLen; len(b) != want {
		return r, fmt.Errorf("%w: %d bytes, want %d for a %d-byte payload", ErrInvalid, len(b), want, n)
	}
	if _, ok := kindNames[r.Kind]; !ok {
		return r, fmt.Errorf("%w: unknown kind %d", ErrInvalid, b[41])
	}
	if r.Time < 0 {
		return r, fmt.Errorf("%w: time %d before 1970", ErrInvalid, r.Time)
	}
	if (r.Seq == 0) != (r.Kind == KindGenesis) {
		return r, fmt.Errorf("%w: %s record at seq %d (genesis is seq 0, and only it)", ErrInvalid, r.Kind, r.Seq)
	}
	r.Payload = bytes.Clone(b[headerLen : headerLen+int(n)])
	r.Sig = bytes.Clone(b[headerLen+int(n):])
	return r, nil
}

// Verifier checks a chain record by record, in order: each decodes, has the
// next seq, links to the previous record's hash, is not older than it, and
// carries a valid signature of the key the genesis record names.
type Verifier struct {
	key   crypto.PubKey
	owner peer.ID
	next  uint64
	prev  [32]byte
	time  int64
	last  Record
}

// NewVerifier checks a chain from its genesis record.
func NewVerifier() *Verifier { return &Verifier{} }

// NewVerifierAt checks a chain's records from seq on, given the owner's
// key and the hash and time of record seq-1 (an audit of a range).
func NewVerifierAt(key crypto.PubKey, seq uint64, prev [32]byte, prevTime int64) (*Verifier, error) {
	id, err := peer.IDFromPublicKey(key)
	if err != nil {
		return nil, err
	}
	return &Verifier{key: key, owner: id, next: seq, prev: prev, time: prevTime}, nil
}

// Owner is the chain owner's peer id (known after genesis).
func (v *Verifier) Owner() peer.ID { return v.owner }

// Key is the chain owner's public key (known after genesis).
func (v *Verifier) Key() crypto.PubKey { return v.key }

// Next is the seq the next record must have.
func (v *Verifier) Next() uint64 { return v.next }

// Head is the hash of the last record checked.
func (v *Verifier) Head() [32]byte { return v.prev }

// Add checks the next encoded record and returns it decoded. Errors wrap
// ErrInvalid and name the record by its position in the chain.
func (v *Verifier) Add(raw []byte) (Record, error) {
	fail := func(format string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: record %d: %s", ErrInvalid, v.next, fmt.Sprintf(format, args...))
	}
	r, err := decodeFrame(raw)
	if err != nil {
		return fail("%v", err)
	}
	if r.Seq != v.next {
		return fail("has seq %d", r.Seq)
	}
	if r.Prev != v.prev {
		return fail("does not link to the record before it")
	}
	if r.Time < v.time {
		return fail("is older than the record before it")
	}
	key, owner := v.key, v.owner
	if r.Seq == 0 {
		g, err := decodeGenesis(r.Payload)
		if err != nil {
			return fail("%v", err)
		}
		if key, err = crypto.UnmarshalPublicKey(g.PubKey); err != nil {
			return fail("owner key: %v", err)
		}
		if key.Type() != crypto.Ed25519 {
			return fail("owner key of type %v, want Ed25519", key.Type())
		}
		if owner, err = peer.IDFromPublicKey(key); err != nil {
			return fail("owner key: %v", err)
		}
		if v.key != nil && !v.key.Equals(key) {
			return fail("owned by %s, not the expected %s", owner, v.owner)
		}
	}
	if key == nil {
		return fail("no owner key: the chain must start at genesis")
	}
	ok, err := key.Verify(r.signedBytes(), r.Sig)
	if err != nil || !ok {
		return fail("bad signature")
	}
	// The payload last: it may hold signatures to check, which only a
	// record its owner signed is worth the time of.
	if err := checkPayload(r.Kind, r.Payload); err != nil {
		return fail("%v: %s payload: %v", ErrInvalid, r.Kind, err)
	}
	v.key, v.owner = key, owner
	v.prev = blake3.Sum256(raw)
	v.next++
	v.time = r.Time
	v.last = r
	return r, nil
}
