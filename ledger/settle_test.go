package ledger

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/weights"
)

// settleNode is a libp2p host on 127.0.0.1 and a ledger of the same
// identity.
type settleNode struct {
	h host.Host
	l *Ledger
}

func newSettleNode(t *testing.T) settleNode {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(key), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	for _, a := range h.Addrs() {
		if !strings.HasPrefix(a.String(), "/ip4/127.0.0.1/") {
			t.Fatalf("host listens on %s, beyond loopback", a)
		}
	}
	l, err := Open(filepath.Join(t.TempDir(), "ledger.db"), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return settleNode{h, l}
}

func connect(t *testing.T, a, b host.Host) {
	t.Helper()
	if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

var settleShape = Shape{Layers: 22, Dim: 2048, FFN: 5632, Heads: 32, KVHeads: 4, HeadDimK: 64, HeadDimV: 64}

// TestSettle: a client and a server settle a session; the server records
// work and the client spend of one countersigned receipt, worth the FLOPs
// of the blocks and positions at the reference rate. Drafts that do not
// match what was served, sessions of other clients and second settlements
// are refused, and nothing is recorded for them.
func TestSettle(t *testing.T) {
	srv, cli, other := newSettleNode(t), newSettleNode(t), newSettleNode(t)
	connect(t, cli.h, srv.h)
	connect(t, other.h, srv.h)
	var model weights.ModelID
	model[0] = 7
	session := [16]byte{1, 2, 3}
	facts := SessionFacts{Start: 0, End: 11, First: 0, Positions: 40, Steps: 9, StepsHash: [32]byte{9}}
	ss := ServeSettle(srv.h, srv.l, model, settleShape, func(id [16]byte, c peer.ID) (SessionFacts, bool) {
		return facts, id == session && c == cli.h.ID()
	})
	defer ss.Close()

	draft := func(f SessionFacts, agreed int, client settleNode) *WorkReceipt {
		d, err := Draft(session, model, settleShape, f, agreed, f.Positions-agreed, 0, srv.h.ID(), client.h.ID())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Refused: a draft claiming more positions, and another client.
	bad := facts
	bad.Positions++
	if _, err := Settle(t.Context(), cli.h, cli.l, draft(bad, 0, cli)); !errors.Is(err, ErrSettle) {
		t.Errorf("inflated draft: %v, want ErrSettle", err)
	}
	if _, err := Settle(t.Context(), other.h, other.l, draft(facts, 0, other)); !errors.Is(err, ErrSettle) {
		t.Errorf("another client's session: %v, want ErrSettle", err)
	}
	if srv.l.Len() != 1 || cli.l.Len() != 1 || other.l.Len() != 1 {
		t.Fatalf("refused settlements recorded something: %d, %d, %d records", srv.l.Len(), cli.l.Len(), other.l.Len())
	}

	w, err := Settle(t.Context(), cli.h, cli.l, draft(facts, 30, cli))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(true); err != nil {
		t.Fatal(err)
	}
	if _, err := Settle(t.Context(), cli.h, cli.l, draft(facts, 30, cli)); !errors.Is(err, ErrSettle) {
		t.Errorf("second settlement: %v, want ErrSettle", err)
	}
	sa, err := AccountOf(srv.l, DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := AccountOf(cli.l, DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	flops, _ := settleShape.FLOPs(11, 0, 40)
	want := float64(flops) * (30 + 10*DefaultPolicy.UnverifiedRate) / 40 / (3600 * DefaultPolicy.ReferenceFLOPS)
	if sa.Work != 1 || sa.ServedFLOPs != flops || !near(sa.Earned, want) || sa.Escrowed != sa.Earned {
		t.Errorf("server account %+v; want one receipt of %d FLOPs earning %g, in escrow", sa, flops, want)
	}
	if ca.Spends != 1 || ca.UsedFLOPs != flops || !near(ca.Spent, want) || !near(ca.Balance, DefaultPolicy.Starter-want) {
		t.Errorf("client account %+v; want one spend of %g", ca, want)
	}
}

func near(a, b float64) bool {
	d := a - b
	return d < 1e-12*max(1, b) && d > -1e-12*max(1, b)
}

// FuzzReadSettle: a settlement frame from a peer never panics the reader,
// and a frame it accepts carries a receipt.
func FuzzReadSettle(f *testing.F) {
	var ok bytes.Buffer
	w := &WorkReceipt{Session: make([]byte, 16), Model: strings.Repeat("ab", 32), Start: 0, End: 2, Shape: settleShape,
		Positions: 4, Steps: 1, Agreed: 4, Server: "s", Client: "c"}
	if err := writeSettle(&ok, &settleMsg{Receipt: w}); err != nil {
		f.Fatal(err)
	}
	var refusal bytes.Buffer
	_ = writeSettle(&refusal, &settleMsg{Error: "no"})
	f.Add(ok.Bytes())
	f.Add(refusal.Bytes())
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readSettle(bytes.NewReader(b))
		if err == nil && (m == nil || m.Receipt == nil) {
			t.Fatalf("accepted a frame without a receipt: %x", b)
		}
		if err == nil {
			_ = m.Receipt.Check(true) // must not panic either
		}
	})
}
