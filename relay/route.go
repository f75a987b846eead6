package relay

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/dht"
)

// Candidate is a server that could run part of a chain, as the client sees it
// when it routes a session.
//
// Unknown measurements get defaults in [FindRoute]: a Throughput that is not a
// finite positive number is replaced by the median of the valid throughputs
// of the other candidates FindRoute considers (1 token/s when there are none); an
// RTT <= 0 is replaced by the median of the known RTTs (100ms when there are
// none). A negative Load counts as 0.
type Candidate struct {
	Peer       peer.ID
	Span       dht.Span      // blocks the server holds; a hop may use any non-empty sub-range of it
	Throughput float64       // decode tokens/s of the server over its whole span
	RTT        time.Duration // measured round trip from the client
	FreeKV     int64         // free KV-cache bytes; < 0 means no limit
	Load       int64         // sessions active now
	// Score is the client's reputation score of the server, in [0, 1]
	// (consensus.Prior for one it knows nothing of); used with
	// RouteCost.ReputationWeight.
	Score float64
}

// RouteCost says how [FindRoute] prices hops.
type RouteCost struct {
	// KVBytesPerBlock is the KV-cache memory a session needs per block, for
	// the room check; <= 0 skips the check.
	KVBytesPerBlock int64
	// NoRoomPenalty is added to a hop whose server lacks KV room for its
	// blocks; <= 0 means the default of 1s.
	NoRoomPenalty time.Duration
	// LoadFactor multiplies compute time by (1 + LoadFactor*Load); 0 ignores
	// load, and so does a negative or non-finite value.
	LoadFactor float64
	// ReputationWeight multiplies compute time by
	// max(0.1, 1 + ReputationWeight × (consensus.Prior − Score)): a
	// trusted server looks faster, a doubtful one slower; 0 ignores
	// scores, and so does a negative or non-finite value.
	ReputationWeight float64
}

// Hop is one stage of a chain: Peer runs blocks Span.
type Hop struct {
	Peer peer.ID
	Span dht.Span
}

// ErrNoRoute is returned by [FindRoute] when the candidates left after exclusion
// do not cover every block of the requested span. The wrapping message names
// the first block that nobody covers.
var ErrNoRoute = errors.New("relay: no chain of servers covers the blocks")

const (
	// defaultRTT stands in for unknown RTTs when no candidate has one.
	defaultRTT = 100 * time.Millisecond
	// defaultNoRoomPenalty is RouteCost.NoRoomPenalty when that is <= 0.
	defaultNoRoomPenalty = time.Second
	// maxHopCost caps the cost of one hop so that the sum over a chain of at
	// most dht.MaxBlocks hops cannot overflow a time.Duration (about 39h).
	maxHopCost = time.Duration(math.MaxInt64 / (dht.MaxBlocks + 1))
)

