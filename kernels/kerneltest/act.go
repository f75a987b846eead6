package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// SoftmaxFunc is an implementation of kernels.Softmax (in place).
type SoftmaxFunc func(x []float32)

// UnaryFunc is an elementwise kernel dst_i = f(x_i), such as kernels.SiLU
// and kernels.GELU.
type UnaryFunc func(dst, x []float32)

// BinaryFunc is an elementwise kernel dst_i = f(a_i, b_i), such as
// kernels.Add, kernels.Mul and kernels.SwiGLU (a = gate, b = up).
type BinaryFunc func(dst, a, b []float32)

// ScaleFunc is an implementation of kernels.Scale.
type ScaleFunc func(dst, x []float32, s float32)

// VecSizes are the lengths the elementwise and softmax suites try.
var VecSizes = Sizes(70, 100, 255, 256, 257, 1000, 4097)

// SoftmaxTol is the bound on |got - want| for output i of a softmax over n
// elements, where d = x_i - max(x) and want is the exact value: rounding d
// costs |d| U relative, Exp one ulp (2 U), the float rule's sum
// (n/32 + 40) U, the reciprocal and the product 1.5 U more; subnormal
// terms get absolute slack:
//
//	(|d| + n/32 + 48) U want + 2 MinSubnormal
func SoftmaxTol(n int, d, want float64) float64 {
	return (math.Abs(d)+float64(n)/32+48)*U*want + 2*MinSubnormal
}

func softmaxRef(x []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	y := make([]float64, len(x))
	var s float64
	for i, v := range x {
		y[i] = math.Exp(float64(v) - m)
		s += y[i]
	}
	for i := range y {
		y[i] /= s
	}
	return y
}

// TestSoftmax is the conformance suite of a Softmax: for every length in
// VecSizes and offset in Offsets, with logits of spread 0.1 to 100 and some
// -Inf entries (masked), it checks the result against a float64 reference
// within SoftmaxTol, that -Inf gives exactly 0, that nothing outside x is
// written, that a repeated call gives the same bits, and that calls
// allocate nothing.
func TestSoftmax(t *testing.T, f SoftmaxFunc) {
	r := rand.New(rand.NewPCG(3, 0x50))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			spread := []float64{0.1, 1, 10, 100}[r.IntN(4)]
			x := RandVec(r, n, spread)
			if n > 3 && r.IntN(3) == 0 {
				x[r.IntN(n)] = float32(math.Inf(-1))
			}
			label := fmt.Sprintf("Softmax(n=%d, off=%d, spread=%g)", n, off, spread)
			g := GuardedCopy(x, off)
			f(g.Slice())
			g.Check(t, label)
			got := g.Slice()
			want := softmaxRef(x)
			m := math.Inf(-1)
			for _, v := range x {
				m = math.Max(m, float64(v))
			}
			WithinTol(t, label, got, want, func(i int) float64 { return SoftmaxTol(n, float64(x[i])-m, want[i]) })
			for i, v := range x {
				if math.IsInf(float64(v), -1) && got[i] != 0 {
					t.Errorf("%s[%d] = %v for -Inf, want 0", label, i, got[i])
				}
			}
			again := Unaligned(x, (off+1)%4)
			f(again)
			EqualBits(t, label+" repeated", again, got)
		}
	}
	x := RandVec(r, 4096, 3)
	if a := testing.AllocsPerRun(20, func() { f(x) }); a != 0 {
		t.Errorf("Softmax(n=4096) allocates %v times per call, want 0", a)
	}
}

// CompareSoftmax checks that got computes the same bits as want for every
// length in VecSizes and offset in Offsets.
func CompareSoftmax(t *testing.T, got, want SoftmaxFunc) {
	r := rand.New(rand.NewPCG(4, 0x50))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			x := RandVec(r, n, []float64{0.1, 1, 10, 100}[r.IntN(4)])
			label := fmt.Sprintf("Softmax(n=%d, off=%d)", n, off)
			g := GuardedCopy(x, off)
			got(g.Slice())
			g.Check(t, label)
			w := Unaligned(x, 0)
			want(w)
			EqualBits(t, label, g.Slice(), w)
		}
	}
}

// actInputs returns n activation inputs: mostly gaussian with standard
// deviation 4, with some large, tiny, subnormal and zero values.
func actInputs(r *rand.Rand, n int) []float32 {
	x := RandVec(r, n, 4)
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 1e-40, -1e-40, 50, -50, 88, -88, 89, -89, 100, -100, 3e38, -3e38}
	for i := range x {
		if r.IntN(8) == 0 {
			x[i] = special[r.IntN(len(special))]
		}
	}
	return x
}

