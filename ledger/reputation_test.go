package ledger

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stratanet/strata/consensus"
)

// TestReputationPersists: events recorded through a ledger's Reputation
// are records of its chain, and a ledger reopened after Close scores every
// peer as before; a peer scoring below the threshold is excluded.
func TestReputationPersists(t *testing.T) {
	key := auditKey(t)
	path := filepath.Join(t.TempDir(), "rep.db")
	l, err := Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReputation(l, time.Hour, DefaultExcludeBelow)
	if err != nil {
		t.Fatal(err)
	}
	good, bad, flaky := auditID(t, auditKey(t)).String(), auditID(t, auditKey(t)).String(), auditID(t, auditKey(t)).String()
	at := time.Now()
	for i := range 6 {
		at = at.Add(time.Second)
		r.Record(good, consensus.EventAgreed, at)
		r.Record(bad, consensus.EventDisagreed, at)
		if i%2 == 0 {
			r.Record(flaky, consensus.EventDown, at)
		} else {
			r.Record(flaky, consensus.EventUp, at)
		}
	}
	r.Record(good, consensus.Event(99), at) // unknown: ignored, not recorded
	before := r.Peers(at)
	if err := l.Close(); err != nil { // writes the queued records
		t.Fatal(err)
	}
	l, err = Open(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := AccountOf(l, DefaultPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if a.ReputationEvents != 18 {
		t.Errorf("%d reputation records, want 18", a.ReputationEvents)
	}
	r2, err := NewReputation(l, time.Hour, DefaultExcludeBelow)
	if err != nil {
		t.Fatal(err)
	}
	after := r2.Peers(at)
	if len(after) != 3 || len(before) != 3 {
		t.Fatalf("peers before %v, after %v", before, after)
	}
	for i := range after {
		if after[i] != before[i] {
			t.Errorf("after reopening %+v, before %+v", after[i], before[i])
		}
	}
	if after[0].Peer != good || after[2].Peer != bad || !after[2].Excluded || after[0].Excluded || after[1].Excluded {
		t.Errorf("peers %+v; want good first, bad last and excluded", after)
	}
	if !r2.Excluded(bad, at) || r2.Excluded(good, at) {
		t.Error("Excluded disagrees with Peers")
	}
	// Decay: a day later every score is nearer the prior.
	later := at.Add(24 * time.Hour)
	if s := r2.Score(bad, later); s <= after[2].Score || s > consensus.Prior {
		t.Errorf("bad's score a day later %v; want between %v and the prior", s, after[2].Score)
	}
}