// FindRoute returns the cheapest chain of hops covering span — consecutive,
// non-overlapping and in order — and its cost. The algorithm follows Petals'
// min-latency routing: a shortest path over the block boundaries
// span.Start..span.End, where server c offers an edge i -> j for every
// non-empty [i,j) inside both c.Span and span, priced
//
//	RTT(c) + (j-i) * perBlock(c) * (1 + LoadFactor*Load)
//	       + NoRoomPenalty   if FreeKV >= 0 && FreeKV < (j-i)*KVBytesPerBlock
//
// with perBlock(c) = 1/(Throughput * c.Span.Len()) seconds. Each hop's cost is
// rounded to a whole nanosecond (and capped at about 39h), so chain costs are
// exact integer sums and ties are real ties. See [Candidate] for the defaults
// of unknown measurements. Consecutive hops are on different peers; a peer may
// come back later in the chain (a fast server inside a slow one's span), and
// its KV room is then checked per hop, not for the sum.
//
// Candidates whose span does not intersect span, or whose Peer is in exclude
// (which may be nil), are ignored. FindRoute returns an error wrapping
// [dht.ErrSpan] for an invalid span (empty included) and one wrapping
// [ErrNoRoute] when no chain exists.
//
// The result is deterministic and does not depend on the order of cands:
// among chains of equal cost the one with fewer hops wins, then the one whose
// hops, compared in order, have the lower peer ID bytes (then the earlier
// end). Time is O(len(cands) * span.Len()^2).
func FindRoute(cands []Candidate, span dht.Span, cost RouteCost, exclude func(peer.ID) bool) ([]Hop, time.Duration, error) {
	if err := span.Validate(); err != nil {
		return nil, 0, fmt.Errorf("relay: route: %w", err)
	}
	servers := routeServers(cands, span, cost, exclude)
	n := span.Len()
	if k, ok := firstGap(servers, n); ok {
		return nil, 0, fmt.Errorf("%w: block %d of %v has no server", ErrNoRoute, span.Start+k, span)
	}

	// Every edge goes forward (i < j), so the graph is a DAG whose
	// topological order is the boundary order: settling boundaries in
	// increasing order is exactly what Dijkstra's priority queue would do,
	// without the queue. We do not use gonum's graph/path here because its
	// Dijkstra compares float64 weights and keeps the first of equal paths in
	// map iteration order, so neither "fewer hops" nor "lower peer ID" could
	// be broken deterministically (an epsilon per hop does not survive
	// float rounding of long sums, and peer order cannot be encoded in a
	// weight). Labels here are (cost, hops, hop sequence), compared
	// lexicographically; that order is preserved by appending the same hop to
	// two paths ending at the same boundary, so the scan finds the minimum.
	//
	// Consecutive hops must be on different peers: splitting one server's
	// range into adjacent hops would only add round trips and open several
	// sessions on it, or dodge its KV room check. Each boundary therefore
	// keeps its best label and the best one whose last peer differs, so a
	// hop on peer p can always extend the best chain not ending on p.
	best := make([]routeBoundary, n+1) // indexed by boundary - span.Start
	best[0].first.ok = true
	for j := 1; j <= n; j++ {
		for si := range servers {
			s := &servers[si]
			if j <= s.a || j > s.b {
				continue
			}
			for i := s.a; i < j; i++ {
				from := best[i].from(s.peer)
				if from == nil {
					continue
				}
				h := Hop{Peer: s.peer, Span: dht.Span{Start: span.Start + i, End: span.Start + j}}
				best[j].offer(satAdd(from.cost, s.hopCost(j-i)), from.hops, h)
			}
		}
	}
	if !best[n].first.ok {
		// Every block is covered (firstGap), so only adjacent hops on one
		// peer could have joined: a peer listed with several spans.
		j := slices.IndexFunc(best, func(b routeBoundary) bool { return !b.first.ok })
		return nil, 0, fmt.Errorf("%w: no chain with distinct adjacent peers reaches block %d of %v", ErrNoRoute, span.Start+j-1, span)
	}
	return best[n].first.hops, best[n].first.cost, nil
}

// routeLabel is a chain from span.Start to one boundary.
type routeLabel struct {
	ok   bool
	cost time.Duration
	hops []Hop
}

// endsOn reports whether the chain's last hop is on p.
func (l *routeLabel) endsOn(p peer.ID) bool {
	return len(l.hops) > 0 && l.hops[len(l.hops)-1].Peer == p
}

// routeBoundary holds the best chain to a boundary and the best one whose
// last peer differs from first's.
type routeBoundary struct{ first, second routeLabel }

// from returns the best chain to the boundary that a hop on p may extend,
// or nil.
func (b *routeBoundary) from(p peer.ID) *routeLabel {
	for _, l := range []*routeLabel{&b.first, &b.second} {
		if l.ok && !l.endsOn(p) {
			return l
		}
	}
	return nil
}