// runUnary runs f on x at offset off with a guarded output, checks the
// guards, that x is unchanged and that dst = x in place agrees, and
// returns the output.
func runUnary(t *testing.T, label string, f UnaryFunc, x []float32, off int) []float32 {
	t.Helper()
	xs := Unaligned(x, off)
	d := NewGuarded(len(x), (off+1)%4)
	f(d.Slice(), xs)
	d.Check(t, label)
	EqualBits(t, label+" x after the call", xs, x)
	in := Unaligned(x, (off+2)%4)
	f(in, in)
	EqualBits(t, label+" in place", in, d.Slice())
	return d.Slice()
}

// runBinary is runUnary for two inputs; in place is tried as dst = a and
// dst = b.
func runBinary(t *testing.T, label string, f BinaryFunc, a, b []float32, off int) []float32 {
	t.Helper()
	as, bs := Unaligned(a, off), Unaligned(b, (off+1)%4)
	d := NewGuarded(len(a), (off+2)%4)
	f(d.Slice(), as, bs)
	d.Check(t, label)
	EqualBits(t, label+" a after the call", as, a)
	EqualBits(t, label+" b after the call", bs, b)
	ina := Unaligned(a, (off+3)%4)
	f(ina, ina, bs)
	EqualBits(t, label+" in place (dst = a)", ina, d.Slice())
	inb := Unaligned(b, (off+3)%4)
	f(inb, as, inb)
	EqualBits(t, label+" in place (dst = b)", inb, d.Slice())
	return d.Slice()
}

func siluRef(x float64) float64 { return x / (1 + math.Exp(-x)) }

// siluTol: Exp's ulp and two roundings, 3 ulp; below x = -88.7 the
// float32 computation gives -0 for values under 3e-37.
func siluTol(x, want float64) float64 {
	if x < -88.7 {
		return 3e-37
	}
	return 3 * ULP(want)
}

func geluRef(x float64) float64 {
	u := math.Sqrt(2/math.Pi) * x * (1 + 0.044715*x*x)
	if math.IsInf(u, 0) {
		return math.Max(x, 0)
	}
	return x / (1 + math.Exp(-2*u)) // = 0.5 x (1 + tanh u), without cancellation
}

// geluTol: the error of the exponent z = -2u (a few ulp of z) moves the
// result by up to |δz| relative: (4 + 6|u|) ulp; where e^z overflows the
// result is -0 for a value below |x| e^-88.7.
func geluTol(x, want float64) float64 {
	u := math.Sqrt(2/math.Pi) * x * (1 + 0.044715*x*x)
	return (4+6*math.Abs(u))*ULP(want) + math.Abs(x)*3e-39
}

// TestSiLU is the conformance suite of a SiLU: reference within 3 ulp (see
// siluTol), guards, unchanged input, in place, and specials (±0, +Inf,
// NaN).
func TestSiLU(t *testing.T, f UnaryFunc) {
	testUnary(t, "SiLU", f, siluRef, siluTol)
}

// TestGELU is the conformance suite of a GELU (tanh form): reference
// within (4 + 6|u|) ulp (see geluTol), guards, unchanged input, in place,
// and specials.
func TestGELU(t *testing.T, f UnaryFunc) {
	testUnary(t, "GELU", f, geluRef, geluTol)
}

func testUnary(t *testing.T, kernel string, f UnaryFunc, ref func(float64) float64, tol func(x, want float64) float64) {
	r := rand.New(rand.NewPCG(5, uint64(len(kernel))))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			x := actInputs(r, n)
			label := fmt.Sprintf("%s(n=%d, off=%d)", kernel, n, off)
			got := runUnary(t, label, f, x, off)
			want := make([]float64, n)
			for i, v := range x {
				want[i] = ref(float64(v))
			}
			WithinTol(t, label, got, want, func(i int) float64 { return tol(float64(x[i]), want[i]) })
		}
	}
	inf := float32(math.Inf(1))
	x := []float32{0, float32(math.Copysign(0, -1)), inf, float32(math.NaN())}
	dst := make([]float32, len(x))
	f(dst, x)
	if dst[0] != 0 || dst[1] != 0 || dst[2] != inf || dst[3] == dst[3] {
		t.Errorf("%s(0, -0, +Inf, NaN) = %v, want [0 -0 +Inf NaN]", kernel, dst)
	}
	big := actInputs(r, 4096)
	out := make([]float32, len(big))
	if a := testing.AllocsPerRun(10, func() { f(out, big) }); a != 0 {
		t.Errorf("%s(n=4096) allocates %v times per call, want 0", kernel, a)
	}
}

// TestSwiGLU is the conformance suite of a SwiGLU, dst_i = silu(a_i) * b_i:
// within siluTol plus half an ulp of the product.
func TestSwiGLU(t *testing.T, f BinaryFunc) {
	testGLU(t, "SwiGLU", f, siluRef, siluTol)
}

