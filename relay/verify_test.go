package relay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
)

// verifySwarm starts, for each of the spans 0:2 and 2:5 of stories260K,
// `honest` honest servers, `faulty` servers with fault f, and as many
// slower honest spares (routes pick them last) to take the faulty ones'
// places.
func verifySwarm(t *testing.T, honest, faulty int, f Fault, seed uint64) (*swarm, map[string]*Server) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{})
	liars := map[string]*Server{}
	for _, sp := range []shard.Span{{Start: 0, End: 2}, {Start: 2, End: 5}} {
		for range honest {
			sw.add(sp)
		}
		for j := range faulty {
			ff := f
			ff.Seed = seed*31 + uint64(j) + uint64(sp.Start)
			sw.scfg.Fault = ff
			sv := sw.add(sp)
			sw.scfg.Fault = Fault{}
			liars[sv.Node.ID().String()] = sv.Server
		}
		sw.scfg.Throughput = 500
		for range faulty {
			sw.add(sp)
		}
		sw.scfg.Throughput = 1000
	}
	return sw, liars
}

// TestVerifiedGeneration: r replicas per stage, some of them faulty in
// each way a server can be: the output equals an honest run's, liars are
// blamed, honest replicas never are.
func TestVerifiedGeneration(t *testing.T) {
	runs := 100
	if testing.Short() {
		runs = 12
	}
	kinds := []FaultKind{FaultNoise, FaultZero, FaultStale, FaultBitflip, FaultSlow, FaultDrop}
	for i := range runs {
		rng := rand.New(rand.NewPCG(uint64(i), 99))
		kind := kinds[i%len(kinds)]
		r, faulty := 3, 1
		if i%5 == 4 {
			r, faulty = 5, 2
		}
		rate := 1.0
		if rng.IntN(2) == 0 {
			rate = 0.5
		}
		f := Fault{Kind: kind, Rate: rate, Delay: 5 * time.Second}
		t.Run(fmt.Sprintf("run=%d/r=%d/fault=%s", i, r, f), func(t *testing.T) {
			t.Parallel()
			sw, liars := verifySwarm(t, r-faulty, faulty, f, uint64(i))
			prompt := sw.prompt("The cat sat on the mat and")
			const n = 12
			c := sw.client(ClientConfig{StepTimeout: time.Second, Bans: NewBans(time.Hour, time.Hour)})
			rep := consensus.NewMemory(time.Hour)
			v, err := c.OpenVerified(t.Context(), len(prompt)+n, VerifyConfig{Redundancy: r, Reputation: rep})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			got, err := generate(t, t.Context(), sw.ends(), v, prompt, n, nil)
			if err != nil {
				t.Fatalf("generation failed: %v", err)
			}
			if w := sw.local(prompt, n); !equalTokens(got.tokens, w.tokens) || string(got.logits) != string(w.logits) {
				t.Errorf("verified generation differs from an honest run: %v vs %v", got.tokens, w.tokens)
			}
			vr := v.Report()
			for p := range vr.Blamed {
				if liars[p] == nil {
					t.Errorf("honest replica %s blamed: %+v", p, vr)
				}
			}
			for p := range vr.TimedOut {
				if liars[p] == nil {
					t.Errorf("honest replica %s timed out: %+v", p, vr)
				}
			}
			if vr.Unverified != 0 {
				t.Errorf("%d steps without a majority: %+v", vr.Unverified, vr)
			}
			// Every step a liar lied on (as its latest attempt went: a
			// replica fed a bad upstream's output recomputes the step) was
			// caught: blamed for a wrong output or timed out for a
			// delayed or dropped one. Caught, it left the chain.
			inChain := map[string]bool{}
			for _, lane := range v.Lanes() {
				for _, h := range lane {
					inChain[h.Peer.String()] = true
				}
			}
			lies := 0
			for p, srv := range liars {
				n := srv.Stats().Faults
				lies += int(n)
				if caught := vr.Blamed[p] + vr.TimedOut[p]; int64(caught) != n {
					t.Errorf("liar %s lied at %d steps, was caught at %d: %+v", p, n, caught, vr)
				}
				if n > 0 && inChain[p] {
					t.Errorf("liar %s caught but still in the chain", p)
				}
				if vr.Blamed[p] > 0 && rep.Score(p, time.Now()) >= consensus.Prior {
					t.Errorf("blamed %s kept a score of %v", p, rep.Score(p, time.Now()))
				}
			}
			t.Logf("%d lies; report: steps %d, unanimous %d, by majority %d, blamed %v, timed out %v, repairs %d; lanes %v",
				lies, vr.Steps, vr.Unanimous, vr.ByMajority, vr.Blamed, vr.TimedOut, vr.Repairs, v.Lanes())
		})
	}
}

