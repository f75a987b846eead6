package relay

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestSchedulerOrder: waiting steps go by their owners' priority, first
// come first served among equals, and aging lets a low-priority owner
// that waited long enough go before a richer newcomer.
func TestSchedulerOrder(t *testing.T) {
	prio := map[peer.ID]float64{"rich": 1, "poor": 0, "mid": 0.5}
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	s := newScheduler(1, func(p peer.ID) float64 { return prio[p] }, 0.1)
	s.epoch = clock
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	if err := s.acquire("rich", nil, nil); err != nil { // takes the only slot
		t.Fatal(err)
	}
	var order []string
	var omu sync.Mutex
	var wg sync.WaitGroup
	enqueue := func(name string, owner peer.ID) {
		wg.Add(1)
		before := s.queued()
		go func() {
			defer wg.Done()
			if err := s.acquire(owner, nil, nil); err != nil {
				t.Error(err)
				return
			}
			omu.Lock()
			order = append(order, name)
			omu.Unlock()
			s.release()
		}()
		for s.queued() == before { // wait until it is in the queue
			time.Sleep(time.Millisecond)
		}
	}
	enqueue("poor-old", "poor") // waits from t=0
	advance(time.Second)
	enqueue("mid-1", "mid")
	enqueue("mid-2", "mid")
	advance(20 * time.Second) // poor-old has now waited 21 s: 2.1 of priority
	enqueue("rich-new", "rich")
	// Keys: poor-old 0, mid-1 0.5-0.1 = 0.4, mid-2 0.4, rich-new 1-2.1 = -1.1.
	s.release()
	wg.Wait()
	want := []string{"mid-1", "mid-2", "poor-old", "rich-new"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}

// TestSchedulerGiveUp: a waiter whose session goes away leaves the queue
// and the slot still passes to the next.
func TestSchedulerGiveUp(t *testing.T) {
	s := newScheduler(1, nil, 0.1)
	if err := s.acquire("a", nil, nil); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- s.acquire("b", gone, nil) }()
	for s.queued() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(gone)
	if err := <-errc; err != errGone {
		t.Fatalf("acquire after the session went: %v, want errGone", err)
	}
	s.release()
	if err := s.acquire("c", nil, nil); err != nil { // the slot is free again
		t.Fatal(err)
	}
	if s.queued() != 0 || s.free != 0 {
		t.Errorf("queue %d, free %d after c took the slot", s.queued(), s.free)
	}
}
