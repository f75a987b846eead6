package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// seededFixture is a fixture whose keys and entries are the same on every
// run, so that fuzz seeds are too.
func seededFixture(tb testing.TB) *ledgerFixture {
	rng := mrand.New(mrand.NewPCG(7, 7))
	return &ledgerFixture{owner: keyFromRNG(tb, rng), other: keyFromRNG(tb, rng), rng: rng}
}

// seedChain returns the encodings of a valid chain of n records, genesis
// included, of every kind, owned by f.owner.
func seedChain(tb testing.TB, f *ledgerFixture, n int) [][]byte {
	tb.Helper()
	g := validRecords(tb, f)[KindGenesis]
	raws := [][]byte{g}
	prev := blakeOf(g)
	for i := 1; i < n; i++ {
		e := f.mixed(tb, i-1)
		r := signedRecord(tb, f.owner, uint64(i), prev, e.Kind, int64(1000+i), e.Payload)
		raw := r.Encode()
		raws = append(raws, raw)
		prev = blakeOf(raw)
	}
	return raws
}

// allocBytes is the memory fn allocates, on average over a few runs.
func allocBytes(fn func()) uint64 {
	const runs = 4
	fn()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for range runs {
		fn()
	}
	runtime.ReadMemStats(&b)
	return (b.TotalAlloc - a.TotalAlloc) / runs
}

func FuzzDecodeRecord(f *testing.F) {
	fx := seededFixture(f)
	for _, raw := range validRecords(f, fx) {
		f.Add(raw)
		for _, n := range []int{0, 1, headerLen - 1, headerLen, headerLen + SigLen, len(raw) - SigLen, len(raw) - 1} {
			f.Add(bytes.Clone(raw[:n]))
		}
		f.Add(append(bytes.Clone(raw), 0))
	}
	f.Add(nestedForkProof(f, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("DecodeRecord() = %v, not ErrInvalid", err)
			}
			return
		}
		if got := r.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("DecodeRecord(b).Encode() = %x, want b = %x", got, b)
		}
		if r.Hash() != blakeOf(b) {
			t.Fatal("Hash() is not BLAKE3 of the encoding")
		}
		// Allocation is bounded in TestDecodeRecordAllocBound: measured
		// here it would count the fuzzing engine's own allocations too.
	})
}

// splitRecords cuts b into records by their length fields; the last piece
// may be short.
func splitRecords(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := len(b)
		if len(b) >= headerLen {
			n = min(n, headerLen+int(min(binary.BigEndian.Uint32(b[50:]), MaxPayload+1))+SigLen)
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func FuzzVerifier(f *testing.F) {
	fx := seededFixture(f)
	chain := seedChain(f, fx, 8)
	join := func(raws ...[]byte) []byte { return bytes.Join(raws, nil) }
	v := NewVerifier()
	for i, raw := range splitRecords(bytes.Join(chain, nil)) {
		if _, err := v.Add(raw); err != nil {
			f.Fatalf("seed chain, record %d: %v", i, err)
		}
	}
	g, err := DecodeRecord(chain[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(false, join(chain...))
	f.Add(true, join(chain[1:]...))
	f.Add(false, join(chain[0], chain[2], chain[1]))
	f.Add(false, join(chain[0], chain[1], chain[1]))
	f.Add(true, join(chain[1], chain[2][:len(chain[2])-3]))
	f.Add(false, join(chain[:5]...)[:len(join(chain[:5]...))-1])
	f.Add(false, []byte{})
	f.Fuzz(func(t *testing.T, fromRecord1 bool, b []byte) {
		v := NewVerifier()
		if fromRecord1 {
			var err error
			if v, err = NewVerifierAt(fx.owner.GetPublic(), 1, blakeOf(chain[0]), g.Time); err != nil {
				t.Fatal(err)
			}
		}
		for _, raw := range splitRecords(b) {
			next, head := v.Next(), v.Head()
			r, err := v.Add(raw)
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Add() = %v, not ErrInvalid", err)
				}
				if v.Next() != next || v.Head() != head {
					t.Fatal("a rejected record moved the verifier")
				}
				continue
			}
			if r.Seq != next || v.Next() != next+1 || v.Head() != blakeOf(raw) || r.Prev != head {
				t.Fatalf("Add(record %d) accepted, but the verifier is at %d, head %x", r.Seq, v.Next(), v.Head())
			}
			if ok, err := v.Key().Verify(r.signedBytes(), r.Sig); err != nil || !ok {
				t.Fatalf("Add accepted record %d, not signed by the chain's owner", r.Seq)
			}
			if fromRecord1 && !v.Key().Equals(fx.owner.GetPublic()) {
				t.Fatal("a range verifier changed owner")
			}
		}
	})
}

func FuzzDecodeWork(f *testing.F) {
	fx := seededFixture(f)
	for range 3 {
		f.Add(fx.work(f).Payload)
		f.Add(fx.spend(f).Payload)
	}
	f.Add(mustMarshal(f, unsignedReceipt(f, fx.rng, fx.owner, fx.other)))
	f.Add(mustMarshal(f, &WorkReceipt{}))
	edge := unsignedReceipt(f, fx.rng, fx.owner, fx.other)
	edge.Agreed, edge.Unverified, edge.Blamed = math.MaxInt, math.MaxInt, edge.Positions+2
	edge.First, edge.Positions = math.MaxInt, math.MaxInt
	f.Add(mustMarshal(f, edge))
	f.Add([]byte{0x80})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := DecodeWork(b)
		if err != nil {
			return
		}
		err1, err2 := w.Check(false), w.Check(true)
		if err1 != nil && err2 == nil {
			t.Fatalf("Check(false) = %v, but Check(true) = nil", err1)
		}
		_ = w.ID()
		// What decodes re-encodes to the same receipt.
		enc, err := Marshal(w)
		if err != nil {
			t.Fatalf("Marshal(DecodeWork(b)) = %v", err)
		}
		again, err := DecodeWork(enc)
		if err != nil {
			t.Fatalf("DecodeWork(Marshal(w)) = %v", err)
		}
		if diff := cmp.Diff(w, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip mismatch (-first +second):\n%s", diff)
		}
		if err2 == nil && (w.Agreed > w.Positions || w.Unverified > w.Positions || w.Blamed > w.Positions) {
			t.Fatalf("Check accepted outcomes %d+%d+%d of %d positions", w.Agreed, w.Unverified, w.Blamed, w.Positions)
		}
	})
}

