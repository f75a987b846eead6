package bench

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/relay"
)

// SimConfig is a large-swarm simulation: a discrete-event model of
// servers joining, leaving and crashing, and of clients generating
// through them, that places spans and routes chains with the code the real
// servers and clients run (relay.ChooseSpan, relay.Rebalance,
// relay.FindRoute).
//
// The model. Each server has a throughput (decode tokens/s over a whole
// model's worth of blocks, log-normal around ThroughputMedian), a span
// length (memory: uniform in [MinBlocks, MaxBlocks]) and a place on a
// 2-D plane; the one-way latency between two places is their distance at
// the speed of light in fibre plus BaseLatency, so RTTs need no N² matrix.
// Servers join at the start, each placing its span by Policy ("petals":
// where the swarm is weakest; "random"; "fixed": an equal split by join
// order), then churn: each server leaves gracefully or crashes at
// ChurnPerHour, and a server joins for each one that goes. Petals servers
// reconsider their span every RebalanceEvery.
//
// Requests arrive at RequestsPerSecond from random places; each routes a
// chain with FindRoute over the servers up (pruned to the Prune fastest
// servers starting at each block, so that routing stays cheap in swarms
// of 100,000) and generates Tokens tokens. A token takes, per hop, the
// hop's compute (its blocks over its throughput, slowed by the requests
// it serves at once) plus the one-way latencies client → stage 1 → … →
// stage n → client (push relay). A stage that crashes while a request runs
// is routed around when the request ends (a failover; the request fails if
// no route is left; the replay's time is not modelled); one that leaves
// hands its sessions over. A request that finds no route fails.
type SimConfig struct {
	Nodes, Blocks        int
	MinBlocks, MaxBlocks int
	ThroughputMedian     float64 // tokens/s over all blocks
	ThroughputSigma      float64 // of the log-normal
	Policy               string  // petals, random or fixed
	Hours                float64
	ChurnPerHour         float64 // departures per server-hour
	CrashFraction        float64 // of departures that crash
	RequestsPerSecond    float64
	Tokens               int
	BaseLatency          time.Duration
	RebalanceEvery       time.Duration
	Prune                int
	SampleEvery          time.Duration
	Seed                 uint64
}

// SimReport is what a simulation saw.
type SimReport struct {
	Policy            string  `json:"policy"`
	Nodes             int     `json:"nodes"`
	Blocks            int     `json:"blocks"`
	Hours             float64 `json:"hours"`
	Events            int     `json:"events"`
	Requests          int     `json:"requests"`
	Succeeded         int     `json:"succeeded"`
	Failed            int     `json:"failed"`    // found no route, at the start or after a crash
	InFlight          int     `json:"in_flight"` // still generating when the simulation ended
	Failovers         int     `json:"failovers"`
	SuccessRate       float64 `json:"success_rate"`
	MeanTokS          float64 `json:"mean_tok_s_per_request"`
	MeanPerTokenMS    float64 `json:"mean_per_token_ms"`
	MinCoverageMean   float64 `json:"min_coverage_mean_tok_s"` // the least-served block's throughput, averaged over samples
	MinCoverageLowest float64 `json:"min_coverage_lowest_tok_s"`
	Moves             int     `json:"rebalance_moves"`
	WallSeconds       float64 `json:"wall_seconds"`
}

func (c *SimConfig) defaults() error {
	if c.Nodes <= 0 || c.Blocks <= 0 {
		return fmt.Errorf("bench: simulate %d nodes of a %d-block model", c.Nodes, c.Blocks)
	}
	if c.MaxBlocks <= 0 {
		c.MaxBlocks = max(1, c.Blocks/2)
	}
	if c.MinBlocks <= 0 {
		c.MinBlocks = max(1, c.MaxBlocks/2)
	}
	c.MaxBlocks, c.MinBlocks = min(c.MaxBlocks, c.Blocks), min(c.MinBlocks, c.MaxBlocks, c.Blocks)
	if c.ThroughputMedian <= 0 {
		c.ThroughputMedian = 20
	}
	if c.ThroughputSigma < 0 {
		return errors.New("bench: negative throughput sigma")
	}
	switch c.Policy {
	case "":
		c.Policy = "petals"
	case "petals", "random", "fixed":
	default:
		return fmt.Errorf("bench: placement policy %q (want petals, random or fixed)", c.Policy)
	}
	if c.Hours <= 0 {
		c.Hours = 1
	}
	if c.ChurnPerHour < 0 || c.CrashFraction < 0 || c.CrashFraction > 1 || c.RequestsPerSecond < 0 {
		return errors.New("bench: churn, crash fraction and request rate must be non-negative (crash fraction at most 1)")
	}
	if c.Tokens <= 0 {
		c.Tokens = 128
	}
	if c.BaseLatency <= 0 {
		c.BaseLatency = 2 * time.Millisecond
	}
	if c.RebalanceEvery <= 0 {
		c.RebalanceEvery = 10 * time.Minute
	}
	if c.Prune <= 0 {
		c.Prune = 8
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = time.Minute
	}
	return nil
}