// offer records the chain prefix+h of cost c if it beats first, or second
// among chains not ending on first's peer.
func (b *routeBoundary) offer(c time.Duration, prefix []Hop, h Hop) {
	label := func() routeLabel {
		hops := make([]Hop, len(prefix)+1)
		copy(hops, prefix)
		hops[len(prefix)] = h
		return routeLabel{ok: true, cost: c, hops: hops}
	}
	switch {
	case !b.first.ok || chainLess(c, prefix, h, &b.first):
		if b.first.ok && !b.first.endsOn(h.Peer) {
			b.second = b.first
		} // else second already is the best not ending on h.Peer
		b.first = label()
	case b.first.endsOn(h.Peer):
		// first is at least as good and ends on the same peer.
	case !b.second.ok || chainLess(c, prefix, h, &b.second):
		b.second = label()
	}
}

// chainLess reports whether the chain prefix+h with cost c beats cur: lower cost,
// then fewer hops, then hop by hop the lower peer ID, then the earlier end.
func chainLess(c time.Duration, prefix []Hop, h Hop, cur *routeLabel) bool {
	if c != cur.cost {
		return c < cur.cost
	}
	if len(prefix)+1 != len(cur.hops) {
		return len(prefix)+1 < len(cur.hops)
	}
	for k, o := range cur.hops {
		x := h
		if k < len(prefix) {
			x = prefix[k]
		}
		if r := compareHop(x, o); r != 0 {
			return r < 0
		}
	}
	return false
}

// compareHop orders hops by peer ID bytes, then by end block.
func compareHop(a, b Hop) int {
	if r := cmp.Compare(a.Peer, b.Peer); r != 0 {
		return r
	}
	return cmp.Compare(a.Span.End, b.Span.End)
}

// routeServer is a candidate reduced to what pricing needs, with blocks relative
// to the routed span: it may serve any [i,j) with a <= i < j <= b.
type routeServer struct {
	peer       peer.ID
	a, b       int
	rtt        time.Duration
	perBlockNS float64 // compute nanoseconds per block, load included
	freeKV     int64
	kvPerBlock int64
	penalty    time.Duration
}

// hopCost prices blocks consecutive blocks on s.
func (s *routeServer) hopCost(blocks int) time.Duration {
	c := s.rtt
	ns := float64(blocks) * s.perBlockNS
	if !(ns < float64(maxHopCost)) { // also NaN
		return maxHopCost
	}
	c = satAdd(c, time.Duration(math.Round(ns)))
	if s.kvPerBlock > 0 && s.freeKV >= 0 && s.freeKV/int64(blocks) < s.kvPerBlock {
		// freeKV/blocks < kv  <=>  freeKV < blocks*kv, without overflow.
		c = satAdd(c, s.penalty)
	}
	return min(c, maxHopCost)
}

