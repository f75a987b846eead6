package consensus

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// h returns a hash whose first byte is b: distinct bytes give distinct hashes.
func h(b byte) [32]byte { return [32]byte{b} }

// vote builds a vote from single-byte hashes.
func vote(id string, in, hist, out byte) Vote {
	return Vote{Replica: id, InputHash: h(in), HistoryHash: h(hist), OutputHash: h(out)}
}

var ignoreUnexported = cmpopts.IgnoreUnexported(Decision{})

func TestDecide(t *testing.T) {
	abc := []string{"a", "b", "c"}
	abcde := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name      string
		expected  []string
		votes     []Vote
		want      Decision
		blamed    []string
		dissenter []string
	}{
		{
			name:     "unanimous",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 9), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 3, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Agreed, "c": Agreed}},
		},
		{
			name:     "single replica",
			expected: []string{"a"},
			votes:    []Vote{vote("a", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 1, Replicas: 1,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed}},
		},
		{
			name:     "r=3 one liar",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 2, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Faulty, "c": Agreed}},
			blamed:    []string{"b"},
			dissenter: []string{"b"},
		},
		{
			name:     "r=5 two liars different outputs",
			expected: abcde,
			votes: []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 7), vote("c", 1, 2, 9),
				vote("d", 1, 2, 8), vote("e", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 3, Replicas: 5,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Faulty, "c": Agreed, "d": Faulty, "e": Agreed}},
			blamed:    []string{"b", "d"},
			dissenter: []string{"b", "d"},
		},
		{
			name:     "r=5 two liars same output",
			expected: abcde,
			votes: []Vote{vote("e", 1, 2, 9), vote("d", 1, 2, 8), vote("c", 1, 2, 9),
				vote("b", 1, 2, 8), vote("a", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 3, Replicas: 5,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Faulty, "c": Agreed, "d": Faulty, "e": Agreed}},
			blamed:    []string{"b", "d"},
			dissenter: []string{"b", "d"},
		},
		{
			// A majority cannot catch collusion: the two colluders win and
			// the honest replica is blamed. Dissenters exposes it for audit.
			name:     "r=3 two colluding",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 6), vote("c", 1, 2, 6)},
			want: Decision{Output: h(6), Majority: true, Votes: 2, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Faulty, "b": Agreed, "c": Agreed}},
			blamed:    []string{"a"},
			dissenter: []string{"a"},
		},
		{
			name:     "poisoned history not blamed",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 3, 8), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 2, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Poisoned, "c": Agreed}},
			dissenter: []string{"b"},
		},
		{
			name:     "poisoned input not blamed",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 4, 2, 8), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 2, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Poisoned, "c": Agreed}},
			dissenter: []string{"b"},
		},
		{
			name:     "inconsistent",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 3, 9), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 3, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Inconsistent, "c": Agreed}},
		},
		{
			// The winners split 1-1 on their pair: no reference, nobody
			// blamed, the loser is only untrusted.
			name:     "no reference pair",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 3, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 2, Replicas: 3,
				Verdicts: map[string]Verdict{"a": Inconsistent, "b": Poisoned, "c": Inconsistent}},
			dissenter: []string{"b"},
		},
		{
			name:     "r=3 missing one, majority",
			expected: abc,
			votes:    []Vote{vote("a", 1, 2, 9), vote("c", 1, 2, 9)},
			want: Decision{Output: h(9), Majority: true, Votes: 2, Replicas: 3,
				Reference: true, InputHash: h(1), HistoryHash: h(2),
				Verdicts: map[string]Verdict{"a": Agreed, "b": Missing, "c": Agreed}},
		},
		{
			name:     "r=4 missing two, no majority",
			expected: []string{"a", "b", "c", "d"},
			votes:    []Vote{vote("a", 1, 2, 9), vote("c", 1, 2, 9)},
			want: Decision{Replicas: 4,
				Verdicts: map[string]Verdict{"a": NoMajority, "b": Missing, "c": NoMajority, "d": Missing}},
		},
		{
			name:     "r=5 plurality without majority",
			expected: abcde,
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 2, 9), vote("d", 1, 2, 7)},
			want: Decision{Replicas: 5,
				Verdicts: map[string]Verdict{"a": NoMajority, "b": NoMajority, "c": NoMajority, "d": NoMajority, "e": Missing}},
			dissenter: []string{"b", "d"},
		},
		{
			name:     "r=4 split 2-2",
			expected: []string{"a", "b", "c", "d"},
			votes:    []Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 2, 9), vote("d", 1, 2, 8)},
			want: Decision{Replicas: 4,
				Verdicts: map[string]Verdict{"a": NoMajority, "b": NoMajority, "c": NoMajority, "d": NoMajority}},
			dissenter: []string{"a", "b", "c", "d"},
		},
		{
			name:     "no votes",
			expected: abc,
			want: Decision{Replicas: 3,
				Verdicts: map[string]Verdict{"a": Missing, "b": Missing, "c": Missing}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.expected, tt.votes)
			if err != nil {
				t.Fatalf("Decide(%v, %v) error %v", tt.expected, tt.votes, err)
			}
			if diff := cmp.Diff(tt.want, got, ignoreUnexported); diff != "" {
				t.Errorf("Decide(%v, %v) mismatch (-want +got):\n%s", tt.expected, tt.votes, diff)
			}
			if b := got.Blamed(); !slices.Equal(b, tt.blamed) {
				t.Errorf("Blamed() = %v, want %v", b, tt.blamed)
			}
			if ds := got.Dissenters(); !slices.Equal(ds, tt.dissenter) {
				t.Errorf("Dissenters() = %v, want %v", ds, tt.dissenter)
			}
		})
	}
}

