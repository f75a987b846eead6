package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/stratanet/strata/consensus"
)

// spotState is what spot checking keeps between steps.
//
// A checker is a one-stage chain on a server that holds exactly that
// stage's blocks and that no other replica uses for them. The client feeds
// it directly with the inputs the session's chain gave the stage, so a
// checker is never poisoned by another replica's lie. It runs only on the
// steps that are checked: on such a step it first catches up on the
// positions it missed, as one batch (prefill-shaped work, much cheaper per
// position than the decode steps it skipped), then runs the step itself.
// Its history hash is per position, so the catch-up leaves it with the
// same history as the chain's replica.
type spotState struct {
	rng       *rand.Rand
	checkers  [][]*Chain // per stage
	escalated []bool     // per stage: checked on every step by Redundancy replicas
	// the current step's outcome so far
	unanimous, unverified bool
}

// forwardSpot runs a step on the session's chain and, when the step is
// checked, on the checkers of every stage (escalated stages are checked
// on every step).
func (v *VerifiedChain) forwardSpot(ctx context.Context, x []float32) error {
	p := v.lanes[0]
	d := v.c.cfg.Dim
	if len(x) == 0 || len(x)%d != 0 {
		return fmt.Errorf("%w: %d hidden floats is not a positive multiple of %d", ErrChain, len(x), d)
	}
	in, err := EncodeActivations(v.c.cfg.Encoding, x)
	if err != nil {
		return err
	}
	_, err = p.forwardBytes(ctx, in, len(x)/d)
	v.collectFailed(p)
	if err != nil {
		return err
	}
	all := v.spot.rng.Float64() < v.cfg.SpotRate
	var stages []int
	for k := range v.spans {
		if all || v.spot.escalated[k] {
			stages = append(stages, k)
		}
	}
	if len(stages) > 0 {
		if err := v.spotCheck(ctx, stages); err != nil {
			return err
		}
	}
	switch {
	case len(stages) < len(v.spans):
		v.report.Unchecked++
	case v.spot.unverified:
		v.report.Unverified++
	case v.spot.unanimous:
		v.report.Unanimous++
	default:
		v.report.ByMajority++
	}
	v.report.Steps++
	v.step++
	out, err := DecodeActivations(v.c.cfg.Encoding, p.result, len(x))
	if err != nil {
		return err
	}
	copy(x, out)
	return nil
}

// spotCheck checks the given stages of the step the chain just ran: it
// runs their checkers in parallel, then decides stage by stage, first to
// last. A stage whose replicas disagree is escalated: checkers are added up
// to Redundancy replicas and the stage decided again. A blamed replica of
// the chain is replaced (and the stages after it recompute); a checker that
// disagrees with the majority is dropped, and banned if blamed.
func (v *VerifiedChain) spotCheck(ctx context.Context, stages []int) error {
	v.spot.unanimous, v.spot.unverified = true, false
	var wg sync.WaitGroup
	for _, k := range stages {
		v.topUp(ctx, k)
		for _, chk := range v.spot.checkers[k] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = v.runChecker(ctx, chk, k) // a failed checker has no receipt; dropped below
			}()
		}
	}
	wg.Wait()
	now := time.Now()
	p := v.lanes[0]
	for _, k := range stages {
		sp := v.spans[k]
		for attempt := 0; ; attempt++ {
			// Checkers that failed, or ran on an input the chain has since
			// recomputed, run (again) now.
			pr := p.receipts[p.stages[k]]
			if pr == nil {
				return fmt.Errorf("%w: no receipt from blocks %s", ErrChain, sp)
			}
			for _, chk := range v.spot.checkers[k] {
				if rc := chk.receipts[chk.stages[0]]; chk.broken == nil && (rc == nil || rc.InputHash != pr.InputHash) {
					_ = v.runChecker(ctx, chk, k)
				}
			}
			v.dropBroken(k)
			expected := []string{p.stages[k].hop.Peer.String()}
			votes := []consensus.Vote{voteOf(pr)}
			for _, chk := range v.spot.checkers[k] {
				expected = append(expected, chk.stages[0].hop.Peer.String())
				if rc := chk.receipts[chk.stages[0]]; rc != nil {
					votes = append(votes, voteOf(rc))
				}
			}
			if len(expected) == 1 {
				// Nobody could check this stage.
				v.report.Short++
				v.spot.unverified = true
				break
			}
			d, err := consensus.Decide(expected, votes)
			if err != nil {
				return fmt.Errorf("%w: vote on blocks %s: %w", ErrChain, sp, err)
			}
			if st := p.last; st != nil {
				p.judge(p.stages[k], st.start, outcomeOf(d, p.stages[k].hop.Peer))
				for _, chk := range v.spot.checkers[k] {
					chk.judge(chk.stages[0], st.start, outcomeOf(d, chk.stages[0].hop.Peer))
				}
			}
			if v.record(sp, d, attempt == 0, now) {
				break
			}
			v.spot.unanimous = false
			if attempt >= v.cfg.MaxRepairs {
				return fmt.Errorf("%w: blocks %s still disagree after %d repairs", ErrChain, sp, attempt)
			}
			if !v.spot.escalated[k] {
				v.spot.escalated[k] = true
				v.report.Escalated = append(v.report.Escalated, sp.String())
			}
			if !d.Majority {
				if len(expected) >= v.cfg.Redundancy {
					v.spot.unverified = true
					break
				}
				if before := len(v.spot.checkers[k]); !v.topUp(ctx, k) && len(v.spot.checkers[k]) == before {
					v.report.Short++
					v.spot.unverified = true
					break
				}
				continue // the new checkers run at the top of the loop
			}
			// A majority: the replicas outside it go.
			if verdict := d.Verdicts[expected[0]]; verdict != consensus.Agreed {
				if verdict != consensus.Faulty {
					// The chain's own replica cannot be poisoned relative
					// to checkers fed with its inputs; if it is, nothing
					// here can repair it.
					v.spot.unverified = true
					break
				}
				if err := v.repairLane(ctx, p, p, k, true); err != nil {
					return fmt.Errorf("repair blocks %s: %w", sp, err)
				}
				v.report.Repairs++
			}
			v.spot.checkers[k] = slices.DeleteFunc(v.spot.checkers[k], func(chk *Chain) bool {
				peer := chk.stages[0].hop.Peer
				switch d.Verdicts[peer.String()] {
				case consensus.Agreed:
					return false
				case consensus.Faulty:
					v.c.cfg.Bans.Fail(peer, now)
				}
				_ = chk.Close()
				v.retired = append(v.retired, chk)
				return true
			})
			v.topUp(ctx, k)
		}
	}
	return nil
}

