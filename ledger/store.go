package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"
	bolt "go.etcd.io/bbolt"
)

// Buckets of the database.
var (
	bucketRecords = []byte("records") // seq (8 bytes, big-endian) → encoded record
)

// maxBatch bounds the records one commit writes.
const maxBatch = 4096

// Entry is a record to append: its kind and encoded payload.
type Entry struct {
	Kind    Kind
	Payload []byte
}

type appendReq struct {
	entries []Entry
	done    chan appendResult
}

type appendResult struct {
	recs []Record
	err  error
}

// Ledger is a node's own chain in a bbolt database. Appends are group
// committed: concurrent Append calls share one transaction and one fsync,
// and each returns only once its record is durable (acknowledged).
type Ledger struct {
	db    *bolt.DB
	key   crypto.PrivKey
	owner peer.ID

	mu   sync.Mutex // guards head and hash
	head Record
	hash [32]byte // head's hash

	sendMu  sync.Mutex // serializes requests into reqs; guards closed
	closed  bool
	reqs    chan *appendReq
	closing chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Open opens (creating it and its genesis record if need be) the ledger at
// path, owned by key, an Ed25519 identity. A ledger another key owns is an
// error. Open checks the head record's signature; [Ledger.Verify] checks
// the whole chain.
func Open(path string, key crypto.PrivKey) (*Ledger, error) {
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("ledger: identity of type %v; ledgers are kept by Ed25519 identities", key.Type())
	}
	owner, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	l := &Ledger{db: db, key: key, owner: owner, reqs: make(chan *appendReq, 256), closing: make(chan struct{})}
	if err := l.load(); err != nil {
		db.Close()
		return nil, err
	}
	l.wg.Add(1)
	go l.commit()
	return l, nil
}

// load reads the head, writing the genesis record into an empty ledger.
func (l *Ledger) load() error {
	return l.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		k, raw := b.Cursor().Last()
		if k == nil {
			pub, err := crypto.MarshalPublicKey(l.key.GetPublic())
			if err != nil {
				return err
			}
			payload, err := Marshal(&Genesis{PubKey: pub, Created: time.Now().UnixNano()})
			if err != nil {
				return err
			}
			g := Record{Seq: 0, Kind: KindGenesis, Time: time.Now().UnixNano(), Payload: payload}
			if err := g.sign(l.key); err != nil {
				return err
			}
			l.head, l.hash = g, g.Hash()
			return b.Put(seqKey(0), g.Encode())
		}
		gRaw := b.Get(seqKey(0))
		if gRaw == nil {
			return fmt.Errorf("%w: record 0: missing", ErrInvalid)
		}
		v := NewVerifier()
		if _, err := v.Add(gRaw); err != nil {
			return err
		}
		if v.Owner() != l.owner {
			return fmt.Errorf("ledger: the ledger belongs to %s, not to this identity %s", v.Owner(), l.owner)
		}
		head, err := DecodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, binary.BigEndian.Uint64(k), err)
		}
		if head.Seq != binary.BigEndian.Uint64(k) {
			return fmt.Errorf("%w: record %d: holds seq %d", ErrInvalid, binary.BigEndian.Uint64(k), head.Seq)
		}
		if ok, err := v.Key().Verify(head.signedBytes(), head.Sig); err != nil || !ok {
			return fmt.Errorf("%w: record %d: bad signature", ErrInvalid, head.Seq)
		}
		l.head, l.hash = head, head.Hash()
		return nil
	})
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// Owner is the ledger's owner.
func (l *Ledger) Owner() peer.ID { return l.owner }

// PublicKey is the owner's public key.
func (l *Ledger) PublicKey() crypto.PubKey { return l.key.GetPublic() }

// Head returns the last record and its hash.
func (l *Ledger) Head() (Record, [32]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head, l.hash
}

// Len is the number of records, genesis included.
func (l *Ledger) Len() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.Seq + 1
}

// Append adds one record and returns it once it is durable.
func (l *Ledger) Append(kind Kind, payload []byte) (Record, error) {
	recs, err := l.AppendMany([]Entry{{Kind: kind, Payload: payload}})
	if err != nil {
		return Record{}, err
	}
	return recs[0], nil
}

// AppendMany adds records in order, in one commit, and returns them once
// they are durable. Payloads are checked first: a bad one appends nothing.
func (l *Ledger) AppendMany(entries []Entry) ([]Record, error) {
	req, err := l.enqueue(entries)
	if err != nil || req == nil {
		return nil, err
	}
	res := <-req.done
	return res.recs, res.err
}

// AppendAsync queues records to append without waiting for the commit;
// Close writes what is queued. It returns an error only for entries that
// could never be appended.
func (l *Ledger) AppendAsync(entries ...Entry) error {
	_, err := l.enqueue(entries)
	return err
}

