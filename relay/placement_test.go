package relay

import (
	"slices"
	"testing"
	"time"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
)

// TestChooseSpanFillsWeakestFirst: servers of 6 blocks joining a 22-block
// model one by one each take a window over a least-served block, so the
// minimum coverage grows as fast as it can: every block is served once
// four have joined (⌈22/6⌉), twice once eight have.
func TestChooseSpanFillsWeakestFirst(t *testing.T) {
	const blocks, n = 22, 6
	var cands []Candidate
	for joined := 1; joined <= 12; joined++ {
		cov := Coverage(blocks, cands)
		sp, err := ChooseSpan(cov, n)
		if err != nil {
			t.Fatal(err)
		}
		low := MinCoverage(cov)
		if !slices.Contains(cov[sp.Start:sp.End], low) {
			t.Fatalf("server %d took %v, over no least-served block (coverage %v)", joined, sp, cov)
		}
		cands = append(cands, Candidate{Span: sp, Throughput: 1})
		after := MinCoverage(Coverage(blocks, cands))
		if joined%4 == 0 && after < float64(joined/4) {
			t.Errorf("after %d servers the least-served block has %v, want %v", joined, after, joined/4)
		}
	}
	if _, err := ChooseSpan(make([]float64, 4), 5); err == nil {
		t.Error("a span longer than the model was chosen")
	}
}

// TestRebalance: a server moves only when that raises the swarm's minimum
// coverage by more than the threshold.
func TestRebalance(t *testing.T) {
	// Blocks 0-3 served twice (by us and another), 4-7 by nobody.
	cov := []float64{2, 2, 2, 2, 0, 0, 0, 0}
	cur := dht.Span{Start: 0, End: 4}
	if next, move := Rebalance(cov, cur, 1, 0.2); !move || next != (dht.Span{Start: 4, End: 8}) {
		t.Errorf("Rebalance = %v, %v; want a move to 4:8", next, move)
	}
	// Balanced: stay.
	if _, move := Rebalance([]float64{1, 1, 1, 1, 1, 1, 1, 1}, cur, 1, 0.2); move {
		t.Error("moved in a balanced swarm")
	}
	// A small gain below the threshold: stay.
	if _, move := Rebalance([]float64{2.1, 2.1, 2.1, 2.1, 2, 2, 2, 2}, cur, 1, 0.2); move {
		t.Error("moved for a gain below the threshold")
	}
}

// TestSpanAutoSwarm: real servers joining a real swarm one by one pick
// their spans from what the DHT says is served, and fill the least
// served blocks first.
func TestSpanAutoSwarm(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{Throughput: 10}, shard.Span{Start: 0, End: 2})
	c := sw.client(ClientConfig{})
	blocks := sw.hp.Layers
	for joined := 2; joined <= 6; joined++ {
		var cands []Candidate
		var err error
		// Announcements reach the DHT asynchronously: wait for every server.
		for range 100 {
			if cands, _, err = c.Candidates(t.Context(), dht.Span{Start: 0, End: blocks}); err == nil && len(cands) == joined-1 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(cands) != joined-1 {
			t.Fatalf("the DHT lists %d servers, want %d", len(cands), joined-1)
		}
		cov := Coverage(blocks, cands)
		sp, err := ChooseSpan(cov, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cov[sp.Start:sp.End], MinCoverage(cov)) {
			t.Fatalf("server %d chose %v over no least-served block of %v", joined, sp, cov)
		}
		sw.add(shard.Span{Start: sp.Start, End: sp.End})
		if joined == 3 { // 2 + 2 + 2 blocks cover all 5
			cands = append(cands, Candidate{Span: sp, Throughput: 10})
			if MinCoverage(Coverage(blocks, cands)) == 0 {
				t.Errorf("three servers of two blocks left a block of five unserved: %v", cands)
			}
		}
	}
}
