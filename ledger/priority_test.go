package ledger

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// TestBalancesPriority: a server ranks clients by the balances their
// chains prove once audited: one that earned (released from escrow) ranks
// above a new identity, which ranks above one that spent more than it
// had; before its audit finishes a client ranks as a new identity.
func TestBalancesPriority(t *testing.T) {
	sh := auditHost(t, auditKey(t))
	auditor, err := NewAuditor(sh, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBalances(auditor, DefaultPolicy, time.Hour)
	defer b.Close()

	other, rich, fresh, poor := auditKey(t), auditKey(t), auditKey(t), auditKey(t)
	var prios []float64
	for _, c := range []struct {
		key     crypto.PrivKey
		entries []Entry
	}{
		// Four clean receipts of about 0.01 GPU-hours each: escrow
		// released.
		{rich, []Entry{
			{KindWork, auditReceipt(t, rich, other, 0, 22, 0, 1<<20, 0, 0)},
			{KindWork, auditReceipt(t, rich, other, 0, 22, 0, 1<<20, 0, 0)},
			{KindWork, auditReceipt(t, rich, other, 0, 22, 0, 1<<20, 0, 0)},
			{KindWork, auditReceipt(t, rich, other, 0, 22, 0, 1<<20, 0, 0)},
		}},
		{fresh, nil}, // genesis only: the starter allowance
		// One spend of several times the starter allowance.
		{poor, []Entry{{KindSpend, auditReceipt(t, other, poor, 0, 22, 0, 4<<20, 0, 0)}}},
	} {
		h := auditHost(t, c.key)
		l := auditOpen(t, filepath.Join(t.TempDir(), "client.db"), c.key)
		if len(c.entries) > 0 {
			if _, err := l.AppendMany(c.entries); err != nil {
				t.Fatal(err)
			}
		}
		srv, err := ServeAudit(h, l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		auditConnect(t, sh, h)
		id := auditID(t, c.key)
		if p := b.Priority(id); p != priorityOf(DefaultPolicy.Starter) {
			t.Errorf("before its audit, %s ranks %v; want a new identity's %v", id, p, priorityOf(DefaultPolicy.Starter))
		}
		for range 500 {
			b.mu.Lock()
			done := !b.known[id].at.IsZero() && !b.known[id].auditing
			b.mu.Unlock()
			if done {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		prios = append(prios, b.Priority(id))
	}
	if !(prios[0] > prios[1] && prios[1] > prios[2] && prios[2] < 0 && prios[0] < 1) {
		t.Errorf("priorities rich %v, fresh %v, poor %v; want rich > fresh > poor, poor negative, all in (-1, 1)", prios[0], prios[1], prios[2])
	}
}