func (l *Ledger) enqueue(entries []Entry) (*appendReq, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	for i, e := range entries {
		if e.Kind == KindGenesis {
			return nil, fmt.Errorf("ledger: entry %d: genesis is written by Open", i)
		}
		if len(e.Payload) > MaxPayload {
			return nil, fmt.Errorf("ledger: entry %d: payload of %d bytes exceeds %d", i, len(e.Payload), MaxPayload)
		}
		if err := checkPayload(e.Kind, e.Payload); err != nil {
			return nil, fmt.Errorf("ledger: entry %d: %s payload: %w", i, e.Kind, err)
		}
		if e.Kind == KindWork || e.Kind == KindSpend {
			w, _ := DecodeWork(e.Payload)
			if party := map[Kind]string{KindWork: w.Server, KindSpend: w.Client}[e.Kind]; party != l.owner.String() {
				return nil, fmt.Errorf("ledger: entry %d: a %s receipt of %s, not of this ledger's owner", i, e.Kind, party)
			}
		}
	}
	// Keep what was checked: the caller may reuse its buffers.
	entries = slices.Clone(entries)
	for i := range entries {
		entries[i].Payload = bytes.Clone(entries[i].Payload)
	}
	req := &appendReq{entries: entries, done: make(chan appendResult, 1)}
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	l.reqs <- req // in order; the committer writes every queued request before it stops
	return req, nil
}

// commit writes waiting appends, as many as are queued, in one
// transaction each round. Once the ledger is closing it writes what is
// still queued, then stops.
func (l *Ledger) commit() {
	defer l.wg.Done()
	for {
		var batch []*appendReq
		closing := false
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-l.closing:
			closing = true
		}
		n := 0
		for _, r := range batch {
			n += len(r.entries)
		}
	more:
		for n < maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
				n += len(r.entries)
			default:
				break more
			}
		}
		if len(batch) > 0 {
			l.write(batch)
		}
		if closing && len(batch) == 0 {
			return
		}
	}
}

// write appends the batch's records in one transaction.
func (l *Ledger) write(batch []*appendReq) {
	l.mu.Lock()
	head, hash := l.head, l.hash
	l.mu.Unlock()
	results := make([][]Record, len(batch))
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		for i, req := range batch {
			for _, e := range req.entries {
				r := Record{Seq: head.Seq + 1, Prev: hash, Kind: e.Kind, Time: max(time.Now().UnixNano(), head.Time), Payload: e.Payload}
				if err := r.sign(l.key); err != nil {
					return err
				}
				enc := r.Encode()
				if err := b.Put(seqKey(r.Seq), enc); err != nil {
					return err
				}
				results[i] = append(results[i], r)
				head, hash = r, blake3.Sum256(enc)
			}
		}
		return nil
	})
	if err == nil {
		l.mu.Lock()
		l.head, l.hash = head, hash
		l.mu.Unlock()
	}
	for i, req := range batch {
		if err != nil {
			req.done <- appendResult{err: fmt.Errorf("ledger: append: %w", err)}
		} else {
			req.done <- appendResult{recs: results[i]}
		}
	}
}

// Get returns record seq.
func (l *Ledger) Get(seq uint64) (Record, error) {
	var r Record
	err := l.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketRecords).Get(seqKey(seq))
		if raw == nil {
			return fmt.Errorf("%w: %d", ErrNotFound, seq)
		}
		var err error
		r, err = DecodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, seq, err)
		}
		return nil
	})
	return r, err
}

// Raw calls fn with the encoding of each record of seq in [from, to), in
// order, until fn returns an error. The bytes are valid only during the
// call.
func (l *Ledger) Raw(from, to uint64, fn func(seq uint64, raw []byte) error) error {
	return l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		next := from
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if seq >= to {
				break
			}
			if seq != next {
				return fmt.Errorf("%w: record %d: missing", ErrInvalid, next)
			}
			if err := fn(seq, v); err != nil {
				return err
			}
			next++
		}
		return nil
	})
}

// Records returns the decoded records of seq in [from, to).
func (l *Ledger) Records(from, to uint64) ([]Record, error) {
	var out []Record
	err := l.Raw(from, to, func(seq uint64, raw []byte) error {
		r, err := DecodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, seq, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Verify checks the whole chain (see [Verifier]) and that it ends at the
// head this ledger appended last; fn, if not nil, sees every record.
// Errors name the first bad record.
func (l *Ledger) Verify(fn func(Record) error) error {
	head, hash := l.Head() // appends may go on: check up to here
	v := NewVerifier()
	err := l.Raw(0, head.Seq+1, func(seq uint64, raw []byte) error {
		r, err := v.Add(raw)
		if err != nil {
			return err
		}
		if fn != nil {
			return fn(r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if v.Owner() != l.owner {
		return fmt.Errorf("%w: record 0: owned by %s, not %s", ErrInvalid, v.Owner(), l.owner)
	}
	if v.Next() != head.Seq+1 || v.Head() != hash {
		return fmt.Errorf("%w: record %d: the chain ends before its head", ErrInvalid, v.Next())
	}
	return nil
}

// Close stops taking appends, writes those already queued, and closes the
// database.
func (l *Ledger) Close() error {
	var err error
	l.once.Do(func() {
		l.sendMu.Lock()
		l.closed = true
		l.sendMu.Unlock()
		close(l.closing)
		l.wg.Wait()
		err = l.db.Close()
	})
	return err
}

// ErrNotFound is returned for a record a ledger does not hold.
var ErrNotFound = errors.New("ledger: no such record")