func FuzzDecodePayloads(f *testing.F) {
	fx := seededFixture(f)
	for kind, raw := range validRecords(f, fx) {
		f.Add(uint8(kind), raw[headerLen:len(raw)-SigLen])
	}
	fp := newForkProof(f, fx.rng)
	f.Add(uint8(KindForkProof), mustMarshal(f, &ForkProof{Peer: fp.Peer, PubKey: fp.PubKey, A: fp.A, B: fp.A}))
	f.Add(uint8(KindForkProof), mustMarshal(f, &ForkProof{Peer: fp.Peer, PubKey: fp.PubKey, A: fp.A[:10], B: fp.B}))
	f.Add(uint8(KindReputation), mustMarshal(f, map[string]any{"peer": "x", "event": 300}))
	f.Add(uint8(KindGenesis), mustMarshal(f, &Genesis{}))
	f.Add(uint8(9), []byte{0xc0})
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		if len(b) > MaxPayload {
			return
		}
		if g, err := decodeGenesis(b); err == nil && (len(g.PubKey) == 0 || len(g.PubKey) > 128) {
			t.Fatalf("decodeGenesis accepted an owner key of %d bytes", len(g.PubKey))
		}
		_, _ = DecodeReputation(b)
		if fp, err := DecodeForkProof(b); err == nil {
			_ = fp.Check()
		}
		payloadErr := checkPayload(Kind(kind), b)
		// DecodeRecord takes a payload iff checkPayload does.
		seq := uint64(1)
		if Kind(kind) == KindGenesis {
			seq = 0
		}
		r := Record{Seq: seq, Kind: Kind(kind), Time: 1, Payload: b, Sig: make([]byte, SigLen)}
		_, decodeErr := DecodeRecord(r.Encode())
		if (payloadErr == nil) != (decodeErr == nil) {
			t.Fatalf("checkPayload(%s) = %v, but DecodeRecord of a %s record = %v", Kind(kind), payloadErr, Kind(kind), decodeErr)
		}
	})
}