// routeServers keeps the candidates FindRoute considers and fills in defaults.
func routeServers(cands []Candidate, span dht.Span, cost RouteCost, exclude func(peer.ID) bool) []routeServer {
	kept := make([]Candidate, 0, len(cands))
	var tps []float64
	var rtts []time.Duration
	for _, c := range cands {
		if max(c.Span.Start, span.Start) >= min(c.Span.End, span.End) {
			continue
		}
		if exclude != nil && exclude(c.Peer) {
			continue
		}
		kept = append(kept, c)
		if validThroughput(c.Throughput) {
			tps = append(tps, c.Throughput)
		}
		if c.RTT > 0 {
			rtts = append(rtts, c.RTT)
		}
	}
	tpDefault := 1.0
	if len(tps) > 0 {
		slices.Sort(tps)
		m := len(tps) / 2
		tpDefault = tps[m]
		if len(tps)%2 == 0 {
			tpDefault = tps[m-1]/2 + tps[m]/2
		}
	}
	rttDefault := defaultRTT
	if len(rtts) > 0 {
		slices.Sort(rtts)
		m := len(rtts) / 2
		rttDefault = rtts[m]
		if len(rtts)%2 == 0 {
			rttDefault = rtts[m-1] + (rtts[m]-rtts[m-1])/2
		}
	}
	penalty := cost.NoRoomPenalty
	if penalty <= 0 {
		penalty = defaultNoRoomPenalty
	}
	lf := cost.LoadFactor
	if !(lf > 0) || math.IsInf(lf, 1) {
		lf = 0
	}

	servers := make([]routeServer, 0, len(kept))
	for _, c := range kept {
		tp := c.Throughput
		if !validThroughput(tp) {
			tp = tpDefault
		}
		rtt := c.RTT
		if rtt <= 0 {
			rtt = rttDefault
		}
		// The span is non-empty here: it intersects span.
		perBlock := 1e9 / (tp * float64(c.Span.Len()))
		if load := max(c.Load, 0); lf > 0 && load > 0 && perBlock > 0 {
			perBlock *= 1 + lf*float64(load)
		}
		if rw := cost.ReputationWeight; rw > 0 && !math.IsInf(rw, 1) && c.Score >= 0 && c.Score <= 1 {
			perBlock *= max(0.1, 1+rw*(consensus.Prior-c.Score))
		}
		servers = append(servers, routeServer{
			peer:       c.Peer,
			a:          max(c.Span.Start, span.Start) - span.Start,
			b:          min(c.Span.End, span.End) - span.Start,
			rtt:        min(rtt, maxHopCost),
			perBlockNS: perBlock,
			freeKV:     c.FreeKV,
			kvPerBlock: cost.KVBytesPerBlock,
			penalty:    min(penalty, maxHopCost),
		})
	}
	return servers
}

// firstGap returns the first block of [0, n) that no server covers.
func firstGap(servers []routeServer, n int) (int, bool) {
	covered := make([]bool, n)
	for _, s := range servers {
		for k := s.a; k < s.b; k++ {
			covered[k] = true
		}
	}
	k := slices.Index(covered, false)
	return k, k >= 0
}

func validThroughput(tp float64) bool { return tp > 0 && !math.IsInf(tp, 1) }

// satAdd adds two non-negative durations, saturating at the maximum.
func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Bans remembers peers that failed recently and keeps them out of routes,
// with exponential backoff: the k-th consecutive failure of a peer bans it
// for min(base * 2^(k-1), max), and [Bans.Success] resets its count. The
// count survives the end of a ban, so a peer that fails again after its ban
// expired is banned for twice as long.
//
// Time is passed in, so tests need no sleeping. A Bans is safe for
// concurrent use; its zero value bans for 0s, so use [NewBans]. Use it with [FindRoute] as
//
//	FindRoute(cands, span, cost, func(p peer.ID) bool { return bans.Banned(p, now) })
type Bans struct {
	base, max time.Duration
	mu        sync.Mutex
	peers     map[peer.ID]banState
}

// banState is one peer's state: consecutive failures and when its ban ends.
type banState struct {
	fails int
	until time.Time
}

// NewBans returns an empty ban list. A base <= 0 means 1s; a max below base
// means base (no growth).
func NewBans(base, max time.Duration) *Bans {
	if base <= 0 {
		base = time.Second
	}
	if max < base {
		max = base
	}
	return &Bans{base: base, max: max, peers: make(map[peer.ID]banState)}
}

// Fail records a failure of p at now, bans p and returns when the ban ends.
// A ban already running longer is kept.
func (b *Bans) Fail(p peer.ID, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.peers == nil {
		b.peers = make(map[peer.ID]banState)
	}
	e := b.peers[p]
	e.fails++
	d := b.base
	for k := 1; k < e.fails && d < b.max; k++ {
		if d > b.max/2 {
			d = b.max
			break
		}
		d *= 2
	}
	d = min(d, b.max)
	if until := now.Add(d); until.After(e.until) {
		e.until = until
	}
	b.peers[p] = e
	return e.until
}

// Success forgets the failures of p and lifts its ban.
func (b *Bans) Success(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.peers, p)
}

// Banned reports whether p is banned at now.
func (b *Bans) Banned(p peer.ID, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.peers[p]
	return ok && now.Before(e.until)
}
