package ledger

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Balances ranks the clients of a busy server by the balance their own
// chains prove: a client's chain is audited (see [Auditor]) the first time
// it asks, in the background, and again once the result is older than the
// TTL. Until an audit succeeds a client ranks as a new identity with only
// the starter allowance; a chain that fails its audit ranks last.
type Balances struct {
	a       *Auditor
	starter float64
	ttl     time.Duration
	timeout time.Duration

	mu    sync.Mutex
	known map[peer.ID]*balance
	wg    sync.WaitGroup
	ctx   context.Context
	stop  context.CancelFunc
}

type balance struct {
	priority float64
	at       time.Time
	auditing bool
}

// PriorityScale is the balance (GPU-hours) at which a client's priority
// is halfway to its maximum: priority = balance / (|balance| + scale), in
// (−1, 1), so that with the server's aging of 0.1 per second nobody waits
// more than about 20 s behind anybody for lack of credits.
const PriorityScale = 0.01

// NewBalances ranks by audits through a, refreshed after ttl.
func NewBalances(a *Auditor, p Policy, ttl time.Duration) *Balances {
	ctx, stop := context.WithCancel(context.Background())
	return &Balances{a: a, starter: p.Starter, ttl: ttl, timeout: 30 * time.Second, known: make(map[peer.ID]*balance),
		ctx: ctx, stop: stop}
}

// Priority is p's priority as of its last audit, starting an audit if
// there is none or it is stale. It never blocks on the network.
func (b *Balances) Priority(p peer.ID) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.known[p]
	if k == nil {
		k = &balance{priority: priorityOf(b.starter)}
		b.known[p] = k
	}
	if !k.auditing && (k.at.IsZero() || time.Since(k.at) > b.ttl) && b.ctx.Err() == nil {
		k.auditing = true
		b.wg.Add(1)
		go b.audit(p)
	}
	return k.priority
}

func (b *Balances) audit(p peer.ID) {
	defer b.wg.Done()
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	rep, err := b.a.Audit(ctx, p)
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.known[p]
	k.auditing = false
	switch {
	case err == nil && rep != nil && rep.Account != nil:
		k.priority, k.at = priorityOf(rep.Account.Balance), time.Now()
	case rep != nil && rep.Err != nil:
		// A chain that does not verify (or forks) ranks last.
		k.priority, k.at = -1, time.Now()
	default:
		// Unreachable or refused: try again at the next request after a
		// while, ranking as a new identity meanwhile.
		k.at = time.Now().Add(-b.ttl + 10*time.Second)
	}
}

func priorityOf(balance float64) float64 {
	if math.IsNaN(balance) {
		return -1
	}
	return balance / (math.Abs(balance) + PriorityScale)
}

// Close stops the audits in progress and waits for them.
func (b *Balances) Close() {
	b.stop()
	b.wg.Wait()
}
