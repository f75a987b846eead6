package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

func TestSoftmax(t *testing.T) {
	kerneltest.TestSoftmax(t, kernels.Softmax)
}

func BenchmarkSoftmax(b *testing.B) {
	for _, n := range []int{4096} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			x := kerneltest.RandVec(rand.New(rand.NewPCG(1, 3)), n, 1)
			y := make([]float32, n)
			b.SetBytes(int64(4 * n))
			b.ReportAllocs()
			for b.Loop() {
				copy(y, x)
				kernels.Softmax(y)
			}
		})
	}
}
