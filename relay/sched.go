package relay

import (
	"container/heap"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// scheduler admits steps to the shard's forward pass, slots at a time.
// When steps wait, the one with the highest priority goes first, where a
// waiter's priority is its owner's (ServerConfig.Priority, taken when it
// starts waiting) plus aging × the seconds it has waited: every waiter
// ages at the same rate, so the order is that of priority − aging × the
// time it started waiting, and a client of low priority is still served
// once it has waited (priority gap)/aging seconds. Equal keys go first
// come, first served.
type scheduler struct {
	priority func(peer.ID) float64
	aging    float64
	epoch    time.Time
	now      func() time.Time

	mu   sync.Mutex
	free int
	q    waitQueue
	seq  uint64
}

func newScheduler(slots int, priority func(peer.ID) float64, aging float64) *scheduler {
	return &scheduler{priority: priority, aging: aging, epoch: time.Now(), now: time.Now, free: slots}
}

type waiter struct {
	key   float64
	seq   uint64
	ready chan struct{}
	index int
}

type waitQueue []*waiter

func (q waitQueue) Len() int { return len(q) }
func (q waitQueue) Less(i, j int) bool {
	if q[i].key != q[j].key {
		return q[i].key > q[j].key
	}
	return q[i].seq < q[j].seq
}
func (q waitQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *waitQueue) Push(x any) {
	w := x.(*waiter)
	w.index = len(*q)
	*q = append(*q, w)
}
func (q *waitQueue) Pop() any {
	old := *q
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	w.index = -1
	return w
}

// errGone is returned by acquire when the server or session went away.
var errGone = errors.New("relay: server or session closed while the step waited")

// acquire waits for a slot for a step of owner's session, until one of
// the done channels closes.
func (s *scheduler) acquire(owner peer.ID, done1, done2 <-chan struct{}) error {
	s.mu.Lock()
	if s.free > 0 && s.q.Len() == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	var prio float64
	if s.priority != nil {
		prio = s.priority(owner)
	}
	s.seq++
	w := &waiter{key: prio - s.aging*s.now().Sub(s.epoch).Seconds(), seq: s.seq, ready: make(chan struct{})}
	heap.Push(&s.q, w)
	s.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-done1:
	case <-done2:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.index >= 0 {
		heap.Remove(&s.q, w.index)
	} else {
		// Given the slot as we gave up: pass it on.
		s.releaseLocked()
	}
	return errGone
}

// release frees a slot for the best waiter.
func (s *scheduler) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

func (s *scheduler) releaseLocked() {
	if s.q.Len() > 0 {
		w := heap.Pop(&s.q).(*waiter)
		close(w.ready)
		return
	}
	s.free++
}

// queued is the number of waiting steps.
func (s *scheduler) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.Len()
}
