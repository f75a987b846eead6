package consensus

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// refDecide is a deliberately naive restatement of Decide's rules: quadratic
// counting over the vote slice, no maps for tallies. ok is false where Decide
// must return an error.
func refDecide(expected []string, votes []Vote) (d Decision, dissent []string, ok bool) {
	r := len(expected)
	if r == 0 {
		return Decision{}, nil, false
	}
	for i, id := range expected {
		if id == "" || slices.Contains(expected[:i], id) {
			return Decision{}, nil, false
		}
	}
	for i, v := range votes {
		if !slices.Contains(expected, v.Replica) {
			return Decision{}, nil, false
		}
		for _, w := range votes[:i] {
			if w.Replica == v.Replica {
				return Decision{}, nil, false
			}
		}
	}

	sameOutput := func(i int) int {
		n := 0
		for _, w := range votes {
			if w.OutputHash == votes[i].OutputHash {
				n++
			}
		}
		return n
	}
	d = Decision{Replicas: r, Verdicts: map[string]Verdict{}}
	for _, id := range expected {
		d.Verdicts[id] = Missing
	}
	for i := range votes {
		if n := sameOutput(i); n*2 > r {
			d.Majority, d.Output, d.Votes = true, votes[i].OutputHash, n
		}
	}

	if !d.Majority {
		most := 0
		for i := range votes {
			d.Verdicts[votes[i].Replica] = NoMajority
			most = max(most, sameOutput(i))
		}
		// The largest group is unique iff every voter in a group of size
		// `most` has the same output.
		unique := true
		var first *Vote
		for i := range votes {
			if sameOutput(i) == most {
				if first == nil {
					first = &votes[i]
				} else if first.OutputHash != votes[i].OutputHash {
					unique = false
				}
			}
		}
		for i := range votes {
			if !unique || votes[i].OutputHash != first.OutputHash {
				dissent = append(dissent, votes[i].Replica)
			}
		}
		slices.Sort(dissent)
		return d, dissent, true
	}

	samePairAmongWinners := func(v Vote) int {
		n := 0
		for _, w := range votes {
			if w.OutputHash == d.Output && w.InputHash == v.InputHash && w.HistoryHash == v.HistoryHash {
				n++
			}
		}
		return n
	}
	most := 0
	for _, v := range votes {
		if v.OutputHash == d.Output {
			most = max(most, samePairAmongWinners(v))
		}
	}
	var ref *Vote
	d.Reference = true
	for i, v := range votes {
		if v.OutputHash != d.Output || samePairAmongWinners(v) != most {
			continue
		}
		if ref == nil {
			ref = &votes[i]
		} else if ref.InputHash != v.InputHash || ref.HistoryHash != v.HistoryHash {
			d.Reference = false
		}
	}
	if d.Reference {
		d.InputHash, d.HistoryHash = ref.InputHash, ref.HistoryHash
	}
	for _, v := range votes {
		matches := d.Reference && v.InputHash == ref.InputHash && v.HistoryHash == ref.HistoryHash
		won := v.OutputHash == d.Output
		var got Verdict
		if won {
			got = Inconsistent
			if matches {
				got = Agreed
			}
		} else {
			got = Poisoned
			if matches {
				got = Faulty
			}
		}
		d.Verdicts[v.Replica] = got
		if !won {
			dissent = append(dissent, v.Replica)
		}
	}
	slices.Sort(dissent)
	return d, dissent, true
}

