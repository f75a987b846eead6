package consensus

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const eps = 1e-12

func TestMemoryUnknownPeerIsPrior(t *testing.T) {
	m := NewMemory(time.Hour)
	if got := m.Score("nobody", t0); got != Prior {
		t.Errorf("Score(nobody) = %v, want %v", got, Prior)
	}
}

func TestMemoryEvents(t *testing.T) {
	m := NewMemory(time.Hour)
	m.Record("good", EventAgreed, t0)
	m.Record("bad", EventDisagreed, t0)
	m.Record("slow", EventTimedOut, t0)
	good, bad, slow := m.Score("good", t0), m.Score("bad", t0), m.Score("slow", t0)
	if !(good > Prior) {
		t.Errorf("after EventAgreed Score = %v, want > %v", good, Prior)
	}
	if !(bad < slow && slow < Prior) {
		t.Errorf("after EventDisagreed %v, EventTimedOut %v: want disagreed < timed out < %v", bad, slow, Prior)
	}
	if Prior-bad <= good-Prior {
		t.Errorf("disagreement costs %v, agreement earns %v: want cost > earning", Prior-bad, good-Prior)
	}
	if want := Prior + AgreedGain*(1-Prior); math.Abs(good-want) > eps {
		t.Errorf("after EventAgreed Score = %v, want %v", good, want)
	}
}

func TestMemoryDisagreementOutweighsAgreement(t *testing.T) {
	// From any score a trusted peer can have, one fault costs more than one
	// agreement earns.
	for n := range 40 {
		m := NewMemory(0)
		for range n {
			m.Record("p", EventAgreed, t0)
		}
		s := m.Score("p", t0)
		up, down := NewMemory(0), NewMemory(0)
		for range n {
			up.Record("p", EventAgreed, t0)
			down.Record("p", EventAgreed, t0)
		}
		up.Record("p", EventAgreed, t0)
		down.Record("p", EventDisagreed, t0)
		gain, loss := up.Score("p", t0)-s, s-down.Score("p", t0)
		if !(loss > gain) {
			t.Errorf("after %d agreements (score %v): loss %v, gain %v; want loss > gain", n, s, loss, gain)
		}
	}
}

func TestMemoryDecaysTowardPrior(t *testing.T) {
	const half = 10 * time.Minute
	m := NewMemory(half)
	for range 5 {
		m.Record("up", EventAgreed, t0)
		m.Record("down", EventDisagreed, t0)
	}
	for _, peer := range []string{"up", "down"} {
		d0 := m.Score(peer, t0) - Prior
		if d0 == 0 {
			t.Fatalf("Score(%s) did not move", peer)
		}
		for k, want := range []float64{1, 0.5, 0.25, 0.125} {
			at := t0.Add(time.Duration(k) * half)
			if got := m.Score(peer, at) - Prior; math.Abs(got-d0*want) > eps {
				t.Errorf("Score(%s, t0+%d half-lives) - Prior = %v, want %v", peer, k, got, d0*want)
			}
		}
		if got := m.Score(peer, t0.Add(100*half)); math.Abs(got-Prior) > eps {
			t.Errorf("Score(%s) long after = %v, want %v", peer, got, Prior)
		}
		// Scoring does not change the stored state.
		if got := m.Score(peer, t0) - Prior; got != d0 {
			t.Errorf("Score(%s, t0) changed to %v after later queries, want %v", peer, got, d0)
		}
	}
}

func TestMemoryDecayThenEvent(t *testing.T) {
	const half = time.Hour
	m := NewMemory(half)
	m.Record("p", EventDisagreed, t0)
	d0 := m.Score("p", t0) - Prior
	m.Record("p", EventAgreed, t0.Add(half))
	v := Prior + d0/2
	want := v + AgreedGain*(1-v)
	if got := m.Score("p", t0.Add(half)); math.Abs(got-want) > eps {
		t.Errorf("Score after decay and agreement = %v, want %v", got, want)
	}
}

func TestMemoryNoDecay(t *testing.T) {
	m := NewMemory(0)
	m.Record("p", EventDisagreed, t0)
	want := Prior * (1 - DisagreedLoss)
	if got := m.Score("p", t0.Add(1000*time.Hour)); math.Abs(got-want) > eps {
		t.Errorf("NewMemory(0): Score much later = %v, want %v", got, want)
	}
}

