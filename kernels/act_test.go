package kernels_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

func TestSiLU(t *testing.T)   { kerneltest.TestSiLU(t, kernels.SiLU) }
func TestGELU(t *testing.T)   { kerneltest.TestGELU(t, kernels.GELU) }
func TestSwiGLU(t *testing.T) { kerneltest.TestSwiGLU(t, kernels.SwiGLU) }
func TestGeGLU(t *testing.T)  { kerneltest.TestGeGLU(t, kernels.GeGLU) }

// TestGLUComposition checks that the fused gates are the activation
// followed by the product, bit for bit.
func TestGLUComposition(t *testing.T) {
	compose := func(act kerneltest.UnaryFunc) kerneltest.BinaryFunc {
		return func(dst, a, b []float32) {
			tmp := make([]float32, len(a))
			act(tmp, a)
			kernels.Mul(dst, tmp, b)
		}
	}
	kerneltest.CompareBinary(t, "SwiGLU", kernels.SwiGLU, compose(kernels.SiLU))
	kerneltest.CompareBinary(t, "GeGLU", kernels.GeGLU, compose(kernels.GELU))
}

func BenchmarkActivations(b *testing.B) {
	const n = 11008
	r := rand.New(rand.NewPCG(1, 4))
	x, y := kerneltest.RandVec(r, n, 3), kerneltest.RandVec(r, n, 1)
	dst := make([]float32, n)
	for _, k := range []struct {
		name string
		f    func()
	}{
		{"SiLU", func() { kernels.SiLU(dst, x) }},
		{"GELU", func() { kernels.GELU(dst, x) }},
		{"SwiGLU", func() { kernels.SwiGLU(dst, x, y) }},
	} {
		b.Run(fmt.Sprintf("%s/n=%d", k.name, n), func(b *testing.B) {
			b.SetBytes(4 * n)
			b.ReportAllocs()
			for b.Loop() {
				k.f()
			}
		})
	}
}
