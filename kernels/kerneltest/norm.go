package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas/blas64"
)

// RMSNormFunc is an implementation of kernels.RMSNorm.
type RMSNormFunc func(dst, x, w []float32, eps float32)

// NormSizes are the row lengths the RMSNorm suite tries.
var NormSizes = Sizes(70, 96, 127, 128, 129, 1000, 2048, 4096, 4099)

// RMSNormTol is the bound on |got - want| for one output of RMSNorm over n
// elements whose exact value is want: the float rule's sum of n squares is
// within (n/32 + 40) U relative (lanes of n/32 terms, a tail of up to 31,
// the reduction tree), the mean and eps add one U each, the square root
// halves the error and adds half a U, the reciprocal and the two products
// add one U each:
//
//	(n/64 + 25) U |want| + MinSubnormal
func RMSNormTol(n int, want float64) float64 {
	return (float64(n)/64+25)*U*math.Abs(want) + MinSubnormal
}

// rmsNormRef is RMSNorm in float64 (gonum's Dot for the sum of squares).
func rmsNormRef(x, w []float32, eps float32) []float64 {
	x64 := f64s(x)
	n := len(x)
	ss := blas64.Dot(blas64.Vector{N: n, Data: x64, Inc: 1}, blas64.Vector{N: n, Data: x64, Inc: 1})
	scale := 1 / math.Sqrt(ss/float64(n)+float64(eps))
	y := make([]float64, n)
	for i := range y {
		y[i] = x64[i] * scale * float64(w[i])
	}
	return y
}

// TestRMSNorm is the conformance suite of an RMSNorm: for every length in
// NormSizes and offset in Offsets, with inputs of varied magnitude, it
// checks the result against a float64 reference within RMSNormTol, that
// nothing outside dst is written and the inputs are not, that dst = x in
// place gives the same bits, and that a repeated call does too. It also
// checks that calls allocate nothing.
func TestRMSNorm(t *testing.T, f RMSNormFunc) {
	r := rand.New(rand.NewPCG(1, 0x4e))
	for _, n := range NormSizes {
		for _, off := range Offsets {
			scale := math.Pow(10, float64(r.IntN(9)-4)) // 1e-4 .. 1e4
			x := RandVec(r, n, scale)
			w := RandVec(r, n, 1)
			eps := []float32{1e-5, 1e-6, 0}[r.IntN(3)]
			if n%5 == 0 && n > 0 {
				x[r.IntN(n)] = 0
			}
			label := fmt.Sprintf("RMSNorm(n=%d, off=%d, scale=%g, eps=%g)", n, off, scale, eps)
			xs, ws := Unaligned(x, off), Unaligned(w, (off+1)%4)
			dst := NewGuarded(n, (off+2)%4)
			f(dst.Slice(), xs, ws, eps)
			dst.Check(t, label)
			EqualBits(t, label+" x after the call", xs, x)
			EqualBits(t, label+" w after the call", ws, w)
			got := dst.Slice()
			want := rmsNormRef(x, w, eps)
			if n > 0 && slicesAllZero(x) {
				continue // 0/sqrt(eps): the reference agrees, nothing to learn
			}
			WithinTol(t, label, got, want, func(i int) float64 { return RMSNormTol(n, want[i]) })

			again := NewGuarded(n, off)
			f(again.Slice(), xs, ws, eps)
			EqualBits(t, label+" repeated", again.Slice(), got)
			inPlace := Unaligned(x, (off+3)%4)
			f(inPlace, inPlace, ws, eps)
			EqualBits(t, label+" in place", inPlace, got)
		}
	}
	t.Run("zeros", func(t *testing.T) {
		x := make([]float32, 33)
		w := RandVec(r, 33, 1)
		dst := make([]float32, 33)
		f(dst, x, w, 1e-5)
		for i, v := range dst {
			if v != 0 {
				t.Fatalf("RMSNorm(zeros)[%d] = %v, want 0", i, v)
			}
		}
	})
	t.Run("allocs", func(t *testing.T) {
		x := RandVec(r, 4096, 1)
		w := RandVec(r, 4096, 1)
		dst := make([]float32, 4096)
		if a := testing.AllocsPerRun(20, func() { f(dst, x, w, 1e-5) }); a != 0 {
			t.Errorf("RMSNorm(n=4096) allocates %v times per call, want 0", a)
		}
	})
}

func slicesAllZero(x []float32) bool {
	for _, v := range x {
		if v != 0 {
			return false
		}
	}
	return true
}

// CompareRMSNorm checks that got computes the same bits as want for every
// length in NormSizes and offset in Offsets.
func CompareRMSNorm(t *testing.T, got, want RMSNormFunc) {
	r := rand.New(rand.NewPCG(2, 0x4e))
	for _, n := range NormSizes {
		for _, off := range Offsets {
			x := RandVec(r, n, math.Pow(10, float64(r.IntN(9)-4)))
			w := RandVec(r, n, 1)
			label := fmt.Sprintf("RMSNorm(n=%d, off=%d)", n, off)
			g := NewGuarded(n, off)
			got(g.Slice(), Unaligned(x, off), Unaligned(w, off), 1e-6)
			g.Check(t, label)
			wt := make([]float32, n)
			want(wt, x, w, 1e-6)
			EqualBits(t, label, g.Slice(), wt)
		}
	}
}