func TestMemoryTimeBackwards(t *testing.T) {
	m := NewMemory(time.Minute)
	m.Record("p", EventDisagreed, t0)
	s := m.Score("p", t0)
	if got := m.Score("p", t0.Add(-time.Hour)); got != s {
		t.Errorf("Score before the last event = %v, want %v", got, s)
	}
	m.Record("p", EventDisagreed, t0.Add(-time.Hour))
	want := s * (1 - DisagreedLoss)
	if got := m.Score("p", t0); math.Abs(got-want) > eps {
		t.Errorf("after a back-dated event Score = %v, want %v", got, want)
	}
}

func TestMemoryBounded(t *testing.T) {
	m := NewMemory(time.Second)
	for i := range 2000 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		m.Record("up", EventAgreed, at)
		m.Record("down", EventDisagreed, at)
		m.Record("slow", EventTimedOut, at)
		m.Record("odd", Event(99), at)
		for _, p := range []string{"up", "down", "slow", "odd"} {
			if s := m.Score(p, at); !(s >= 0 && s <= 1) {
				t.Fatalf("Score(%s) = %v, out of [0, 1]", p, s)
			}
		}
	}
	if got := m.Score("odd", t0); got != Prior {
		t.Errorf("unknown events moved the score to %v", got)
	}
}

func TestMemoryConcurrent(t *testing.T) {
	const workers, each = 8, 200
	m := NewMemory(time.Hour)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				m.Record("shared", EventAgreed, t0)
				m.Record("other", EventTimedOut, t0)
				_ = m.Score("shared", t0)
			}
		})
	}
	wg.Wait()
	// Agreements at one instant commute: 1-s shrinks by (1-AgreedGain) each.
	want := 1 - (1-Prior)*math.Pow(1-AgreedGain, workers*each)
	if got := m.Score("shared", t0); math.Abs(got-want) > 1e-9 {
		t.Errorf("after %d concurrent agreements Score = %v, want %v", workers*each, got, want)
	}
}

// recorder is a Reputation that remembers what it was told.
type recorder struct{ events []recorded }

type recorded struct {
	Peer  string
	Event Event
	At    time.Time
}

func (r *recorder) Record(peer string, e Event, at time.Time) {
	r.events = append(r.events, recorded{peer, e, at})
}

func (r *recorder) Score(string, time.Time) float64 { return Prior }

func TestReport(t *testing.T) {
	d := Decision{Majority: true, Verdicts: map[string]Verdict{
		"f": Agreed, "e": Faulty, "d": Poisoned, "c": Inconsistent, "b": Missing, "a": NoMajority,
	}}
	var r recorder
	Report(&r, d, t0)
	want := []recorded{{"b", EventTimedOut, t0}, {"e", EventDisagreed, t0}, {"f", EventAgreed, t0}}
	if diff := cmp.Diff(want, r.events); diff != "" {
		t.Errorf("Report(%v) recorded (-want +got):\n%s", d.Verdicts, diff)
	}
}

func TestReportDecision(t *testing.T) {
	d, err := Decide([]string{"a", "b", "c", "d", "e", "f", "g"}, []Vote{
		vote("a", 1, 2, 9), vote("b", 1, 2, 8), vote("c", 1, 2, 9), vote("d", 1, 3, 7),
		vote("f", 1, 2, 9), vote("g", 1, 3, 9),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMemory(time.Hour)
	Report(m, d, t0)
	for peer, want := range map[string]float64{
		"a": Prior + AgreedGain*(1-Prior),
		"b": Prior * (1 - DisagreedLoss),
		"c": Prior + AgreedGain*(1-Prior),
		"d": Prior, // poisoned: not penalised
		"e": Prior * (1 - TimedOutLoss),
		"f": Prior + AgreedGain*(1-Prior),
		"g": Prior, // inconsistent: not rewarded
	} {
		if got := m.Score(peer, t0); math.Abs(got-want) > eps {
			t.Errorf("after Report(%v) Score(%s) = %v, want %v", d.Verdicts, peer, got, want)
		}
	}
}

func TestEventString(t *testing.T) {
	for e, want := range map[Event]string{
		EventAgreed: "EventAgreed", EventDisagreed: "EventDisagreed", EventTimedOut: "EventTimedOut",
		0: "Event(0)", 7: "Event(7)",
	} {
		if got := e.String(); got != want {
			t.Errorf("Event(%d).String() = %q, want %q", int(e), got, want)
		}
	}
}
