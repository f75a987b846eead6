package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zeebo/blake3"
)

// Genesis is the payload of a chain's first record.
type Genesis struct {
	PubKey  []byte `msgpack:"pub"`     // the owner's public key, libp2p-marshalled (Ed25519)
	Created int64  `msgpack:"created"` // Unix nanoseconds
}

// WorkReceipt is what one server did for one client in one session: the
// payload of the server's work record and of the client's spend record.
// The server signs it, then the client countersigns it; credits follow
// from it alone (see [Credits]).
type WorkReceipt struct {
	Session []byte `msgpack:"session"` // the relay session id (16 bytes)
	Model   string `msgpack:"model"`   // model id, hex
	Start   int    `msgpack:"start"`   // blocks [Start, End) served
	End     int    `msgpack:"end"`
	// Shape is the model's shape, from which FLOPs are counted.
	Shape Shape `msgpack:"shape"`
	// Positions [First, First+Positions) were computed for the client.
	First     int `msgpack:"first"`
	Positions int `msgpack:"positions"`
	// FLOPs is Shape.FLOPs(End-Start, First, Positions): checked, not
	// trusted.
	FLOPs uint64 `msgpack:"flops"`
	// Steps served; StepsHash is BLAKE3 of their output hashes (the
	// receipts' OutputHash), concatenated in order.
	Steps     int      `msgpack:"steps"`
	StepsHash [32]byte `msgpack:"steps_hash"`
	// The verification outcome of the positions, as the client saw it
	// (each step's positions counted by how the step went): agreed with a
	// majority, ran unchecked, or blamed (the server lied).
	Agreed     int    `msgpack:"agreed"`
	Unverified int    `msgpack:"unverified"`
	Blamed     int    `msgpack:"blamed"`
	Server     string `msgpack:"server"` // peer ids
	Client     string `msgpack:"client"`
	ServerSig  []byte `msgpack:"server_sig"`
	ClientSig  []byte `msgpack:"client_sig"`
}

// Signature domains of work receipts.
const (
	serverDomain = "strata/work/server/v1\x00"
	clientDomain = "strata/work/client/v1\x00"
)

// signingBytes is the receipt's msgpack encoding without signatures.
func (w *WorkReceipt) signingBytes() ([]byte, error) {
	c := *w
	c.ServerSig, c.ClientSig = nil, nil
	return msgpack.Marshal(&c)
}

// SignServer signs the receipt as its server.
func (w *WorkReceipt) SignServer(key crypto.PrivKey) error {
	b, err := w.signingBytes()
	if err != nil {
		return err
	}
	w.ServerSig, err = key.Sign(append([]byte(serverDomain), b...))
	return err
}

// SignClient countersigns the server-signed receipt as its client.
func (w *WorkReceipt) SignClient(key crypto.PrivKey) error {
	b, err := w.signingBytes()
	if err != nil {
		return err
	}
	w.ClientSig, err = key.Sign(slices3(clientDomain, b, w.ServerSig))
	return err
}

func slices3(a string, b, c []byte) []byte {
	out := make([]byte, 0, len(a)+len(b)+len(c))
	return append(append(append(out, a...), b...), c...)
}

// ID is BLAKE3 of the receipt's signing bytes: what the server's work
// record and the client's spend record have in common.
func (w *WorkReceipt) ID() [32]byte {
	b, _ := w.signingBytes()
	return blake3.Sum256(b)
}

