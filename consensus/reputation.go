package consensus

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Event is something a peer did that moves its reputation.
//
// The set is deliberately small: only outcomes that [Decide] can attribute
// to the peer itself are events. Being poisoned by an upstream fault,
// producing an inconsistent receipt, or voting without a majority are not
// events, because none of them shows the peer at fault (see [Report]).
type Event int

const (
	// EventAgreed: the peer's output was verified by a majority.
	EventAgreed Event = iota + 1
	// EventDisagreed: the peer computed from the agreed input and history
	// and produced a different output; it was blamed.
	EventDisagreed
	// EventTimedOut: the peer was expected to vote and did not.
	EventTimedOut
	// EventUp: the peer announced blocks and answered when asked
	// (uptime; recorded at most once per peer and interval by clients).
	EventUp
	// EventDown: the peer announced blocks but did not answer.
	EventDown
)

var eventNames = [...]string{
	EventAgreed:    "EventAgreed",
	EventDisagreed: "EventDisagreed",
	EventTimedOut:  "EventTimedOut",
	EventUp:        "EventUp",
	EventDown:      "EventDown",
}

// String returns the event's name, or "Event(n)" for an unknown value.
func (e Event) String() string {
	if e > 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// Reputation records events about peers and scores them. Implementations
// are safe for concurrent use. Scores are in [0, 1]; higher is more trusted.
type Reputation interface {
	// Record notes that peer did e at the given time.
	Record(peer string, e Event, at time.Time)
	// Score returns peer's reputation as of the given time.
	Score(peer string, at time.Time) float64
}

// Prior is the score of a peer that has no recorded events, and the value
// every score decays towards.
const Prior = 0.5

// Step sizes of [Memory]. An event moves the score a fraction of the way
// towards 1 (agreed) or 0 (disagreed, timed out): from s, agreement gives
// s + AgreedGain·(1−s), disagreement s − DisagreedLoss·s. A blamed fault
// costs far more than an agreement earns, and a timeout, which may be the
// network's fault, costs less than a fault.
const (
	AgreedGain    = 0.05
	DisagreedLoss = 0.30
	TimedOutLoss  = 0.10
	// Uptime moves scores little: being reachable is expected, and a
	// peer may be down for reasons that are nobody's fault.
	UpGain   = 0.01
	DownLoss = 0.05
)

// Memory is an in-memory [Reputation]. Each peer's score starts at [Prior],
// is moved by events (see [AgreedGain]), and between events decays
// exponentially towards Prior with the configured half-life, so old
// behaviour is forgotten. Scores stay in [0, 1]. Events or queries dated
// before a peer's last event see no decay (time does not run backwards).
// Memory keeps one entry per peer ever recorded. It is safe for concurrent
// use; the zero value is not usable, use [NewMemory].
type Memory struct {
	halfLife time.Duration

	mu    sync.Mutex
	peers map[string]score
}

// score is a peer's score as of a time.
type score struct {
	value float64
	at    time.Time
}

// NewMemory returns an empty Memory whose scores decay towards [Prior] with
// the given half-life. A half-life of zero or less disables decay.
func NewMemory(halfLife time.Duration) *Memory {
	return &Memory{halfLife: halfLife, peers: make(map[string]score)}
}

// Record applies e to peer's score at time at. Unknown events are ignored.
func (m *Memory) Record(peer string, e Event, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.peers[peer]
	v := Prior
	if ok {
		v = m.decay(s, at)
	}
	switch e {
	case EventAgreed:
		v += AgreedGain * (1 - v)
	case EventDisagreed:
		v -= DisagreedLoss * v
	case EventTimedOut:
		v -= TimedOutLoss * v
	case EventUp:
		v += UpGain * (1 - v)
	case EventDown:
		v -= DownLoss * v
	default:
		return
	}
	if ok && at.Before(s.at) {
		at = s.at // keep the latest time so decay is never applied twice
	}
	m.peers[peer] = score{value: min(max(v, 0), 1), at: at}
}

// Score returns peer's score at time at: [Prior] for a peer with no events.
func (m *Memory) Score(peer string, at time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.peers[peer]
	if !ok {
		return Prior
	}
	return m.decay(s, at)
}

// decay returns s's value decayed towards Prior until at.
func (m *Memory) decay(s score, at time.Time) float64 {
	dt := at.Sub(s.at)
	if m.halfLife <= 0 || dt <= 0 {
		return s.value
	}
	f := math.Exp2(-float64(dt) / float64(m.halfLife))
	return Prior + (s.value-Prior)*f
}

// Report records d's verdicts in r, in order of peer id, all at time at:
// [Agreed] becomes [EventAgreed], [Faulty] [EventDisagreed] and [Missing]
// [EventTimedOut]. [Poisoned], [Inconsistent] and [NoMajority] record
// nothing: a poisoned replica was misled by someone else, an inconsistent
// one produced the right output, and without a majority nobody can be shown
// right or wrong. Note that a colluding majority gets the honest minority
// recorded as disagreeing (see [Decision.Dissenters]).
func Report(r Reputation, d Decision, at time.Time) {
	ids := make([]string, 0, len(d.Verdicts))
	for id := range d.Verdicts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		switch d.Verdicts[id] {
		case Agreed:
			r.Record(id, EventAgreed, at)
		case Faulty:
			r.Record(id, EventDisagreed, at)
		case Missing:
			r.Record(id, EventTimedOut, at)
		}
	}
}