// simServer is one simulated server.
type simServer struct {
	id         int
	peer       peer.ID
	up         bool
	span       dht.Span
	throughput float64 // tokens/s over its span
	x, y       float64
	load       int
	gen        int // bumped when it leaves, moves or crashes: stale events are dropped
}

type simEvent struct {
	at   float64 // seconds
	kind int
	srv  int
	gen  int
	req  *simRequest
}

const (
	evDepart = iota
	evRebalance
	evRequest
	evFinish
	evSample
)

type simQueue []*simEvent

func (q simQueue) Len() int           { return len(q) }
func (q simQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q simQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)        { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any          { old := *q; e := old[len(old)-1]; *q = old[:len(old)-1]; return e }
func (q *simQueue) add(e *simEvent)   { heap.Push(q, e) }
func (q *simQueue) next() *simEvent   { return heap.Pop(q).(*simEvent) }
func (q *simQueue) empty() bool       { return len(*q) == 0 }

type simRequest struct {
	x, y  float64
	chain []int // server ids
	gens  []int
	start float64
	dur   float64
}

type simulation struct {
	cfg      SimConfig
	rng      *rand.Rand
	servers  []*simServer
	byPeer   map[peer.ID]int
	coverage []float64
	q        simQueue
	rep      SimReport
	tokS     float64
	perTok   float64
	covSum   float64
	covN     int
	fixed    int // servers placed so far by the fixed policy
	// hop, when hopSet, is every one-way hop's latency instead of the
	// plane's (Predict).
	hop    time.Duration
	hopSet bool
}

// RunSim runs a simulation.
func RunSim(c SimConfig) (*SimReport, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	s := &simulation{cfg: c, rng: rand.New(rand.NewPCG(c.Seed, 0x51)), byPeer: make(map[peer.ID]int),
		coverage: make([]float64, c.Blocks)}
	s.rep = SimReport{Policy: c.Policy, Nodes: c.Nodes, Blocks: c.Blocks, Hours: c.Hours, MinCoverageLowest: math.Inf(1)}
	for range c.Nodes {
		if err := s.join(0); err != nil {
			return nil, err
		}
	}
	end := c.Hours * 3600
	if c.RequestsPerSecond > 0 {
		s.q.add(&simEvent{at: s.rng.ExpFloat64() / c.RequestsPerSecond, kind: evRequest})
	}
	s.q.add(&simEvent{at: 0, kind: evSample})
	for !s.q.empty() {
		e := s.q.next()
		if e.at > end {
			break
		}
		s.rep.Events++
		if err := s.handle(e); err != nil {
			return nil, err
		}
	}
	s.rep.InFlight = s.rep.Requests - s.rep.Succeeded - s.rep.Failed
	if done := s.rep.Succeeded + s.rep.Failed; done > 0 {
		s.rep.SuccessRate = float64(s.rep.Succeeded) / float64(done)
	}
	if s.rep.Succeeded > 0 {
		s.rep.MeanTokS = s.tokS / float64(s.rep.Succeeded)
		s.rep.MeanPerTokenMS = s.perTok / float64(s.rep.Succeeded)
	}
	if s.covN > 0 {
		s.rep.MinCoverageMean = s.covSum / float64(s.covN)
	}
	s.rep.WallSeconds = time.Since(t0).Seconds()
	return &s.rep, nil
}

// join adds a server at time now and places its span.
func (s *simulation) join(now float64) error {
	c := s.cfg
	id := len(s.servers)
	n := c.MinBlocks + s.rng.IntN(c.MaxBlocks-c.MinBlocks+1)
	// A server's throughput over its span: faster when it holds fewer
	// blocks (tokens/s over all blocks × blocks / span).
	full := c.ThroughputMedian * math.Exp(c.ThroughputSigma*s.rng.NormFloat64())
	srv := &simServer{id: id, peer: simPeer(id), up: true, throughput: full * float64(c.Blocks) / float64(n),
		x: s.rng.Float64(), y: s.rng.Float64()}
	var err error
	switch c.Policy {
	case "petals":
		srv.span, err = relay.ChooseSpan(s.coverage, n)
	case "random":
		a := s.rng.IntN(c.Blocks - n + 1)
		srv.span = dht.Span{Start: a, End: a + n}
	case "fixed":
		a := (s.fixed * n) % (c.Blocks - n + 1)
		s.fixed++
		srv.span = dht.Span{Start: a, End: a + n}
	}
	if err != nil {
		return err
	}
	s.servers = append(s.servers, srv)
	s.byPeer[srv.peer] = id
	s.cover(srv, +1)
	if c.ChurnPerHour > 0 {
		s.q.add(&simEvent{at: now + s.rng.ExpFloat64()/c.ChurnPerHour*3600, kind: evDepart, srv: id, gen: srv.gen})
	}
	if c.Policy == "petals" {
		s.q.add(&simEvent{at: now + c.RebalanceEvery.Seconds()*(0.5+s.rng.Float64()), kind: evRebalance, srv: id, gen: srv.gen})
	}
	return nil
}

func simPeer(id int) peer.ID { return peer.ID(fmt.Sprintf("sim-%07d", id)) }

func (s *simulation) cover(srv *simServer, sign float64) {
	for b := srv.span.Start; b < srv.span.End; b++ {
		s.coverage[b] = math.Max(s.coverage[b]+sign*srv.throughput, 0)
	}
}

func (s *simulation) handle(e *simEvent) error {
	c := s.cfg
	switch e.kind {
	case evSample:
		low := relay.MinCoverage(s.coverage)
		s.covSum += low
		s.covN++
		s.rep.MinCoverageLowest = math.Min(s.rep.MinCoverageLowest, low)
		s.q.add(&simEvent{at: e.at + c.SampleEvery.Seconds(), kind: evSample})
	case evDepart:
		srv := s.servers[e.srv]
		if !srv.up || srv.gen != e.gen {
			return nil
		}
		srv.up = false
		srv.gen++
		s.cover(srv, -1)
		if s.rng.Float64() < c.CrashFraction {
			srv.load = -1 // crashed: requests running through it fail over when they finish
		}
		return s.join(e.at)
	case evRebalance:
		srv := s.servers[e.srv]
		if !srv.up || srv.gen != e.gen {
			return nil
		}
		if next, move := relay.Rebalance(s.coverage, srv.span, srv.throughput, 0.2); move {
			s.cover(srv, -1)
			srv.span = next
			s.cover(srv, +1)
			s.rep.Moves++
		}
		s.q.add(&simEvent{at: e.at + c.RebalanceEvery.Seconds(), kind: evRebalance, srv: srv.id, gen: srv.gen})
	case evRequest:
		s.q.add(&simEvent{at: e.at + s.rng.ExpFloat64()/c.RequestsPerSecond, kind: evRequest})
		s.rep.Requests++
		r := &simRequest{x: s.rng.Float64(), y: s.rng.Float64(), start: e.at}
		perTok, ok := s.route(r)
		if !ok {
			s.rep.Failed++
			return nil
		}
		r.dur = perTok * float64(c.Tokens)
		for _, id := range r.chain {
			s.servers[id].load++
		}
		s.q.add(&simEvent{at: e.at + r.dur, kind: evFinish, req: r})
	case evFinish:
		r := e.req
		failed := false
		for i, id := range r.chain {
			srv := s.servers[id]
			if srv.load > 0 {
				srv.load--
			}
			if srv.gen != r.gens[i] && srv.load < 0 {
				failed = true // a stage crashed mid-generation
			}
		}
		if failed {
			// Route the rest again; the replay costs the prompt's worth
			// of compute, counted in the new per-token time.
			s.rep.Failovers++
			if _, ok := s.route(r); !ok {
				s.rep.Failed++
				return nil
			}
		}
		s.rep.Succeeded++
		s.tokS += float64(s.cfg.Tokens) / (e.at - r.start)
		s.perTok += (e.at - r.start) / float64(s.cfg.Tokens) * 1000
	}
	return nil
}

// route picks a chain for r among the servers up and returns the seconds
// per token.
func (s *simulation) route(r *simRequest) (float64, bool) {
	c := s.cfg
	// Prune: the Prune fastest servers up starting at each block.
	best := make([][]*simServer, c.Blocks)
	for _, srv := range s.servers {
		if !srv.up {
			continue
		}
		b := srv.span.Start
		best[b] = append(best[b], srv)
		if len(best[b]) > c.Prune {
			slices.SortFunc(best[b], func(x, y *simServer) int { return cmp.Compare(y.throughput, x.throughput) })
			best[b] = best[b][:c.Prune]
		}
	}
	var cands []relay.Candidate
	for _, list := range best {
		for _, srv := range list {
			cands = append(cands, relay.Candidate{Peer: srv.peer, Span: srv.span, Throughput: srv.throughput / float64(1+max(srv.load, 0)),
				RTT: time.Duration(2 * s.latency(r.x, r.y, srv) * float64(time.Second)), FreeKV: -1, Score: 0.5})
		}
	}
	hops, _, err := relay.FindRoute(cands, dht.Span{Start: 0, End: c.Blocks}, relay.RouteCost{}, nil)
	if err != nil {
		return 0, false
	}
	r.chain, r.gens = r.chain[:0], r.gens[:0]
	perTok := 0.0
	px, py := r.x, r.y
	for _, h := range hops {
		srv := s.servers[s.byPeer[h.Peer]]
		r.chain = append(r.chain, srv.id)
		r.gens = append(r.gens, srv.gen)
		perTok += s.latencyXY(px, py, srv.x, srv.y)
		perTok += float64(h.Span.Len()) / float64(srv.span.Len()) / srv.throughput * float64(1+max(srv.load, 0))
		px, py = srv.x, srv.y
	}
	perTok += s.latencyXY(px, py, r.x, r.y)
	return perTok, true
}

func (s *simulation) latency(x, y float64, srv *simServer) float64 {
	return s.latencyXY(x, y, srv.x, srv.y)
}

// latencyXY is the one-way latency between two places: the plane is
// 10,000 km wide; light in fibre covers 200 km/ms.
func (s *simulation) latencyXY(x1, y1, x2, y2 float64) float64 {
	if s.hopSet {
		return s.hop.Seconds()
	}
	d := math.Hypot(x1-x2, y1-y2) * 10000 / 200 // ms
	return (d + float64(s.cfg.BaseLatency)/float64(time.Millisecond)) / 1000
}

// Prediction is the simulator's per-token time for a measured layout row.
type Prediction struct {
	Layout      string  `json:"layout"`
	Link        string  `json:"link"`
	MeasuredMS  float64 `json:"measured_ms"`
	PredictedMS float64 `json:"predicted_ms"`
	Ratio       float64 `json:"ratio"` // measured / predicted
}

// Predict runs the simulator's router and time model on the swarm a layout
// row measured: one server per stage at the client's place, with the
// throughput its measured compute per token gives, every hop costing the
// link's one-way latency (and transmission of one position at its
// bandwidth), plus the client's measured compute. Comparing with the row's
// measured per-token time checks the simulator against a real swarm.
func Predict(rep *SwarmReport) ([]Prediction, error) {
	var encodingBytes int
	for _, e := range []relay.Encoding{relay.F32, relay.F16, relay.Q8_0} {
		if e.String() == rep.Encoding {
			n, err := e.Size(rep.Dim)
			if err != nil {
				return nil, err
			}
			encodingBytes = n
		}
	}
	var out []Prediction
	for _, row := range rep.Rows {
		if row.Redundancy > 1 || len(row.StageComputeMS) != row.Stages {
			continue
		}
		link, err := relay.ParseLink(row.Link)
		if err != nil {
			return nil, err
		}
		hop := link.Latency
		if link.Bandwidth > 0 {
			hop += time.Duration(float64(encodingBytes*8) / link.Bandwidth * float64(time.Second))
		}
		spans, err := parseSpans(row.Spans)
		if err != nil {
			return nil, err
		}
		s := &simulation{cfg: SimConfig{Blocks: rep.Blocks, Prune: len(spans)}, byPeer: make(map[peer.ID]int), hop: hop, hopSet: true}
		for i, sp := range spans {
			ms := row.StageComputeMS[i]
			if !(ms > 0) {
				return nil, fmt.Errorf("bench: row %s: stage %d computed for %v ms", row.Spans, i, ms)
			}
			srv := &simServer{id: i, peer: simPeer(i), up: true, span: sp, throughput: 1000 / ms}
			s.servers = append(s.servers, srv)
			s.byPeer[srv.peer] = i
		}
		perTok, ok := s.route(&simRequest{})
		if !ok {
			return nil, fmt.Errorf("bench: row %s: the simulator finds no route", row.Spans)
		}
		p := Prediction{Layout: row.Spans, Link: row.Link, MeasuredMS: row.PerTokenMS, PredictedMS: perTok*1000 + row.ClientComputeMS}
		p.Ratio = p.MeasuredMS / p.PredictedMS
		out = append(out, p)
	}
	return out, nil
}

// parseSpans parses spansString's form, "0-2,2-5".
func parseSpans(s string) ([]dht.Span, error) {
	var out []dht.Span
	for part := range strings.SplitSeq(s, ",") {
		a, b, ok := strings.Cut(part, "-")
		start, err1 := strconv.Atoi(a)
		end, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || start < 0 || end <= start {
			return nil, fmt.Errorf("bench: spans %q", s)
		}
		out = append(out, dht.Span{Start: start, End: end})
	}
	return out, nil
}