// checkInvariants reports violations of properties every decision must have.
func checkInvariants(t *testing.T, expected []string, votes []Vote, d Decision) {
	t.Helper()
	r := len(expected)
	byID := map[string]Vote{}
	for _, v := range votes {
		byID[v.Replica] = v
	}
	if d.Replicas != r || len(d.Verdicts) != r {
		t.Errorf("Replicas = %d, %d verdicts, want %d", d.Replicas, len(d.Verdicts), r)
	}
	for _, id := range expected {
		v, voted := byID[id]
		got, ok := d.Verdicts[id]
		switch {
		case !ok:
			t.Errorf("no verdict for expected replica %q", id)
		case !voted && got != Missing:
			t.Errorf("replica %q did not vote but is %v", id, got)
		case voted && got == Missing:
			t.Errorf("replica %q voted but is Missing", id)
		case !d.Majority && voted && got != NoMajority:
			t.Errorf("no majority but replica %q is %v", id, got)
		case got == Agreed && (v.OutputHash != d.Output || v.InputHash != d.InputHash || v.HistoryHash != d.HistoryHash):
			t.Errorf("Agreed replica %q voted %v, winner %v", id, v, d)
		case got == Faulty && (v.OutputHash == d.Output || !d.Reference || v.InputHash != d.InputHash || v.HistoryHash != d.HistoryHash):
			t.Errorf("Faulty replica %q voted %v, winner %v", id, v, d)
		case got == Poisoned && v.OutputHash == d.Output:
			t.Errorf("Poisoned replica %q voted the winning output", id)
		case got == Inconsistent && v.OutputHash != d.Output:
			t.Errorf("Inconsistent replica %q did not vote the winning output", id)
		}
	}
	if d.Majority {
		n := 0
		for _, v := range votes {
			if v.OutputHash == d.Output {
				n++
			}
		}
		if n != d.Votes || 2*d.Votes <= r {
			t.Errorf("Votes = %d, counted %d, r = %d", d.Votes, n, r)
		}
	} else if d.Votes != 0 || d.Output != [32]byte{} || d.Reference {
		t.Errorf("no majority but decision %+v", d)
	}
	blamed, dissent := d.Blamed(), d.Dissenters()
	if !d.Majority && len(blamed) > 0 {
		t.Errorf("no majority but blamed %v", blamed)
	}
	for _, id := range blamed {
		if !slices.Contains(dissent, id) {
			t.Errorf("blamed %q is not a dissenter %v", id, dissent)
		}
	}
	for _, id := range dissent {
		if _, voted := byID[id]; !voted {
			t.Errorf("dissenter %q did not vote", id)
		}
	}
	if !slices.IsSorted(blamed) || !slices.IsSorted(dissent) {
		t.Errorf("unsorted Blamed %v or Dissenters %v", blamed, dissent)
	}
}

// sameDecision reports whether a and b have equal exported fields; it is a
// fast stand-in for cmp.Equal in loops of thousands of cases.
func sameDecision(a, b Decision) bool {
	return a.Output == b.Output && a.Majority == b.Majority && a.Votes == b.Votes &&
		a.Replicas == b.Replicas && a.Reference == b.Reference && a.InputHash == b.InputHash &&
		a.HistoryHash == b.HistoryHash && maps.Equal(a.Verdicts, b.Verdicts)
}

// compareWithRef checks Decide against refDecide and the invariants.
func compareWithRef(t *testing.T, expected []string, votes []Vote) (Decision, error) {
	t.Helper()
	got, err := Decide(expected, votes)
	want, wantDissent, ok := refDecide(expected, votes)
	if !ok {
		if !errors.Is(err, ErrVote) && !errors.Is(err, ErrReplicas) {
			t.Fatalf("Decide(%v, %v) error = %v, want ErrVote or ErrReplicas", expected, votes, err)
		}
		return got, err
	}
	if err != nil {
		t.Fatalf("Decide(%v, %v) error = %v, want none", expected, votes, err)
	}
	if !sameDecision(want, got) {
		diff := cmp.Diff(want, got, ignoreUnexported)
		t.Fatalf("Decide(%v, %v) differs from reference (-ref +got):\n%s", expected, votes, diff)
	}
	if ds := got.Dissenters(); !slices.Equal(ds, wantDissent) {
		t.Fatalf("Decide(%v, %v).Dissenters() = %v, reference %v", expected, votes, ds, wantDissent)
	}
	checkInvariants(t, expected, votes, got)
	return got, nil
}

