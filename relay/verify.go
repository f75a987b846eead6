package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/dht"
)

// VerifyConfig asks for verified generation.
type VerifyConfig struct {
	// Redundancy is the number of replicas of every stage (r >= 1).
	Redundancy int
	// Reputation receives an event per replica and stage of every step
	// (default: an in-memory one with a one-hour half-life).
	Reputation consensus.Reputation
	// MaxRepairs bounds the recomputations of one lane in one step
	// (default 4).
	MaxRepairs int
	// SpotRate, when above 0, checks a random fraction of the steps
	// instead of running every step on Redundancy lanes: one chain serves
	// the session, and on a checked step one more replica of every stage
	// recomputes the step from the chain's own inputs to that stage. A
	// mismatch escalates that stage to Redundancy replicas (at least 3)
	// for the rest of the session, which outvote and replace the liar.
	// A step that is not checked is not verified, and the report says so.
	SpotRate float64
	// Seed seeds the choice of checked steps.
	Seed uint64
}

// StageVote is the outcome of one stage of one step.
type StageVote struct {
	Step       int      `json:"step"`
	Span       string   `json:"span"`
	Votes      int      `json:"votes"`    // replicas that produced the winning output
	Replicas   int      `json:"replicas"` // r
	Majority   bool     `json:"majority"`
	Dissenters []string `json:"dissenters,omitempty"` // replicas whose output differed
	Blamed     []string `json:"blamed,omitempty"`     // those of them at fault
}

// VerifyReport says what verification saw during a generation.
type VerifyReport struct {
	Redundancy int `json:"redundancy"`
	Steps      int `json:"steps"`
	// Unanimous steps: every replica of every stage agreed.
	Unanimous int `json:"unanimous"`
	// ByMajority steps: every stage had a majority but not every replica
	// agreed (the client went on with the majority's output).
	ByMajority int `json:"by_majority"`
	// Unverified steps: some stage had no majority; the output is that of
	// the first replica and is not verified.
	Unverified int `json:"unverified"`
	// Blamed counts, per peer, the stage-steps it was blamed for.
	Blamed map[string]int `json:"blamed,omitempty"`
	// Disagreements lists every stage-step where replicas disagreed.
	Disagreements []StageVote `json:"disagreements,omitempty"`
	// TimedOut counts, per peer, the times a replica failed or missed a
	// step's deadline and was replaced.
	TimedOut map[string]int `json:"timed_out,omitempty"`
	// Repairs counts lanes recomputed after a disagreement.
	Repairs int `json:"repairs"`
	// DroppedLanes counts replica lanes given up because no server could
	// take a blamed or failed replica's place: redundancy fell.
	DroppedLanes int `json:"dropped_lanes"`

	// SpotRate is the fraction of steps spot-checked (0: every step runs
	// on every replica).
	SpotRate float64 `json:"spot_rate,omitempty"`
	// Unchecked steps (spot checks): some stage was not checked, so the
	// step is not verified. Unanimous, ByMajority and Unverified count the
	// steps checked at every stage.
	Unchecked int `json:"unchecked,omitempty"`
	// Escalated lists the stages a spot check found a mismatch at, which
	// then ran on Redundancy replicas.
	Escalated []string `json:"escalated,omitempty"`
	// Short counts stage-steps that fewer replicas checked than wanted,
	// for want of servers.
	Short int `json:"short,omitempty"`
}

// Verified reports whether every step had a majority at every stage and
// no replica disagreed. A disagreement that a majority outvoted is
// reported, not hidden: two colluding replicas can outvote an honest one.
func (r *VerifyReport) Verified() bool {
	return r.Unverified == 0 && r.ByMajority == 0 && len(r.Disagreements) == 0 && r.DroppedLanes == 0 &&
		r.Unchecked == 0 && r.Short == 0
}

type claimKey struct {
	peer peer.ID
	span dht.Span
}