// TestCollusion: two of three replicas agree on the same wrong output.
// A majority cannot catch that; the client must not claim the steps were
// verified: it reports the disagreement and who dissented.
func TestCollusion(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, shard.Span{Start: 0, End: 5})
	honest := sw.servers[0].Node.ID().String()
	sw.scfg.Fault = Fault{Kind: FaultZero, Rate: 1}
	sw.add(shard.Span{Start: 0, End: 5})
	sw.add(shard.Span{Start: 0, End: 5})
	sw.scfg.Fault = Fault{}
	prompt := sw.prompt("One day a girl")
	const n = 6
	c := sw.client(ClientConfig{StepTimeout: 5 * time.Second})
	v, err := c.OpenVerified(t.Context(), len(prompt)+n, VerifyConfig{Redundancy: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// The honest replica is outvoted and blamed; with no server to take
	// its place its lane is dropped and the colluders go on.
	if _, err := generate(t, t.Context(), sw.ends(), v, prompt, n, nil); err != nil {
		t.Fatal(err)
	}
	vr := v.Report()
	if vr.Verified() || vr.ByMajority == 0 || len(vr.Disagreements) == 0 || vr.DroppedLanes != 1 {
		t.Fatalf("collusion went unreported: %+v", vr)
	}
	d := vr.Disagreements[0]
	if d.Votes != 2 || d.Replicas != 3 || len(d.Dissenters) != 1 || d.Dissenters[0] != honest {
		t.Errorf("disagreement %+v; want 2 of 3 votes and the honest %s as the dissenter", d, honest)
	}
	t.Logf("report: %+v", vr)
}

// TestLiarsInOneLane: every stage's liar claims to be fastest, so one lane
// gets all of them. Each is blamed once and replaced in turn (the stages
// after a replaced one re-wired, not failed), a blamed server never comes
// back once its ban's short backoff ends, and the output is an honest
// run's.
func TestLiarsInOneLane(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{})
	liars := map[string]bool{}
	for _, sp := range []shard.Span{{Start: 0, End: 1}, {Start: 1, End: 2}, {Start: 2, End: 5}} {
		for j, tp := range []float64{4, 2, 2, 1} { // compute, not RTT, decides routes
			sw.scfg.Throughput, sw.scfg.Fault = tp, Fault{}
			if j == 0 {
				sw.scfg.Fault = Fault{Kind: FaultZero, Rate: 1}
			}
			if sv := sw.add(sp); j == 0 {
				liars[sv.Node.ID().String()] = true
			}
		}
	}
	sw.scfg.Throughput, sw.scfg.Fault = 1000, Fault{}
	prompt := sw.prompt("The cat sat on the mat and")
	const n = 8
	c := sw.client(ClientConfig{StepTimeout: 2 * time.Second, Bans: NewBans(time.Millisecond, time.Millisecond)})
	v, err := c.OpenVerified(t.Context(), len(prompt)+n, VerifyConfig{Redundancy: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, h := range v.Lanes()[0] {
		if !liars[h.Peer.String()] {
			t.Fatalf("the first lane %v is not the liars'", v.Lanes()[0])
		}
	}
	got, err := generate(t, t.Context(), sw.ends(), v, prompt, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameRun(t, "with a lane of liars", got, sw.local(prompt, n))
	vr := v.Report()
	if len(vr.Blamed) != len(liars) || len(vr.TimedOut) != 0 || vr.DroppedLanes != 0 || vr.Unverified != 0 {
		t.Errorf("report %+v; want each liar blamed, no time-outs, no lane dropped", vr)
	}
	for p, k := range vr.Blamed {
		if !liars[p] || k != 1 {
			t.Errorf("%s (liar %v) blamed %d times; want liars once", p, liars[p], k)
		}
	}
}

// TestReplicasShareProfile: replicas are comparable only when they compute
// with the same numerics; a server of another profile is never a replica
// lane's, even when it is cheaper than the others.
func TestReplicasShareProfile(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{})
	odd := map[string]bool{}
	for _, sp := range []shard.Span{{Start: 0, End: 2}, {Start: 2, End: 5}} {
		for _, s := range []struct {
			tp      float64
			profile string
		}{{4, ""}, {3, "other-numerics"}, {2, ""}, {1, ""}} { // compute, not RTT, decides routes
			sw.scfg.Throughput, sw.scfg.Profile = s.tp, s.profile
			if sv := sw.add(sp); s.profile != "" {
				odd[sv.Node.ID().String()] = true
			}
		}
	}
	sw.scfg.Throughput, sw.scfg.Profile = 1000, ""
	prompt := sw.prompt("One day a girl")
	c := sw.client(ClientConfig{StepTimeout: 5 * time.Second})
	v, err := c.OpenVerified(t.Context(), len(prompt)+4, VerifyConfig{Redundancy: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, lane := range v.Lanes() {
		for _, h := range lane {
			if odd[h.Peer.String()] {
				t.Errorf("lanes %v use %s, a server of another numerics profile", v.Lanes(), h.Peer)
			}
		}
	}
	got, err := generate(t, t.Context(), sw.ends(), v, prompt, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameRun(t, "verified", got, sw.local(prompt, 4))
	if vr := v.Report(); !vr.Verified() {
		t.Errorf("report %+v; want every step unanimous", vr)
	}
}

// TestWorkSummaries: what the client's receipts say each server did for a
// session equals what the server says it computed (the facts of a work
// receipt), and verification's judgement is in the client's summary: the
// liar's lie blamed, honest replicas' positions agreed.
func TestWorkSummaries(t *testing.T) {
	sw, liars := verifySwarm(t, 2, 1, Fault{Kind: FaultZero, Rate: 1}, 3)
	prompt := sw.prompt("The cat sat on the mat and")
	const n = 6
	c := sw.client(ClientConfig{StepTimeout: 5 * time.Second})
	v, err := c.OpenVerified(t.Context(), len(prompt)+n, VerifyConfig{Redundancy: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := generate(t, t.Context(), sw.ends(), v, prompt, n, nil); err != nil {
		t.Fatal(err)
	}
	work := v.Work()
	v.Close()
	servers := map[string]*Server{}
	for _, s := range sw.servers {
		servers[s.Node.ID().String()] = s.Server
	}
	client := c.node.ID()
	blamed := 0
	for _, w := range work {
		srv := servers[w.Peer.String()]
		var got WorkSummary
		var ok bool
		for range 100 { // the session is dropped asynchronously after Close
			if got, ok = srv.Served(w.Session, client); ok {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !ok {
			t.Errorf("%s has no record of session %x", w.Peer, w.Session[:4])
			continue
		}
		if got.First != w.First || got.Positions != w.Positions || got.Steps != w.Steps || got.StepsHash != w.StepsHash || got.Span != w.Span {
			t.Errorf("%s: server says %+v, client %+v", w.Peer, got, w)
		}
		if w.Agreed+w.Unverified+w.Blamed != w.Positions {
			t.Errorf("%s: outcomes %+v do not add up", w.Peer, w)
		}
		switch {
		case liars[w.Peer.String()] != nil:
			if w.Blamed == 0 {
				t.Errorf("liar %s: %+v, want blamed positions", w.Peer, w)
			}
			blamed++
		case w.Blamed != 0 || w.Unverified != 0:
			t.Errorf("honest %s: %+v, want every position agreed", w.Peer, w)
		}
		if _, ok := srv.Served(w.Session, servers[w.Peer.String()].node.ID()); ok {
			t.Errorf("%s tells another peer about a client's session", w.Peer)
		}
	}
	if blamed == 0 {
		t.Errorf("no liar's work in %+v", work)
	}
}

// TestRoutesAvoidBadReputation: a client's reputation keeps a server it
// scores below ExcludeBelow out of its chains, and prefers the better
// scored of two otherwise equal servers.
func TestRoutesAvoidBadReputation(t *testing.T) {
	// Low throughputs make compute time, which scores scale, dominate
	// loopback RTTs in route costs.
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{Throughput: 10})
	var ids []string
	for range 3 {
		ids = append(ids, sw.add(shard.Span{Start: 0, End: 5}).Node.ID().String())
	}
	rep := consensus.NewMemory(time.Hour)
	now := time.Now()
	for range 10 {
		rep.Record(ids[0], consensus.EventDisagreed, now) // far below 0.2
		rep.Record(ids[2], consensus.EventAgreed, now)    // above the prior
	}
	c := sw.client(ClientConfig{Reputation: rep, ExcludeBelow: 0.2})
	for range 3 {
		ch, err := c.Open(t.Context(), 8)
		if err != nil {
			t.Fatal(err)
		}
		if p := ch.Hops()[0].Peer.String(); p != ids[2] {
			t.Errorf("chain on %s; want the best-scored %s (scores %v, %v, %v)", p, ids[2],
				rep.Score(ids[0], now), rep.Score(ids[1], now), rep.Score(ids[2], now))
		}
		ch.Close()
	}
	// With the good one gone, the excluded one is still never used.
	c = sw.client(ClientConfig{Reputation: rep, ExcludeBelow: 0.2, Bans: NewBans(time.Hour, time.Hour)})
	c.cfg.Bans.Fail(mustDecode(t, ids[2]), time.Now())
	ch, err := c.Open(t.Context(), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if p := ch.Hops()[0].Peer.String(); p != ids[1] {
		t.Errorf("chain on %s; want %s, the only one neither banned nor excluded", p, ids[1])
	}
}

func mustDecode(t *testing.T, s string) peer.ID {
	p, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUptime: looking for servers, a client with a reputation records that
// a live server answered and that one which announced its blocks and died
// did not, at most once per interval.
func TestUptime(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, shard.Span{Start: 0, End: 5}, shard.Span{Start: 0, End: 5})
	live, dead := sw.servers[0].Node.ID().String(), sw.servers[1]
	span := dht.Span{Start: 0, End: 5}
	hourly := consensus.NewMemory(0) // no decay: exact scores
	c := sw.client(ClientConfig{Reputation: hourly, UptimeInterval: time.Hour})
	for range 2 { // the second look is within the interval: nothing more recorded
		if _, _, err := c.Candidates(t.Context(), span); err != nil {
			t.Fatal(err)
		}
	}
	up := consensus.Prior + consensus.UpGain*(1-consensus.Prior)
	for _, p := range []string{live, dead.Node.ID().String()} {
		if got := hourly.Score(p, time.Now()); got != up {
			t.Errorf("%s scores %v; want %v after one recorded answer", p, got, up)
		}
	}
	dead.Close()
	always := consensus.NewMemory(0)
	c = sw.client(ClientConfig{Reputation: always, UptimeInterval: time.Nanosecond})
	if _, _, err := c.Candidates(t.Context(), span); err != nil {
		t.Fatal(err)
	}
	if got := always.Score(live, time.Now()); got != up {
		t.Errorf("live server scores %v; want %v", got, up)
	}
	if got, want := always.Score(dead.Node.ID().String(), time.Now()), consensus.Prior*(1-consensus.DownLoss); got != want {
		t.Errorf("dead server scores %v; want %v: announced, but no answer", got, want)
	}
}
