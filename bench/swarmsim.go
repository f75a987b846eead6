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
// of 100,000) and generates Tokens tokens after a prompt of PromptTokens
// (its time counts from the first decode step: the prompt's first prefill
// is not modelled, its replays are). A token takes, per hop, the hop's
// compute (its blocks over its throughput, slowed by the requests it
// serves at once) plus the one-way latencies client → stage 1 → … →
// stage n → client (push relay).
//
// Failures, as relay.Chain handles them. A server that leaves gracefully
// hands its sessions over: its requests go on at the same pace. A server
// that crashes stalls every request running through it: the pending
// token is lost, and DetectDelay later the client routes again the
// crashed stage's blocks only (the rest of the chain keeps its sessions;
// servers already in the chain are left out), the failover, and replays
// the positions done so far (PromptTokens + the tokens generated) into
// the new stages so they rebuild their KV cache, which takes those
// positions × the new hops' compute per token / PrefillSpeedup; then the
// remaining tokens run at the new chain's per-token time. A request that
// finds no route, at the start or at a failover, fails.
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
	// PromptTokens is the prompt's length, replayed with the tokens
	// generated at a failover (default 32).
	PromptTokens int
	// DetectDelay is how long a client takes to notice that a stage
	// crashed: a crashed machine goes silent, and the real client gives
	// up on a step after its StepTimeout (default 30 s, the client's
	// default; negative: at once, as when a dead process's connection is
	// reset).
	DetectDelay time.Duration
	// PrefillSpeedup is how much faster a server computes a position of a
	// batched prefill (a replay) than a decode step's, per token
	// (default 8).
	PrefillSpeedup float64
	BaseLatency    time.Duration
	RebalanceEvery time.Duration
	Prune          int
	SampleEvery    time.Duration
	Seed           uint64
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
	Failed            int     `json:"failed"`              // found no route, at the start or after a crash
	InFlight          int     `json:"in_flight"`           // still generating when the simulation ended
	Failovers         int     `json:"failovers"`           // crashed stages routed around
	ReplaySeconds     float64 `json:"replay_seconds"`      // total over the failovers
	MeanReplaySeconds float64 `json:"mean_replay_seconds"` // per failover
	ReplayedPositions int     `json:"replayed_positions"`
	SuccessRate       float64 `json:"success_rate"`
	MeanTokS          float64 `json:"mean_tok_s_per_request"`
	MeanPerTokenMS    float64 `json:"mean_per_token_ms"`
	MinCoverageMean   float64 `json:"min_coverage_mean_tok_s"` // the least-served block's throughput, averaged over samples
	MinCoverageLowest float64 `json:"min_coverage_lowest_tok_s"`
	Moves             int     `json:"rebalance_moves"`
	WallSeconds       float64 `json:"wall_seconds"`
}

// simDetectDelay is SimConfig.DetectDelay's default: relay.ClientConfig's
// default StepTimeout.
const simDetectDelay = 30 * time.Second

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
	if c.PromptTokens <= 0 {
		c.PromptTokens = 32
	}
	if c.DetectDelay == 0 {
		c.DetectDelay = simDetectDelay
	}
	c.DetectDelay = max(c.DetectDelay, 0)
	if math.IsNaN(c.PrefillSpeedup) || c.PrefillSpeedup < 0 || math.IsInf(c.PrefillSpeedup, 0) {
		return errors.New("bench: prefill speed-up must be positive and finite")
	}
	if c.PrefillSpeedup == 0 {
		c.PrefillSpeedup = 8
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
	crashed    bool
	span       dht.Span
	throughput float64 // tokens/s over its span
	x, y       float64
	reqs       []*simRequest // running through it: its load
	gen        int           // bumped when it leaves or crashes: stale events are dropped
}

func (srv *simServer) load() int { return len(srv.reqs) }

type simEvent struct {
	at   float64 // seconds
	kind int
	srv  int
	gen  int // the server's, or the request's epoch
	req  *simRequest
}

