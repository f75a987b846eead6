//go:build !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAVX512QuantizeQ8 compares the AVX-512 Q8 quantizer with the generic
// one bit for bit: blocks of every magnitude from subnormal to near the
// float32 limit, exact rounding ties, zeros of both signs, NaNs, infinities,
// and blocks so small that 127/amax overflows.
func TestAVX512QuantizeQ8(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("AVX512 path not supported on this CPU")
	}
	f := AVX512.Vec().QuantizeQ8
	r := rand.New(rand.NewPCG(8, 8))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 0.5, -0.5, 1.5, 127, -127}
	for trial := range 3000 {
		nb := 1 + r.IntN(9)
		x := asmUnaligned[float32](r, 32*nb)
		kind := trial % 6
		for b := range nb {
			scale := math.Ldexp(1, r.IntN(300)-150)
			for i := range 32 {
				v := float32(r.NormFloat64() * scale)
				switch kind {
				case 1: // special values sprinkled in
					if r.IntN(8) == 0 {
						v = special[r.IntN(len(special))]
					}
				case 2: // multiples of 1/2 against an amax of 127: ties at every step
					v = float32(r.IntN(255)-127) / 2
					if i == 0 {
						v = 127
					}
				case 3: // all zero
					v = 0
				case 4: // subnormal block
					v = float32(r.IntN(64)-32) * math.SmallestNonzeroFloat32
				}
				x[32*b+i] = v
			}
		}
		gq, gd, gs := make([]int8, 32*nb), make([]float32, nb), make([]int32, nb)
		zq, zd, zs := asmUnaligned[int8](r, 32*nb), asmUnaligned[float32](r, nb), asmUnaligned[int32](r, nb)
		quantizeQ8(gq, gd, gs, x)
		f(zq, zd, zs, x)
		for b := range nb {
			if math.Float32bits(zd[b]) != math.Float32bits(gd[b]) || zs[b] != gs[b] {
				t.Fatalf("trial %d block %d: d, s = %g, %d, want %g, %d (x = %v)", trial, b, zd[b], zs[b], gd[b], gs[b], x[32*b:32*b+32])
			}
		}
		for i := range gq {
			if zq[i] != gq[i] {
				t.Fatalf("trial %d: q[%d] = %d, want %d (x = %g)", trial, i, zq[i], gq[i], x[i])
			}
		}
	}
}

// TestAVX512QuantizeQ8K is TestAVX512QuantizeQ8 for the Q8K form, with
// ties of magnitude between elements of either sign (the first wins).
func TestAVX512QuantizeQ8K(t *testing.T) {
	if !AVX512.Supported() {
		t.Skip("AVX512 path not supported on this CPU")
	}
	f := AVX512.Vec().QuantizeQ8K
	r := rand.New(rand.NewPCG(9, 9))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32}
	for trial := range 1500 {
		nb := 1 + r.IntN(4)
		x := asmUnaligned[float32](r, 256*nb)
		kind := trial % 6
		for b := range nb {
			scale := math.Ldexp(1, r.IntN(300)-150)
			for i := range 256 {
				v := float32(r.NormFloat64() * scale)
				switch kind {
				case 1:
					if r.IntN(16) == 0 {
						v = special[r.IntN(len(special))]
					}
				case 2: // few distinct magnitudes of both signs: ties
					v = float32(r.IntN(9) - 4)
				case 3:
					v = 0
				case 4:
					v = float32(r.IntN(64)-32) * math.SmallestNonzeroFloat32
				}
				x[256*b+i] = v
			}
		}
		gq, gd, gg := make([]int8, 256*nb), make([]float32, nb), make([]int16, 16*nb)
		zq, zd, zg := asmUnaligned[int8](r, 256*nb), asmUnaligned[float32](r, nb), asmUnaligned[int16](r, 16*nb)
		quantizeQ8K(gq, gd, gg, x)
		f(zq, zd, zg, x)
		for b := range nb {
			if math.Float32bits(zd[b]) != math.Float32bits(gd[b]) {
				t.Fatalf("trial %d block %d: d = %g, want %g", trial, b, zd[b], gd[b])
			}
		}
		for i := range gq {
			if zq[i] != gq[i] {
				t.Fatalf("trial %d: q[%d] = %d, want %d (x = %g)", trial, i, zq[i], gq[i], x[i])
			}
		}
		for i := range gg {
			if zg[i] != gg[i] {
				t.Fatalf("trial %d: bsums[%d] = %d, want %d", trial, i, zg[i], gg[i])
			}
		}
	}
}
