package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
)

func simBase(seed uint64) SimConfig {
	return SimConfig{Nodes: 300, Blocks: 22, MinBlocks: 4, MaxBlocks: 8, ThroughputMedian: 20, ThroughputSigma: 0.5,
		Hours: 0.5, RequestsPerSecond: 2, Tokens: 64, Seed: seed}
}

func TestSimDeterministic(t *testing.T) {
	c := simBase(7)
	c.ChurnPerHour, c.CrashFraction = 1, 0.5
	a, err := RunSim(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunSim(c)
	if err != nil {
		t.Fatal(err)
	}
	a.WallSeconds, b.WallSeconds = 0, 0
	if *a != *b {
		t.Errorf("same seed, different reports:\n%+v\n%+v", a, b)
	}
	if a.Requests == 0 || a.Events == 0 {
		t.Errorf("nothing happened: %+v", a)
	}
}

// TestSimNoChurn: with no churn every request finds a route and finishes.
func TestSimNoChurn(t *testing.T) {
	r, err := RunSim(simBase(1))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Failed != 0 || r.SuccessRate != 1 || r.Succeeded+r.InFlight != r.Requests || r.Failovers != 0 ||
		!(r.MeanTokS > 0) || !(r.MinCoverageMean > 0) {
		t.Errorf("report %+v; want every request served", r)
	}
}

// TestSimPetalsBeatsRandom: Petals' placement keeps the least-served
// block better served than random placement of the same servers.
func TestSimPetalsBeatsRandom(t *testing.T) {
	var petals, random float64
	for seed := uint64(1); seed <= 5; seed++ {
		for _, p := range []string{"petals", "random"} {
			c := simBase(seed)
			c.Policy, c.RequestsPerSecond, c.ChurnPerHour = p, 0.1, 0.5
			r, err := RunSim(c)
			if err != nil {
				t.Fatal(err)
			}
			if p == "petals" {
				petals += r.MinCoverageMean
			} else {
				random += r.MinCoverageMean
			}
		}
	}
	if !(petals > 1.5*random) {
		t.Errorf("least-served block: petals %.1f, random %.1f tok/s (summed over 5 seeds); want petals well ahead", petals, random)
	}
}

// TestSimCrashes: at the same churn, crashes cause failovers, replays and
// slower requests; graceful leaves do not.
func TestSimCrashes(t *testing.T) {
	c := simBase(3)
	c.Nodes, c.ChurnPerHour, c.RequestsPerSecond, c.Tokens, c.Hours = 100, 4, 0.5, 512, 1
	c.CrashFraction = 0
	leave, err := RunSim(c)
	if err != nil {
		t.Fatal(err)
	}
	c.CrashFraction = 1
	crash, err := RunSim(c)
	if err != nil {
		t.Fatal(err)
	}
	if leave.Failovers != 0 || crash.Failovers == 0 {
		t.Errorf("failovers: %d with graceful leaves, %d with crashes; want 0 and some", leave.Failovers, crash.Failovers)
	}
	// A crash costs its requests the detection delay and a replay; a
	// graceful leave hands the sessions over and costs nothing.
	if leave.ReplaySeconds != 0 || leave.ReplayedPositions != 0 || !(crash.ReplaySeconds > 0) || !(crash.MeanReplaySeconds > 0) ||
		crash.ReplayedPositions < crash.Failovers*c.PromptTokens {
		t.Errorf("replay: %v s with graceful leaves, %v s (%v per failover, %d positions) with crashes; want 0 and some",
			leave.ReplaySeconds, crash.ReplaySeconds, crash.MeanReplaySeconds, crash.ReplayedPositions)
	}
	if !(crash.MeanTokS < leave.MeanTokS) {
		t.Errorf("tok/s per request: %.2f with crashes, %.2f with graceful leaves; want crashes slower", crash.MeanTokS, leave.MeanTokS)
	}
}

// simTiny is a hand-made swarm: client at the origin, A holds blocks 0-2
// at (0.1, 0), B and its twin C hold 2-4 at (0.2, 0), all at 50 tokens/s
// over their spans. FindRoute takes A then B (B's peer id sorts first).
func simTiny(t *testing.T, c SimConfig) *simulation {
	t.Helper()
	c.Nodes, c.Blocks, c.BaseLatency, c.Tokens, c.Policy = 3, 4, 3*time.Millisecond, 100, "fixed"
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	s := &simulation{cfg: c, rng: rand.New(rand.NewPCG(1, 2)), byPeer: map[peer.ID]int{}, coverage: make([]float64, 4)}
	for i, sp := range []dht.Span{{Start: 0, End: 2}, {Start: 2, End: 4}, {Start: 2, End: 4}} {
		srv := &simServer{id: i, peer: simPeer(i), up: true, span: sp, throughput: 50, x: 0.1 * float64(min(i, 1)+1)}
		s.servers = append(s.servers, srv)
		s.byPeer[srv.peer] = i
		s.cover(srv, +1)
	}
	return s
}

// TestSimFailoverReplay: a request whose stage crashes loses its pending
// token, waits DetectDelay, has the crashed stage's blocks routed again
// (the rest of the chain stays) and replays prompt + tokens done into the
// new stage at its compute per token / PrefillSpeedup, then finishes at
// the new chain's pace; a graceful leave costs nothing.
func TestSimFailoverReplay(t *testing.T) {
	const (
		perTok   = (8+8+13)/1000.0 + 2.0/50 // s: latencies 0→A 8 ms, A→B 8 ms, B→0 13 ms; compute 1/50 s per hop
		crashAt  = 2.0                      // s
		done     = 28                       // tokens finished by then: floor(2 / 0.069)
		detect   = 1.0                      // s
		prompt   = 32
		speedup  = 8.0
		replay   = (prompt + done) * (1.0 / 50) / speedup // C's compute per token is B's
		noCrash  = 100 * perTok
		withLoss = detect + replay + crashAt - done*perTok // the crash's cost: the pending token's progress lost, too
	)
	cfg := SimConfig{PromptTokens: prompt, DetectDelay: time.Second, PrefillSpeedup: speedup}
	for _, crash := range []bool{false, true} {
		s := simTiny(t, cfg)
		r := &simRequest{}
		s.start(r, 0)
		if math.Abs(r.perTok-perTok) > 1e-12 || !slices.Equal(r.chain, []int{0, 1}) {
			t.Fatalf("chain %v at %v s per token; want [0 1] at %v", r.chain, r.perTok, perTok)
		}
		if err := s.run(crashAt); err != nil {
			t.Fatal(err)
		}
		s.depart(s.servers[1], crashAt, crash)
		if err := s.run(math.Inf(1)); err != nil {
			t.Fatal(err)
		}
		want, wantReplay, wantChain, failovers := noCrash, 0.0, []int{0, 1}, 0
		if crash {
			want, wantReplay, wantChain, failovers = noCrash+withLoss, replay, []int{0, 2}, 1
		}
		if s.rep.Succeeded != 1 || math.Abs(r.end-want) > 1e-9 || !slices.Equal(r.chain, wantChain) || s.rep.Failovers != failovers ||
			math.Abs(s.rep.ReplaySeconds-wantReplay) > 1e-12 || s.rep.ReplayedPositions != failovers*(prompt+done) {
			t.Errorf("crash %v: finished at %v s on %v, report %+v; want %v s (no crash: %v s) on %v with %v s of replay",
				crash, r.end, r.chain, s.rep, want, noCrash, wantChain, wantReplay)
		}
	}
	// With nobody left to take the blocks over, the request fails.
	s := simTiny(t, cfg)
	s.depart(s.servers[2], 0, true)
	r := &simRequest{}
	s.start(r, 0)
	s.depart(s.servers[1], crashAt, true)
	if err := s.run(math.Inf(1)); err != nil {
		t.Fatal(err)
	}
	if s.rep.Failed != 1 || s.rep.Succeeded != 0 || s.rep.Failovers != 0 || s.servers[0].load() != 0 {
		t.Errorf("no route left: report %+v, load on A %d; want the request failed", s.rep, s.servers[0].load())
	}
}

// TestSimTimeModel: a request's per-token time is its chain's compute plus
// one one-way latency per hop (push relay).
func TestSimTimeModel(t *testing.T) {
	c := SimConfig{Nodes: 1, Blocks: 4, BaseLatency: 3 * time.Millisecond}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	s := &simulation{cfg: c, rng: rand.New(rand.NewPCG(1, 2)), byPeer: map[peer.ID]int{}, coverage: make([]float64, 4)}
	for i, sp := range []dht.Span{{Start: 0, End: 2}, {Start: 2, End: 4}} {
		srv := &simServer{id: i, peer: simPeer(i), up: true, span: sp, throughput: 50, x: 0.1 * float64(i+1), y: 0}
		s.servers = append(s.servers, srv)
		s.byPeer[srv.peer] = i
	}
	r := &simRequest{x: 0, y: 0}
	got, ok := s.route(r)
	if !ok {
		t.Fatal("no route")
	}
	ms := func(d float64) float64 { return d*10000/200 + 3 } // plane distance → one-way ms
	want := (ms(0.1)+ms(0.1)+ms(0.2))/1000 + 2.0/50
	if math.Abs(got-want) > 1e-12 {
		t.Errorf("per-token %v s, want %v (compute 2 × 1/50 s + 3 one-way latencies)", got, want)
	}
}

func TestSimBadConfig(t *testing.T) {
	for _, c := range []SimConfig{{}, {Nodes: 1, Blocks: 4, Policy: "best"}, {Nodes: 1, Blocks: 4, CrashFraction: 2},
		{Nodes: 1, Blocks: 4, PrefillSpeedup: -1}} {
		if _, err := RunSim(c); err == nil {
			t.Errorf("RunSim(%+v) accepted", c)
		}
	}
}

// BenchmarkSim10kNodes1h: 10,000 servers for one simulated hour with
// churn and a request a second (target: under 60 s here).
func BenchmarkSim10kNodes1h(b *testing.B) {
	for b.Loop() {
		r, err := RunSim(SimConfig{Nodes: 10000, Blocks: 22, Hours: 1, ChurnPerHour: 1, CrashFraction: 0.5,
			RequestsPerSecond: 1, Tokens: 128, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.Events), "events")
	}
}

// TestPredict: the simulator's prediction for a measured layout row is
// the row's stage compute and client compute plus one hop latency (and
// transmission) per hop.
func TestPredict(t *testing.T) {
	rep := &SwarmReport{Blocks: 5, Dim: 64, Encoding: "f32", Rows: []SwarmRow{
		{Stages: 2, Redundancy: 1, Spans: "0-2,2-5", Link: "latency=5ms,bw=1Mbit", Hops: 3, PerTokenMS: 20,
			StageComputeMS: []float64{1, 2}, ClientComputeMS: 0.5},
		{Stages: 2, Redundancy: 3, Spans: "0-2,2-5", Link: "none"}, // verified rows are skipped
	}}
	ps, err := Predict(rep)
	if err != nil {
		t.Fatal(err)
	}
	hop := 5 + 64*4*8/1e6*1000 // ms: latency + one position's f32 activations at 1 Mbit/s
	want := 1 + 2 + 0.5 + 3*hop
	if len(ps) != 1 || math.Abs(ps[0].PredictedMS-want) > 1e-9 || math.Abs(ps[0].Ratio-20/want) > 1e-9 {
		t.Errorf("Predict = %+v; want %v ms", ps, want)
	}
	rep.Rows[0].Spans = "0-2,x"
	if _, err := Predict(rep); err == nil {
		t.Error("bad spans accepted")
	}
}

// FuzzParseSpans: spans read back from a results file never panic the
// parser, and what it accepts is well formed.
func FuzzParseSpans(f *testing.F) {
	for _, s := range []string{"0-2,2-5", "0-22", "", "-", "3-1", "0-1,,2-3", "9999999999999999999-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spans, err := parseSpans(s)
		if err != nil {
			return
		}
		for _, sp := range spans {
			if sp.Start < 0 || sp.End <= sp.Start {
				t.Fatalf("parseSpans(%q) = %v", s, spans)
			}
		}
	})
}