const (
	evDepart = iota
	evRebalance
	evRequest
	evFinish
	evFailover
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
	id     int
	x, y   float64
	chain  []int      // server ids
	spans  []dht.Span // the blocks each hop runs
	start  float64
	perTok float64 // seconds per token on the chain
	genAt  float64 // when the chain started (or, after a replay, resumed) generating
	done   int     // tokens done before genAt
	epoch  int     // bumped by a crash: the request's pending events go stale
	stall  bool    // a stage crashed: waiting for the failover
	end    float64 // when it finished
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
	if c.RequestsPerSecond > 0 {
		s.q.add(&simEvent{at: s.rng.ExpFloat64() / c.RequestsPerSecond, kind: evRequest})
	}
	s.q.add(&simEvent{at: 0, kind: evSample})
	if err := s.run(c.Hours * 3600); err != nil {
		return nil, err
	}
	s.rep.InFlight = s.rep.Requests - s.rep.Succeeded - s.rep.Failed
	if done := s.rep.Succeeded + s.rep.Failed; done > 0 {
		s.rep.SuccessRate = float64(s.rep.Succeeded) / float64(done)
	}
	if s.rep.Succeeded > 0 {
		s.rep.MeanTokS = s.tokS / float64(s.rep.Succeeded)
		s.rep.MeanPerTokenMS = s.perTok / float64(s.rep.Succeeded)
	}
	if s.rep.Failovers > 0 {
		s.rep.MeanReplaySeconds = s.rep.ReplaySeconds / float64(s.rep.Failovers)
	}
	if s.covN > 0 {
		s.rep.MinCoverageMean = s.covSum / float64(s.covN)
	}
	s.rep.WallSeconds = time.Since(t0).Seconds()
	return &s.rep, nil
}

// run handles the events up to end.
func (s *simulation) run(end float64) error {
	for !s.q.empty() && s.q[0].at <= end {
		e := s.q.next()
		s.rep.Events++
		if err := s.handle(e); err != nil {
			return err
		}
	}
	return nil
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
		s.depart(srv, e.at, s.rng.Float64() < c.CrashFraction)
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
		s.start(&simRequest{x: s.rng.Float64(), y: s.rng.Float64()}, e.at)
	case evFinish:
		r := e.req
		if e.gen != r.epoch {
			return nil
		}
		s.unload(r)
		r.end = e.at
		s.rep.Succeeded++
		s.tokS += float64(c.Tokens) / (e.at - r.start)
		s.perTok += (e.at - r.start) / float64(c.Tokens) * 1000
	case evFailover:
		if e.gen == e.req.epoch {
			s.failover(e.req, e.at)
		}
	}
	return nil
}

// start routes request r at time now and starts it generating.
func (s *simulation) start(r *simRequest, now float64) {
	s.rep.Requests++
	r.id, r.start = s.rep.Requests, now
	perTok, ok := s.route(r)
	if !ok {
		s.rep.Failed++
		return
	}
	s.resume(r, now, perTok)
}

// resume starts r generating its remaining tokens on its chain at time at.
func (s *simulation) resume(r *simRequest, at, perTok float64) {
	r.perTok, r.genAt, r.stall = perTok, at, false
	for _, id := range r.chain {
		srv := s.servers[id]
		srv.reqs = append(srv.reqs, r)
	}
	s.q.add(&simEvent{at: at + perTok*float64(s.cfg.Tokens-r.done), kind: evFinish, req: r, gen: r.epoch})
}

// unload takes r off its chain's servers.
func (s *simulation) unload(r *simRequest) {
	for _, id := range r.chain {
		srv := s.servers[id]
		if i := slices.Index(srv.reqs, r); i >= 0 {
			srv.reqs = slices.Delete(srv.reqs, i, i+1)
		}
	}
}

// depart takes srv down at time now. One that leaves gracefully hands its
// sessions over (its requests go on as they were); one that crashes
// stalls its requests until their clients notice, DetectDelay later.
func (s *simulation) depart(srv *simServer, now float64, crash bool) {
	srv.up = false
	srv.gen++
	s.cover(srv, -1)
	if !crash {
		return
	}
	srv.crashed = true
	reqs := srv.reqs
	srv.reqs = nil
	slices.SortFunc(reqs, func(a, b *simRequest) int { return cmp.Compare(a.id, b.id) })
	for _, r := range reqs {
		if !r.stall && now > r.genAt {
			// The tokens finished before the crash stay; the pending one is
			// lost.
			r.done = min(s.cfg.Tokens, r.done+int((now-r.genAt)/r.perTok))
		}
		r.stall = true
		r.epoch++
		s.q.add(&simEvent{at: now + s.cfg.DetectDelay.Seconds(), kind: evFailover, req: r, gen: r.epoch})
	}
}

