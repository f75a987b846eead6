package bench

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"unsafe"

	"github.com/stratanet/strata/internal/anonmem"
	"github.com/stratanet/strata/kernels"
)

// readBuf is the 1 GiB buffer the bandwidth benchmark streams, allocated
// and written (so that every page is backed by memory, not the shared zero
// page) on first use.
var (
	readOnce sync.Once
	readBuf  []uint64
)

const readSize = 1 << 30

func bandwidthBuffer() []uint64 {
	readOnce.Do(func() {
		// Anonymous memory advised for huge pages, as a shard's copy of
		// its weights is: with the Go heap's small pages a single core
		// reads about 10% slower here.
		mem, _, err := anonmem.Alloc(readSize)
		if err != nil {
			panic(err)
		}
		readBuf = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), readSize/8)
		for i := range readBuf {
			readBuf[i] = uint64(i)
		}
	})
	return readBuf
}

// sum8 adds up x with eight independent accumulators, so that the loop is
// bound by loads, not by the latency of one chain of additions.
func sum8(x []uint64) uint64 {
	var a0, a1, a2, a3, a4, a5, a6, a7 uint64
	n := len(x) &^ 7
	for i := 0; i < n; i += 8 {
		v := (*[8]uint64)(x[i:])
		a0 += v[0]
		a1 += v[1]
		a2 += v[2]
		a3 += v[3]
		a4 += v[4]
		a5 += v[5]
		a6 += v[6]
		a7 += v[7]
	}
	for _, v := range x[n:] {
		a0 += v
	}
	return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
}

var sink uint64

// sumTask sums share i of buf into sums[i] for a kernels.Pool.
type sumTask struct {
	buf  []uint64
	sums []uint64
	vec  func([]float32) float32 // nil: sum8
}

func (t *sumTask) Run(lo, hi int) {
	n := len(t.sums)
	share := len(t.buf) / n
	for g := lo; g < hi; g++ {
		part := t.buf[g*share : (g+1)*share]
		if g == n-1 {
			part = t.buf[g*share:]
		}
		if t.vec != nil {
			f := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(part))), 2*len(part))
			t.sums[g] = uint64(math.Float32bits(t.vec(f)))
			continue
		}
		t.sums[g] = sum8(part)
	}
}

// BenchmarkReadBandwidth streams a 1 GiB buffer (far beyond any cache)
// on a kernels.Pool of 1 and 2 threads, each summing a contiguous share:
// its MB/s is the machine's memory read bandwidth, the ceiling of a
// memory-bound matrix-vector product.
func BenchmarkReadBandwidth(b *testing.B) {
	buf := bandwidthBuffer()
	for _, kern := range []string{"go", "simd"} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("kernel=%s/size=1GiB/threads=%d", kern, threads), func(b *testing.B) {
				pool := kernels.NewPool(threads)
				defer pool.Close()
				t := &sumTask{buf: buf, sums: make([]uint64, threads)}
				if kern == "simd" {
					t.vec = kernels.Best().Vec().Sum
				}
				b.SetBytes(readSize)
				b.ReportAllocs()
				for b.Loop() {
					pool.Parallel(threads, 1, t)
				}
				for _, s := range t.sums {
					sink += s
				}
			})
		}
	}
}

// TestSum8 checks the benchmark's kernel (so that it measures a correct
// sum) on a small buffer.
func TestSum8(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000} {
		x := make([]uint64, n)
		var want uint64
		for i := range x {
			x[i] = uint64(i*i + 1)
			want += x[i]
		}
		if got := sum8(x); got != want {
			t.Errorf("sum8(%d values) = %d, want %d", n, got, want)
		}
	}
}
