package relay

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
)

const ms = time.Millisecond

func sp(start, end int) dht.Span { return dht.Span{Start: start, End: end} }

func hop(p string, start, end int) Hop { return Hop{Peer: peer.ID(p), Span: sp(start, end)} }

func cand(p string, start, end int, tp float64, rtt time.Duration) Candidate {
	return Candidate{Peer: peer.ID(p), Span: sp(start, end), Throughput: tp, RTT: rtt, FreeKV: -1}
}

func TestFindRoute(t *testing.T) {
	withKV := func(c Candidate, free int64) Candidate { c.FreeKV = free; return c }
	withLoad := func(c Candidate, load int64) Candidate { c.Load = load; return c }
	tests := []struct {
		name     string
		cands    []Candidate
		span     dht.Span
		cost     RouteCost
		exclude  func(peer.ID) bool
		wantHops []Hop
		wantCost time.Duration
	}{{
		name:     "single server covers all",
		cands:    []Candidate{cand("A", 0, 4, 1, 10*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name:     "two servers tile",
		cands:    []Candidate{cand("B", 2, 4, 1, 10*ms), cand("A", 0, 2, 1, 10*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 2), hop("B", 2, 4)},
		wantCost: 2 * (10*ms + time.Second),
	}, {
		name:     "fast server preferred over slow",
		cands:    []Candidate{cand("A", 0, 4, 1, 10*ms), cand("B", 0, 4, 4, 10*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("B", 0, 4)},
		wantCost: 10*ms + 250*ms,
	}, {
		name: "high RTT prefers fewer hops",
		cands: []Candidate{
			cand("A", 0, 4, 1, time.Second), // 1s + 4*250ms = 2s
			cand("B", 0, 2, 10, time.Second),
			cand("C", 2, 4, 10, time.Second), // 2*(1s + 2*50ms) = 2.2s
		},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 2 * time.Second,
	}, {
		name: "low RTT prefers faster hops",
		cands: []Candidate{
			cand("A", 0, 4, 1, 10*ms), // 10ms + 1s
			cand("B", 0, 2, 10, 10*ms),
			cand("C", 2, 4, 10, 10*ms), // 2*(10ms + 100ms)
		},
		span:     sp(0, 4),
		wantHops: []Hop{hop("B", 0, 2), hop("C", 2, 4)},
		wantCost: 220 * ms,
	}, {
		name:     "sub-range of a big server",
		cands:    []Candidate{cand("Big", 0, 8, 1, 10*ms)}, // 125ms a block
		span:     sp(2, 5),
		wantHops: []Hop{hop("Big", 2, 5)},
		wantCost: 10*ms + 375*ms,
	}, {
		name: "big server around a fast one",
		cands: []Candidate{
			cand("Big", 0, 8, 1, 10*ms), // 125ms a block: 1010ms alone
			cand("F", 2, 4, 100, 10*ms), // 5ms a block
		},
		span:     sp(0, 8),
		wantHops: []Hop{hop("Big", 0, 2), hop("F", 2, 4), hop("Big", 4, 8)},
		wantCost: (10*ms + 250*ms) + (10*ms + 10*ms) + (10*ms + 500*ms),
	}, {
		name:     "exclude honoured",
		cands:    []Candidate{cand("A", 0, 4, 1, 10*ms), cand("B", 0, 4, 4, 10*ms)},
		span:     sp(0, 4),
		exclude:  func(p peer.ID) bool { return p == "B" },
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name: "no KV room steers to a server with room",
		cands: []Candidate{
			withKV(cand("A", 0, 4, 4, 10*ms), 0), // 10ms + 250ms + 1s penalty
			withKV(cand("B", 0, 4, 1, 10*ms), 1000),
		},
		span:     sp(0, 4),
		cost:     RouteCost{KVBytesPerBlock: 100},
		wantHops: []Hop{hop("B", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name: "KV room for part of the blocks",
		cands: []Candidate{
			withKV(cand("A", 0, 4, 4, 500*ms), 100), // room for one block, 62.5ms a block
			cand("B", 1, 4, 1, 500*ms),              // FreeKV < 0: no limit, 333ms a block
		},
		span: sp(0, 4),
		cost: RouteCost{KVBytesPerBlock: 100, NoRoomPenalty: 10 * time.Second},
		// A[0,4) pays the penalty; alternating A and B pays two more RTTs.
		wantHops: []Hop{hop("A", 0, 1), hop("B", 1, 4)},
		wantCost: (500*ms + 62500*time.Microsecond) + (500*ms + time.Second),
	}, {
		name: "no adjacent hops on one peer",
		cands: []Candidate{
			withKV(cand("A", 0, 4, 4, 10*ms), 100), // 4 one-block hops would dodge the room check
			cand("B", 0, 4, 1, 10*ms),
		},
		span: sp(0, 4),
		cost: RouteCost{KVBytesPerBlock: 100},
		// A may come back after B: A, B, A beats B alone (1.01s).
		wantHops: []Hop{hop("A", 0, 1), hop("B", 1, 3), hop("A", 3, 4)},
		wantCost: 2*(10*ms+62500*time.Microsecond) + (10*ms + 500*ms),
	}, {
		name: "custom penalty",
		cands: []Candidate{
			withKV(cand("A", 0, 4, 4, 10*ms), 0), // 10ms + 250ms + 100ms
			cand("B", 0, 4, 1, 10*ms),
		},
		span:     sp(0, 4),
		cost:     RouteCost{KVBytesPerBlock: 100, NoRoomPenalty: 100 * ms},
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 360 * ms,
	}, {
		name: "load slows a server",
		cands: []Candidate{
			withLoad(cand("A", 0, 4, 2, 10*ms), 3), // 500ms * (1+3)
			cand("B", 0, 4, 1, 10*ms),
		},
		span:     sp(0, 4),
		cost:     RouteCost{LoadFactor: 1},
		wantHops: []Hop{hop("B", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name: "load ignored without a factor",
		cands: []Candidate{
			withLoad(cand("A", 0, 4, 2, 10*ms), 3),
			cand("B", 0, 4, 1, 10*ms),
		},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 10*ms + 500*ms,
	}, {
		name: "equal cost: fewer hops wins",
		cands: []Candidate{
			cand("A", 0, 2, 2, 5*ms),
			cand("B", 2, 4, 2, 5*ms),
			cand("C", 0, 4, 1, 10*ms),
		},
		span:     sp(0, 4),
		wantHops: []Hop{hop("C", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name:     "equal cost and hops: lower peer ID wins",
		cands:    []Candidate{cand("B", 0, 4, 1, 10*ms), cand("A", 0, 4, 1, 10*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 10*ms + time.Second,
	}, {
		name:     "unknown throughput is the median of the others",
		cands:    []Candidate{cand("B", 0, 4, 2, 10*ms), cand("A", 0, 4, 0, 10*ms), cand("C", 0, 4, math.NaN(), 10*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: 10*ms + 500*ms,
	}, {
		name:     "unknown RTT is the median of the others",
		cands:    []Candidate{cand("A", 0, 4, 1, 0), cand("B", 0, 4, 1, 20*ms), cand("C", 0, 4, 1, 40*ms)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("B", 0, 4)}, // A's RTT is 30ms
		wantCost: 20*ms + time.Second,
	}, {
		name:     "no RTT known at all",
		cands:    []Candidate{cand("A", 0, 4, 1, 0)},
		span:     sp(0, 4),
		wantHops: []Hop{hop("A", 0, 4)},
		wantCost: defaultRTT + time.Second,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hops, c, err := FindRoute(tt.cands, tt.span, tt.cost, tt.exclude)
			if err != nil {
				t.Fatalf("FindRoute(%v) error %v", tt.span, err)
			}
			if diff := gocmp.Diff(tt.wantHops, hops); diff != "" {
				t.Errorf("FindRoute(%v) hops (-want +got):\n%s", tt.span, diff)
			}
			if c != tt.wantCost {
				t.Errorf("FindRoute(%v) cost = %v, want %v", tt.span, c, tt.wantCost)
			}
			checkChain(t, tt.cands, tt.span, hops)
		})
	}
}

func TestFindRouteErrors(t *testing.T) {
	tests := []struct {
		name    string
		cands   []Candidate
		span    dht.Span
		exclude func(peer.ID) bool
		want    error
		wantMsg string
	}{
		{"gap", []Candidate{cand("A", 0, 2, 1, ms), cand("C", 3, 5, 1, ms)}, sp(0, 5), nil, ErrNoRoute, "block 2 "},
		{"no candidates", nil, sp(0, 3), nil, ErrNoRoute, "block 0 "},
		{"span outside candidates", []Candidate{cand("A", 0, 4, 1, ms)}, sp(10, 12), nil, ErrNoRoute, "block 10 "},
		{"tail missing", []Candidate{cand("A", 0, 4, 1, ms)}, sp(2, 6), nil, ErrNoRoute, "block 4 "},
		{"exclusion leaves a gap", []Candidate{cand("A", 0, 2, 1, ms), cand("B", 2, 4, 1, ms)}, sp(0, 4),
			func(p peer.ID) bool { return p == "B" }, ErrNoRoute, "block 2 "},
		{"empty span", []Candidate{cand("A", 0, 4, 1, ms)}, sp(3, 3), nil, dht.ErrSpan, ""},
		{"reversed span", []Candidate{cand("A", 0, 4, 1, ms)}, sp(3, 1), nil, dht.ErrSpan, ""},
		{"negative span", []Candidate{cand("A", 0, 4, 1, ms)}, sp(-1, 2), nil, dht.ErrSpan, ""},
		{"one peer listed twice, adjacent", []Candidate{cand("A", 0, 2, 1, ms), cand("A", 2, 4, 1, ms)}, sp(0, 4), nil, ErrNoRoute, "block 2 "},
		{"span too long", []Candidate{cand("A", 0, 4, 1, ms)}, sp(0, dht.MaxBlocks+1), nil, dht.ErrSpan, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hops, _, err := FindRoute(tt.cands, tt.span, RouteCost{}, tt.exclude)
			if !errors.Is(err, tt.want) {
				t.Fatalf("FindRoute(%v) = %v, %v, want error %v", tt.span, hops, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("FindRoute(%v) error %q does not name %q", tt.span, err, tt.wantMsg)
			}
		})
	}
}

// TestFindRouteDeterministic shuffles candidates full of ties.
func TestFindRouteDeterministic(t *testing.T) {
	var cands []Candidate
	for _, p := range []string{"e", "a", "d", "b", "c"} {
		cands = append(cands,
			cand(p, 0, 4, 1, 10*ms), cand(p+"x", 4, 8, 1, 10*ms),
			cand(p+"y", 0, 8, 2, 10*ms), cand(p+"z", 2, 6, 1, 5*ms))
	}
	span := sp(0, 8)
	want, wantCost, err := FindRoute(cands, span, RouteCost{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		got, gotCost, err := FindRoute(cands, span, RouteCost{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := gocmp.Diff(want, got); diff != "" || gotCost != wantCost {
			t.Fatalf("FindRoute after shuffle = %v, %v, want %v, %v", got, gotCost, want, wantCost)
		}
	}
}

// TestFindRouteBruteForce compares FindRoute with an enumeration of every
// chain over random small inputs.
func TestFindRouteBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	peers := []string{"a", "b", "c", "d"} // fewer than candidates: duplicates happen
	tps := []float64{0, 0.5, 1, 2, 4, 3}
	rtts := []time.Duration{0, ms, 5 * ms, 10 * ms, 100 * ms}
	frees := []int64{-1, 0, 100, 250, 1000}
	iters := 3000
	if testing.Short() {
		iters = 300
	}
	found := 0
	for it := range iters {
		L := 1 + r.IntN(6)
		off := r.IntN(3)
		span := sp(off, off+L)
		cost := RouteCost{
			KVBytesPerBlock: []int64{0, 100}[r.IntN(2)],
			NoRoomPenalty:   []time.Duration{0, 50 * ms}[r.IntN(2)],
			LoadFactor:      []float64{0, 0.5}[r.IntN(2)],
		}
		cands := make([]Candidate, r.IntN(6))
		for i := range cands {
			a := r.IntN(off + L + 2)
			b := a + 1 + r.IntN(off+L+2-a)
			cands[i] = Candidate{
				Peer: peer.ID(peers[r.IntN(len(peers))]), Span: sp(a, b),
				Throughput: tps[r.IntN(len(tps))], RTT: rtts[r.IntN(len(rtts))],
				FreeKV: frees[r.IntN(len(frees))], Load: int64(r.IntN(3)),
			}
		}
		banned := peer.ID(peers[r.IntN(len(peers))])
		exclude := func(p peer.ID) bool { return p == banned }
		if r.IntN(2) == 0 {
			exclude = nil
		}

		wantHops, wantCost, ok := bruteForce(cands, span, cost, exclude)
		hops, c, err := FindRoute(cands, span, cost, exclude)
		if !ok {
			if !errors.Is(err, ErrNoRoute) {
				t.Fatalf("#%d FindRoute(%+v, %v, %+v) = %v, %v, %v, want ErrNoRoute", it, cands, span, cost, hops, c, err)
			}
			continue
		}
		found++
		if err != nil {
			t.Fatalf("#%d FindRoute(%+v, %v, %+v) error %v, want %v", it, cands, span, cost, err, wantHops)
		}
		if c != wantCost || !slices.Equal(hops, wantHops) {
			t.Fatalf("#%d FindRoute(%+v, %v, %+v) = %v, %v, want %v, %v", it, cands, span, cost, hops, c, wantHops, wantCost)
		}
		checkChain(t, cands, span, hops)
	}
	t.Logf("%d of %d random cases had a route", found, iters)
	if found < iters/4 {
		t.Errorf("only %d of %d random cases had a route; the generator is too sparse", found, iters)
	}
}

// bruteForce enumerates every chain covering span and returns the least by
// (cost, hops, peer then end hop by hop), pricing hops as FindRoute documents.
func bruteForce(cands []Candidate, span dht.Span, cost RouteCost, exclude func(peer.ID) bool) ([]Hop, time.Duration, bool) {
	var kept []Candidate
	var tps []float64
	var rtts []time.Duration
	for _, c := range cands {
		if c.Span.End <= span.Start || c.Span.Start >= span.End || (exclude != nil && exclude(c.Peer)) {
			continue
		}
		kept = append(kept, c)
		if c.Throughput > 0 && !math.IsInf(c.Throughput, 0) {
			tps = append(tps, c.Throughput)
		}
		if c.RTT > 0 {
			rtts = append(rtts, c.RTT)
		}
	}
	slices.Sort(tps)
	slices.Sort(rtts)
	tpDef, rttDef := 1.0, defaultRTT
	if n := len(tps); n%2 == 1 {
		tpDef = tps[n/2]
	} else if n > 0 {
		tpDef = tps[n/2-1]/2 + tps[n/2]/2
	}
	if n := len(rtts); n%2 == 1 {
		rttDef = rtts[n/2]
	} else if n > 0 {
		rttDef = (rtts[n/2-1] + rtts[n/2]) / 2
	}
	penalty := cost.NoRoomPenalty
	if penalty == 0 {
		penalty = time.Second
	}
	price := func(c Candidate, blocks int) time.Duration {
		tp, rtt := c.Throughput, c.RTT
		if !(tp > 0) || math.IsInf(tp, 0) {
			tp = tpDef
		}
		if rtt <= 0 {
			rtt = rttDef
		}
		// Same float operations, in the same order, as FindRoute: rounding
		// to the nanosecond must agree exactly.
		perBlock := 1e9 / (tp * float64(c.Span.Len()))
		if cost.LoadFactor > 0 && c.Load > 0 {
			perBlock *= 1 + cost.LoadFactor*float64(c.Load)
		}
		d := rtt + time.Duration(math.Round(float64(blocks)*perBlock))
		if cost.KVBytesPerBlock > 0 && c.FreeKV >= 0 && c.FreeKV < int64(blocks)*cost.KVBytesPerBlock {
			d += penalty
		}
		return d
	}

	var best []Hop
	var bestCost time.Duration
	ok := false
	// Consecutive hops on one peer are not chains.
	var walk func(at int, chain []Hop, total time.Duration)
	walk = func(at int, chain []Hop, total time.Duration) {
		if at == span.End {
			if !ok || total < bestCost || total == bestCost && compareChains(chain, best) < 0 {
				best, bestCost, ok = slices.Clone(chain), total, true
			}
			return
		}
		for _, c := range kept {
			if c.Span.Start > at || c.Span.End <= at || len(chain) > 0 && chain[len(chain)-1].Peer == c.Peer {
				continue
			}
			for end := at + 1; end <= min(c.Span.End, span.End); end++ {
				walk(end, append(chain, Hop{c.Peer, sp(at, end)}), total+price(c, end-at))
			}
		}
	}
	walk(span.Start, nil, 0)
	return best, bestCost, ok
}

// compareChains orders chains of equal cost: fewer hops, then hop by hop
// lower peer ID bytes, then earlier end.
func compareChains(a, b []Hop) int {
	if r := cmp.Compare(len(a), len(b)); r != 0 {
		return r
	}
	for i := range a {
		if r := strings.Compare(string(a[i].Peer), string(b[i].Peer)); r != 0 {
			return r
		}
		if r := cmp.Compare(a[i].Span.End, b[i].Span.End); r != 0 {
			return r
		}
	}
	return 0
}

// checkChain checks that hops tile span in order, each on a candidate that
// holds its blocks.
func checkChain(t *testing.T, cands []Candidate, span dht.Span, hops []Hop) {
	t.Helper()
	at := span.Start
	for _, h := range hops {
		if h.Span.Start != at || h.Span.End <= h.Span.Start {
			t.Fatalf("chain %v does not tile %v at block %d", hops, span, at)
		}
		if !slices.ContainsFunc(cands, func(c Candidate) bool {
			return c.Peer == h.Peer && c.Span.Start <= h.Span.Start && h.Span.End <= c.Span.End
		}) {
			t.Fatalf("chain %v: hop %v is on no candidate holding its blocks", hops, h)
		}
		at = h.Span.End
	}
	if at != span.End {
		t.Fatalf("chain %v ends at %d, want %d", hops, at, span.End)
	}
}

// TestFindRouteHostile feeds values that must not panic or overflow.
func TestFindRouteHostile(t *testing.T) {
	inf := math.Inf(1)
	cands := []Candidate{
		{Peer: "nan", Span: sp(0, 3), Throughput: math.NaN(), RTT: -time.Second, FreeKV: 0, Load: -5},
		{Peer: "inf", Span: sp(0, 2), Throughput: inf, RTT: math.MaxInt64, FreeKV: math.MaxInt64, Load: math.MaxInt64},
		{Peer: "ninf", Span: sp(1, 4), Throughput: math.Inf(-1), FreeKV: -1},
		{Peer: "tiny", Span: sp(0, 4), Throughput: 1e-300, RTT: 1, FreeKV: 1},
		{Peer: "huge", Span: sp(2, 4), Throughput: math.MaxFloat64, RTT: 1, FreeKV: 5, Load: 1 << 62},
		{Peer: "backwards", Span: sp(3, 1), Throughput: 1},
		{Peer: "zero", Span: sp(2, 2), Throughput: 1},
		{Peer: "neg", Span: sp(-5, -1), Throughput: 1},
	}
	costs := []RouteCost{
		{},
		{KVBytesPerBlock: math.MaxInt64, NoRoomPenalty: math.MaxInt64, LoadFactor: inf},
		{KVBytesPerBlock: -1, NoRoomPenalty: -1, LoadFactor: math.NaN()},
		{KVBytesPerBlock: 1, LoadFactor: math.MaxFloat64},
	}
	for _, cost := range costs {
		for _, s := range []dht.Span{sp(0, 4), sp(0, 1), sp(3, 4), sp(0, 5)} {
			hops, c, err := FindRoute(cands, s, cost, nil)
			if err != nil {
				if !errors.Is(err, ErrNoRoute) {
					t.Errorf("FindRoute(%v, %+v) error %v", s, cost, err)
				}
				continue
			}
			if c < 0 {
				t.Errorf("FindRoute(%v, %+v) cost = %v, want >= 0", s, cost, c)
			}
			checkChain(t, cands, s, hops)
		}
	}
	// One block per hop from many maximal hops must saturate, not wrap.
	big := []Candidate{{Peer: "slow", Span: sp(0, dht.MaxBlocks), Throughput: 1e-300, RTT: math.MaxInt64}}
	if _, c, err := FindRoute(big, sp(0, 64), RouteCost{}, nil); err != nil || c <= 0 {
		t.Errorf("FindRoute(slow) = %v, %v, want a positive cost", c, err)
	}
}

func TestBans(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := NewBans(time.Second, 5*time.Second)
	const p = peer.ID("p")

	if b.Banned(p, t0) {
		t.Fatalf("Banned(%v) before any failure = true", p)
	}
	// Doubling, then the cap.
	now := t0
	for k, want := range []time.Duration{1, 2, 4, 5, 5} {
		want *= time.Second
		until := b.Fail(p, now)
		if got := until.Sub(now); got != want {
			t.Fatalf("failure %d: ban = %v, want %v", k+1, got, want)
		}
		if !b.Banned(p, now) || !b.Banned(p, until.Add(-1)) {
			t.Fatalf("failure %d: not banned within [%v, %v)", k+1, now, until)
		}
		if b.Banned(p, until) {
			t.Fatalf("failure %d: still banned at its end %v", k+1, until)
		}
		now = until.Add(time.Minute) // expiry keeps the count
	}
	if b.Banned("other", now) {
		t.Errorf("Banned(other) = true")
	}

	// Success resets the count and lifts the ban.
	b.Fail(p, now)
	b.Success(p)
	if b.Banned(p, now) {
		t.Errorf("Banned after Success = true")
	}
	if got := b.Fail(p, now).Sub(now); got != time.Second {
		t.Errorf("first failure after Success: ban = %v, want 1s", got)
	}
}

func TestNewBansDefaults(t *testing.T) {
	t0 := time.Unix(0, 0)
	tests := []struct {
		base, max time.Duration
		want      []time.Duration
	}{
		{0, 0, []time.Duration{time.Second, time.Second}},
		{2 * time.Second, time.Second, []time.Duration{2 * time.Second, 2 * time.Second}},
		{1 << 61, math.MaxInt64, []time.Duration{1 << 61, 1 << 62, math.MaxInt64, math.MaxInt64}},
	}
	for _, tt := range tests {
		b := NewBans(tt.base, tt.max)
		for k, want := range tt.want {
			if got := b.Fail("p", t0).Sub(t0); got != want {
				t.Errorf("NewBans(%v, %v): failure %d ban = %v, want %v", tt.base, tt.max, k+1, got, want)
			}
		}
	}
	var zero Bans // usable, though NewBans is the way
	zero.Fail("p", t0)
	zero.Success("p")
}

func TestBansConcurrent(t *testing.T) {
	b := NewBans(time.Millisecond, time.Second)
	t0 := time.Unix(1000, 0)
	peers := []peer.ID{"a", "b", "c"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				p := peers[(g+i)%len(peers)]
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch i % 3 {
				case 0:
					b.Fail(p, now)
				case 1:
					b.Banned(p, now)
				default:
					if i%7 == 0 {
						b.Success(p)
					}
				}
			}
		})
	}
	wg.Wait()
	b.Fail("a", t0)
	if !b.Banned("a", t0) {
		t.Errorf("Banned(a) after Fail = false")
	}
}

// TestFindRouteReputation: with ReputationWeight set, of two servers alike
// in all else the better-scored one is routed, and a much faster server
// still beats a slightly better-scored one; without it scores are ignored.
func TestFindRouteReputation(t *testing.T) {
	span := dht.Span{Start: 0, End: 4}
	good, bad := cand("good", 0, 4, 100, time.Millisecond), cand("bad", 0, 4, 100, time.Millisecond)
	good.Score, bad.Score = 0.9, 0.1
	for _, order := range [][]Candidate{{good, bad}, {bad, good}} {
		hops, _, err := FindRoute(order, span, RouteCost{ReputationWeight: 1}, nil)
		if err != nil || len(hops) != 1 || hops[0].Peer != "good" {
			t.Errorf("routes %v (%v); want the better-scored server", hops, err)
		}
	}
	fast := cand("fast", 0, 4, 1000, time.Millisecond)
	fast.Score = 0.45
	if hops, _, err := FindRoute([]Candidate{good, fast}, span, RouteCost{ReputationWeight: 1}, nil); err != nil || hops[0].Peer != "fast" {
		t.Errorf("routes %v (%v); want the 10× faster server scored a little lower", hops, err)
	}
	bad.Throughput = 110
	if hops, _, err := FindRoute([]Candidate{good, bad}, span, RouteCost{}, nil); err != nil || hops[0].Peer != "bad" {
		t.Errorf("routes %v (%v) without a reputation weight; want the faster server", hops, err)
	}
}
