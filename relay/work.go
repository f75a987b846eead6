package relay

import (
	"maps"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zeebo/blake3"

	"github.com/stratanet/strata/dht"
)

// Outcome is how verification judged a server's step.
type Outcome uint8

// Outcomes.
const (
	Unverified Outcome = iota // ran without a check (the default)
	Agreed                    // the majority's output
	Blamed                    // a minority output from the majority's input and history
)

// workStep is one step a server computed for a session (its latest
// attempt: a step rolled back and run again replaces it).
type workStep struct {
	count   int
	out     [32]byte
	outcome Outcome
}

// workLog is what one server did for one session, kept by the server
// (what it computed) and by the client (the receipts it got): the facts of
// a work receipt. Replays are not in it: they rebuild a replacement's KV
// cache, and are not the client's new work.
type workLog struct {
	steps map[int]workStep // by first position
}

func (w *workLog) add(start, count int, out [32]byte) {
	if w.steps == nil {
		w.steps = make(map[int]workStep)
	}
	w.steps[start] = workStep{count: count, out: out}
}

func (w *workLog) judge(start int, o Outcome) {
	if s, ok := w.steps[start]; ok {
		s.outcome = o
		w.steps[start] = s
	}
}

// truncate forgets the steps at position n and later.
func (w *workLog) truncate(n int) {
	maps.DeleteFunc(w.steps, func(start int, _ workStep) bool { return start >= n })
}

// WorkSummary is what a server did for a session: positions [First,
// First+Positions) in Steps steps, StepsHash being BLAKE3 of the steps'
// output hashes in position order, and, on the client's side, the
// positions by verification outcome.
type WorkSummary struct {
	Peer      peer.ID
	Span      dht.Span
	Session   SessionID
	First     int
	Positions int
	Steps     int
	StepsHash [32]byte
	// Positions by outcome (client side; the server's own summary counts
	// them all as Unverified).
	Agreed, Unverified, Blamed int
}

func (w *workLog) summary() WorkSummary {
	var s WorkSummary
	starts := slices.Sorted(maps.Keys(w.steps))
	h := blake3.New()
	end := 0
	for i, start := range starts {
		st := w.steps[start]
		if i == 0 {
			s.First = start
		}
		end = max(end, start+st.count)
		_, _ = h.Write(st.out[:])
		switch st.outcome {
		case Agreed:
			s.Agreed += st.count
		case Blamed:
			s.Blamed += st.count
		default:
			s.Unverified += st.count
		}
	}
	s.Steps = len(starts)
	if s.Steps > 0 {
		s.Positions = end - s.First
	}
	copy(s.StepsHash[:], h.Sum(nil))
	return s
}
