package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"
)

// testShape is a TinyLlama-1.1B-sized model.
var testShape = Shape{Layers: 22, Dim: 2048, FFN: 5632, Heads: 32, KVHeads: 4, HeadDimK: 64, HeadDimV: 64}

// newTestKey returns a fresh Ed25519 identity.
func newTestKey(tb testing.TB) crypto.PrivKey {
	tb.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// keyFromRNG returns an Ed25519 identity drawn from rng: the same rng
// state gives the same key.
func keyFromRNG(tb testing.TB, rng *mrand.Rand) crypto.PrivKey {
	tb.Helper()
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	k, _, err := crypto.GenerateEd25519Key(mrand.NewChaCha8(seed))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func peerOf(tb testing.TB, k crypto.PrivKey) peer.ID {
	tb.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// unsignedReceipt returns a receipt of work server did for client with
// valid fields drawn from rng, FLOPs counted from its shape, and no
// signatures.
func unsignedReceipt(tb testing.TB, rng *mrand.Rand, server, client crypto.PrivKey) *WorkReceipt {
	tb.Helper()
	w := &WorkReceipt{Session: make([]byte, 16), Shape: testShape}
	for i := range w.Session {
		w.Session[i] = byte(rng.Uint32())
	}
	var model [32]byte
	for i := range model {
		model[i] = byte(rng.Uint32())
	}
	w.Model = hex.EncodeToString(model[:])
	w.Start = rng.IntN(testShape.Layers)
	w.End = w.Start + 1 + rng.IntN(testShape.Layers-w.Start)
	w.First = rng.IntN(4096)
	w.Positions = 1 + rng.IntN(512)
	w.Steps = 1 + rng.IntN(w.Positions)
	for i := range w.StepsHash {
		w.StepsHash[i] = byte(rng.Uint32())
	}
	w.Agreed = rng.IntN(w.Positions + 1)
	w.Unverified = rng.IntN(w.Positions - w.Agreed + 1)
	w.Blamed = w.Positions - w.Agreed - w.Unverified
	flops, err := w.Shape.FLOPs(w.End-w.Start, w.First, w.Positions)
	if err != nil {
		tb.Fatal(err)
	}
	w.FLOPs = flops
	w.Server, w.Client = peerOf(tb, server).String(), peerOf(tb, client).String()
	return w
}

// signReceipt signs w as its server, then countersigns it as its client.
func signReceipt(tb testing.TB, w *WorkReceipt, server, client crypto.PrivKey) {
	tb.Helper()
	if err := w.SignServer(server); err != nil {
		tb.Fatal(err)
	}
	if err := w.SignClient(client); err != nil {
		tb.Fatal(err)
	}
}

// newReceipt returns a valid receipt, signed by server and client.
func newReceipt(tb testing.TB, rng *mrand.Rand, server, client crypto.PrivKey) *WorkReceipt {
	tb.Helper()
	w := unsignedReceipt(tb, rng, server, client)
	signReceipt(tb, w, server, client)
	if err := w.Check(true); err != nil {
		tb.Fatalf("newReceipt: Check(true) = %v", err)
	}
	return w
}

// signedRecord builds and signs a record with key, however it links.
func signedRecord(tb testing.TB, key crypto.PrivKey, seq uint64, prev [32]byte, kind Kind, time int64, payload []byte) *Record {
	tb.Helper()
	r := &Record{Seq: seq, Prev: prev, Kind: kind, Time: time, Payload: payload}
	if err := r.sign(key); err != nil {
		tb.Fatal(err)
	}
	return r
}

// ledgerFixture makes valid entries for the ledger of owner; other is the
// counterparty of its receipts and the subject of its reputation events.
type ledgerFixture struct {
	owner, other crypto.PrivKey
	rng          *mrand.Rand
}

func newLedgerFixture(tb testing.TB) *ledgerFixture {
	return &ledgerFixture{owner: newTestKey(tb), other: newTestKey(tb), rng: mrand.New(mrand.NewPCG(1, 2))}
}

// work is a receipt of work the owner served.
func (f *ledgerFixture) work(tb testing.TB) Entry {
	return Entry{Kind: KindWork, Payload: mustMarshal(tb, newReceipt(tb, f.rng, f.owner, f.other))}
}

// spend is a receipt of work the owner consumed.
func (f *ledgerFixture) spend(tb testing.TB) Entry {
	return Entry{Kind: KindSpend, Payload: mustMarshal(tb, newReceipt(tb, f.rng, f.other, f.owner))}
}

func (f *ledgerFixture) reputation(tb testing.TB) Entry {
	e := &ReputationEvent{Peer: peerOf(tb, f.other).String(), Event: uint8(1 + f.rng.IntN(3)), Time: f.rng.Int64N(math.MaxInt64)}
	return Entry{Kind: KindReputation, Payload: mustMarshal(tb, e)}
}

// forkProof proves a fork of a fresh peer's chain.
func (f *ledgerFixture) forkProof(tb testing.TB) Entry {
	return Entry{Kind: KindForkProof, Payload: mustMarshal(tb, newForkProof(tb, f.rng))}
}

func newForkProof(tb testing.TB, rng *mrand.Rand) *ForkProof {
	tb.Helper()
	liar, witness := keyFromRNG(tb, rng), keyFromRNG(tb, rng)
	rep := func() []byte {
		return mustMarshal(tb, &ReputationEvent{Peer: peerOf(tb, witness).String(), Event: uint8(1 + rng.IntN(3)), Time: rng.Int64N(1 << 62)})
	}
	var prev [32]byte
	prev[0] = 7
	a := signedRecord(tb, liar, 3, prev, KindReputation, 100, rep())
	b := signedRecord(tb, liar, 3, prev, KindReputation, 101, rep())
	pub, err := crypto.MarshalPublicKey(liar.GetPublic())
	if err != nil {
		tb.Fatal(err)
	}
	fp := &ForkProof{Peer: peerOf(tb, liar).String(), PubKey: pub, A: a.Encode(), B: b.Encode()}
	if err := fp.Check(); err != nil {
		tb.Fatalf("newForkProof: Check() = %v", err)
	}
	return fp
}

// mixed is the i-th entry of a chain of every appendable kind.
func (f *ledgerFixture) mixed(tb testing.TB, i int) Entry {
	switch i % 7 {
	case 0, 3:
		return f.work(tb)
	case 1, 5:
		return f.spend(tb)
	case 6:
		if i%14 == 6 {
			return f.forkProof(tb)
		}
	}
	return f.reputation(tb)
}

// open opens (creating) the owner's ledger at path and closes it when the
// test ends.
func (f *ledgerFixture) open(tb testing.TB, path string) *Ledger {
	tb.Helper()
	l, err := Open(path, f.owner)
	if err != nil {
		tb.Fatalf("Open(%s) = %v", path, err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func blakeOf(b []byte) [32]byte { return blake3.Sum256(b) }

func testPath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "ledger.db") }

func TestOpenCreatesGenesis(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	if got := l.Len(); got != 1 {
		t.Fatalf("Len() = %d, want 1", got)
	}
	head, hash := l.Head()
	if head.Kind != KindGenesis || head.Seq != 0 || head.Prev != ([32]byte{}) {
		t.Fatalf("Head() = %s record %d prev %x, want genesis record 0 with a zero prev", head.Kind, head.Seq, head.Prev)
	}
	if hash != head.Hash() {
		t.Fatalf("Head() hash %x, want the record's hash %x", hash, head.Hash())
	}
	g, err := decodeGenesis(head.Payload)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := crypto.MarshalPublicKey(f.owner.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.PubKey, pub) {
		t.Fatalf("genesis key %x, want the owner's %x", g.PubKey, pub)
	}
	if l.Owner() != peerOf(t, f.owner) || !l.PublicKey().Equals(f.owner.GetPublic()) {
		t.Fatalf("Owner() = %s, want %s", l.Owner(), peerOf(t, f.owner))
	}
	got, err := l.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(head, got); diff != "" {
		t.Fatalf("Get(0) differs from Head() (-head +got):\n%s", diff)
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestOpenRejectsNonEd25519(t *testing.T) {
	k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := Open(testPath(t), k); err == nil {
		l.Close()
		t.Fatal("Open(secp256k1 key) = nil error, want one")
	}
}

// chainChecker checks that appended records continue the chain.
type chainChecker struct {
	t    *testing.T
	next uint64
	prev [32]byte
	time int64
}

func newChainChecker(t *testing.T, l *Ledger) *chainChecker {
	head, hash := l.Head()
	return &chainChecker{t: t, next: head.Seq + 1, prev: hash, time: head.Time}
}

func (c *chainChecker) check(recs []Record, entries []Entry) {
	c.t.Helper()
	if len(recs) != len(entries) {
		c.t.Fatalf("appended %d entries, got %d records", len(entries), len(recs))
	}
	for i, r := range recs {
		if r.Seq != c.next {
			c.t.Fatalf("record seq %d, want %d", r.Seq, c.next)
		}
		if r.Prev != c.prev {
			c.t.Fatalf("record %d: Prev %x, want the previous record's hash %x", r.Seq, r.Prev, c.prev)
		}
		if r.Kind != entries[i].Kind || !bytes.Equal(r.Payload, entries[i].Payload) {
			c.t.Fatalf("record %d: %s payload %x, want %s payload %x", r.Seq, r.Kind, r.Payload, entries[i].Kind, entries[i].Payload)
		}
		if r.Time < c.time {
			c.t.Fatalf("record %d: time %d before the previous record's %d", r.Seq, r.Time, c.time)
		}
		if len(r.Sig) != SigLen {
			c.t.Fatalf("record %d: %d-byte signature", r.Seq, len(r.Sig))
		}
		c.next, c.prev, c.time = r.Seq+1, r.Hash(), r.Time
	}
}

func TestAppendLinksRecords(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	c := newChainChecker(t, l)
	var all []Record
	for round := range 4 {
		e := f.mixed(t, round)
		r, err := l.Append(e.Kind, e.Payload)
		if err != nil {
			t.Fatalf("Append(%s) = %v", e.Kind, err)
		}
		c.check([]Record{r}, []Entry{e})
		all = append(all, r)

		var entries []Entry
		for i := range 1 + 2*round {
			entries = append(entries, f.mixed(t, i))
		}
		recs, err := l.AppendMany(entries)
		if err != nil {
			t.Fatalf("AppendMany(%d entries) = %v", len(entries), err)
		}
		c.check(recs, entries)
		all = append(all, recs...)
	}
	if recs, err := l.AppendMany(nil); err != nil || len(recs) != 0 {
		t.Fatalf("AppendMany(nil) = %d records, %v; want none, nil", len(recs), err)
	}
	head, hash := l.Head()
	if head.Seq != c.next-1 || hash != c.prev || l.Len() != c.next {
		t.Fatalf("Head() = record %d %x, Len() = %d; want record %d %x, %d", head.Seq, hash, l.Len(), c.next-1, c.prev, c.next)
	}
	for _, want := range all {
		got, err := l.Get(want.Seq)
		if err != nil {
			t.Fatalf("Get(%d) = %v", want.Seq, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Get(%d) differs from what Append returned (-want +got):\n%s", want.Seq, diff)
		}
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestAppendManyLargerThanOneBatch(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	c := newChainChecker(t, l)
	entries := make([]Entry, maxBatch+100)
	for i := range entries {
		entries[i] = f.reputation(t)
	}
	recs, err := l.AppendMany(entries)
	if err != nil {
		t.Fatal(err)
	}
	c.check(recs, entries)
	if head, hash := l.Head(); head.Seq != uint64(len(entries)) || hash != recs[len(recs)-1].Hash() {
		t.Fatalf("Head() = record %d, want the last appended, %d", head.Seq, len(entries))
	}
}

func TestReopenKeepsChain(t *testing.T) {
	f := newLedgerFixture(t)
	path := testPath(t)
	l, err := Open(path, f.owner)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		e := f.mixed(t, i)
		if _, err := l.Append(e.Kind, e.Payload); err != nil {
			t.Fatal(err)
		}
	}
	want, wantHash := l.Head()
	wantRecs, err := l.Records(0, l.Len())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	l = f.open(t, path)
	got, gotHash := l.Head()
	if gotHash != wantHash {
		t.Fatalf("after reopening, head hash %x, want %x", gotHash, wantHash)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after reopening, head differs (-want +got):\n%s", diff)
	}
	gotRecs, err := l.Records(0, l.Len())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantRecs, gotRecs); diff != "" {
		t.Fatalf("after reopening, records differ (-want +got):\n%s", diff)
	}
	// Appends continue the chain.
	c := newChainChecker(t, l)
	e := f.work(t)
	r, err := l.Append(e.Kind, e.Payload)
	if err != nil {
		t.Fatal(err)
	}
	c.check([]Record{r}, []Entry{e})
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestVerifySeesEveryRecordInOrder(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	var entries []Entry
	for i := range 15 {
		entries = append(entries, f.mixed(t, i))
	}
	if _, err := l.AppendMany(entries); err != nil {
		t.Fatal(err)
	}
	want, err := l.Records(0, l.Len())
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	if err := l.Verify(func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Verify's callback saw (-want +got):\n%s", diff)
	}

	// The callback's error stops verification and is returned.
	stop := errors.New("stop")
	n := 0
	err = l.Verify(func(r Record) error {
		if n++; r.Seq == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 6 {
		t.Fatalf("Verify(callback failing at record 5) = %v after %d records, want %v after 6", err, n, stop)
	}
}

func TestOpenWithAnotherKeyFails(t *testing.T) {
	f := newLedgerFixture(t)
	path := testPath(t)
	l, err := Open(path, f.owner)
	if err != nil {
		t.Fatal(err)
	}
	e := f.work(t)
	if _, err := l.Append(e.Kind, e.Payload); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(path, f.other)
	if err == nil {
		l2.Close()
		t.Fatal("Open(another identity's ledger) = nil error, want one")
	}
	owner := peerOf(t, f.owner).String()
	if !strings.Contains(err.Error(), owner) {
		t.Errorf("Open(another identity's ledger) = %q, want it to name the owner %s", err, owner)
	}
	// The ledger is intact for its owner.
	l = f.open(t, path)
	if l.Len() != 2 {
		t.Fatalf("Len() = %d, want 2", l.Len())
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestAppendRejectsBadPayload(t *testing.T) {
	f := newLedgerFixture(t)
	third := newTestKey(t)
	receipt := func(edit func(w *WorkReceipt)) []byte {
		w := unsignedReceipt(t, f.rng, f.owner, f.other)
		edit(w)
		return mustMarshal(t, w)
	}
	signed := func(w *WorkReceipt) { signReceipt(t, w, f.owner, f.other) }
	pub, err := crypto.MarshalPublicKey(f.owner.GetPublic())
	if err != nil {
		t.Fatal(err)
	}
	otherID := peerOf(t, f.other).String()
	good := f.work(t)
	sameTwice := newForkProof(t, f.rng)
	sameTwice.B = sameTwice.A
	wrongPeer := newForkProof(t, f.rng)
	wrongPeer.Peer = otherID

	tests := []struct {
		name string
		e    Entry
	}{
		{"garbage", Entry{KindWork, []byte("not a msgpack receipt")}},
		{"empty work", Entry{KindWork, nil}},
		{"truncated receipt", Entry{KindWork, good.Payload[:len(good.Payload)-1]}},
		{"trailing bytes", Entry{KindWork, append(bytes.Clone(good.Payload), 0xc0)}},
		{"unknown field", Entry{KindReputation, mustMarshal(t, map[string]any{"peer": otherID, "event": 1, "time": 5, "extra": 1})}},
		{"wrong FLOPs", Entry{KindWork, receipt(func(w *WorkReceipt) { w.FLOPs++; signed(w) })}},
		{"no signatures", Entry{KindWork, receipt(func(w *WorkReceipt) {})}},
		{"client signature missing", Entry{KindWork, receipt(func(w *WorkReceipt) {
			if err := w.SignServer(f.owner); err != nil {
				t.Fatal(err)
			}
		})}},
		{"client signature by another key", Entry{KindWork, receipt(func(w *WorkReceipt) { signReceipt(t, w, f.owner, third) })}},
		{"server signature by another key", Entry{KindWork, receipt(func(w *WorkReceipt) { signReceipt(t, w, third, f.other) })}},
		{"client signature truncated", Entry{KindSpend, receipt(func(w *WorkReceipt) { signed(w); w.ClientSig = w.ClientSig[:SigLen-1] })}},
		{"edited after signing", Entry{KindWork, receipt(func(w *WorkReceipt) {
			signed(w)
			w.Positions++
			w.Agreed++
			w.FLOPs, _ = w.Shape.FLOPs(w.End-w.Start, w.First, w.Positions)
		})}},
		{"session of 15 bytes", Entry{KindWork, receipt(func(w *WorkReceipt) { w.Session = w.Session[:15]; signed(w) })}},
		{"blocks past the model", Entry{KindWork, receipt(func(w *WorkReceipt) {
			w.Start, w.End = 20, 23
			w.FLOPs = 1
			signed(w)
		})}},
		{"more steps than positions", Entry{KindWork, receipt(func(w *WorkReceipt) { w.Steps = w.Positions + 1; signed(w) })}},
		{"outcomes short of positions", Entry{KindWork, receipt(func(w *WorkReceipt) { w.Agreed, w.Unverified, w.Blamed = 0, 0, 0; signed(w) })}},
		{"negative outcome", Entry{KindWork, receipt(func(w *WorkReceipt) { w.Agreed, w.Unverified, w.Blamed = w.Positions+1, -1, 0; signed(w) })}},
		{"zero shape", Entry{KindWork, receipt(func(w *WorkReceipt) { w.Shape.Heads = 0; signed(w) })}},
		{"genesis kind", Entry{KindGenesis, mustMarshal(t, &Genesis{PubKey: pub, Created: 1})}},
		{"kind 0", Entry{Kind(0), f.reputation(t).Payload}},
		{"unknown kind", Entry{Kind(6), f.reputation(t).Payload}},
		{"receipt as reputation", Entry{KindReputation, good.Payload}},
		{"reputation as work", Entry{KindWork, f.reputation(t).Payload}},
		{"reputation of a bad peer id", Entry{KindReputation, mustMarshal(t, &ReputationEvent{Peer: "not-a-peer", Event: 1})}},
		{"fork proof of one record twice", Entry{KindForkProof, mustMarshal(t, sameTwice)}},
		{"fork proof naming the wrong peer", Entry{KindForkProof, mustMarshal(t, wrongPeer)}},
		{"oversized payload", Entry{KindReputation, make([]byte, MaxPayload+1)}},
	}
	l := f.open(t, testPath(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := l.Len()
			if r, err := l.Append(tt.e.Kind, tt.e.Payload); err == nil {
				t.Fatalf("Append(%s) = record %d, want an error", tt.e.Kind, r.Seq)
			}
			// One bad entry among good ones appends none of them.
			entries := []Entry{f.reputation(t), good, tt.e, f.spend(t)}
			recs, err := l.AppendMany(entries)
			if err == nil {
				t.Fatalf("AppendMany(good, good, bad, good) = %d records, want an error", len(recs))
			}
			if !strings.Contains(err.Error(), "entry 2") {
				t.Errorf("AppendMany(good, good, bad, good) = %q, want it to name entry 2", err)
			}
			if err := l.AppendAsync(entries...); err == nil {
				t.Error("AppendAsync(good, good, bad, good) = nil, want an error")
			}
			if got := l.Len(); got != n {
				t.Fatalf("after rejected appends, Len() = %d, want %d", got, n)
			}
		})
	}
	// The ledger still takes good records, right after the last good one.
	c := newChainChecker(t, l)
	r, err := l.Append(good.Kind, good.Payload)
	if err != nil {
		t.Fatal(err)
	}
	c.check([]Record{r}, []Entry{good})
	if r.Seq != 1 {
		t.Fatalf("first good record after rejections has seq %d, want 1", r.Seq)
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

// Outcome counts that overflow int must not sum to the positions.
func TestWorkReceiptCheckOutcomeOverflow(t *testing.T) {
	f := newLedgerFixture(t)
	w := unsignedReceipt(t, f.rng, f.owner, f.other)
	// MaxInt + MaxInt + (Positions+2) == Positions + 2^64.
	w.Agreed, w.Unverified, w.Blamed = math.MaxInt, math.MaxInt, w.Positions+2
	signReceipt(t, w, f.owner, f.other)
	if err := w.Check(true); err == nil {
		t.Fatalf("Check() of a receipt with %d agreed + %d unverified + %d blamed of %d positions = nil, want an error",
			w.Agreed, w.Unverified, w.Blamed, w.Positions)
	}
}

func TestConcurrentAppends(t *testing.T) {
	const goroutines, perGoroutine = 8, 24
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	// Entries are made first: the fixture's rng is not safe for concurrent use.
	entries := make([][]Entry, goroutines)
	for g := range entries {
		for i := range perGoroutine {
			entries[g] = append(entries[g], f.mixed(t, g+i))
		}
	}
	got := make([][]Record, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			es := entries[g]
			for i := 0; i < len(es); {
				if g%2 == 0 || i%3 == 0 {
					r, err := l.Append(es[i].Kind, es[i].Payload)
					if err != nil {
						errs[g] = err
						return
					}
					got[g] = append(got[g], r)
					i++
					continue
				}
				n := min(1+i%4, len(es)-i)
				recs, err := l.AppendMany(es[i : i+n])
				if err != nil {
					errs[g] = err
					return
				}
				if len(recs) != n {
					errs[g] = fmt.Errorf("AppendMany(%d entries) = %d records", n, len(recs))
					return
				}
				for j := 1; j < len(recs); j++ {
					if recs[j].Seq != recs[j-1].Seq+1 {
						errs[g] = fmt.Errorf("AppendMany's records are not consecutive: %d then %d", recs[j-1].Seq, recs[j].Seq)
						return
					}
				}
				got[g] = append(got[g], recs...)
				i += n
			}
		})
	}
	wg.Wait()
	var seqs []uint64
	for g := range goroutines {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: %v", g, errs[g])
		}
		for i, r := range got[g] {
			if i > 0 && r.Seq <= got[g][i-1].Seq {
				t.Fatalf("goroutine %d: record %d appended after record %d", g, r.Seq, got[g][i-1].Seq)
			}
			if !bytes.Equal(r.Payload, entries[g][i].Payload) {
				t.Fatalf("goroutine %d: record %d holds another entry's payload", g, r.Seq)
			}
			seqs = append(seqs, r.Seq)
		}
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("appended seqs %v, want 1..%d each once", seqs, goroutines*perGoroutine)
		}
	}
	if l.Len() != goroutines*perGoroutine+1 {
		t.Fatalf("Len() = %d, want %d", l.Len(), goroutines*perGoroutine+1)
	}
	// Each returned record is the stored one.
	for g := range goroutines {
		for _, want := range got[g] {
			r, err := l.Get(want.Seq)
			if err != nil {
				t.Fatal(err)
			}
			if r.Hash() != want.Hash() {
				t.Fatalf("Get(%d) hash %x, Append returned %x", want.Seq, r.Hash(), want.Hash())
			}
		}
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

// Verify of a ledger that is being appended to checks the chain as it was
// when Verify began; it must not report a valid chain as truncated.
func TestVerifyDuringAppends(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	entries := make([]Entry, 500)
	for i := range entries {
		entries[i] = f.reputation(t)
	}
	// A chain long enough that appends land while Verify reads it.
	if _, err := l.AppendMany(entries); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	appendErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				appendErr <- nil
				return
			default:
			}
			if _, err := l.Append(entries[i%len(entries)].Kind, entries[i%len(entries)].Payload); err != nil {
				appendErr <- err
				return
			}
		}
	}()
	var verifyErr error
	for range 20 {
		if verifyErr = l.Verify(nil); verifyErr != nil {
			break
		}
	}
	close(stop)
	if err := <-appendErr; err != nil {
		t.Fatalf("Append() = %v", err)
	}
	if verifyErr != nil {
		t.Fatalf("Verify() during appends = %v, want nil (the chain is valid)", verifyErr)
	}
}

func TestAppendAsyncWrittenByClose(t *testing.T) {
	f := newLedgerFixture(t)
	path := testPath(t)
	l, err := Open(path, f.owner)
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := range 40 {
		e := f.mixed(t, i)
		entries = append(entries, e)
		if err := l.AppendAsync(e); err != nil {
			t.Fatalf("AppendAsync() = %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = f.open(t, path)
	recs, err := l.Records(1, l.Len())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(entries) {
		t.Fatalf("after AppendAsync × %d and Close, the ledger holds %d records", len(entries), len(recs))
	}
	for i, r := range recs {
		if r.Kind != entries[i].Kind || !bytes.Equal(r.Payload, entries[i].Payload) {
			t.Fatalf("record %d is not entry %d", r.Seq, i)
		}
	}
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	e := f.work(t)
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close() = %v, want nil", err)
	}
	if _, err := l.Append(e.Kind, e.Payload); !errors.Is(err, ErrClosed) {
		t.Errorf("Append() after Close = %v, want %v", err, ErrClosed)
	}
	if _, err := l.AppendMany([]Entry{e, e}); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendMany() after Close = %v, want %v", err, ErrClosed)
	}
	if err := l.AppendAsync(e); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendAsync() after Close = %v, want %v", err, ErrClosed)
	}
}

// Close racing appends: every append either returns its durable record
// or ErrClosed, and Close returns.
func TestCloseDuringAppends(t *testing.T) {
	f := newLedgerFixture(t)
	path := testPath(t)
	l, err := Open(path, f.owner)
	if err != nil {
		t.Fatal(err)
	}
	e := f.reputation(t)
	var mu sync.Mutex
	var acked []Record
	var wg sync.WaitGroup
	started := make(chan struct{}, 4)
	for range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r, err := l.Append(e.Kind, e.Payload)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append() = %v, want a record or ErrClosed", err)
					return
				}
				mu.Lock()
				acked = append(acked, r)
				mu.Unlock()
				if i == 0 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 4 {
		<-started
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wg.Wait()
	l = f.open(t, path)
	if err := l.Verify(nil); err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	for _, want := range acked {
		got, err := l.Get(want.Seq)
		if err != nil {
			t.Fatalf("acknowledged record %d: %v", want.Seq, err)
		}
		if got.Hash() != want.Hash() {
			t.Fatalf("acknowledged record %d changed", want.Seq)
		}
	}
}

func TestGetMissing(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	e := f.work(t)
	if _, err := l.Append(e.Kind, e.Payload); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{2, 3, 1 << 40, math.MaxUint64} {
		if r, err := l.Get(seq); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%d) = record %d, %v; want %v", seq, r.Seq, err, ErrNotFound)
		}
	}
	if _, err := l.Get(1); err != nil {
		t.Errorf("Get(1) = %v", err)
	}
}

func TestRecordsRanges(t *testing.T) {
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	var entries []Entry
	for i := range 11 {
		entries = append(entries, f.mixed(t, i))
	}
	if _, err := l.AppendMany(entries); err != nil {
		t.Fatal(err)
	}
	// Records 0..11.
	tests := []struct {
		from, to  uint64
		wantFirst uint64
		wantN     int
	}{
		{0, 12, 0, 12},
		{0, math.MaxUint64, 0, 12},
		{0, 1, 0, 1},
		{3, 7, 3, 4},
		{11, 12, 11, 1},
		{10, 100, 10, 2},
		{5, 5, 0, 0},
		{7, 3, 0, 0},
		{12, 20, 0, 0},
		{1 << 40, math.MaxUint64, 0, 0},
	}
	for _, tt := range tests {
		recs, err := l.Records(tt.from, tt.to)
		if err != nil {
			t.Errorf("Records(%d, %d) = %v", tt.from, tt.to, err)
			continue
		}
		var got []uint64
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		var want []uint64
		for i := range tt.wantN {
			want = append(want, tt.wantFirst+uint64(i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("Records(%d, %d) = seqs %v, want %v", tt.from, tt.to, got, want)
		}
		n := 0
		if err := l.Raw(tt.from, tt.to, func(seq uint64, raw []byte) error {
			if r, err := DecodeRecord(raw); err != nil || r.Seq != seq {
				return fmt.Errorf("Raw gave seq %d the record %d, %v", seq, r.Seq, err)
			}
			n++
			return nil
		}); err != nil || n != tt.wantN {
			t.Errorf("Raw(%d, %d) = %d records, %v; want %d", tt.from, tt.to, n, err, tt.wantN)
		}
	}
}

// validRecords returns the encoding of a valid record of each kind,
// signed by f.owner; they do not form a chain.
func validRecords(tb testing.TB, f *ledgerFixture) map[Kind][]byte {
	tb.Helper()
	prev := blakeOf([]byte("prev"))
	out := make(map[Kind][]byte)
	pub, err := crypto.MarshalPublicKey(f.owner.GetPublic())
	if err != nil {
		tb.Fatal(err)
	}
	g := signedRecord(tb, f.owner, 0, [32]byte{}, KindGenesis, 1, mustMarshal(tb, &Genesis{PubKey: pub, Created: 1}))
	out[KindGenesis] = g.Encode()
	for i, e := range []Entry{f.work(tb), f.spend(tb), f.reputation(tb), f.forkProof(tb)} {
		out[e.Kind] = signedRecord(tb, f.owner, uint64(i+1), prev, e.Kind, int64(i+2), e.Payload).Encode()
	}
	return out
}

func TestDecodeRecordRoundTrip(t *testing.T) {
	f := newLedgerFixture(t)
	for kind, raw := range validRecords(t, f) {
		r, err := DecodeRecord(raw)
		if err != nil {
			t.Errorf("DecodeRecord(valid %s record) = %v", kind, err)
			continue
		}
		if r.Kind != kind {
			t.Errorf("DecodeRecord(valid %s record) = %s record", kind, r.Kind)
		}
		if got := r.Encode(); !bytes.Equal(got, raw) {
			t.Errorf("DecodeRecord(%s record).Encode() = %x, want %x", kind, got, raw)
		}
		if r.Hash() != blakeOf(raw) {
			t.Errorf("Hash() of %s record is not BLAKE3 of its encoding", kind)
		}
		// Decoding does not alias its input.
		r2, _ := DecodeRecord(raw)
		c := bytes.Clone(raw)
		for i := range raw {
			raw[i] ^= 0xff
		}
		if !bytes.Equal(r2.Encode(), c) {
			t.Errorf("DecodeRecord(%s record) aliases its input", kind)
		}
		copy(raw, c)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	f := newLedgerFixture(t)
	valid := validRecords(t, f)
	work := valid[KindWork]
	with := func(raw []byte, edit func(b []byte) []byte) []byte { return edit(bytes.Clone(raw)) }
	setLen := func(n uint32) func(b []byte) []byte {
		return func(b []byte) []byte {
			b[50], b[51], b[52], b[53] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
			return b
		}
	}
	payloadLen := len(work) - headerLen - SigLen
	tests := []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{Version}},
		{"header only", work[:headerLen]},
		{"header and signature, no payload", work[:headerLen+SigLen]},
		{"truncated by one byte", work[:len(work)-1]},
		{"truncated signature", work[:len(work)-SigLen/2]},
		{"one byte too many", append(bytes.Clone(work), 0)},
		{"payload length one too long", with(work, setLen(uint32(payloadLen+1)))},
		{"payload length one too short", with(work, setLen(uint32(payloadLen-1)))},
		{"payload length over MaxPayload", with(work, setLen(MaxPayload+1))},
		{"payload length 2^32-1", with(work, setLen(math.MaxUint32))},
		{"oversized record", append(with(work[:headerLen], setLen(MaxPayload+1)), make([]byte, MaxPayload+1+SigLen)...)},
		{"version 0", with(work, func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2", with(work, func(b []byte) []byte { b[0] = 2; return b })},
		{"version 255", with(work, func(b []byte) []byte { b[0] = 255; return b })},
		{"kind 0", with(work, func(b []byte) []byte { b[41] = 0; return b })},
		{"kind 6", with(work, func(b []byte) []byte { b[41] = 6; return b })},
		{"kind 255", with(work, func(b []byte) []byte { b[41] = 255; return b })},
		{"work payload in a reputation record", with(work, func(b []byte) []byte { b[41] = byte(KindReputation); return b })},
		{"work payload in a genesis record", with(work, func(b []byte) []byte { b[41] = byte(KindGenesis); return b })},
		{"negative time", with(work, func(b []byte) []byte { b[42] = 0x80; return b })},
		{"work record at seq 0", with(work, func(b []byte) []byte { clear(b[1:9]); return b })},
		{"genesis record at seq 1", with(valid[KindGenesis], func(b []byte) []byte { b[8] = 1; return b })},
		{"corrupt payload", with(work, func(b []byte) []byte { b[headerLen] ^= 0xff; return b })},
		{"receipt byte flipped", with(work, func(b []byte) []byte { b[headerLen+payloadLen/2] ^= 0x01; return b })},
	}
	for _, tt := range tests {
		r, err := DecodeRecord(tt.raw)
		if err == nil {
			t.Errorf("DecodeRecord(%s) = %s record %d, want an error", tt.name, r.Kind, r.Seq)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeRecord(%s) = %v, want it to wrap ErrInvalid", tt.name, err)
		}
	}
	// A byte flipped in the signature decodes: DecodeRecord does not verify.
	if _, err := DecodeRecord(with(work, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })); err != nil {
		t.Errorf("DecodeRecord(bad signature) = %v, want nil (signatures are the Verifier's)", err)
	}
}

// testChain returns the raw records of a fresh ledger of n records,
// genesis included, and the fixture that made it.
func testChain(t *testing.T, n int) (*ledgerFixture, [][]byte) {
	t.Helper()
	f := newLedgerFixture(t)
	l := f.open(t, testPath(t))
	var entries []Entry
	for i := range n - 1 {
		entries = append(entries, f.mixed(t, i))
	}
	if _, err := l.AppendMany(entries); err != nil {
		t.Fatal(err)
	}
	var raws [][]byte
	if err := l.Raw(0, l.Len(), func(_ uint64, raw []byte) error {
		raws = append(raws, bytes.Clone(raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return f, raws
}

func TestVerifier(t *testing.T) {
	f, raws := testChain(t, 5)
	recs := make([]Record, len(raws))
	for i, raw := range raws {
		var err error
		if recs[i], err = DecodeRecord(raw); err != nil {
			t.Fatal(err)
		}
	}
	// resign returns record i edited and signed by key.
	resign := func(i int, key crypto.PrivKey, edit func(r *Record)) []byte {
		r := recs[i]
		edit(&r)
		return signedRecord(t, key, r.Seq, r.Prev, r.Kind, r.Time, r.Payload).Encode()
	}
	otherGenesis := func() []byte {
		pub, err := crypto.MarshalPublicKey(f.other.GetPublic())
		if err != nil {
			t.Fatal(err)
		}
		return signedRecord(t, f.other, 0, [32]byte{}, KindGenesis, recs[0].Time, mustMarshal(t, &Genesis{PubKey: pub, Created: 1})).Encode()
	}
	secpGenesis := func() []byte {
		k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := crypto.MarshalPublicKey(k.GetPublic())
		if err != nil {
			t.Fatal(err)
		}
		r := Record{Kind: KindGenesis, Time: 1, Payload: mustMarshal(t, &Genesis{PubKey: pub, Created: 1})}
		sig, err := k.Sign(r.signedBytes())
		if err != nil {
			t.Fatal(err)
		}
		r.Sig = make([]byte, SigLen)
		copy(r.Sig, sig)
		return r.Encode()
	}
	tests := []struct {
		name    string
		chain   [][]byte
		wantBad int // index of the first record Add rejects; -1 for none
	}{
		{"valid", raws, -1},
		{"skips a record", [][]byte{raws[0], raws[1], raws[3]}, 2},
		{"out of order", [][]byte{raws[0], raws[2], raws[1]}, 1},
		{"repeats a record", [][]byte{raws[0], raws[1], raws[1]}, 2},
		{"does not start at genesis", raws[1:], 0},
		{"starts with a non-genesis record of seq 0", [][]byte{resign(1, f.owner, func(r *Record) { r.Seq = 0 })}, 0},
		{"broken prev link", [][]byte{raws[0], raws[1], resign(2, f.owner, func(r *Record) { r.Prev[5] ^= 1 })}, 2},
		{"zero prev link", [][]byte{raws[0], raws[1], resign(2, f.owner, func(r *Record) { r.Prev = [32]byte{} })}, 2},
		{"older than the record before", [][]byte{raws[0], raws[1], resign(2, f.owner, func(r *Record) { r.Time = recs[1].Time - 1 })}, 2},
		{"signed by another key", [][]byte{raws[0], raws[1], resign(2, f.other, func(r *Record) {})}, 2},
		{"genesis signed by another key", [][]byte{resign(0, f.other, func(r *Record) {})}, 0},
		{"another owner's genesis", append([][]byte{otherGenesis()}, raws[1:]...), 1},
		{"a non-Ed25519 owner", [][]byte{secpGenesis()}, 0},
		{"bad signature", [][]byte{raws[0], raws[1], func() []byte {
			b := bytes.Clone(raws[2])
			b[len(b)-20] ^= 0x10
			return b
		}()}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier()
			for i, raw := range tt.chain {
				before := v.Next()
				r, err := v.Add(raw)
				if i != tt.wantBad {
					if err != nil {
						t.Fatalf("Add(record %d) = %v, want nil", i, err)
					}
					if r.Hash() != blakeOf(raw) {
						t.Fatalf("Add(record %d) returned another record", i)
					}
					continue
				}
				if err == nil {
					t.Fatalf("Add(record %d) = nil, want an error", i)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Add(record %d) = %v, want it to wrap ErrInvalid", i, err)
				}
				if want := fmt.Sprintf("record %d:", before); !strings.Contains(err.Error(), want) {
					t.Fatalf("Add(record %d) = %q, want it to name %q", i, err, want)
				}
				if v.Next() != before {
					t.Fatalf("after a rejected record, Next() = %d, want %d", v.Next(), before)
				}
				return
			}
			if tt.wantBad >= 0 {
				t.Fatalf("chain accepted, want record %d rejected", tt.wantBad)
			}
			if v.Next() != uint64(len(raws)) || v.Head() != blakeOf(raws[len(raws)-1]) {
				t.Fatalf("after the chain, Next() = %d, Head() = %x", v.Next(), v.Head())
			}
			if v.Owner() != peerOf(t, f.owner) || !v.Key().Equals(f.owner.GetPublic()) {
				t.Fatalf("Owner() = %s, want %s", v.Owner(), peerOf(t, f.owner))
			}
		})
	}

	// A rejected record leaves the verifier where it was.
	t.Run("continues after a rejection", func(t *testing.T) {
		v := NewVerifier()
		for i, raw := range raws {
			if _, err := v.Add(resign(i, f.other, func(r *Record) {})); err == nil {
				t.Fatalf("Add(record %d signed by another key) = nil", i)
			}
			if _, err := v.Add(raw); err != nil {
				t.Fatalf("Add(record %d) after a rejection = %v", i, err)
			}
		}
	})
}

func TestNewVerifierAt(t *testing.T) {
	f, raws := testChain(t, 8)
	prev, err := DecodeRecord(raws[2])
	if err != nil {
		t.Fatal(err)
	}
	pub := f.owner.GetPublic()
	tests := []struct {
		name     string
		key      crypto.PubKey
		seq      uint64
		prev     [32]byte
		prevTime int64
		ok       bool
	}{
		{"range from 3", pub, 3, blakeOf(raws[2]), prev.Time, true},
		{"wrong key", f.other.GetPublic(), 3, blakeOf(raws[2]), prev.Time, false},
		{"wrong prev hash", pub, 3, blakeOf(raws[1]), prev.Time, false},
		{"wrong seq", pub, 2, blakeOf(raws[2]), prev.Time, false},
		{"prev time in the future", pub, 3, blakeOf(raws[2]), math.MaxInt64, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifierAt(tt.key, tt.seq, tt.prev, tt.prevTime)
			if err != nil {
				t.Fatal(err)
			}
			var addErr error
			for _, raw := range raws[3:] {
				if _, addErr = v.Add(raw); addErr != nil {
					break
				}
			}
			if tt.ok {
				if addErr != nil {
					t.Fatalf("Add() = %v", addErr)
				}
				if v.Next() != uint64(len(raws)) || v.Head() != blakeOf(raws[len(raws)-1]) {
					t.Fatalf("after the range, Next() = %d, Head() = %x", v.Next(), v.Head())
				}
				return
			}
			if addErr == nil {
				t.Fatal("range accepted, want an error")
			}
			if !errors.Is(addErr, ErrInvalid) || !strings.Contains(addErr.Error(), fmt.Sprintf("record %d:", tt.seq)) {
				t.Fatalf("Add() = %v, want ErrInvalid naming record %d", addErr, tt.seq)
			}
		})
	}
}
