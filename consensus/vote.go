package consensus

import (
	"errors"
	"fmt"
	"slices"
)

// ErrVote is returned by [Decide] when a vote comes from a replica that is
// not in the expected set, or when one replica voted more than once. The
// returned error wraps ErrVote and names the replica.
var ErrVote = errors.New("consensus: invalid vote")

// ErrReplicas is returned by [Decide] when the expected set of replicas is
// empty, contains an empty id, or lists a replica more than once. The
// returned error wraps ErrReplicas.
var ErrReplicas = errors.New("consensus: invalid replica set")

// Vote is what one replica attested for one step, taken from its signed
// receipt.
type Vote struct {
	Replica     string   // peer id
	InputHash   [32]byte // BLAKE3 of the step's input
	HistoryHash [32]byte // running hash of every input the replica's session consumed (its KV cache's history)
	OutputHash  [32]byte // BLAKE3 of the step's output
}

// pair is the (input, history) a replica claims to have computed from.
type pair struct {
	input, history [32]byte
}

func (v Vote) pair() pair { return pair{v.InputHash, v.HistoryHash} }

// Verdict is what [Decide] concludes about one replica.
type Verdict int

const (
	// Agreed: the replica produced the winning output from the reference
	// (input, history) pair.
	Agreed Verdict = iota + 1
	// Faulty: the replica computed from the reference pair but produced a
	// different output. It is blamed.
	Faulty
	// Poisoned: the replica produced a different output and its input or
	// history differs from the reference pair (or there is no reference
	// pair). Its state was built on bad data; the repair is to roll it back
	// and replay, or to drop it and re-route. It is never blamed.
	Poisoned
	// Inconsistent: the replica produced the winning output but claims an
	// input or history different from the reference pair (or there is no
	// reference pair). Suspicious, but not blamed.
	Inconsistent
	// Missing: the replica was expected but did not vote (it timed out).
	Missing
	// NoMajority: the replica voted, but no output won a strict majority,
	// so nothing can be concluded about it.
	NoMajority
)

var verdictNames = [...]string{
	Agreed:       "Agreed",
	Faulty:       "Faulty",
	Poisoned:     "Poisoned",
	Inconsistent: "Inconsistent",
	Missing:      "Missing",
	NoMajority:   "NoMajority",
}