// VerifiedChain runs every step on r replicas of each stage and goes on
// with the hash majority. The replicas form r lanes: chains over the same
// stage boundaries, no server in two lanes at one stage, each lane pushing
// its outputs down its own stages, so traffic per step is O(r × hidden
// size). After every step the client compares the signed receipts of the
// r replicas stage by stage, first to last (consensus.Decide). A replica
// whose input and history match the majority's but whose output does not
// is blamed, banned and replaced, its KV cache replayed from the
// majority's inputs; the replicas after it in its lane, whose input was
// wrong through no fault of theirs, are rolled back and recompute from
// the majority's output before the next stage is decided. A replica that
// fails or misses the step deadline is replaced by its lane and counted as
// timed out. It implements shard.Body.
type VerifiedChain struct {
	c      *Client
	cfg    VerifyConfig
	maxLen int
	// profiles is each stage's numerics profile: every replica has it.
	profiles map[dht.Span]string
	lanes    []*Chain
	retired  []*Chain   // lanes and checkers given up, for their work
	spot     *spotState // spot checks; nil when every step runs on every lane
	spans    []dht.Span
	report   VerifyReport
	step     int

	mu     sync.Mutex
	claims map[claimKey]*Chain // which lane has a server for a stage
	blamed map[string]bool     // never routed to again in this session
}

// OpenVerified opens r lanes of aligned stages for a session of maxLen
// positions; with cfg.SpotRate set, one lane and the spot checkers.
func (c *Client) OpenVerified(ctx context.Context, maxLen int, cfg VerifyConfig) (*VerifiedChain, error) {
	if cfg.Redundancy < 1 {
		return nil, fmt.Errorf("%w: redundancy %d", ErrChain, cfg.Redundancy)
	}
	if !(cfg.SpotRate >= 0 && cfg.SpotRate <= 1) {
		return nil, fmt.Errorf("%w: spot-check rate %v is not in [0, 1]", ErrChain, cfg.SpotRate)
	}
	if cfg.Reputation == nil {
		cfg.Reputation = consensus.NewMemory(time.Hour)
	}
	if cfg.MaxRepairs <= 0 {
		cfg.MaxRepairs = 4
	}
	lanes := cfg.Redundancy
	if cfg.SpotRate > 0 {
		cfg.Redundancy = max(cfg.Redundancy, 3)
		lanes = 1
	}
	v := &VerifiedChain{c: c, cfg: cfg, maxLen: maxLen, claims: make(map[claimKey]*Chain), blamed: make(map[string]bool),
		report: VerifyReport{Redundancy: cfg.Redundancy, SpotRate: cfg.SpotRate, Blamed: map[string]int{}, TimedOut: map[string]int{}}}
	first, err := c.Open(ctx, maxLen)
	if err != nil {
		return nil, err
	}
	v.lanes = []*Chain{first}
	v.profiles = make(map[dht.Span]string)
	for _, st := range first.stages {
		v.spans = append(v.spans, st.hop.Span)
		v.claims[claimKey{st.hop.Peer, st.hop.Span}] = first
		v.profiles[st.hop.Span] = st.profile
	}
	first.profiles = v.profiles
	first.align, first.claim, first.avoid, first.waitReceipts = v.spans, v.claimFor(first), v.isBlamed, true
	for len(v.lanes) < lanes {
		lane, err := v.openReplica(ctx, first.span)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("replica %d of %d: %w", len(v.lanes)+1, lanes, err)
		}
		v.lanes = append(v.lanes, lane)
	}
	if cfg.SpotRate > 0 {
		v.spot = &spotState{rng: rand.New(rand.NewPCG(cfg.Seed, 0x5b07)), checkers: make([][]*Chain, len(v.spans)),
			escalated: make([]bool, len(v.spans))}
	}
	return v, nil
}

// openReplica opens a chain over span whose stages are aligned with the
// session's and held by servers no other replica uses for them.
func (v *VerifiedChain) openReplica(ctx context.Context, span dht.Span) (*Chain, error) {
	tmp := &Chain{} // stands for the chain until it exists
	ch, err := v.c.open(ctx, v.maxLen, span, v.spans, v.claimFor(tmp), v.isBlamed, v.profiles)
	v.mu.Lock()
	for k, owner := range v.claims {
		if owner == tmp {
			if err != nil {
				delete(v.claims, k)
			} else {
				v.claims[k] = ch
			}
		}
	}
	v.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ch.claim, ch.avoid, ch.waitReceipts = v.claimFor(ch), v.isBlamed, true
	return ch, nil
}