// Check validates the receipt: its fields, its FLOPs against its shape,
// and the signatures it carries (the server's always; the client's when
// countersigned is set).
func (w *WorkReceipt) Check(countersigned bool) error {
	switch {
	case len(w.Session) != 16:
		return fmt.Errorf("session id of %d bytes", len(w.Session))
	case len(w.Model) != 64:
		return fmt.Errorf("model id %q", w.Model)
	case w.Start < 0 || w.End <= w.Start || w.End > w.Shape.Layers:
		return fmt.Errorf("blocks %d:%d of a %d-block model", w.Start, w.End, w.Shape.Layers)
	case w.First < 0 || w.Positions <= 0 || w.Steps <= 0 || w.Steps > w.Positions:
		return fmt.Errorf("%d steps over positions %d+%d", w.Steps, w.First, w.Positions)
	case w.Agreed < 0 || w.Unverified < 0 || w.Blamed < 0 || w.Agreed > w.Positions || w.Unverified > w.Positions ||
		w.Blamed > w.Positions || w.Agreed+w.Unverified+w.Blamed != w.Positions:
		return fmt.Errorf("outcomes %d agreed + %d unverified + %d blamed != %d positions", w.Agreed, w.Unverified, w.Blamed, w.Positions)
	}
	if err := w.Shape.check(); err != nil {
		return err
	}
	flops, err := w.Shape.FLOPs(w.End-w.Start, w.First, w.Positions)
	if err != nil {
		return err
	}
	if flops != w.FLOPs {
		return fmt.Errorf("claims %d FLOPs; the shape gives %d", w.FLOPs, flops)
	}
	b, err := w.signingBytes()
	if err != nil {
		return err
	}
	if err := verifyPeerSig(w.Server, append([]byte(serverDomain), b...), w.ServerSig); err != nil {
		return fmt.Errorf("server signature: %w", err)
	}
	if countersigned {
		if err := verifyPeerSig(w.Client, slices3(clientDomain, b, w.ServerSig), w.ClientSig); err != nil {
			return fmt.Errorf("client signature: %w", err)
		}
	}
	return nil
}

func verifyPeerSig(id string, msg, sig []byte) error {
	p, err := peer.Decode(id)
	if err != nil {
		return fmt.Errorf("peer id %q: %w", id, err)
	}
	pk, err := p.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("peer %s: %w", id, err)
	}
	ok, err := pk.Verify(msg, sig)
	if err != nil || !ok {
		return errors.New("does not verify")
	}
	return nil
}

// ReputationEvent is a verification outcome this node saw about a peer.
type ReputationEvent struct {
	Peer  string `msgpack:"peer"`
	Event uint8  `msgpack:"event"` // consensus.Event
	Time  int64  `msgpack:"time"`  // Unix nanoseconds
}

// ForkProof holds two different records with the same seq from one
// peer's chain, each validly signed by it: the peer showed two chains.
type ForkProof struct {
	Peer   string `msgpack:"peer"`
	PubKey []byte `msgpack:"pub"`
	A      []byte `msgpack:"a"`
	B      []byte `msgpack:"b"`
}

// Check verifies the proof.
func (f *ForkProof) Check() error {
	key, err := crypto.UnmarshalPublicKey(f.PubKey)
	if err != nil {
		return err
	}
	id, err := peer.IDFromPublicKey(key)
	if err != nil || id.String() != f.Peer {
		return fmt.Errorf("key is not peer %s's", f.Peer)
	}
	if bytes.Equal(f.A, f.B) {
		return errors.New("the two records are the same")
	}
	var seq uint64
	for i, raw := range [][]byte{f.A, f.B} {
		// The framing only: a fork is two signed records of one seq,
		// whatever they say (and a payload may nest further proofs).
		r, err := decodeFrame(raw)
		if err != nil {
			return err
		}
		if ok, err := key.Verify(r.signedBytes(), r.Sig); err != nil || !ok {
			return fmt.Errorf("record %c is not signed by %s", 'A'+i, f.Peer)
		}
		if i == 1 && r.Seq != seq {
			return fmt.Errorf("records of seq %d and %d", seq, r.Seq)
		}
		seq = r.Seq
	}
	return nil
}

func unmarshalStrict(b []byte, v any) error {
	d := msgpack.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields(true)
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.PeekCode(); err == nil {
		return errors.New("trailing bytes")
	}
	return nil
}

func decodeGenesis(b []byte) (*Genesis, error) {
	var g Genesis
	if err := unmarshalStrict(b, &g); err != nil {
		return nil, err
	}
	if len(g.PubKey) == 0 || len(g.PubKey) > 128 {
		return nil, fmt.Errorf("owner key of %d bytes", len(g.PubKey))
	}
	return &g, nil
}