// String returns the verdict's name, or "Verdict(n)" for an unknown value.
func (v Verdict) String() string {
	if v > 0 && int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Decision is the outcome of one step's vote.
type Decision struct {
	// Output is the winning output hash; zero when !Majority.
	Output [32]byte
	// Majority reports whether some output got strictly more than half of
	// Replicas votes.
	Majority bool
	// Votes is the number of votes for Output; zero when !Majority.
	Votes int
	// Replicas is r, the number of replicas expected, including missing ones.
	Replicas int
	// Reference reports whether the voters for Output agree on a single most
	// common (input, history) pair. False when !Majority, or when two or
	// more pairs tie among the voters for Output.
	Reference bool
	// InputHash and HistoryHash are the reference pair when Reference, and
	// zero otherwise. A poisoned replica is repaired towards them.
	InputHash, HistoryHash [32]byte
	// Verdicts holds one verdict for every expected replica.
	Verdicts map[string]Verdict

	// dissent holds, when !Majority, the voters outside the largest output
	// group (every voter when the largest groups tie), sorted.
	dissent []string
}

// Blamed returns the sorted ids of the replicas judged [Faulty].
func (d Decision) Blamed() []string {
	return d.with(Faulty)
}

// Dissenters returns the sorted ids of the replicas whose output differs from
// the winning one ([Faulty] and [Poisoned]). Without a majority it returns
// the voters that did not vote with the largest group of equal outputs, or
// every voter when two or more groups tie for largest. Missing replicas are
// never dissenters.
//
// When a colluding majority wins, the honest minority shows up here: a
// majority vote cannot tell the two cases apart, but callers can audit
// dissenters.
func (d Decision) Dissenters() []string {
	if !d.Majority {
		return slices.Clone(d.dissent)
	}
	return d.with(Faulty, Poisoned)
}

// with returns the sorted ids whose verdict is one of vs.
func (d Decision) with(vs ...Verdict) []string {
	var ids []string
	for id, v := range d.Verdicts {
		if slices.Contains(vs, v) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Decide tallies the votes of one step of one stage. expected lists every
// replica that should have voted, so r = len(expected); votes may lack some of
// them (they are [Missing]), in any order: the result does not depend on the
// order of either argument.
//
// It returns an error wrapping [ErrReplicas] when expected is empty, holds an
// empty id or a duplicate, and one wrapping [ErrVote] when a vote comes from
// a replica outside expected or a replica voted twice. The package
// documentation gives the rules.
func Decide(expected []string, votes []Vote) (Decision, error) {
	r := len(expected)
	if r == 0 {
		return Decision{}, fmt.Errorf("%w: no replicas expected", ErrReplicas)
	}
	verdicts := make(map[string]Verdict, r)
	for _, id := range expected {
		if id == "" {
			return Decision{}, fmt.Errorf("%w: empty replica id", ErrReplicas)
		}
		if _, dup := verdicts[id]; dup {
			return Decision{}, fmt.Errorf("%w: replica %q listed twice", ErrReplicas, id)
		}
		verdicts[id] = Missing
	}
	voted := make(map[string]bool, len(votes))
	outputs := make(map[[32]byte]int)
	for _, v := range votes {
		if _, ok := verdicts[v.Replica]; !ok {
			return Decision{}, fmt.Errorf("%w: replica %q is not expected", ErrVote, v.Replica)
		}
		if voted[v.Replica] {
			return Decision{}, fmt.Errorf("%w: replica %q voted twice", ErrVote, v.Replica)
		}
		voted[v.Replica] = true
		outputs[v.OutputHash]++
	}

	d := Decision{Replicas: r, Verdicts: verdicts}
	for out, n := range outputs {
		if 2*n > r { // at most one output can pass
			d.Output, d.Votes, d.Majority = out, n, true
		}
	}
	if !d.Majority {
		for _, v := range votes {
			verdicts[v.Replica] = NoMajority
		}
		d.dissent = outsideLargest(votes, outputs)
		return d, nil
	}

	pairs := make(map[pair]int)
	for _, v := range votes {
		if v.OutputHash == d.Output {
			pairs[v.pair()]++
		}
	}
	var ref pair
	best, tied := 0, false
	for p, n := range pairs {
		switch {
		case n > best:
			ref, best, tied = p, n, false
		case n == best:
			tied = true
		}
	}
	d.Reference = !tied
	if d.Reference {
		d.InputHash, d.HistoryHash = ref.input, ref.history
	}

	for _, v := range votes {
		sameOut := v.OutputHash == d.Output
		samePair := d.Reference && v.pair() == ref
		switch {
		case sameOut && samePair:
			verdicts[v.Replica] = Agreed
		case sameOut:
			verdicts[v.Replica] = Inconsistent
		case samePair:
			verdicts[v.Replica] = Faulty
		default:
			verdicts[v.Replica] = Poisoned
		}
	}
	return d, nil
}

// outsideLargest returns the sorted ids of the voters whose output is not the
// single most common one, or of every voter when several outputs tie for most
// common.
func outsideLargest(votes []Vote, outputs map[[32]byte]int) []string {
	var largest [32]byte
	best, tied := 0, false
	for out, n := range outputs {
		switch {
		case n > best:
			largest, best, tied = out, n, false
		case n == best:
			tied = true
		}
	}
	var ids []string
	for _, v := range votes {
		if tied || v.OutputHash != largest {
			ids = append(ids, v.Replica)
		}
	}
	slices.Sort(ids)
	return ids
}