func (v *VerifiedChain) isBlamed(p peer.ID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.blamed[p.String()]
}

// claimFor reserves servers for stages of lane self: a server serves a
// stage in one lane at most, so the replicas of a stage are distinct.
// Claims are never given back: a server leaves a lane only when it failed
// or was blamed, and then it is banned anyway.
func (v *VerifiedChain) claimFor(self *Chain) func(peer.ID, dht.Span) bool {
	return func(p peer.ID, sp dht.Span) bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		k := claimKey{p, sp}
		if owner, ok := v.claims[k]; ok && owner != self {
			return false
		}
		v.claims[k] = self
		return true
	}
}

// Len is the number of positions held.
func (v *VerifiedChain) Len() int { return v.lanes[0].Len() }

// MaxLen is the session's capacity.
func (v *VerifiedChain) MaxLen() int { return v.lanes[0].MaxLen() }

// Report returns what verification saw so far.
func (v *VerifiedChain) Report() VerifyReport { return v.report }

// Lanes returns each replica lane's stages.
func (v *VerifiedChain) Lanes() [][]Hop {
	out := make([][]Hop, len(v.lanes))
	for i, l := range v.lanes {
		out[i] = l.Hops()
	}
	return out
}

// Stats sums the lanes' counters.
func (v *VerifiedChain) Stats() ChainStats {
	var s ChainStats
	for _, l := range v.lanes {
		ls := l.Stats()
		s.Steps = max(s.Steps, ls.Steps)
		s.Positions = max(s.Positions, ls.Positions)
		s.Failovers += ls.Failovers
		s.Migrations += ls.Migrations
		s.ReplayedPositions += ls.ReplayedPositions
		s.Receipts += ls.Receipts
		s.BadReceipts += ls.BadReceipts
		s.Mismatches += ls.Mismatches
		s.BytesSent += ls.BytesSent
	}
	return s
}

// Checkers returns, per stage, the spot checkers' servers (nil without
// spot checks).
func (v *VerifiedChain) Checkers() [][]Hop {
	if v.spot == nil {
		return nil
	}
	out := make([][]Hop, len(v.spot.checkers))
	for k, cs := range v.spot.checkers {
		for _, chk := range cs {
			out[k] = append(out[k], chk.Hops()...)
		}
	}
	return out
}

// Close ends every lane's and checker's sessions.
func (v *VerifiedChain) Close() error {
	var errs []error
	for _, l := range v.lanes {
		errs = append(errs, l.Close())
	}
	if v.spot != nil {
		for _, cs := range v.spot.checkers {
			for _, chk := range cs {
				errs = append(errs, chk.Close())
			}
		}
	}
	return errors.Join(errs...)
}

// Forward runs a step on every lane, votes stage by stage, repairs the
// lanes that disagree with the majority, and writes the majority's output
// into x.
func (v *VerifiedChain) Forward(ctx context.Context, x []float32) error {
	if v.spot != nil {
		return v.forwardSpot(ctx, x)
	}
	errs := make([]error, len(v.lanes))
	var wg sync.WaitGroup
	for i, l := range v.lanes {
		xi := slices.Clone(x)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.Forward(ctx, xi)
		}()
	}
	wg.Wait()
	for _, l := range v.lanes {
		v.collectFailed(l)
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("replica lane %d: %w", i+1, err)
		}
	}
	winner, err := v.vote(ctx)
	if err != nil {
		return err
	}
	out, err := DecodeActivations(v.c.cfg.Encoding, v.lanes[winner].result, len(x))
	if err != nil {
		return err
	}
	copy(x, out)
	v.step++
	return nil
}

// collectFailed reports the servers l replaced after a failure as timed
// out.
func (v *VerifiedChain) collectFailed(l *Chain) {
	now := time.Now()
	for _, p := range l.failed {
		v.report.TimedOut[p.String()]++
		v.cfg.Reputation.Record(p.String(), consensus.EventTimedOut, now)
	}
	l.failed = l.failed[:0]
}

