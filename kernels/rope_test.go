package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

func newRoPE(cfg kernels.RoPEConfig) (kerneltest.RoPEApplier, error) {
	return kernels.NewRoPE(cfg)
}

func TestRoPE(t *testing.T) {
	kerneltest.TestRoPE(t, newRoPE)
}

// TestRoPECache checks that reserved, grown and uncached positions give
// the same bits.
func TestRoPECache(t *testing.T) {
	cfg := kernels.RoPEConfig{Mode: kernels.RoPENeox, Dims: 64, Base: 1e6}
	reserved, err := kernels.NewRoPE(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reserved.Reserve(kernels.AutoReserve + 100)
	fresh, _ := kernels.NewRoPE(cfg)
	for _, p := range []int{4999, 0, 77, 4096, kernels.AutoReserve + 50} {
		var cr, sr, cf, sf [32]float32
		reserved.CosSin(p, cr[:], sr[:])
		fresh.CosSin(p, cf[:], sf[:])
		kerneltest.EqualBits(t, fmt.Sprintf("cos(p=%d)", p), cf[:], cr[:])
		kerneltest.EqualBits(t, fmt.Sprintf("sin(p=%d)", p), sf[:], sr[:])
	}
	r := rand.New(rand.NewPCG(3, 3))
	pos := []int32{3, kernels.AutoReserve + 99, 10000, kernels.AutoReserve}
	x := kerneltest.RandVec(r, len(pos)*2*64, 1)
	a, b := append([]float32(nil), x...), append([]float32(nil), x...)
	reserved.Apply(a, pos, 2, 64)
	fresh.Apply(b, pos, 2, 64) // grows to AutoReserve, computes the rest
	kerneltest.EqualBits(t, "Apply past AutoReserve", b, a)
	if got := reserved.Config().Scale; got != 1 {
		t.Errorf("Config().Scale = %v, want 1 (0 means 1)", got)
	}
	for _, mode := range []kernels.RoPEMode{kernels.RoPENormal, kernels.RoPENeox} {
		big := kernels.RoPEConfig{Mode: mode, Dims: 1200, Base: 1e4}
		wide, _ := kernels.NewRoPE(big) // more pairs than one stack chunk
		wideRef, _ := kernels.NewRoPE(big)
		wideRef.Reserve(kernels.AutoReserve + 1)
		y := kerneltest.RandVec(r, 1200, 1)
		ya, yb := append([]float32(nil), y...), append([]float32(nil), y...)
		wide.Apply(ya, []int32{kernels.AutoReserve}, 1, 1200)
		wideRef.Apply(yb, []int32{kernels.AutoReserve}, 1, 1200)
		kerneltest.EqualBits(t, fmt.Sprintf("Apply(%s, 1200 dims) past AutoReserve", mode), ya, yb)
	}
	if a := testing.AllocsPerRun(5, func() { fresh.Apply(b, pos, 2, 64) }); a != 0 {
		t.Errorf("Apply past AutoReserve allocates %v times per call, want 0", a)
	}
}

// TestRoPELlamaCpp compares with ggml's formula as ggml computes it (float32
// angles by repeated multiplication) at small positions, where ggml's
// angle error is small: within 1e-5 relative to the pair's magnitude.
func TestRoPELlamaCpp(t *testing.T) {
	for _, mode := range []kernels.RoPEMode{kernels.RoPENormal, kernels.RoPENeox} {
		const d, heads, base = 64, 2, 10000
		rope, err := kernels.NewRoPE(kernels.RoPEConfig{Mode: mode, Dims: d, Base: base})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(2, 2))
		pos := []int32{0, 1, 2, 17, 100}
		x := kerneltest.RandVec(r, len(pos)*heads*d, 1)
		got := append([]float32(nil), x...)
		rope.Apply(got, pos, heads, d)
		thetaScale := float32(math.Pow(base, -2.0/d))
		for ti, p := range pos {
			for h := range heads {
				v := x[(ti*heads+h)*d:]
				g := got[(ti*heads+h)*d:]
				theta := float32(p)
				for i := 0; i < d; i += 2 {
					c, s := float32(math.Cos(float64(theta))), float32(math.Sin(float64(theta)))
					i0, i1 := i, i+1
					if mode == kernels.RoPENeox {
						i0, i1 = i/2, i/2+d/2
					}
					y0 := v[i0]*c - v[i1]*s
					y1 := v[i0]*s + v[i1]*c
					mag := math.Abs(float64(v[i0])) + math.Abs(float64(v[i1]))
					if math.Abs(float64(g[i0]-y0)) > 1e-5*mag || math.Abs(float64(g[i1]-y1)) > 1e-5*mag {
						t.Fatalf("%s p=%d pair %d: got %v, %v; ggml %v, %v", mode, p, i/2, g[i0], g[i1], y0, y1)
					}
					theta *= thetaScale
				}
			}
		}
	}
}

func BenchmarkRoPE(b *testing.B) {
	const heads, hd = 32, 128
	rope, _ := kernels.NewRoPE(kernels.RoPEConfig{Mode: kernels.RoPENormal, Dims: hd, Base: 10000})
	x := kerneltest.RandVec(rand.New(rand.NewPCG(1, 5)), heads*hd, 1)
	pos := []int32{1000}
	rope.Reserve(1001)
	b.Run(fmt.Sprintf("heads=%d/headDim=%d", heads, hd), func(b *testing.B) {
		b.SetBytes(4 * heads * hd)
		b.ReportAllocs()
		for b.Loop() {
			rope.Apply(x, pos, heads, hd)
		}
	})
	b.Run("table/positions=4096", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := kernels.NewRoPE(kernels.RoPEConfig{Mode: kernels.RoPENormal, Dims: hd, Base: 10000})
			r.Reserve(4096)
		}
	})
}

// TestRoPEReserveAmortized checks that reserving one more position at a
// time (as a decode loop does) rarely allocates.
func TestRoPEReserveAmortized(t *testing.T) {
	r, _ := kernels.NewRoPE(kernels.RoPEConfig{Mode: kernels.RoPENormal, Dims: 8, Base: 10000})
	n := 1
	allocs := testing.AllocsPerRun(1000, func() {
		r.Reserve(n)
		n++
	})
	if allocs > 0.05 {
		t.Errorf("Reserve(n+1) allocates %v times per call on average, want amortized O(1/n)", allocs)
	}
}