// randomCase draws r in 1..7 replicas whose hashes come from tiny alphabets,
// so that ties, splits and collisions are common. About one case in ten is
// invalid (duplicate, unexpected or empty-id vote).
func randomCase(rng *rand.Rand) (expected []string, votes []Vote) {
	r := 1 + rng.IntN(7)
	for i := range r {
		id := fmt.Sprintf("p%d", i)
		expected = append(expected, id)
		if rng.IntN(6) == 0 {
			continue // timed out
		}
		votes = append(votes, vote(id, byte(rng.IntN(2)), byte(rng.IntN(2)), byte(rng.IntN(3))))
	}
	switch rng.IntN(30) {
	case 0:
		votes = append(votes, vote("intruder", 0, 0, 0))
	case 1:
		if len(votes) > 0 {
			v := votes[rng.IntN(len(votes))]
			v.OutputHash = h(byte(rng.IntN(3)))
			votes = append(votes, v)
		}
	case 2:
		expected = append(expected, expected[rng.IntN(r)])
	}
	rng.Shuffle(len(votes), func(i, j int) { votes[i], votes[j] = votes[j], votes[i] })
	return expected, votes
}

func TestDecideMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for range 20000 {
		expected, votes := randomCase(rng)
		d, err := compareWithRef(t, expected, votes)
		switch {
		case err != nil:
			counts["error"]++
		case !d.Majority:
			counts["no majority"]++
		case !d.Reference:
			counts["no reference"]++
		default:
			counts["decided"]++
			if len(d.Blamed()) > 0 {
				counts["blamed"]++
			}
		}
		if err != nil {
			continue
		}
		// Order independence: shuffled votes and expected give the same
		// decision.
		for range 3 {
			e2, v2 := slices.Clone(expected), slices.Clone(votes)
			rng.Shuffle(len(e2), func(i, j int) { e2[i], e2[j] = e2[j], e2[i] })
			rng.Shuffle(len(v2), func(i, j int) { v2[i], v2[j] = v2[j], v2[i] })
			d2, err := Decide(e2, v2)
			if err != nil {
				t.Fatalf("Decide(%v, %v) error %v after shuffling", e2, v2, err)
			}
			if !sameDecision(d, d2) || !slices.Equal(d.Dissenters(), d2.Dissenters()) {
				t.Fatalf("Decide depends on order:\n%v %v\n%v %v\n%s", expected, votes, e2, v2, cmp.Diff(d, d2, ignoreUnexported))
			}
		}
	}
	// Guard against a generator that stops exercising a branch.
	for _, k := range []string{"error", "no majority", "no reference", "decided", "blamed"} {
		if counts[k] < 100 {
			t.Errorf("only %d random cases with %s: %v", counts[k], k, counts)
		}
	}
}

// FuzzDecide builds a stage from bytes: the first byte picks r in 1..7, each
// next byte one replica (low two bits zero: timed out; then one bit of input,
// one of history, two of output), and a last byte optionally adds an invalid
// vote or a duplicate expected id, and rotates the votes.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{2, 0x01, 0x01, 0x01})
	f.Add([]byte{4, 0x01, 0x11, 0x21, 0x31, 0x01})
	f.Add([]byte{3, 0x05, 0x11, 0x09, 0x00})
	f.Add([]byte{6, 0x01, 0x01, 0x05, 0x05, 0x11, 0x00, 0x07})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			if _, err := Decide(nil, nil); !errors.Is(err, ErrReplicas) {
				t.Fatalf("Decide(nil, nil) error = %v, want ErrReplicas", err)
			}
			return
		}
		r := 1 + int(data[0]%7)
		data = data[1:]
		var expected []string
		var votes []Vote
		for i := range r {
			id := fmt.Sprintf("p%d", i)
			expected = append(expected, id)
			if i >= len(data) || data[i]&3 == 0 {
				continue
			}
			b := data[i]
			votes = append(votes, vote(id, b>>2&1, b>>3&1, b>>4&3))
		}
		if len(data) > r {
			b := data[r]
			switch b & 3 {
			case 1:
				votes = append(votes, vote("intruder", 0, 0, 0))
			case 2:
				if len(votes) > 0 {
					votes = append(votes, votes[0])
				}
			case 3:
				if b&4 != 0 {
					expected = append(expected, "p0")
				}
			}
			if len(votes) > 0 {
				k := int(b>>3) % len(votes)
				votes = append(votes[k:], votes[:k]...)
			}
		}
		compareWithRef(t, expected, votes)
	})
}