func TestDecideErrors(t *testing.T) {
	tests := []struct {
		name     string
		expected []string
		votes    []Vote
		want     error
	}{
		{"nil expected", nil, nil, ErrReplicas},
		{"empty expected with vote", []string{}, []Vote{vote("a", 1, 2, 3)}, ErrReplicas},
		{"empty id", []string{"a", ""}, nil, ErrReplicas},
		{"duplicate expected", []string{"a", "b", "a"}, nil, ErrReplicas},
		{"unexpected replica", []string{"a", "b"}, []Vote{vote("a", 1, 2, 3), vote("x", 1, 2, 3)}, ErrVote},
		{"duplicate vote", []string{"a", "b"}, []Vote{vote("a", 1, 2, 3), vote("a", 1, 2, 3)}, ErrVote},
		{"duplicate vote different output", []string{"a", "b", "c"}, []Vote{vote("a", 1, 2, 3), vote("b", 1, 2, 3), vote("a", 1, 2, 4)}, ErrVote},
		{"empty replica in vote", []string{"a"}, []Vote{vote("", 1, 2, 3)}, ErrVote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decide(tt.expected, tt.votes)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decide(%v, %v) error = %v, want %v", tt.expected, tt.votes, err, tt.want)
			}
			if diff := cmp.Diff(Decision{}, got, ignoreUnexported); diff != "" {
				t.Errorf("Decide(%v, %v) returned a decision with its error:\n%s", tt.expected, tt.votes, diff)
			}
		})
	}
}

func TestDecideDoesNotModifyInputs(t *testing.T) {
	expected := []string{"c", "a", "b"}
	votes := []Vote{vote("b", 1, 2, 8), vote("a", 1, 2, 9), vote("c", 1, 2, 9)}
	e0, v0 := slices.Clone(expected), slices.Clone(votes)
	if _, err := Decide(expected, votes); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(expected, e0) || !slices.Equal(votes, v0) {
		t.Errorf("Decide modified its arguments: %v %v, want %v %v", expected, votes, e0, v0)
	}
}

func TestDissentersReturnsCopy(t *testing.T) {
	d, err := Decide([]string{"a", "b", "c", "d"},
		[]Vote{vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 2, 9)})
	if err != nil {
		t.Fatal(err)
	}
	ds := d.Dissenters()
	if !slices.Equal(ds, []string{"b"}) {
		t.Fatalf("Dissenters() = %v, want [b]", ds)
	}
	ds[0] = "z"
	if ds := d.Dissenters(); !slices.Equal(ds, []string{"b"}) {
		t.Errorf("after modifying the result, Dissenters() = %v, want [b]", ds)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{
		Agreed: "Agreed", Faulty: "Faulty", Poisoned: "Poisoned", Inconsistent: "Inconsistent",
		Missing: "Missing", NoMajority: "NoMajority", 0: "Verdict(0)", 99: "Verdict(99)", -1: "Verdict(-1)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}

func ExampleDecide() {
	in, hist := [32]byte{1}, [32]byte{2}
	good, bad := [32]byte{9}, [32]byte{8}
	d, err := Decide([]string{"p1", "p2", "p3", "p4"}, []Vote{
		{Replica: "p1", InputHash: in, HistoryHash: hist, OutputHash: good},
		{Replica: "p2", InputHash: in, HistoryHash: hist, OutputHash: bad},
		{Replica: "p3", InputHash: in, HistoryHash: hist, OutputHash: good},
		{Replica: "p4", InputHash: in, HistoryHash: hist, OutputHash: good},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Majority, d.Votes, d.Blamed(), d.Verdicts["p2"])
	// Output: true 3 [p2] Faulty
}
