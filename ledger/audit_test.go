package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/zeebo/blake3"

	"github.com/stratanet/strata/consensus"
)

// auditShape is a TinyLlama-sized model.
var auditShape = Shape{Layers: 22, Dim: 2048, FFN: 5632, Heads: 32, KVHeads: 4, HeadDimK: 64, HeadDimV: 64}

func auditKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func auditID(t testing.TB, k crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// auditHost starts a libp2p host with identity key, listening on
// 127.0.0.1 only.
func auditHost(t *testing.T, key crypto.PrivKey) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.NoTransports,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ForceReachabilityPrivate(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if len(h.Addrs()) == 0 {
		t.Fatal("test host listens nowhere")
	}
	for _, a := range h.Addrs() {
		if ip, err := a.ValueForProtocol(ma.P_IP4); err != nil || ip != "127.0.0.1" {
			t.Fatalf("test host listens on %v, want 127.0.0.1 only", a)
		}
	}
	return h
}

func auditConnect(t *testing.T, a, b host.Host) {
	t.Helper()
	if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func auditOpen(t *testing.T, path string, key crypto.PrivKey) *Ledger {
	t.Helper()
	l, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// auditReceipt is a valid, countersigned receipt of blocks [start, end)
// on positions [first, first+agreed+unverified+blamed).
func auditReceipt(t testing.TB, server, client crypto.PrivKey, start, end, first, agreed, unverified, blamed int) []byte {
	t.Helper()
	positions := agreed + unverified + blamed
	flops, err := auditShape.FLOPs(end-start, first, positions)
	if err != nil {
		t.Fatal(err)
	}
	session := make([]byte, 16)
	rand.Read(session)
	w := &WorkReceipt{
		Session: session, Model: strings.Repeat("5e", 32), Start: start, End: end, Shape: auditShape,
		First: first, Positions: positions, FLOPs: flops,
		Steps: max(1, positions/4), StepsHash: blake3.Sum256(session),
		Agreed: agreed, Unverified: unverified, Blamed: blamed,
		Server: auditID(t, server).String(), Client: auditID(t, client).String(),
	}
	if err := w.SignServer(server); err != nil {
		t.Fatal(err)
	}
	if err := w.SignClient(client); err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// auditFill appends n records to l, owned by key: work, spend and
// reputation records in turn.
func auditFill(t testing.TB, l *Ledger, key crypto.PrivKey, n int) {
	t.Helper()
	other := auditKey(t)
	var entries []Entry
	for i := range n {
		switch i % 4 {
		case 0, 1:
			entries = append(entries, Entry{Kind: KindWork, Payload: auditReceipt(t, key, other, 0, 11, 8*i, 100+i, 20, 0)})
		case 2:
			entries = append(entries, Entry{Kind: KindSpend, Payload: auditReceipt(t, other, key, 11, 22, 0, 64, 0, 0)})
		case 3:
			ev, err := Marshal(&ReputationEvent{Peer: auditID(t, other).String(), Event: uint8(consensus.EventAgreed), Time: time.Now().UnixNano()})
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, Entry{Kind: KindReputation, Payload: ev})
		}
	}
	if _, err := l.AppendMany(entries); err != nil {
		t.Fatal(err)
	}
}

func auditRaw(t *testing.T, l *Ledger, from, to uint64) [][]byte {
	t.Helper()
	var out [][]byte
	if err := l.Raw(from, to, func(_ uint64, raw []byte) error { out = append(out, bytes.Clone(raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAudit(t *testing.T) {
	srvKey := auditKey(t)
	l := auditOpen(t, filepath.Join(t.TempDir(), "ledger.db"), srvKey)
	auditFill(t, l, srvKey, 10)
	// A blamed receipt earns nothing but counts.
	if _, err := l.Append(KindWork, auditReceipt(t, srvKey, auditKey(t), 0, 5, 0, 10, 0, 2)); err != nil {
		t.Fatal(err)
	}
	hs, hc := auditHost(t, srvKey), auditHost(t, auditKey(t))
	auditConnect(t, hc, hs)
	srv, err := ServeAudit(hs, l, WithServePage(3, DefaultServePageBytes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	want, err := AccountOf(l, DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if want.Earned == 0 || want.Spent == 0 || want.Blamed != 1 || want.ReputationEvents == 0 {
		t.Fatalf("test ledger's account %+v lacks earnings, spending, blame or reputation", want)
	}
	_, head := l.Head()
	check := func(t *testing.T, rep *AuditReport, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("Audit = %v, want nil", err)
		}
		if rep.Err != nil || rep.Peer != hs.ID() || rep.Records != l.Len() || rep.Len != l.Len() || rep.Head != head {
			t.Errorf("Audit = {peer %s, %d of %d records, head %x, err %v}, want {%s, %d of %d, %x, nil}",
				rep.Peer, rep.Records, rep.Len, rep.Head[:4], rep.Err, hs.ID(), l.Len(), l.Len(), head[:4])
		}
		if diff := cmp.Diff(want, rep.Account, cmpopts.IgnoreUnexported(Account{})); diff != "" {
			t.Errorf("audited account differs from AccountOf (-want +got):\n%s", diff)
		}
	}

	t.Run("Audit", func(t *testing.T) {
		rep, err := Audit(t.Context(), hc, hs.ID(), DefaultPolicy)
		check(t, rep, err)
	})
	t.Run("Auditor", func(t *testing.T) {
		a, err := NewAuditor(hc, nil, WithAuditPage(2))
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			rep, err := a.Audit(t.Context(), hs.ID())
			check(t, rep, err)
		}
		if got := a.Known(hs.ID()); got != l.Len() {
			t.Errorf("Known = %d, want %d", got, l.Len())
		}
	})
	t.Run("FetchChain", func(t *testing.T) {
		n := l.Len()
		for _, tc := range []struct {
			from, to uint64
			want     uint64 // records served: the page is 3
		}{
			{0, 0, 3}, {1, 4, 3}, {2, 3, 1}, {5, 5, 0}, {n - 2, 0, 2}, {n - 1, n + 100, 1}, {n, 0, 0}, {n, n, 0},
		} {
			recs, length, h, err := FetchChain(t.Context(), hc, hs.ID(), tc.from, tc.to)
			if err != nil {
				t.Errorf("FetchChain(%d, %d) = %v", tc.from, tc.to, err)
				continue
			}
			if length != n || h != head {
				t.Errorf("FetchChain(%d, %d) = length %d, head %x; want %d, %x", tc.from, tc.to, length, h[:4], n, head[:4])
			}
			if diff := cmp.Diff(auditRaw(t, l, tc.from, tc.from+tc.want), recs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("FetchChain(%d, %d) records (-want +got):\n%s", tc.from, tc.to, diff)
			}
		}
	})
	t.Run("Growing", func(t *testing.T) {
		// Records appended while audits run: each audit sees a whole prefix.
		var entries []Entry
		for range 5 {
			entries = append(entries, Entry{Kind: KindWork, Payload: auditReceipt(t, srvKey, auditKey(t), 0, 1, 0, 4, 0, 0)})
		}
		done := make(chan error, 1)
		go func() {
			for _, e := range entries[:len(entries)-1] {
				if err := l.AppendAsync(e); err != nil {
					done <- err
					return
				}
			}
			// The last append waits for its commit, and with it (appends
			// commit in order) for the others: the subtests after this one
			// compare audits with l.Len(), which must not grow under them.
			_, err := l.AppendMany(entries[len(entries)-1:])
			done <- err
		}()
		for range 3 {
			rep, err := Audit(t.Context(), hc, hs.ID(), DefaultPolicy)
			if err != nil {
				t.Fatalf("Audit of a growing chain = %v", err)
			}
			if rep.Records != rep.Len {
				t.Fatalf("Audit of a growing chain verified %d of %d records", rep.Records, rep.Len)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("PageBytes", func(t *testing.T) {
		// A page of 1 byte ends each response after its first record.
		srv.Close()
		small, err := ServeAudit(hs, l, WithServePage(100, 1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { small.Close() })
		if recs, _, _, err := FetchChain(t.Context(), hc, hs.ID(), 2, 0); err != nil || len(recs) != 1 {
			t.Errorf("FetchChain(2, 0) = %d records, %v; want 1, nil", len(recs), err)
		}
		if rep, err := Audit(t.Context(), hc, hs.ID(), DefaultPolicy); err != nil || rep.Records != l.Len() {
			t.Errorf("Audit one record per response = %v; want %d records", err, l.Len())
		}
	})
	t.Run("WrongHost", func(t *testing.T) {
		if _, err := ServeAudit(hc, l); !errors.Is(err, ErrAuditConfig) {
			t.Errorf("ServeAudit(another identity's host) = %v, want ErrAuditConfig", err)
		}
	})
}

// auditLiar answers audits of l's chain on h, passing each response
// (header and records) through edit first.
func auditLiar(h host.Host, l *Ledger, edit func(hdr *auditHeader, from uint64, recs [][]byte) [][]byte) {
	h.SetStreamHandler(AuditProtocol, func(s network.Stream) {
		s.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := readAuditFrame(s, MaxAuditRequest)
		if err != nil {
			s.Reset()
			return
		}
		req, err := decodeAuditRequest(b)
		if err != nil {
			s.Reset()
			return
		}
		head, hash := l.Head()
		n := head.Seq + 1
		to := req.To
		if to == 0 || to > n {
			to = n
		}
		var recs [][]byte
		if req.From < to {
			if err := l.Raw(req.From, to, func(_ uint64, raw []byte) error { recs = append(recs, bytes.Clone(raw)); return nil }); err != nil {
				s.Reset()
				return
			}
		}
		hdr := auditHeader{Len: n, Head: hash}
		recs = edit(&hdr, req.From, recs)
		w := bufio.NewWriter(s)
		writeAuditFrame(w, encodeAuditHeader(hdr))
		for _, r := range recs {
			writeAuditFrame(w, r)
		}
		if err := w.Flush(); err != nil {
			s.Reset()
			return
		}
		s.Close()
	})
}

func TestAuditLiars(t *testing.T) {
	hc := auditHost(t, auditKey(t))
	const n = 8 // records
	flip := func(seq uint64, off func(raw []byte) int) func(*auditHeader, uint64, [][]byte) [][]byte {
		return func(_ *auditHeader, from uint64, recs [][]byte) [][]byte {
			if seq >= from && seq < from+uint64(len(recs)) {
				raw := recs[seq-from]
				raw[off(raw)] ^= 1
			}
			return recs
		}
	}
	for _, tc := range []struct {
		name    string
		foreign bool // the ledger is another identity's
		edit    func(hdr *auditHeader, from uint64, recs [][]byte) [][]byte
		invalid bool   // the chain fails (a report), rather than the response
		want    string // in the error
		records uint64 // verified before the failure
	}{
		{name: "signature", edit: flip(3, func(raw []byte) int { return len(raw) - 1 }), invalid: true, want: "record 3", records: 3},
		{name: "payload", edit: flip(5, func(raw []byte) int { return headerLen + 10 }), invalid: true, want: "record 5", records: 5},
		{name: "time", edit: flip(2, func([]byte) int { return 49 }), invalid: true, want: "record 2", records: 2},
		{name: "link", edit: flip(6, func([]byte) int { return 20 }), invalid: true, want: "record 6", records: 6},
		{name: "seq", edit: flip(4, func([]byte) int { return 8 }), invalid: true, want: "record 4", records: 4},
		{name: "foreign", foreign: true, edit: func(_ *auditHeader, _ uint64, recs [][]byte) [][]byte { return recs },
			invalid: true, want: "record 0", records: 0},
		{name: "truncated", edit: func(_ *auditHeader, from uint64, recs [][]byte) [][]byte {
			if from+uint64(len(recs)) > n-2 {
				recs = recs[:max(0, int(n-2)-int(from))]
			}
			return recs
		}, invalid: true, want: "record 6", records: n - 2},
		{name: "head", edit: func(hdr *auditHeader, _ uint64, recs [][]byte) [][]byte { hdr.Head[0] ^= 1; return recs },
			invalid: true, want: "record 7", records: n},
		{name: "shrinking", edit: func(hdr *auditHeader, from uint64, recs [][]byte) [][]byte {
			if from > 0 {
				hdr.Len = from + 1
				return recs[:1]
			}
			return recs[:4]
		}, invalid: true, want: "record 5", records: 4},
		{name: "extra", edit: func(_ *auditHeader, _ uint64, recs [][]byte) [][]byte { return append(recs, recs[0]) },
			want: "more than"},
		{name: "refusal", edit: func(hdr *auditHeader, _ uint64, _ [][]byte) [][]byte { hdr.Err = "not today"; return nil },
			want: "not today"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := auditKey(t)
			lkey := key
			if tc.foreign {
				lkey = auditKey(t)
			}
			l := auditOpen(t, filepath.Join(t.TempDir(), "ledger.db"), lkey)
			auditFill(t, l, lkey, n-1)
			hs := auditHost(t, key)
			auditConnect(t, hc, hs)
			auditLiar(hs, l, tc.edit)
			a, err := NewAuditor(hc, nil, WithAuditPage(4))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := a.Audit(t.Context(), hs.ID())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Audit = %v, want an error naming %q", err, tc.want)
			}
			if !tc.invalid {
				if rep != nil || errors.Is(err, ErrInvalid) {
					t.Errorf("Audit = %v, %v; want no report and no ErrInvalid", rep, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || rep == nil || rep.Err != err {
				t.Fatalf("Audit = report %v, %v; want a report and ErrInvalid", rep, err)
			}
			if rep.Records != tc.records {
				t.Errorf("Audit verified %d records, want %d", rep.Records, tc.records)
			}
		})
	}
}

// auditCopy copies a closed ledger's file.
func auditCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestAuditFork(t *testing.T) {
	for _, tc := range []struct {
		name         string
		prefix, a, b int   // records appended: in common after genesis, then to each copy
		memory       int64 // the auditor's; 0: the default
		wantFork     bool  // a proof is made
		wantErr      error
		proofSeq     uint64
	}{
		{name: "last record", prefix: 2, a: 1, b: 1, wantFork: true, wantErr: ErrFork, proofSeq: 3},
		{name: "middle, longer", prefix: 1, a: 2, b: 4, wantFork: true, wantErr: ErrFork, proofSeq: 2},
		{name: "middle, shorter", prefix: 1, a: 4, b: 1, wantFork: true, wantErr: ErrFork, proofSeq: 2},
		{name: "genesis", prefix: -1, a: 2, b: 2, wantFork: true, wantErr: ErrFork, proofSeq: 0},
		{name: "rollback", prefix: 2, a: 3, b: 0, wantErr: ErrRollback},
		{name: "small memory", prefix: 1, a: 3, b: 4, memory: 1, wantFork: true, wantErr: ErrFork, proofSeq: 4},
		{name: "small memory, shorter", prefix: 1, a: 3, b: 1, memory: 1, wantErr: ErrFork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := auditKey(t)
			pa, pb := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
			if tc.prefix >= 0 {
				l, err := Open(pa, key)
				if err != nil {
					t.Fatal(err)
				}
				if tc.prefix > 0 {
					auditFill(t, l, key, tc.prefix)
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				auditCopy(t, pa, pb)
			}
			la, lb := auditOpen(t, pa, key), auditOpen(t, pb, key)
			for _, x := range []struct {
				l *Ledger
				n int
			}{{la, tc.a}, {lb, tc.b}} {
				if x.n > 0 {
					auditFill(t, x.l, key, x.n)
				}
			}

			hs := auditHost(t, key)
			auditorKey := auditKey(t)
			hc := auditHost(t, auditorKey)
			auditConnect(t, hc, hs)
			own := auditOpen(t, filepath.Join(dir, "auditor.db"), auditorKey)
			reps, err := NewReputation(own, DefaultHalfLife, DefaultExcludeBelow)
			if err != nil {
				t.Fatal(err)
			}
			var opts []AuditorOption
			if tc.memory > 0 {
				opts = append(opts, WithAuditMemory(4, tc.memory))
			}
			a, err := NewAuditor(hc, reps, opts...)
			if err != nil {
				t.Fatal(err)
			}
			serve := func(l *Ledger) {
				srv, err := ServeAudit(hs, l)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { srv.Close() })
			}

			serve(la)
			if rep, err := a.Audit(t.Context(), hs.ID()); err != nil {
				t.Fatalf("Audit(first chain) = %v", err)
			} else if rep.Records != la.Len() {
				t.Fatalf("Audit(first chain) verified %d records, want %d", rep.Records, la.Len())
			}
			ownLen := own.Len()

			serve(lb) // replaces the handler
			rep, err := a.Audit(t.Context(), hs.ID())
			if !errors.Is(err, tc.wantErr) || rep == nil || rep.Err != err {
				t.Fatalf("Audit(second chain) = %v, %v; want a report and %v", rep, err, tc.wantErr)
			}
			if !tc.wantFork {
				if rep.Fork != nil || own.Len() != ownLen {
					t.Errorf("Audit(second chain) made a fork proof %v and %d records; want none", rep.Fork, own.Len()-ownLen)
				}
				return
			}
			f := rep.Fork
			if f == nil {
				t.Fatal("Audit(second chain) made no fork proof")
			}
			if err := f.Check(); err != nil {
				t.Fatalf("ForkProof.Check() = %v", err)
			}
			if !strings.Contains(err.Error(), "records "+strconv.FormatUint(tc.proofSeq, 10)) {
				t.Errorf("Audit error %q, want it to name records %d", err, tc.proofSeq)
			}
			if want := auditRaw(t, la, tc.proofSeq, tc.proofSeq+1); f.Peer != hs.ID().String() || !bytes.Equal(f.A, want[0]) {
				t.Errorf("fork proof of %s, A %x…; want %s, record %d of the first chain", f.Peer, f.A[:8], hs.ID(), tc.proofSeq)
			}
			if want := auditRaw(t, lb, tc.proofSeq, tc.proofSeq+1); !bytes.Equal(f.B, want[0]) {
				t.Errorf("fork proof B is not record %d of the second chain", tc.proofSeq)
			}

			// The proof is in the auditor's own chain, which verifies.
			if own.Len() != ownLen+1 {
				t.Fatalf("auditor's ledger has %d new records, want 1", own.Len()-ownLen)
			}
			last, _ := own.Head()
			if last.Kind != KindForkProof {
				t.Fatalf("auditor's last record is %v, want %v", last.Kind, KindForkProof)
			}
			got, err := DecodeForkProof(last.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Check(); err != nil || !cmp.Equal(got, f) {
				t.Errorf("recorded proof: Check() = %v, equal to the report's: %v", err, cmp.Equal(got, f))
			}
			if err := own.Verify(nil); err != nil {
				t.Errorf("auditor's ledger: Verify = %v", err)
			}
			now := time.Now()
			if s := reps.Score(hs.ID().String(), now); s >= consensus.Prior || !reps.Excluded(hs.ID().String(), now) {
				t.Errorf("forking peer's score %v, excluded %v; want below %v and excluded", s, reps.Excluded(hs.ID().String(), now), consensus.Prior)
			}
			replay, err := NewReputation(own, DefaultHalfLife, DefaultExcludeBelow)
			if err != nil {
				t.Fatal(err)
			}
			if s := replay.Score(hs.ID().String(), now); s >= consensus.Prior {
				t.Errorf("replayed score %v, want below %v", s, consensus.Prior)
			}

			// Caught again, recorded once; the first chain still passes.
			if _, err := a.Audit(t.Context(), hs.ID()); !errors.Is(err, ErrFork) {
				t.Errorf("Audit(second chain, again) = %v, want ErrFork", err)
			}
			if own.Len() != ownLen+1 {
				t.Errorf("auditor's ledger has %d new records after a second audit, want 1", own.Len()-ownLen)
			}
			serve(la)
			if _, err := a.Audit(t.Context(), hs.ID()); err != nil {
				t.Errorf("Audit(first chain, again) = %v, want nil", err)
			}
		})
	}
}

// auditRawStream opens an audit stream from c to s and writes b.
func auditRawStream(t *testing.T, c host.Host, s peer.ID, b []byte) network.Stream {
	t.Helper()
	st, err := c.NewStream(t.Context(), s, AuditProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Reset() })
	st.SetDeadline(time.Now().Add(5 * time.Second))
	if len(b) > 0 {
		if _, err := st.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func auditFrame(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func TestAuditBadRequests(t *testing.T) {
	key := auditKey(t)
	l := auditOpen(t, filepath.Join(t.TempDir(), "ledger.db"), key)
	auditFill(t, l, key, 5)
	hs, hc := auditHost(t, key), auditHost(t, auditKey(t))
	auditConnect(t, hc, hs)
	const requestTimeout = 300 * time.Millisecond
	srv, err := ServeAudit(hs, l, WithServeTimeouts(requestTimeout, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	n := l.Len()

	for _, tc := range []struct {
		name     string
		req      []byte
		closeW   bool
		from, to uint64 // through FetchChain when req is nil
		want     string
	}{
		{name: "garbage", req: auditFrame(bytes.Repeat([]byte{0xff}, 10)), closeW: true, want: "malformed"},
		{name: "array", req: auditFrame([]byte{0x92, 0x01, 0x02}), closeW: true, want: "malformed"},
		{name: "unknown key", req: auditFrame([]byte{0x81, 0xa1, 'x', 0x01}), closeW: true, want: "malformed"},
		{name: "negative", req: auditFrame([]byte{0x81, 0xa4, 'f', 'r', 'o', 'm', 0xff}), closeW: true, want: "malformed"},
		{name: "trailing", req: auditFrame(append(encodeAuditRequest(auditRequest{}), 0)), closeW: true, want: "malformed"},
		{name: "oversized", req: binary.BigEndian.AppendUint32(nil, 1<<20), want: "too long"},
		{name: "just over", req: auditFrame(make([]byte, MaxAuditRequest+1)), want: "too long"},
		{name: "cut short", req: []byte{0, 0, 0, 20, 0x82}, closeW: true, want: "no request"},
		{name: "empty", closeW: true, want: "no request"},
		{name: "silent", want: "no request"},
		{name: "beyond head", from: n + 1, want: "beyond the head"},
		{name: "far beyond head", from: math.MaxUint64, want: "beyond the head"},
		{name: "from past to", from: 4, to: 2, want: "past to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			start := time.Now()
			if tc.req == nil && !tc.closeW && tc.from+tc.to > 0 {
				_, _, _, err = FetchChain(t.Context(), hc, hs.ID(), tc.from, tc.to)
			} else {
				st := auditRawStream(t, hc, hs.ID(), tc.req)
				if tc.closeW {
					st.CloseWrite()
				}
				_, _, _, err = readResponse(st, 0, 0)
			}
			if !errors.Is(err, ErrAuditRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("response = %v, want ErrAuditRefused saying %q", err, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered after %v", d)
			}
		})
	}

	// A silent client does not hold the server up; the server answers
	// audits after all this.
	silent := auditRawStream(t, hc, hs.ID(), nil)
	silentErr := make(chan error, 1)
	go func() {
		_, _, _, err := readResponse(silent, 0, 0)
		silentErr <- err
	}()
	rep, err := Audit(t.Context(), hc, hs.ID(), DefaultPolicy)
	if err != nil || rep.Records != n {
		t.Fatalf("Audit after bad requests = %v; want %d records", err, n)
	}
	if err := <-silentErr; !errors.Is(err, ErrAuditRefused) {
		t.Errorf("silent client's response = %v, want ErrAuditRefused", err)
	}

	// A client that stops reading is cut off by the write deadline; a
	// cancelled audit returns.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Audit(ctx, hc, hs.ID(), DefaultPolicy); !errors.Is(err, context.Canceled) {
		t.Errorf("Audit(cancelled) = %v, want context.Canceled", err)
	}

	// Closed, the server answers nothing and its ledger can close.
	srv.Close()
	if _, _, _, err := FetchChain(t.Context(), hc, hs.ID(), 0, 0); err == nil {
		t.Error("FetchChain from a closed server succeeded")
	}
}

func TestAuditHeaderRoundTrip(t *testing.T) {
	for _, h := range []auditHeader{
		{Len: 1},
		{Len: math.MaxUint64, Head: [32]byte{1, 2, 3, 31: 9}},
		{Err: "busy"},
		{Err: strings.Repeat("é", maxAuditErr/2)},
	} {
		b := encodeAuditHeader(h)
		if len(b) > MaxAuditHeader {
			t.Errorf("encodeAuditHeader(%+v) is %d bytes, more than %d", h, len(b), MaxAuditHeader)
		}
		got, err := decodeAuditHeader(b)
		if err != nil || got != h {
			t.Errorf("decodeAuditHeader(encodeAuditHeader(%+v)) = %+v, %v", h, got, err)
		}
	}
	for _, b := range [][]byte{
		nil, {0x80}, {0x81, 0xa3, 'l', 'e', 'n', 0x00}, // no head, a chain of 0
		{0x82, 0xa3, 'e', 'r', 'r', 0xa1, 'x', 0xa3, 'l', 'e', 'n', 0x01}, // err with more
		{0x81, 0xa3, 'e', 'r', 'r', 0xa0},                                 // empty message
	} {
		if h, err := decodeAuditHeader(b); err == nil {
			t.Errorf("decodeAuditHeader(%x) = %+v, want an error", b, h)
		}
	}
}

func FuzzAuditRequest(f *testing.F) {
	for _, r := range []auditRequest{{}, {From: 5, To: 100}, {From: math.MaxUint64, To: math.MaxUint64}, {From: 1 << 40}} {
		f.Add(encodeAuditRequest(r))
	}
	f.Add([]byte{0x81, 0xa2, 't', 'o', 0xcc, 0x05})
	f.Add([]byte{0x82, 0xa2, 't', 'o', 0x01, 0xa2, 't', 'o', 0x02})
	f.Add([]byte{0xde, 0x00, 0x01, 0xa2, 't', 'o', 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeAuditRequest(b)
		if err != nil {
			return
		}
		enc := encodeAuditRequest(r)
		if len(enc) > MaxAuditRequest {
			t.Fatalf("encodeAuditRequest(%+v) is %d bytes, more than %d", r, len(enc), MaxAuditRequest)
		}
		if got, err := decodeAuditRequest(enc); err != nil || got != r {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", r, got, err)
		}
	})
}

func FuzzAuditResponse(f *testing.F) {
	key := auditKey(f)
	l, err := Open(filepath.Join(f.TempDir(), "ledger.db"), key)
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	auditFill(f, l, key, 3)
	_, head := l.Head()
	var resp bytes.Buffer
	writeAuditFrame(&resp, encodeAuditHeader(auditHeader{Len: l.Len(), Head: head}))
	l.Raw(1, l.Len(), func(_ uint64, raw []byte) error { return writeAuditFrame(&resp, raw) })
	f.Add(resp.Bytes(), uint64(1), uint64(0))
	f.Add(resp.Bytes()[:resp.Len()-7], uint64(1), uint64(3))
	f.Add(auditFrame(encodeAuditHeader(auditHeader{Err: "no"})), uint64(0), uint64(0))
	f.Add(append(auditFrame(encodeAuditHeader(auditHeader{Len: 9})), 0xff, 0xff, 0xff, 0xff), uint64(0), uint64(0))
	f.Add(append(auditFrame(encodeAuditHeader(auditHeader{Len: 9})), 0, 0, 0, 200, 1), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, from, to uint64) {
		recs, length, _, err := readResponse(bytes.NewReader(b), from, to)
		if err != nil {
			if recs != nil {
				t.Fatalf("readResponse = %d records and %v", len(recs), err)
			}
			return
		}
		if from > length || uint64(len(recs)) > length-from || len(recs) > MaxRecordsPerResponse ||
			(to != 0 && to >= from && uint64(len(recs)) > to-from) {
			t.Fatalf("readResponse(from %d, to %d) = %d records of a %d-record chain", from, to, len(recs), length)
		}
		for i, raw := range recs {
			if len(raw) > MaxRecordLen || binary.BigEndian.Uint64(raw[1:9]) != from+uint64(i) {
				t.Fatalf("record %d: %d bytes, seq %d", i, len(raw), binary.BigEndian.Uint64(raw[1:9]))
			}
		}
	})
}
