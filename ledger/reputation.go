package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stratanet/strata/consensus"
)

// DefaultHalfLife is how fast reputation is forgotten: a score moves half
// the way back to consensus.Prior in this time without events.
const DefaultHalfLife = 24 * time.Hour

// DefaultExcludeBelow is the score under which a peer is excluded from
// routes.
const DefaultExcludeBelow = 0.2

// forkPenalty is the number of blamed faults a proven fork counts as.
const forkPenalty = 5

// Reputation is a [consensus.Reputation] kept in a ledger: every event
// (verification outcomes, timeouts, and uptime: whether an announced peer
// answered) is
// a signed reputation record of the owner's chain, so scores persist across
// restarts (they are replayed on open) and anyone can audit what this node
// saw. Scores decay towards consensus.Prior with the half-life; a proven
// fork counts as several blamed faults. Safe for concurrent use.
type Reputation struct {
	l            *Ledger
	mem          *consensus.Memory
	excludeBelow float64

	mu     sync.Mutex
	events map[string]int // per peer, events recorded
}

// NewReputation replays l's reputation and fork-proof records.
func NewReputation(l *Ledger, halfLife time.Duration, excludeBelow float64) (*Reputation, error) {
	r := &Reputation{l: l, mem: consensus.NewMemory(halfLife), excludeBelow: excludeBelow, events: make(map[string]int)}
	err := l.Raw(0, l.Len(), func(seq uint64, raw []byte) error {
		rec, err := DecodeRecord(raw)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, seq, err)
		}
		switch rec.Kind {
		case KindReputation:
			e, err := DecodeReputation(rec.Payload)
			if err != nil {
				return err
			}
			r.apply(e.Peer, consensus.Event(e.Event), time.Unix(0, e.Time))
		case KindForkProof:
			f, err := DecodeForkProof(rec.Payload)
			if err != nil {
				return err
			}
			for range forkPenalty {
				r.apply(f.Peer, consensus.EventDisagreed, time.Unix(0, rec.Time))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reputation) apply(peer string, e consensus.Event, at time.Time) {
	r.mem.Record(peer, e, at)
	r.mu.Lock()
	r.events[peer]++
	r.mu.Unlock()
}

// Record notes an event about peer and appends it to the chain (without
// waiting for the commit: Close writes what is queued).
func (r *Reputation) Record(peer string, e consensus.Event, at time.Time) {
	if e < consensus.EventAgreed || e > consensus.EventDown {
		return
	}
	r.apply(peer, e, at)
	payload, err := Marshal(&ReputationEvent{Peer: peer, Event: uint8(e), Time: at.UnixNano()})
	if err == nil {
		_ = r.l.AppendAsync(Entry{Kind: KindReputation, Payload: payload})
	}
}

// Score is peer's score at time at.
func (r *Reputation) Score(peer string, at time.Time) float64 { return r.mem.Score(peer, at) }

// Excluded reports whether peer scores below the exclusion threshold.
func (r *Reputation) Excluded(peer string, at time.Time) bool {
	return r.Score(peer, at) < r.excludeBelow
}

// RecordFork checks a fork proof, appends it to the chain (durably) and
// drops the peer's reputation as forkPenalty blamed faults would.
func (r *Reputation) RecordFork(f *ForkProof) error {
	if err := f.Check(); err != nil {
		return fmt.Errorf("ledger: fork proof: %w", err)
	}
	payload, err := Marshal(f)
	if err != nil {
		return err
	}
	rec, err := r.l.Append(KindForkProof, payload)
	if err != nil {
		return err
	}
	for range forkPenalty {
		r.apply(f.Peer, consensus.EventDisagreed, time.Unix(0, rec.Time))
	}
	return nil
}

// PeerScore is one peer's reputation.
type PeerScore struct {
	Peer     string  `json:"peer"`
	Score    float64 `json:"score"`
	Events   int     `json:"events"`
	Excluded bool    `json:"excluded"`
}

// Peers lists every peer with recorded events, best first.
func (r *Reputation) Peers(at time.Time) []PeerScore {
	r.mu.Lock()
	out := make([]PeerScore, 0, len(r.events))
	for p, n := range r.events {
		out = append(out, PeerScore{Peer: p, Events: n})
	}
	r.mu.Unlock()
	for i := range out {
		out[i].Score = r.Score(out[i].Peer, at)
		out[i].Excluded = out[i].Score < r.excludeBelow
	}
	slices.SortFunc(out, func(a, b PeerScore) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(a.Peer, b.Peer)
	})
	return out
}