// TestGeGLU is the conformance suite of a GeGLU, dst_i = gelu(a_i) * b_i.
func TestGeGLU(t *testing.T, f BinaryFunc) {
	testGLU(t, "GeGLU", f, geluRef, geluTol)
}

func testGLU(t *testing.T, kernel string, f BinaryFunc, ref func(float64) float64, tol func(x, want float64) float64) {
	r := rand.New(rand.NewPCG(6, uint64(len(kernel))))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			a := actInputs(r, n)
			b := RandVec(r, n, 2)
			label := fmt.Sprintf("%s(n=%d, off=%d)", kernel, n, off)
			got := runBinary(t, label, f, a, b, off)
			want := make([]float64, n)
			for i := range a {
				want[i] = ref(float64(a[i])) * float64(b[i])
			}
			WithinTol(t, label, got, want, func(i int) float64 {
				act := ref(float64(a[i]))
				return tol(float64(a[i]), act)*math.Abs(float64(b[i])) + ULP(want[i])
			})
		}
	}
	a, b := actInputs(r, 4096), RandVec(r, 4096, 1)
	out := make([]float32, len(a))
	if al := testing.AllocsPerRun(10, func() { f(out, a, b) }); al != 0 {
		t.Errorf("%s(n=4096) allocates %v times per call, want 0", kernel, al)
	}
}

// TestAdd checks an Add bit for bit against the correctly rounded sum
// (float64's sum of two float32s rounded to float32 is correctly rounded).
func TestAdd(t *testing.T, f BinaryFunc) {
	testExact(t, "Add", f, func(a, b float32) float32 { return float32(float64(a) + float64(b)) })
}

// TestMul checks a Mul bit for bit against the correctly rounded product.
func TestMul(t *testing.T, f BinaryFunc) {
	testExact(t, "Mul", f, func(a, b float32) float32 { return float32(float64(a) * float64(b)) })
}

func testExact(t *testing.T, kernel string, f BinaryFunc, op func(a, b float32) float32) {
	r := rand.New(rand.NewPCG(7, uint64(len(kernel))))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			a, b := actInputs(r, n), actInputs(r, n)
			label := fmt.Sprintf("%s(n=%d, off=%d)", kernel, n, off)
			got := runBinary(t, label, f, a, b, off)
			want := make([]float32, n)
			for i := range a {
				want[i] = op(a[i], b[i])
			}
			EqualBits(t, label, got, want)
		}
	}
	a, b := actInputs(r, 4096), actInputs(r, 4096)
	out := make([]float32, len(a))
	if al := testing.AllocsPerRun(10, func() { f(out, a, b) }); al != 0 {
		t.Errorf("%s(n=4096) allocates %v times per call, want 0", kernel, al)
	}
}

// TestScale checks a Scale bit for bit against the correctly rounded
// products.
func TestScale(t *testing.T, f ScaleFunc) {
	r := rand.New(rand.NewPCG(8, 1))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			x := actInputs(r, n)
			s := float32(r.NormFloat64())
			label := fmt.Sprintf("Scale(n=%d, off=%d, s=%v)", n, off, s)
			got := runUnary(t, label, func(dst, x []float32) { f(dst, x, s) }, x, off)
			want := make([]float32, n)
			for i, v := range x {
				want[i] = float32(float64(v) * float64(s))
			}
			EqualBits(t, label, got, want)
		}
	}
}

// CompareUnary checks that got computes the same bits as want, an
// elementwise kernel of one input, for every length in VecSizes and offset
// in Offsets.
func CompareUnary(t *testing.T, kernel string, got, want UnaryFunc) {
	r := rand.New(rand.NewPCG(9, uint64(len(kernel))))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			x := actInputs(r, n)
			label := fmt.Sprintf("%s(n=%d, off=%d)", kernel, n, off)
			g := runUnary(t, label, got, x, off)
			w := make([]float32, n)
			want(w, x)
			EqualBits(t, label, g, w)
		}
	}
}

// CompareBinary is CompareUnary for kernels of two inputs.
func CompareBinary(t *testing.T, kernel string, got, want BinaryFunc) {
	r := rand.New(rand.NewPCG(10, uint64(len(kernel))))
	for _, n := range VecSizes {
		for _, off := range Offsets {
			a, b := actInputs(r, n), actInputs(r, n)
			label := fmt.Sprintf("%s(n=%d, off=%d)", kernel, n, off)
			g := runBinary(t, label, got, a, b, off)
			w := make([]float32, n)
			want(w, a, b)
			EqualBits(t, label, g, w)
		}
	}
}