// topUp opens checkers for stage k until it has one (Redundancy-1 once
// escalated), and reports whether it has them all.
func (v *VerifiedChain) topUp(ctx context.Context, k int) bool {
	want := 1
	if v.spot.escalated[k] {
		want = v.cfg.Redundancy - 1
	}
	for len(v.spot.checkers[k]) < want {
		chk, err := v.openReplica(ctx, v.spans[k])
		if err != nil {
			v.c.cfg.Logger.Info("relay: no checker", "span", v.spans[k], "err", err)
			return false
		}
		v.spot.checkers[k] = append(v.spot.checkers[k], chk)
	}
	return true
}

// dropBroken closes and forgets stage k's checkers that failed for good.
func (v *VerifiedChain) dropBroken(k int) {
	v.spot.checkers[k] = slices.DeleteFunc(v.spot.checkers[k], func(chk *Chain) bool {
		v.collectFailed(chk)
		if chk.broken != nil {
			_ = chk.Close()
			v.retired = append(v.retired, chk)
			return true
		}
		return false
	})
}

// runChecker brings checker chk of stage k to the chain's current step:
// rewound to the step's start if it ran the step already (on an input the
// chain has since recomputed), caught up on the positions it missed, then
// run on the step with the chain's input to stage k.
func (v *VerifiedChain) runChecker(ctx context.Context, chk *Chain, k int) error {
	p := v.lanes[0]
	step := p.last
	ph := p.hist[v.spans[k].Start]
	if step == nil || ph == nil {
		return chk.fail(errors.New("the chain kept no inputs to check"))
	}
	in := ph.get(step.start, step.count)
	if in == nil {
		return chk.fail(fmt.Errorf("the chain's input at block %d is not kept", v.spans[k].Start))
	}
	if chk.n > step.start {
		if err := chk.rewind(step.start); err != nil {
			return chk.fail(err)
		}
	}
	c := v.c
	for _, s := range ph.chunks(chk.n, step.start, c.bytesPerPos(), c.cfg.MaxActivationBytes) {
		if _, err := chk.forwardBytes(ctx, s.data, s.count); err != nil {
			return err
		}
	}
	_, err := chk.forwardBytes(ctx, in, step.count)
	return err
}

// fail marks the chain broken with err.
func (ch *Chain) fail(err error) error {
	if ch.broken == nil {
		ch.broken = fmt.Errorf("%w: %w", ErrChain, err)
	}
	return ch.broken
}

// rewind makes every stage forget positions n and later; n must be the
// start of a step the chain ran.
func (ch *Chain) rewind(n int) error {
	for j := len(ch.stages) - 1; j >= 0; j-- {
		if err := ch.rollbackStage(ch.stages[j], n); err != nil {
			return fmt.Errorf("roll %s back: %w", ch.stages[j].hop.Peer, err)
		}
	}
	for _, h := range ch.hist {
		h.truncate(n)
	}
	ch.n, ch.cur, ch.last, ch.result = n, nil, nil, nil
	clear(ch.receipts)
	return nil
}

func voteOf(rc *Receipt) consensus.Vote {
	return consensus.Vote{Replica: rc.PeerID, InputHash: rc.InputHash, HistoryHash: rc.HistoryHash, OutputHash: rc.OutputHash}
}
