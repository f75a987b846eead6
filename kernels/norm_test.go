package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

func TestRMSNorm(t *testing.T) {
	kerneltest.TestRMSNorm(t, kernels.RMSNorm)
}

// TestRMSNormRows checks that the batched form gives, row by row, the bits
// of RMSNorm.
func TestRMSNormRows(t *testing.T) {
	kerneltest.CompareRMSNorm(t, func(dst, x, w []float32, eps float32) {
		kernels.RMSNormRows(dst, x, w, eps)
	}, kernels.RMSNorm)
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1, 31, 64, 100} {
		const rows = 5
		x := kerneltest.RandVec(r, n*rows, 2)
		w := kerneltest.RandVec(r, n, 1)
		got := make([]float32, len(x))
		kernels.RMSNormRows(got, x, w, 1e-6)
		want := make([]float32, len(x))
		for i := range rows {
			kernels.RMSNorm(want[i*n:(i+1)*n], x[i*n:(i+1)*n], w, 1e-6)
		}
		kerneltest.EqualBits(t, fmt.Sprintf("RMSNormRows(n=%d, rows=%d)", n, rows), got, want)
	}
}

func TestRMSNormPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"RMSNorm short w":     func() { kernels.RMSNorm(make([]float32, 4), make([]float32, 4), make([]float32, 3), 0) },
		"RMSNorm short dst":   func() { kernels.RMSNorm(make([]float32, 3), make([]float32, 4), make([]float32, 4), 0) },
		"RMSNormRows partial": func() { kernels.RMSNormRows(make([]float32, 5), make([]float32, 5), make([]float32, 2), 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: did not panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkRMSNorm(b *testing.B) {
	for _, n := range []int{4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			x, w := kerneltest.RandVec(r, n, 1), kerneltest.RandVec(r, n, 1)
			dst := make([]float32, n)
			b.SetBytes(int64(12 * n))
			b.ReportAllocs()
			for b.Loop() {
				kernels.RMSNorm(dst, x, w, 1e-5)
			}
		})
	}
}