// decide votes on stage k with the lanes' current receipts.
func (v *VerifiedChain) decide(k int) (consensus.Decision, error) {
	expected := make([]string, len(v.lanes))
	var votes []consensus.Vote
	for i, l := range v.lanes {
		st := l.stages[k]
		expected[i] = st.hop.Peer.String()
		if rc := l.receipts[st]; rc != nil {
			votes = append(votes, consensus.Vote{Replica: expected[i], InputHash: rc.InputHash,
				HistoryHash: rc.HistoryHash, OutputHash: rc.OutputHash})
		}
	}
	return consensus.Decide(expected, votes)
}

// outcomeOf is how d judged replica p.
func outcomeOf(d consensus.Decision, p peer.ID) Outcome {
	switch d.Verdicts[p.String()] {
	case consensus.Agreed:
		return Agreed
	case consensus.Faulty:
		return Blamed
	}
	return Unverified
}

// Work summarizes what every server that took part did for the session
// (lanes, spot checkers, and those given up included).
func (v *VerifiedChain) Work() []WorkSummary {
	var out []WorkSummary
	chains := slices.Concat(v.lanes, v.retired)
	if v.spot != nil {
		for _, cs := range v.spot.checkers {
			chains = append(chains, cs...)
		}
	}
	for _, ch := range chains {
		out = append(out, ch.Work()...)
	}
	return out
}

// record reports decision d on stage sp of the current step: reputation
// events (every replica's when first is set, else only the blamed ones'),
// blame, and the disagreement if replicas disagreed. It returns whether
// all of them agreed.
func (v *VerifiedChain) record(sp dht.Span, d consensus.Decision, first bool, now time.Time) bool {
	sv := StageVote{Step: v.step, Span: sp.String(), Votes: d.Votes, Replicas: d.Replicas, Majority: d.Majority,
		Dissenters: d.Dissenters(), Blamed: d.Blamed()}
	if first {
		consensus.Report(v.cfg.Reputation, d, now)
	} else {
		for _, p := range sv.Blamed {
			v.cfg.Reputation.Record(p, consensus.EventDisagreed, now)
		}
	}
	v.mu.Lock()
	for _, p := range sv.Blamed {
		v.report.Blamed[p]++
		v.blamed[p] = true
	}
	v.mu.Unlock()
	if d.Majority && d.Votes == d.Replicas {
		return true
	}
	v.report.Disagreements = append(v.report.Disagreements, sv)
	return false
}

// vote decides the stages of the step just run, first to last, repairing
// the lanes that went wrong at a stage before deciding the next one, and
// returns a lane whose output won.
func (v *VerifiedChain) vote(ctx context.Context) (int, error) {
	now := time.Now()
	unanimous, unverified := true, false
	var last consensus.Decision
	for k, sp := range v.spans {
		for attempt := 0; ; attempt++ {
			d, err := v.decide(k)
			if err != nil {
				return 0, fmt.Errorf("%w: vote on blocks %s: %w", ErrChain, sp, err)
			}
			for _, l := range v.lanes {
				if l.cur != nil {
					l.judge(l.stages[k], l.cur.start, outcomeOf(d, l.stages[k].hop.Peer))
				}
			}
			if !v.record(sp, d, attempt == 0, now) {
				unanimous = false
			}
			last = d
			if !d.Majority {
				unverified = true
				break
			}
			var bad []int
			good := -1
			for i, l := range v.lanes {
				if d.Verdicts[l.stages[k].hop.Peer.String()] == consensus.Agreed {
					if good < 0 {
						good = i
					}
				} else {
					bad = append(bad, i)
				}
			}
			if len(bad) == 0 {
				break
			}
			if good < 0 || attempt >= v.cfg.MaxRepairs {
				return 0, fmt.Errorf("%w: blocks %s still disagree after %d repairs", ErrChain, sp, attempt)
			}
			var drop []int
			for _, i := range bad {
				l := v.lanes[i]
				faulty := d.Verdicts[l.stages[k].hop.Peer.String()] == consensus.Faulty
				err := v.repairLane(ctx, l, v.lanes[good], k, faulty)
				switch {
				case errors.Is(err, ErrNoRoute):
					// Nobody can take the replica's place: go on with
					// fewer replicas, and say so.
					drop = append(drop, i)
				case err != nil:
					return 0, fmt.Errorf("repair replica lane %d: %w", i+1, err)
				default:
					v.report.Repairs++
				}
			}
			for j := len(drop) - 1; j >= 0; j-- {
				_ = v.lanes[drop[j]].Close()
				v.retired = append(v.retired, v.lanes[drop[j]])
				v.lanes = slices.Delete(v.lanes, drop[j], drop[j]+1)
				v.report.DroppedLanes++
			}
		}
	}
	v.report.Steps++
	switch {
	case unverified:
		v.report.Unverified++
	case unanimous:
		v.report.Unanimous++
	default:
		v.report.ByMajority++
	}
	if last.Majority {
		k := len(v.spans) - 1
		for i, l := range v.lanes {
			if rc := l.receipts[l.stages[k]]; rc != nil && rc.OutputHash == last.Output {
				return i, nil
			}
		}
	}
	return 0, nil
}

