package relay

import (
	"fmt"
	"math"
	"slices"

	"github.com/stratanet/strata/dht"
)

// Coverage is the swarm's throughput per block: for each block, the sum
// of the decode throughputs (tokens/s) of the servers holding it. A token
// crosses every block, so the swarm's throughput is bounded by its least
// covered block.
func Coverage(blocks int, cands []Candidate) []float64 {
	cov := make([]float64, blocks)
	for _, c := range cands {
		if !validThroughput(c.Throughput) {
			continue
		}
		for b := max(c.Span.Start, 0); b < min(c.Span.End, blocks); b++ {
			cov[b] += c.Throughput
		}
	}
	return cov
}

// ChooseSpan picks where a server of n blocks helps most (Petals' rule):
// of all windows of n consecutive blocks, the one whose coverage, sorted
// ascending, is lexicographically smallest — the window over the least
// served blocks, ties going to the earliest. Filling the weakest blocks
// first raises the swarm's minimum per-block throughput fastest.
func ChooseSpan(coverage []float64, n int) (dht.Span, error) {
	blocks := len(coverage)
	if n <= 0 || n > blocks {
		return dht.Span{}, fmt.Errorf("relay: a span of %d blocks in a model of %d", n, blocks)
	}
	best, bestKey := 0, []float64(nil)
	for a := 0; a+n <= blocks; a++ {
		key := slices.Clone(coverage[a : a+n])
		slices.Sort(key)
		if bestKey == nil || slices.Compare(key, bestKey) < 0 {
			best, bestKey = a, key
		}
	}
	return dht.Span{Start: best, End: best + n}, nil
}

// MinCoverage is the least covered block's throughput.
func MinCoverage(coverage []float64) float64 {
	if len(coverage) == 0 {
		return 0
	}
	return slices.Min(coverage)
}

// Rebalance says whether a server of throughput own now serving current
// should move, given the swarm's coverage (its own contribution included):
// it takes itself out, picks the best span as a newcomer would, and moves
// only if that raises the swarm's minimum per-block throughput by more
// than the factor 1+threshold (Petals' balance quality), so that servers
// do not chase small gains.
func Rebalance(coverage []float64, current dht.Span, own, threshold float64) (dht.Span, bool) {
	without := slices.Clone(coverage)
	for b := max(current.Start, 0); b < min(current.End, len(without)); b++ {
		without[b] = math.Max(without[b]-own, 0)
	}
	next, err := ChooseSpan(without, current.Len())
	if err != nil || next == current {
		return current, false
	}
	stay, move := slices.Clone(without), slices.Clone(without)
	for b := current.Start; b < current.End; b++ {
		stay[b] += own
	}
	for b := next.Start; b < next.End; b++ {
		move[b] += own
	}
	before, after := MinCoverage(stay), MinCoverage(move)
	if after > before*(1+threshold) {
		return next, true
	}
	return current, false
}
