package kernels

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// Task is work split along outputs: Run computes outputs [lo, hi) and
// nothing else, so the result does not depend on how [0, n) is split or
// which goroutine runs which part.
type Task interface {
	Run(lo, hi int)
}

// Pool runs Tasks on a fixed set of goroutines: threads-1 persistent
// workers plus the goroutine that calls Parallel. Workers spin briefly after
// each call (a decode step calls Parallel about a hundred times per token)
// and then park until the next one.
//
// Parallel neither allocates nor starts goroutines. A Pool is safe for use
// by several goroutines; their calls to Parallel run one at a time (so a
// task must not call Parallel on its own pool: that deadlocks).
//
// Correctness never depends on a worker waking up: the caller claims
// chunks too, and a job is done when every chunk has been claimed and the
// workers that claimed one have finished it.
type Pool struct {
	threads int

	mu sync.Mutex // serializes Parallel and Close

	// state is the current job's claim word: generation (high 24 bits),
	// chunk count (middle 20 bits), next unclaimed chunk (low 20 bits). A
	// worker claims chunk c of generation g only by a CAS from the exact
	// state that names both, so it can never run a chunk of a job that is
	// over, and it reads the job's fields below only after such a claim.
	state atomic.Uint64
	busy  atomic.Int32 // workers between "about to claim" and "done with the claim"

	// The job, written by Parallel under mu before state publishes it.
	task  Task
	n     int
	grain int

	panicked atomic.Pointer[PanicError] // first panic of the current job

	// Parking: a worker that saw no job for spinIters polls sleeps on cond.
	parkMu   sync.Mutex
	cond     *sync.Cond
	sleepers atomic.Int32
	closed   atomic.Bool
	wg       sync.WaitGroup
}

// PanicError is the value Parallel panics with when a task panicked, in
// the calling goroutine or in a worker: the task's panic value and the
// stack where it happened.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("kernels: task panicked: %v\n\n%s", e.Value, e.Stack)
}

const (
	chunkBits = 20
	chunkMask = 1<<chunkBits - 1
	maxChunks = chunkMask // chunk counts and indices fit in chunkBits
	genShift  = 2 * chunkBits
	// spinIters is how many times an idle worker polls for a new job before
	// it parks (a few tens of microseconds).
	spinIters = 20000
)

// NewPool starts a pool of threads goroutines in all (threads-1 workers).
// It panics if threads < 1.
func NewPool(threads int) *Pool {
	if threads < 1 {
		panic(fmt.Sprintf("kernels: NewPool(%d): threads must be >= 1", threads))
	}
	p := &Pool{threads: threads}
	p.cond = sync.NewCond(&p.parkMu)
	p.wg.Add(threads - 1)
	for range threads - 1 {
		go p.worker()
	}
	return p
}

// Threads is the number of goroutines that run a task, the caller's
// included.
func (p *Pool) Threads() int { return p.threads }

// Close stops the workers and waits for them to exit. It is idempotent;
// Parallel after Close panics.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Swap(true) {
		return
	}
	// Wake the parked workers; spinning ones see closed themselves.
	p.parkMu.Lock()
	p.cond.Broadcast()
	p.parkMu.Unlock()
	p.wg.Wait()
}

// Parallel runs t over [0, n) in chunks of grain items ([0, grain),
// [grain, 2*grain), …; the last may be shorter), each chunk on one
// goroutine, and returns when all are done. n <= 0 returns at once; grain
// < 1 counts as 1. If a chunk panics, Parallel stops handing out chunks,
// waits for those under way, and panics with a *PanicError.
func (p *Pool) Parallel(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	if chunks > maxChunks {
		grain = (n + maxChunks - 1) / maxChunks
		chunks = (n + grain - 1) / grain
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		panic("kernels: Parallel on a closed Pool")
	}
	if p.threads == 1 || chunks == 1 {
		p.runSerial(n, grain, t)
		return
	}
	p.task, p.n, p.grain = t, n, grain
	p.panicked.Store(nil)
	gen := (p.state.Load()>>genShift + 1) & (1<<(64-genShift) - 1)
	p.state.Store(gen<<genShift | uint64(chunks)<<chunkBits)
	if p.sleepers.Load() > 0 {
		p.parkMu.Lock()
		p.cond.Broadcast()
		p.parkMu.Unlock()
	}
	p.work()
	// Every chunk is claimed; wait for the workers still running one.
	for i := 0; p.busy.Load() != 0; i++ {
		if i%64 == 63 {
			runtime.Gosched()
		}
	}
	p.task = nil
	if e := p.panicked.Load(); e != nil {
		panic(e)
	}
}

// runSerial runs the job's chunks in order on the caller, with Parallel's
// panic behaviour.
func (p *Pool) runSerial(n, grain int, t Task) {
	defer func() {
		if r := recover(); r != nil {
			panic(&PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	for lo := 0; lo < n; lo += grain {
		t.Run(lo, min(lo+grain, n))
	}
}

// work claims and runs chunks of the current job until none is left.
// Workers call it with busy incremented; the caller of Parallel without.
func (p *Pool) work() {
	for {
		s := p.state.Load()
		c := s & chunkMask
		if c >= s>>chunkBits&chunkMask || !p.state.CompareAndSwap(s, s+1) {
			if c >= s>>chunkBits&chunkMask {
				return
			}
			continue
		}
		lo := int(c) * p.grain
		p.runChunk(lo, min(lo+p.grain, p.n))
	}
}

// runChunk runs one chunk; a panic is recorded and ends the job's
// hand-out of chunks.
func (p *Pool) runChunk(lo, hi int) {
	defer func() {
		if r := recover(); r != nil {
			p.panicked.CompareAndSwap(nil, &PanicError{Value: r, Stack: debug.Stack()})
			// No more claims: set next = count in this generation.
			for {
				s := p.state.Load()
				if s&chunkMask >= s>>chunkBits&chunkMask || p.state.CompareAndSwap(s, s&^chunkMask|s>>chunkBits&chunkMask) {
					return
				}
			}
		}
	}()
	p.task.Run(lo, hi)
}

// worker is a persistent goroutine: it runs chunks of each new job, spins
// a while, then parks until Parallel or Close wakes it.
func (p *Pool) worker() {
	defer p.wg.Done()
	var seen uint64 // generation of the last job this worker looked at
	for {
		// Wait for a new generation: spin, then park.
		var s uint64
		for i := 0; ; i++ {
			s = p.state.Load()
			if s>>genShift != seen || p.closed.Load() {
				break
			}
			if i < spinIters {
				if i%64 == 63 {
					runtime.Gosched()
				}
				continue
			}
			p.parkMu.Lock()
			p.sleepers.Add(1)
			for p.state.Load()>>genShift == seen && !p.closed.Load() {
				p.cond.Wait()
			}
			p.sleepers.Add(-1)
			p.parkMu.Unlock()
			i = 0
		}
		if p.closed.Load() {
			return
		}
		seen = s >> genShift
		p.busy.Add(1)
		p.work()
		p.busy.Add(-1)
	}
}