// repairLane makes lane recompute the step just run from stage k on with
// the input good (a lane that agreed with the majority at k) gave stage k:
// the replica at k is replaced if faulty, else rolled back; the replicas
// after it are rolled back. Receipts of the stages before k are kept.
func (v *VerifiedChain) repairLane(ctx context.Context, lane, good *Chain, k int, faulty bool) error {
	step := lane.last
	if step == nil {
		return errors.New("no step to repair")
	}
	a := v.spans[k].Start
	gh, lh := good.hist[a], lane.hist[a]
	if gh == nil || lh == nil {
		return fmt.Errorf("no inputs kept at block %d", a)
	}
	in := gh.get(step.start, step.count)
	if in == nil || !lh.set(step.start, in) {
		return fmt.Errorf("the majority's input at block %d is not kept", a)
	}
	// Forget what the lane computed for the step from stage k on.
	lane.n, lane.seq = step.start, lane.seq-1
	lane.cur, lane.result = step, nil
	for _, st := range lane.stages[k:] {
		delete(lane.receipts, st)
	}
	clear(lane.direct)
	for b, h := range lane.hist {
		if b > a {
			h.truncate(step.start)
		}
	}
	for j := len(lane.stages) - 1; j > k; j-- {
		if err := lane.rollbackStage(lane.stages[j], step.start); err != nil {
			lane.events <- event{st: lane.stages[j], err: err}
		}
	}
	if faulty {
		if err := lane.replace(ctx, lane.stages[k], nil); err != nil {
			return err
		}
		// Blamed, not timed out.
		lane.failed = lane.failed[:len(lane.failed)-1]
	} else if err := lane.rollbackStage(lane.stages[k], step.start); err != nil {
		lane.events <- event{st: lane.stages[k], err: err}
	} else if err := lane.send(lane.stages[k], lane.step(&stepBytes{start: step.start, count: step.count, data: in})); err != nil {
		lane.events <- event{st: lane.stages[k], err: err}
	}
	if err := lane.wait(ctx); err != nil {
		lane.broken = fmt.Errorf("%w: %w", ErrChain, err)
		return lane.broken
	}
	lane.last = step
	lane.n += step.count
	lane.seq++
	return nil
}

// rollbackStage asks st to forget positions n and later.
func (ch *Chain) rollbackStage(st *stage, n int) error {
	_ = st.ctl.SetWriteDeadline(time.Now().Add(ch.c.cfg.StepTimeout))
	if err := WriteFrame(st.ctl, &Rollback{SessionID: ch.id, Len: n}, ch.c.cfg.MaxActivationBytes); err != nil {
		return err
	}
	select {
	case r := <-st.acks:
		if r.Len != n {
			return fmt.Errorf("rolled back to %d, not %d", r.Len, n)
		}
		return nil
	case <-st.gone:
		return errors.New("stage gone")
	case <-time.After(ch.c.cfg.StepTimeout):
		return errors.New("no answer to rollback")
	}
}