// FLOPs is exact: it equals the count done with unbounded integers, or
// fails when that count does not fit, or its arguments are out of range.
func FuzzShapeFLOPs(f *testing.F) {
	s := testShape
	f.Add(s.Layers, s.Dim, s.FFN, s.Heads, s.KVHeads, s.HeadDimK, s.HeadDimV, 22, 0, 512)
	f.Add(s.Layers, s.Dim, s.FFN, s.Heads, s.KVHeads, s.HeadDimK, s.HeadDimV, 1, 1<<24-1, 1)
	f.Add(1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20, math.MaxInt, 0, 1<<24)
	f.Add(1, 1, 1, 1, 1, 1, 1, 1, math.MaxInt, 1)
	f.Add(1, 1, 1, 1, 1, 1, 1, 1, 0, math.MaxInt)
	f.Add(0, 1, 1, 1, 1, 1, 1, 1, 0, 1)
	f.Fuzz(func(t *testing.T, layers, dim, ffn, heads, kvHeads, hdK, hdV, blocks, first, n int) {
		s := Shape{Layers: layers, Dim: dim, FFN: ffn, Heads: heads, KVHeads: kvHeads, HeadDimK: hdK, HeadDimV: hdV}
		got, err := s.FLOPs(blocks, first, n)
		want, ok := flopsReference(s, blocks, first, n)
		if !ok {
			if err == nil {
				t.Fatalf("%+v.FLOPs(%d, %d, %d) = %d, want an error", s, blocks, first, n, got)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("%+v.FLOPs(%d, %d, %d) = %d, %v; want %d", s, blocks, first, n, got, err, want)
		}
	})
}

// flopsReference is Shape.FLOPs's documented count in unbounded integers.
func flopsReference(s Shape, blocks, first, n int) (uint64, bool) {
	for _, v := range []int{s.Layers, s.Dim, s.FFN, s.Heads, s.KVHeads, s.HeadDimK, s.HeadDimV} {
		if v <= 0 || v > 1<<20 {
			return 0, false
		}
	}
	B := func(v int) *big.Int { return big.NewInt(int64(v)) }
	if blocks <= 0 || first < 0 || n <= 0 || new(big.Int).Add(B(first), B(n)).Cmp(B(1<<24)) > 0 {
		return 0, false
	}
	mul := func(xs ...*big.Int) *big.Int {
		p := big.NewInt(1)
		for _, x := range xs {
			p.Mul(p, x)
		}
		return p
	}
	weights := new(big.Int)
	for _, w := range []*big.Int{
		mul(B(s.Dim), B(s.Heads), B(s.HeadDimK)),
		mul(B(s.Dim), B(s.KVHeads), B(s.HeadDimK)),
		mul(B(s.Dim), B(s.KVHeads), B(s.HeadDimV)),
		mul(B(s.Heads), B(s.HeadDimV), B(s.Dim)),
		mul(B(3), B(s.Dim), B(s.FFN)),
	} {
		weights.Add(weights, w)
	}
	// Σ_{p=first}^{first+n-1} (p+1) = n·first + n(n+1)/2
	keys := new(big.Int).Add(mul(B(n), B(first)), new(big.Int).Rsh(mul(B(n), new(big.Int).Add(B(n), B(1))), 1))
	perBlock := new(big.Int).Add(mul(B(2), weights, B(n)), mul(B(2), keys, B(s.Heads), new(big.Int).Add(B(s.HeadDimK), B(s.HeadDimV))))
	total := mul(perBlock, B(blocks))
	if !total.IsUint64() {
		return 0, false
	}
	return total.Uint64(), true
}

// nestedForkProof returns a valid record whose payload is a fork proof
// whose record A is a fork-proof record, and so on depth times: each
// level adds a few hundred bytes.
func nestedForkProof(tb testing.TB, depth int) []byte {
	tb.Helper()
	rng := mrand.New(mrand.NewPCG(3, 3))
	key := keyFromRNG(tb, rng)
	pub, err := crypto.MarshalPublicKey(key.GetPublic())
	if err != nil {
		tb.Fatal(err)
	}
	id := peerOf(tb, key).String()
	var prev [32]byte
	small := func(i int) []byte {
		e := &ReputationEvent{Peer: id, Event: 1, Time: int64(i)}
		return signedRecord(tb, key, 1, prev, KindReputation, int64(i), mustMarshal(tb, e)).Encode()
	}
	inner := small(0)
	for k := 1; k <= depth; k++ {
		fp := &ForkProof{Peer: id, PubKey: pub, A: inner, B: small(k)}
		inner = signedRecord(tb, key, 1, prev, KindForkProof, int64(k), mustMarshal(tb, fp)).Encode()
	}
	return inner
}

// A record's decoding allocates in proportion to its size, whatever its
// payload: records come from peers (audits), and are decoded before their
// signature is checked.
func TestDecodeRecordAllocBound(t *testing.T) {
	fx := seededFixture(t)
	inputs := map[string][]byte{"nested fork proof": nestedForkProof(t, 200)}
	for k, raw := range validRecords(t, fx) {
		inputs[k.String()] = raw
	}
	for name, raw := range inputs {
		if _, err := DecodeRecord(raw); err != nil {
			t.Fatalf("DecodeRecord(%s) = %v", name, err)
		}
		limit := 64<<10 + 16*uint64(len(raw))
		if got := allocBytes(func() { _, _ = DecodeRecord(raw) }); got > limit {
			t.Errorf("DecodeRecord(%s record of %d bytes) allocates %d bytes, want at most %d", name, len(raw), got, limit)
		}
	}
}
