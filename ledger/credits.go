package ledger

import (
	"fmt"
)

// Policy is how work becomes credits. Credits are GPU-hours: one credit is
// one hour of a reference GPU sustaining ReferenceFLOPS, whoever did the
// work and however long it took them. They are earned by serving verified
// work, spent by consuming it, and never transferred.
type Policy struct {
	// ReferenceFLOPS is the reference GPU's sustained rate (FLOP/s); one
	// credit is 3600 × ReferenceFLOPS FLOPs.
	ReferenceFLOPS float64
	// UnverifiedRate is the fraction of full credit paid for positions
	// that ran without a check (a single replica, or a step spot checks
	// skipped).
	UnverifiedRate float64
	// Starter is the allowance of a new identity, in credits, so that it
	// can use the swarm before it has served anything.
	Starter float64
	// EscrowReceipts is the number of work receipts without blame an
	// identity must have earned before its earnings are released (AI
	// Horde holds new accounts' kudos the same way); until then they are
	// in escrow: counted, not spendable.
	EscrowReceipts int
}

// DefaultPolicy: a reference GPU of 100 TFLOP/s sustained (an A100-class
// card on transformer inference), unverified work at a quarter, a starter
// allowance of 0.01 GPU-hours (36 reference-GPU-seconds), and escrow until
// 3 clean receipts.
var DefaultPolicy = Policy{ReferenceFLOPS: 100e12, UnverifiedRate: 0.25, Starter: 0.01, EscrowReceipts: 3}

// Credits is what a work receipt is worth: its FLOPs at the reference
// rate, the agreed positions in full and the unverified ones at
// UnverifiedRate; a receipt with any blamed position is worth nothing (a
// server that lied forfeits the session's work).
func (p Policy) Credits(w *WorkReceipt) float64 {
	if w.Blamed > 0 || w.Positions <= 0 || p.ReferenceFLOPS <= 0 {
		return 0
	}
	share := (float64(w.Agreed) + p.UnverifiedRate*float64(w.Unverified)) / float64(w.Positions)
	return float64(w.FLOPs) * share / (3600 * p.ReferenceFLOPS)
}

// Account is the credit state a chain proves, computed record by record
// in chain order (the same sums, in the same order, on every node).
type Account struct {
	Owner string `json:"owner"`
	// Records is the chain's length, genesis included.
	Records uint64 `json:"records"`
	// Earned is the credit of the owner's work receipts; Escrowed the part
	// still held (see Policy.EscrowReceipts).
	Earned   float64 `json:"earned"`
	Escrowed float64 `json:"escrowed"`
	// Spent is the credit of the work the owner consumed.
	Spent   float64 `json:"spent"`
	Starter float64 `json:"starter"`
	// Balance = Starter + Earned − Escrowed − Spent: what the owner can
	// still spend (it goes negative when a client uses more than it has;
	// a busy server then serves it last, see [Priority]).
	Balance float64 `json:"balance"`
	// ServedFLOPs and UsedFLOPs are the raw work, for the record.
	ServedFLOPs uint64 `json:"served_flops"`
	UsedFLOPs   uint64 `json:"used_flops"`
	// Work and Spends count receipts; Clean counts work receipts without
	// blame; Blamed counts those with.
	Work   int `json:"work_receipts"`
	Spends int `json:"spend_receipts"`
	Clean  int `json:"clean_receipts"`
	Blamed int `json:"blamed_receipts"`
	// ReputationEvents and ForkProofs count the owner's observations of
	// others.
	ReputationEvents int `json:"reputation_events"`
	ForkProofs       int `json:"fork_proofs"`

	policy Policy
	owner  string
	seen   map[[32]byte]bool // receipt ids, so that one receipt counts once
}

// NewAccount starts an account under policy; feed it a chain's records in
// order with Add.
func NewAccount(p Policy) *Account {
	return &Account{policy: p, Starter: p.Starter, Balance: p.Starter, seen: make(map[[32]byte]bool)}
}

// Add accounts for the next record of the chain (already verified: see
// [Verifier]). A work record must name the owner as its server, a spend
// record as its client, and no receipt may appear twice.
func (a *Account) Add(r Record, owner string) error {
	a.Records = r.Seq + 1
	if a.owner == "" {
		a.owner, a.Owner = owner, owner
	}
	switch r.Kind {
	case KindWork, KindSpend:
		w, err := DecodeWork(r.Payload)
		if err != nil {
			return fmt.Errorf("%w: record %d: %w", ErrInvalid, r.Seq, err)
		}
		id := w.ID()
		if a.seen[id] {
			return fmt.Errorf("%w: record %d: receipt %x counted twice", ErrInvalid, r.Seq, id[:8])
		}
		a.seen[id] = true
		c := a.policy.Credits(w)
		if r.Kind == KindWork {
			if w.Server != a.owner {
				return fmt.Errorf("%w: record %d: work served by %s, not the chain's owner", ErrInvalid, r.Seq, w.Server)
			}
			a.Work++
			a.ServedFLOPs += w.FLOPs
			a.Earned += c
			if w.Blamed > 0 {
				a.Blamed++
			} else {
				a.Clean++
			}
		} else {
			if w.Client != a.owner {
				return fmt.Errorf("%w: record %d: work consumed by %s, not the chain's owner", ErrInvalid, r.Seq, w.Client)
			}
			a.Spends++
			a.UsedFLOPs += w.FLOPs
			a.Spent += c
		}
	case KindReputation:
		a.ReputationEvents++
	case KindForkProof:
		a.ForkProofs++
	}
	a.Escrowed = 0
	if a.Clean < a.policy.EscrowReceipts {
		a.Escrowed = a.Earned
	}
	a.Balance = a.Starter + a.Earned - a.Escrowed - a.Spent
	return nil
}

// AccountOf verifies a ledger's whole chain and returns its account.
func AccountOf(l *Ledger, p Policy) (*Account, error) {
	a := NewAccount(p)
	owner := l.Owner().String()
	if err := l.Verify(func(r Record) error { return a.Add(r, owner) }); err != nil {
		return nil, err
	}
	return a, nil
}
