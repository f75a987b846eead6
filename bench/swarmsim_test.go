package bench

import (
	"math"
	"math/rand/v2"
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

// TestSimCrashes: crashes cause failovers; graceful leaves do not.
func TestSimCrashes(t *testing.T) {
	c := simBase(3)
	c.Nodes, c.ChurnPerHour, c.RequestsPerSecond, c.Tokens = 100, 20, 5, 2000
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
	for _, c := range []SimConfig{{}, {Nodes: 1, Blocks: 4, Policy: "best"}, {Nodes: 1, Blocks: 4, CrashFraction: 2}} {
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