// DecodeWork decodes the payload of a work or spend record.
func DecodeWork(b []byte) (*WorkReceipt, error) {
	var w WorkReceipt
	if err := unmarshalStrict(b, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// DecodeReputation decodes the payload of a reputation record.
func DecodeReputation(b []byte) (*ReputationEvent, error) {
	var e ReputationEvent
	if err := unmarshalStrict(b, &e); err != nil {
		return nil, err
	}
	if _, err := peer.Decode(e.Peer); err != nil {
		return nil, err
	}
	if e.Event < 1 || e.Event > 5 {
		return nil, fmt.Errorf("unknown event %d", e.Event)
	}
	return &e, nil
}

// DecodeForkProof decodes the payload of a fork-proof record.
func DecodeForkProof(b []byte) (*ForkProof, error) {
	var f ForkProof
	if err := unmarshalStrict(b, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// checkPayload checks that a payload has its kind's form, and for work,
// spend and fork-proof records that the signatures inside hold.
func checkPayload(k Kind, b []byte) error {
	switch k {
	case KindGenesis:
		_, err := decodeGenesis(b)
		return err
	case KindWork, KindSpend:
		w, err := DecodeWork(b)
		if err != nil {
			return err
		}
		return w.Check(true)
	case KindReputation:
		_, err := DecodeReputation(b)
		return err
	case KindForkProof:
		f, err := DecodeForkProof(b)
		if err != nil {
			return err
		}
		return f.Check()
	}
	return fmt.Errorf("unknown kind %d", k)
}

// Marshal encodes a payload.
func Marshal(v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("ledger: payload of %d bytes exceeds %d", len(b), MaxPayload)
	}
	return b, nil
}

// Shape is what FLOPs are counted from: the model's shape as its GGUF
// declares it.
type Shape struct {
	Layers   int `msgpack:"layers"`
	Dim      int `msgpack:"dim"`
	FFN      int `msgpack:"ffn"`
	Heads    int `msgpack:"heads"`
	KVHeads  int `msgpack:"kv_heads"`
	HeadDimK int `msgpack:"head_dim_k"`
	HeadDimV int `msgpack:"head_dim_v"`
}

func (s *Shape) check() error {
	for _, v := range []int{s.Layers, s.Dim, s.FFN, s.Heads, s.KVHeads, s.HeadDimK, s.HeadDimV} {
		if v <= 0 || v > 1<<20 {
			return fmt.Errorf("shape %+v", *s)
		}
	}
	return nil
}

// FLOPs counts the floating-point operations of blocks blocks on positions
// [first, first+n), a multiply-add counted as two. Per block:
//
//	2 × n × (weights of the block's matrices), the weights being
//	  q: Dim × Heads·HeadDimK, k: Dim × KVHeads·HeadDimK,
//	  v: Dim × KVHeads·HeadDimV, o: Heads·HeadDimV × Dim,
//	  gate, up and down: 3 × Dim × FFN;
//	plus attention, position p attending to its p+1 keys:
//	  2 × (p+1) × Heads × (HeadDimK + HeadDimV), summed over the positions.
//
// Norms, rope and activations are left out (a few per cent at most). The
// count is exact integer arithmetic, so every node gets the same number.
func (s *Shape) FLOPs(blocks, first, n int) (uint64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if blocks <= 0 || first < 0 || n <= 0 || first+n > 1<<24 {
		return 0, fmt.Errorf("ledger: FLOPs of %d blocks on positions %d+%d", blocks, first, n)
	}
	var overflow bool
	mul := func(a, b uint64) uint64 {
		hi, lo := bits.Mul64(a, b)
		overflow = overflow || hi != 0
		return lo
	}
	add := func(a, b uint64) uint64 {
		sum, carry := bits.Add64(a, b, 0)
		overflow = overflow || carry != 0
		return sum
	}
	u := func(v int) uint64 { return uint64(v) }
	weights := add(add(add(add(
		mul(u(s.Dim), u(s.Heads*s.HeadDimK)),
		mul(u(s.Dim), u(s.KVHeads*s.HeadDimK))),
		mul(u(s.Dim), u(s.KVHeads*s.HeadDimV))),
		mul(u(s.Heads*s.HeadDimV), u(s.Dim))),
		mul(3, mul(u(s.Dim), u(s.FFN))))
	// Sum of p+1 over p in [first, first+n): n·first + n(n+1)/2.
	keys := add(mul(u(n), u(first)), mul(u(n), u(n+1))/2)
	perBlock := add(mul(mul(2, weights), u(n)), mul(mul(2, keys), u(s.Heads*(s.HeadDimK+s.HeadDimV))))
	total := mul(perBlock, u(blocks))
	if overflow {
		return 0, fmt.Errorf("ledger: FLOPs of %d blocks on positions %d+%d overflow", blocks, first, n)
	}
	return total, nil
}
