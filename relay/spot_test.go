package relay

import (
	"fmt"
	"testing"
	"time"

	"github.com/stratanet/strata/shard"
)

// spotServer is one server of a spot-check swarm: its throughput decides
// where routes put it (the fastest serves the session, the next checks
// it). Throughputs of a few tokens a second make compute time dominate
// loopback RTTs in route costs, so the roles do not depend on timing.
type spotServer struct {
	throughput float64
	fault      Fault
}

// spotSwarm starts the given servers for each of the spans 0:2 and 2:5
// of stories260K and returns the faulty ones.
func spotSwarm(t *testing.T, servers []spotServer) (*swarm, map[string]*Server) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{})
	liars := map[string]*Server{}
	for si, sp := range []shard.Span{{Start: 0, End: 2}, {Start: 2, End: 5}} {
		for j, s := range servers {
			sw.scfg.Throughput, sw.scfg.Fault = s.throughput, s.fault
			sw.scfg.Fault.Seed = uint64(si*10 + j)
			sv := sw.add(sp)
			if s.fault.Kind != NoFault {
				liars[sv.Node.ID().String()] = sv.Server
			}
		}
	}
	sw.scfg.Throughput, sw.scfg.Fault = 1000, Fault{}
	return sw, liars
}

// spotRun generates n tokens with spot checks at rate p and returns the
// tokens' run and the verified chain (closed by the test's cleanup).
func spotRun(t *testing.T, sw *swarm, p float64, n int) (run, run, *VerifiedChain) {
	t.Helper()
	prompt := sw.prompt("The cat sat on the mat and")
	c := sw.client(ClientConfig{StepTimeout: time.Second})
	v, err := c.OpenVerified(t.Context(), len(prompt)+n, VerifyConfig{Redundancy: 3, SpotRate: p, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	got, err := generate(t, t.Context(), sw.ends(), v, prompt, n, nil)
	if err != nil {
		t.Fatalf("generation failed: %v", err)
	}
	return got, sw.local(prompt, n), v
}

// TestSpotCheckHonest: on an honest swarm, checked steps are unanimous,
// the output is an unchecked run's, and the report does not claim the
// unchecked steps were verified.
func TestSpotCheckHonest(t *testing.T) {
	sw, _ := spotSwarm(t, []spotServer{{throughput: 2}, {throughput: 1}})
	got, want, v := spotRun(t, sw, 0.5, 12)
	if !equalTokens(got.tokens, want.tokens) || string(got.logits) != string(want.logits) {
		t.Errorf("spot-checked generation differs from one process: %v vs %v", got.tokens, want.tokens)
	}
	vr := v.Report()
	if vr.Steps != 12 || vr.Unanimous == 0 || vr.Unchecked == 0 || vr.Unanimous+vr.Unchecked != vr.Steps {
		t.Errorf("report %+v; want 12 steps, some checked and unanimous, the others unchecked", vr)
	}
	if len(vr.Blamed) != 0 || len(vr.Escalated) != 0 || len(vr.Disagreements) != 0 || vr.Verified() {
		t.Errorf("report %+v: blame, escalation or a claim of full verification on an honest swarm", vr)
	}
	for k, cs := range v.Checkers() {
		if len(cs) != 1 || cs[0].Peer == v.Lanes()[0][k].Peer {
			t.Errorf("stage %d checked by %v while %v serves it", k, cs, v.Lanes()[0][k])
		}
	}
}

// TestSpotCheckEveryStep: checking every step, a liar serving the session
// or checking it is caught at its first lie, outvoted once the stage is
// escalated to three replicas, and replaced; the output is an honest
// run's, and no honest server is blamed.
func TestSpotCheckEveryStep(t *testing.T) {
	for _, kind := range []FaultKind{FaultNoise, FaultZero, FaultStale, FaultBitflip, FaultSlow, FaultDrop} {
		for _, role := range []string{"serving", "checking"} {
			t.Run(fmt.Sprintf("%s/%s", kind, role), func(t *testing.T) {
				t.Parallel()
				liar := spotServer{throughput: 4, fault: Fault{Kind: kind, Rate: 1, Delay: 5 * time.Second}}
				if role == "checking" {
					liar.throughput = 1.5
				}
				sw, liars := spotSwarm(t, []spotServer{liar, {throughput: 2}, {throughput: 1}, {throughput: 0.5}})
				got, want, v := spotRun(t, sw, 1, 8)
				if !equalTokens(got.tokens, want.tokens) || string(got.logits) != string(want.logits) {
					t.Errorf("generation differs from an honest run: %v vs %v", got.tokens, want.tokens)
				}
				vr := v.Report()
				if vr.Unchecked != 0 || vr.Unverified != 0 || vr.Steps != 8 {
					t.Errorf("report %+v; want every step checked, each with a majority", vr)
				}
				// A wrong output escalates its stage; a late or missing one
				// is a failure, and the stage is routed again.
				if wrong := kind != FaultSlow && kind != FaultDrop; wrong != (len(vr.Escalated) == 2) {
					t.Errorf("escalated %v after %s faults", vr.Escalated, kind)
				}
				for p := range vr.Blamed {
					if liars[p] == nil {
						t.Errorf("honest %s blamed: %+v", p, vr)
					}
				}
				for p := range vr.TimedOut {
					if liars[p] == nil {
						t.Errorf("honest %s timed out: %+v", p, vr)
					}
				}
				used := map[string]bool{}
				for _, h := range v.Lanes()[0] {
					used[h.Peer.String()] = true
				}
				for _, cs := range v.Checkers() {
					for _, h := range cs {
						used[h.Peer.String()] = true
					}
				}
				for p, srv := range liars {
					n := srv.Stats().Faults
					if caught := vr.Blamed[p] + vr.TimedOut[p]; n == 0 || int64(caught) != n {
						t.Errorf("liar %s lied at %d steps, was caught at %d: %+v", p, n, caught, vr)
					}
					if used[p] {
						t.Errorf("liar %s still serves or checks the session", p)
					}
				}
			})
		}
	}
}

// TestSpotCheckRate: checking a quarter of the steps, a liar serving the
// session is caught at the first checked step and replaced; the steps
// before it are reported as unchecked, not as verified.
func TestSpotCheckRate(t *testing.T) {
	liar := spotServer{throughput: 4, fault: Fault{Kind: FaultZero, Rate: 1}}
	sw, liars := spotSwarm(t, []spotServer{liar, {throughput: 2}, {throughput: 1}, {throughput: 0.5}})
	_, _, v := spotRun(t, sw, 0.25, 12)
	vr := v.Report()
	if vr.Unchecked == 0 || vr.Verified() || len(vr.Escalated) == 0 {
		t.Errorf("report %+v; want unchecked steps, escalation, and no claim of verification", vr)
	}
	for p := range liars {
		if vr.Blamed[p] != 1 {
			t.Errorf("liar %s blamed %d times; want once, then replaced: %+v", p, vr.Blamed[p], vr)
		}
	}
	for p := range vr.Blamed {
		if liars[p] == nil {
			t.Errorf("honest %s blamed: %+v", p, vr)
		}
	}
	for _, h := range v.Lanes()[0] {
		if liars[h.Peer.String()] != nil {
			t.Errorf("liar %s still serves the session", h.Peer)
		}
	}
}
