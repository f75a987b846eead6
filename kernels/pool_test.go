package kernels

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// countTask counts how often each index is run and checks chunk bounds.
type countTask struct {
	hits  []atomic.Int32
	grain int
	bad   atomic.Int32
}

func (c *countTask) Run(lo, hi int) {
	if lo < 0 || hi > len(c.hits) || lo >= hi || hi-lo > c.grain || lo%c.grain != 0 {
		c.bad.Add(1)
		return
	}
	for i := lo; i < hi; i++ {
		c.hits[i].Add(1)
	}
}

func TestPoolParallelCoversOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 7} {
		p := NewPool(threads)
		for _, n := range []int{0, 1, 2, 5, 31, 100, 1000} {
			for _, grain := range []int{1, 3, 64, 2000} {
				t.Run(fmt.Sprintf("threads=%d/n=%d/grain=%d", threads, n, grain), func(t *testing.T) {
					c := &countTask{hits: make([]atomic.Int32, n), grain: grain}
					for range 3 {
						p.Parallel(n, grain, c)
					}
					if c.bad.Load() != 0 {
						t.Fatalf("Parallel(%d, %d) ran %d chunks with bad bounds", n, grain, c.bad.Load())
					}
					for i := range c.hits {
						if got := c.hits[i].Load(); got != 3 {
							t.Fatalf("Parallel(%d, %d) x3: index %d ran %d times, want 3", n, grain, i, got)
						}
					}
				})
			}
		}
		p.Close()
	}
}

func TestPoolNegativeN(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	c := &countTask{grain: 1}
	p.Parallel(-5, 1, c)
	p.Parallel(0, 0, c)
	if c.bad.Load() != 0 {
		t.Errorf("Parallel(n <= 0) ran the task")
	}
}

func TestPoolThreads(t *testing.T) {
	for _, n := range []int{1, 4} {
		p := NewPool(n)
		if got := p.Threads(); got != n {
			t.Errorf("NewPool(%d).Threads() = %d, want %d", n, got, n)
		}
		p.Close()
	}
	defer func() {
		if recover() == nil {
			t.Errorf("NewPool(0) did not panic")
		}
	}()
	NewPool(0)
}

type nopTask struct{}

func (nopTask) Run(lo, hi int) {}

func TestPoolNoAlloc(t *testing.T) {
	for _, threads := range []int{1, 2, 4} {
		p := NewPool(threads)
		c := &countTask{hits: make([]atomic.Int32, 1000), grain: 7}
		if a := testing.AllocsPerRun(200, func() { p.Parallel(1000, 7, c) }); a != 0 {
			t.Errorf("threads=%d: Parallel allocates %v times per call, want 0", threads, a)
		}
		if a := testing.AllocsPerRun(200, func() { p.Parallel(8, 1, nopTask{}) }); a != 0 {
			t.Errorf("threads=%d: Parallel(nop) allocates %v times per call, want 0", threads, a)
		}
		p.Close()
	}
}

func TestPoolConcurrentCallers(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	var wg sync.WaitGroup
	tasks := make([]*countTask, 4)
	for g := range tasks {
		c := &countTask{hits: make([]atomic.Int32, 257), grain: 5}
		tasks[g] = c
		wg.Go(func() {
			for range 200 {
				p.Parallel(257, 5, c)
			}
		})
	}
	wg.Wait()
	for g, c := range tasks {
		for i := range c.hits {
			if got := c.hits[i].Load(); got != 200 {
				t.Fatalf("caller %d: index %d ran %d times, want 200", g, i, got)
			}
		}
	}
}

type panicTask struct{ at int }

func (pt panicTask) Run(lo, hi int) {
	if lo <= pt.at && pt.at < hi {
		panic(fmt.Sprintf("boom at %d", pt.at))
	}
}

func TestPoolPanic(t *testing.T) {
	for _, threads := range []int{1, 2, 4} {
		p := NewPool(threads)
		for _, at := range []int{0, 13, 99} {
			t.Run(fmt.Sprintf("threads=%d/at=%d", threads, at), func(t *testing.T) {
				var got any
				func() {
					defer func() { got = recover() }()
					p.Parallel(100, 1, panicTask{at: at})
				}()
				var pe *PanicError
				err, _ := got.(error)
				if !errors.As(err, &pe) {
					t.Fatalf("Parallel with a panicking task panicked with %v, want a *PanicError", got)
				}
				if want := fmt.Sprintf("boom at %d", at); pe.Value != want {
					t.Errorf("PanicError.Value = %v, want %v", pe.Value, want)
				}
				// The pool still works.
				c := &countTask{hits: make([]atomic.Int32, 50), grain: 1}
				p.Parallel(50, 1, c)
				for i := range c.hits {
					if c.hits[i].Load() != 1 {
						t.Fatalf("after a panic, index %d ran %d times, want 1", i, c.hits[i].Load())
					}
				}
			})
		}
		p.Close()
	}
}

func TestPoolClose(t *testing.T) {
	p := NewPool(4)
	p.Parallel(10, 1, nopTask{})
	p.Close()
	p.Close() // idempotent
	defer func() {
		if recover() == nil {
			t.Errorf("Parallel after Close did not panic")
		}
	}()
	p.Parallel(10, 1, nopTask{})
}

// BenchmarkParallelEmpty is the pool's round-trip latency: a job of one
// empty chunk per thread, as a decode step issues about a hundred times per
// token.
func BenchmarkParallelEmpty(b *testing.B) {
	for _, threads := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			p := NewPool(threads)
			defer p.Close()
			b.ReportAllocs()
			for b.Loop() {
				p.Parallel(threads, 1, nopTask{})
			}
		})
	}
}

// BenchmarkParallelParked is the latency of a job that finds every worker
// parked (the pool idle for longer than its spin): one empty chunk per
// thread. The wait for the workers to park is not timed.
func BenchmarkParallelParked(b *testing.B) {
	for _, threads := range []int{2, 4} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			p := NewPool(threads)
			defer p.Close()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for p.sleepers.Load() != int32(threads-1) {
					runtime.Gosched()
				}
				b.StartTimer()
				p.Parallel(threads, 1, nopTask{})
			}
		})
	}
}

// barrierTask's chunks each wait until every chunk has started, so every
// thread of the pool must take part in each job.
type barrierTask struct {
	started atomic.Int64
	target  int64
}

func (b *barrierTask) Run(lo, hi int) {
	b.started.Add(int64(hi - lo))
	// target is read-only during a job.
	for i := 0; b.started.Load() < b.target; i++ {
		if i%64 == 63 {
			runtime.Gosched()
		}
	}
}

// BenchmarkParallelBarrier is the fork-join round trip when every thread
// must run a chunk: the caller publishes the job, the worker (spinning from
// the previous job) claims its chunk, and the caller waits for it.
func BenchmarkParallelBarrier(b *testing.B) {
	const threads = 2
	p := NewPool(threads)
	defer p.Close()
	t := &barrierTask{}
	b.ReportAllocs()
	for b.Loop() {
		t.target += threads
		p.Parallel(threads, 1, t)
	}
}