// failover replaces r's crashed stages at time now, as relay.Chain does:
// each crashed hop's blocks routed again (servers in the chain left out),
// the positions done replayed into the new stages, then the remaining
// tokens at the new chain's pace.
func (s *simulation) failover(r *simRequest, now float64) {
	c := s.cfg
	s.unload(r)
	inChain := make(map[int]bool, len(r.chain))
	for _, id := range r.chain {
		inChain[id] = true
	}
	skip := func(srv *simServer) bool { return inChain[srv.id] }
	positions := c.PromptTokens + r.done
	var chain []int
	var spans []dht.Span
	replay := 0.0
	replaced := 0
	for i, id := range r.chain {
		if !s.servers[id].crashed {
			chain, spans = append(chain, id), append(spans, r.spans[i])
			continue
		}
		hops, ok := s.findHops(r.x, r.y, r.spans[i], skip)
		if !ok {
			s.rep.Failed++
			return
		}
		for _, h := range hops {
			srv := s.servers[s.byPeer[h.Peer]]
			inChain[srv.id] = true
			chain, spans = append(chain, srv.id), append(spans, h.Span)
			replay += float64(positions) * s.compute(srv, h.Span) / c.PrefillSpeedup
		}
		replaced++
	}
	r.chain, r.spans = chain, spans
	s.rep.Failovers += replaced
	s.rep.ReplaySeconds += replay
	s.rep.ReplayedPositions += replaced * positions
	s.resume(r, now+replay, s.chainTime(r))
}

// route picks a chain for r among the servers up and returns the seconds
// per token.
func (s *simulation) route(r *simRequest) (float64, bool) {
	hops, ok := s.findHops(r.x, r.y, dht.Span{Start: 0, End: s.cfg.Blocks}, nil)
	if !ok {
		return 0, false
	}
	r.chain, r.spans = r.chain[:0], r.spans[:0]
	for _, h := range hops {
		r.chain = append(r.chain, s.byPeer[h.Peer])
		r.spans = append(r.spans, h.Span)
	}
	return s.chainTime(r), true
}

// findHops routes span for a client at (x, y) with FindRoute among the
// servers up but those skip names.
func (s *simulation) findHops(x, y float64, span dht.Span, skip func(*simServer) bool) ([]relay.Hop, bool) {
	c := s.cfg
	// Prune: the Prune fastest servers up starting at each block.
	best := make([][]*simServer, c.Blocks)
	for _, srv := range s.servers {
		if !srv.up || skip != nil && skip(srv) {
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
			cands = append(cands, relay.Candidate{Peer: srv.peer, Span: srv.span, Throughput: srv.throughput / float64(1+srv.load()),
				RTT: time.Duration(2 * s.latency(x, y, srv) * float64(time.Second)), FreeKV: -1, Score: 0.5})
		}
	}
	hops, _, err := relay.FindRoute(cands, span, relay.RouteCost{}, nil)
	return hops, err == nil
}

// compute is the seconds srv takes per token on blocks sp, slowed by the
// requests it serves.
func (s *simulation) compute(srv *simServer, sp dht.Span) float64 {
	return float64(sp.Len()) / float64(srv.span.Len()) / srv.throughput * float64(1+srv.load())
}

// chainTime is the seconds per token of r's chain, r not counted in its
// servers' load: every hop's compute plus the one-way latencies around
// the chain.
func (s *simulation) chainTime(r *simRequest) float64 {
	perTok := 0.0
	px, py := r.x, r.y
	for i, id := range r.chain {
		srv := s.servers[id]
		perTok += s.latencyXY(px, py, srv.x, srv.y)
		perTok += s.compute(srv, r.spans[i])
		px, py = srv.x, srv.y
	}
	return perTok + s.latencyXY(px, py, r.x, r.y)
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
