//go:build amd64 && !purego

package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/kernels/kerneltest"
)

// The AVX2 vector kernels must give the generic kernels' bits on every
// input (the determinism contract). These tests compare AVX2.Vec() with
// Generic.Vec() entry by entry, then run the kerneltest Compare suites on
// the path-aware kernels.

func hasAVX2() bool {
	x := &cpu.X86
	return x.HasAVX2 && x.HasFMA && x.HasF16C && x.HasBMI2
}

func vecOrSkip(t testing.TB) (avx, gen *kernels.VecKernels) {
	t.Helper()
	if !hasAVX2() {
		t.Skip("CPU lacks AVX2, FMA, F16C or BMI2")
	}
	return kernels.AVX2.Vec(), kernels.Generic.Vec()
}

// TestRequireVecAssembly fails when the CPU has AVX2 but the build did not
// install the AVX2 vector kernels (or installed generic ones).
func TestRequireVecAssembly(t *testing.T) {
	a, g := vecOrSkip(t)
	if a == g {
		t.Fatal("AVX2.Vec() is the generic table on a CPU with AVX2")
	}
	av, gv := reflect.ValueOf(*a), reflect.ValueOf(*g)
	for i := range av.NumField() {
		name := av.Type().Field(i).Name
		if name == "QuantizeQ8" || name == "QuantizeQ8K" {
			continue // AVX-512 only: AVX2 quantizes with the generic code
		}
		if av.Field(i).Pointer() == gv.Field(i).Pointer() {
			t.Errorf("AVX2 path's %s is the generic kernel", name)
		}
	}
	if !kernels.AVX512.Supported() {
		return
	}
	zv := reflect.ValueOf(*kernels.AVX512.Vec())
	for i := range zv.NumField() {
		if zv.Field(i).Pointer() == gv.Field(i).Pointer() {
			t.Errorf("AVX512 path's %s is the generic kernel", zv.Type().Field(i).Name)
		}
	}
}

// vecSizes are 0..300 and some long lengths with odd tails.
func vecSizes() []int {
	s := make([]int, 0, 310)
	for n := range 301 {
		s = append(s, n)
	}
	return append(s, 2048, 2049, 2055, 4097, 5632, 5639)
}

// specials are the inputs every elementwise test mixes in.
var specials = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 1e-30, -1e-30, 1e-40, -1e-40, 1e-45, -1e-45,
	88, -88, 88.72, 88.73, 89, -89, 0x1.640002p+6, 89.0001, -103.97, -104, -104.0001,
	100, -100, 3e38, -3e38,
	float32(math.Inf(1)), float32(math.Inf(-1)),
	math.MaxFloat32, -math.MaxFloat32, 0x1p-126, -0x1p-126,
	-87.33655, -87.33654, -87.5, -95, -103.28, -103.3,
}

// inputs returns n values: gaussians of several scales with specials.
func inputs(r *rand.Rand, n int, nan bool) []float32 {
	x := make([]float32, n)
	scale := []float64{0.01, 1, 4, 30, 100}[r.IntN(5)]
	for i := range x {
		switch {
		case r.IntN(6) == 0:
			x[i] = specials[r.IntN(len(specials))]
		case nan && r.IntN(40) == 0:
			x[i] = float32(math.NaN())
		default:
			x[i] = float32(r.NormFloat64() * scale)
		}
	}
	return x
}

const guard = 16

var sentinel = math.Float32frombits(0x7fc0dead)

// guarded returns a slice of n elements at offset off inside a buffer with
// guard bands, holding x (or sentinels when x is nil).
func guarded(x []float32, n, off int) (buf, s []float32) {
	buf = make([]float32, n+2*guard+off)
	for i := range buf {
		buf[i] = sentinel
	}
	s = buf[guard+off : guard+off+n : guard+off+n]
	copy(s, x)
	return buf, s
}

func checkGuards(t *testing.T, label string, buf []float32, n, off int) {
	t.Helper()
	for i, v := range buf {
		if (i < guard+off || i >= guard+off+n) && math.Float32bits(v) != math.Float32bits(sentinel) {
			t.Fatalf("%s: write outside the slice at %d", label, i-guard-off)
		}
	}
}

// sameBits compares exactly; with nanAny, any two NaNs agree.
func sameBits(t *testing.T, label string, got, want []float32, nanAny bool) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) == math.Float32bits(w) || (nanAny && g != g && w != w) {
			continue
		}
		t.Fatalf("%s: [%d] = %v (%#08x), want %v (%#08x)", label, i, g, math.Float32bits(g), w, math.Float32bits(w))
	}
}

func TestAVX2VecElementwise(t *testing.T) {
	a, g := vecOrSkip(t)
	type kernel struct {
		name   string
		nanAny bool // NaN inputs: the NaN's bits are not specified
		run    func(k *kernels.VecKernels, dst, x, y []float32, c float32)
	}
	kernelsList := []kernel{
		{"Exp", false, func(k *kernels.VecKernels, dst, x, _ []float32, _ float32) { k.Exp(dst, x) }},
		{"ExpSub", true, func(k *kernels.VecKernels, dst, x, _ []float32, c float32) { k.ExpSub(dst, x, c) }},
		{"SiLU", true, func(k *kernels.VecKernels, dst, x, _ []float32, _ float32) { k.SiLU(dst, x) }},
		{"SwiGLU", true, func(k *kernels.VecKernels, dst, x, y []float32, _ float32) { k.SwiGLU(dst, x, y) }},
		{"Axpy", true, func(k *kernels.VecKernels, dst, x, _ []float32, c float32) { k.Axpy(dst, x, c) }},
		{"AxpyF16", true, func(k *kernels.VecKernels, dst, x, _ []float32, c float32) { k.AxpyF16(dst, toF16(x), c) }},
		{"Scale", true, func(k *kernels.VecKernels, dst, x, _ []float32, c float32) { k.Scale(dst, x, c) }},
		{"ScaleMul", true, func(k *kernels.VecKernels, dst, x, y []float32, c float32) { k.ScaleMul(dst, x, y, c) }},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, kn := range kernelsList {
		for _, n := range vecSizes() {
			off := r.IntN(4)
			x, y := inputs(r, n, true), inputs(r, n, true)
			c := []float32{0, 1, -1, 0.3, 3e-3, 1e-40, 2e30, float32(r.NormFloat64())}[r.IntN(8)]
			label := fmt.Sprintf("%s(n=%d, off=%d, c=%v)", kn.name, n, off, c)
			d0 := inputs(r, n, false) // Axpy's initial dst
			want := append([]float32(nil), d0...)
			kn.run(g, want, x, y, c)
			buf, got := guarded(d0, n, off)
			_, xs := guarded(x, n, 3-off)
			kn.run(a, got, xs, y, c)
			checkGuards(t, label, buf, n, off)
			sameBits(t, label, got, want, kn.nanAny)
		}
	}
}

func toF16(x []float32) []uint16 {
	h := make([]uint16, len(x))
	r := rand.New(rand.NewPCG(uint64(len(x)), 3))
	for i := range h {
		h[i] = uint16(r.Uint32())
		if i%17 == 0 {
			h[i] = []uint16{0x7c00, 0xfc00, 0x0001, 0x8001, 0x7bff, 0x0400, 0}[i%7]
		}
	}
	return h
}

func TestAVX2VecReductions(t *testing.T) {
	a, g := vecOrSkip(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range vecSizes() {
		x, y := inputs(r, n, false), inputs(r, n, false)
		for i := range x { // keep the sums finite mostly
			if math.Abs(float64(x[i])) > 1e30 {
				x[i] = float32(r.NormFloat64())
			}
		}
		off := r.IntN(4)
		_, xs := guarded(x, n, off)
		label := fmt.Sprintf("n=%d, off=%d", n, off)
		if got, want := a.Sum(xs), g.Sum(x); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("Sum(%s) = %v, want %v", label, got, want)
		}
		if got, want := a.Dot(xs, y), g.Dot(x, y); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("Dot(%s) = %v, want %v", label, got, want)
		}
		h := toF16(x)
		if got, want := a.DotF16(h, ys(y, off)), g.DotF16(h, y); math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Fatalf("DotF16(%s) = %v, want %v", label, got, want)
		}
		if n > 0 {
			if got, want := a.MeanSquare(xs), g.MeanSquare(x); math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
				t.Fatalf("MeanSquare(%s) = %v, want %v", label, got, want)
			}
		}
		got, want := a.Max(xs), g.Max(x)
		if got != want {
			t.Fatalf("Max(%s) = %v, want %v", label, got, want)
		}
	}
}

func ys(y []float32, off int) []float32 {
	_, s := guarded(y, len(y), off)
	return s
}

// TestAVX2ExpEveryFloat compares the vector Exp with kernels.Exp bit for
// bit over a dense sample of all float32s (every 61st bit pattern, all
// bits near the special-case bounds and zero).
func TestAVX2ExpEveryFloat(t *testing.T) {
	a, _ := vecOrSkip(t)
	step := uint32(61)
	if testing.Short() {
		step = 997
	}
	const chunk = 4096
	x := make([]float32, 0, chunk)
	got := make([]float32, chunk)
	check := func() {
		a.Exp(got[:len(x)], x)
		for i, v := range x {
			if w := kernels.Exp(v); math.Float32bits(got[i]) != math.Float32bits(w) {
				t.Fatalf("AVX2 Exp(%v = %#08x) = %#08x, want %#08x", v, math.Float32bits(v), math.Float32bits(got[i]), math.Float32bits(w))
			}
		}
		x = x[:0]
	}
	add := func(b uint32) {
		x = append(x, math.Float32frombits(b))
		if len(x) == chunk {
			check()
		}
	}
	for b := uint64(0); b <= math.MaxUint32; b += uint64(step) {
		add(uint32(b))
	}
	for _, c := range []float32{89, -104, 0, -87.33655, 88.72283} {
		cb := math.Float32bits(c)
		for d := uint32(0); d < 1<<14; d++ {
			add(cb + d)
			add(cb - d)
			add(cb ^ 0x80000000 + d)
		}
	}
	for _, b := range []uint32{0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fbfffff, 0xffffffff} {
		add(b)
	}
	check()
}

// The kerneltest Compare suites, AVX2 against generic.

func TestAVX2CompareSoftmax(t *testing.T) {
	vecOrSkip(t)
	kerneltest.CompareSoftmax(t, kernels.AVX2.Softmax, kernels.Softmax)
}

func TestAVX2CompareUnary(t *testing.T) {
	vecOrSkip(t)
	kerneltest.CompareUnary(t, "SiLU", kernels.AVX2.SiLU, kernels.SiLU)
	kerneltest.CompareBinary(t, "SwiGLU", kernels.AVX2.SwiGLU, kernels.SwiGLU)
	kerneltest.TestSiLU(t, kernels.AVX2.SiLU)
	kerneltest.TestSwiGLU(t, kernels.AVX2.SwiGLU)
	kerneltest.TestSoftmax(t, kernels.AVX2.Softmax)
}

func TestAVX2CompareRMSNorm(t *testing.T) {
	vecOrSkip(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range vecSizes() {
		for _, rows := range []int{1, 3} {
			x := kerneltest.RandVec(r, n*rows, 3)
			w := kerneltest.RandVec(r, n, 1)
			want := make([]float32, len(x))
			kernels.RMSNormRows(want, x, w, 1e-5)
			got := make([]float32, len(x))
			kernels.AVX2.RMSNormRows(got, x, w, 1e-5)
			kerneltest.EqualBits(t, fmt.Sprintf("RMSNormRows(n=%d, rows=%d)", n, rows), got, want)
			if rows == 1 {
				kernels.AVX2.RMSNorm(got, x, w, 1e-5)
				kerneltest.EqualBits(t, fmt.Sprintf("RMSNorm(n=%d)", n), got, want)
			}
		}
	}
}

func TestAVX2CompareAttention(t *testing.T) {
	vecOrSkip(t)
	a := &kernels.Attention{Path: kernels.AVX2}
	kerneltest.CompareAttention(t, a.Forward, new(kernels.Attention).Forward)
	kerneltest.TestAttention(t, (&kernels.Attention{Path: kernels.AVX2}).Forward)
}

func BenchmarkVec(b *testing.B) {
	if !hasAVX2() {
		b.Skip("CPU lacks AVX2")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, p := range []kernels.Path{kernels.Generic, kernels.AVX2} {
		x, up := inputs(r, 5632, false), inputs(r, 5632, false)
		dst := make([]float32, len(x))
		b.Run(fmt.Sprintf("SwiGLU/n=5632/%s", p), func(b *testing.B) {
			b.SetBytes(3 * 4 * int64(len(x)))
			b.ReportAllocs()
			for b.Loop() {
				p.SwiGLU(dst, x, up)
			}
		})
		s := kerneltest.RandVec(r, 256, 4)
		b.Run(fmt.Sprintf("Softmax/n=256/%s", p), func(b *testing.B) {
			b.SetBytes(4 * 256)
			b.ReportAllocs()
			w := make([]float32, len(s))
			for b.Loop() {
				copy(w, s)
				p.Softmax(w)
			}
		})
		// One decode step of a TinyLlama-shaped layer at position 160.
		const heads, kvHeads, hd, ctx = 32, 4, 64, 161
		q := kerneltest.RandVec(r, heads*hd, 1)
		kc := kernels.KV{F32: kerneltest.RandVec(r, ctx*kvHeads*hd, 1)}
		vc := kernels.KV{F32: kerneltest.RandVec(r, ctx*kvHeads*hd, 1)}
		out := make([]float32, len(q))
		a := &kernels.Attention{Path: p}
		b.Run(fmt.Sprintf("Attention/heads=32/pos=160/%s", p), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.Forward(out, q, kc, vc, []int32{ctx - 1}, heads, kvHeads, hd, 0.125, nil)
			}
		})
	}
}

// TestAVX2VecAttentionKernels compares Scores and WeightedSum (F32 and F16
// caches) over head sizes 1..300 and strides at and above the row.
func TestAVX2VecAttentionKernels(t *testing.T) {
	a, g := vecOrSkip(t)
	r := rand.New(rand.NewPCG(11, 12))
	for hd := 1; hd <= 300; hd += 1 + hd/16 {
		for _, n := range []int{0, 1, 2, 3, 7, 8, 33} {
			stride := hd + r.IntN(3)*hd + r.IntN(5)
			size := max(0, (n-1)*stride+hd)
			q := inputs(r, hd, false)
			for i := range q {
				if math.Abs(float64(q[i])) > 1e6 {
					q[i] = 0.5
				}
			}
			k := kerneltest.RandVec(r, size, 2)
			k16 := toF16(k)
			for i := range k16 {
				k16[i] &= 0xbbff // finite halves
			}
			label := fmt.Sprintf("hd=%d, n=%d, stride=%d", hd, n, stride)
			scale := float32(1 / math.Sqrt(float64(hd)))

			want := make([]float32, n)
			sbuf, got := guarded(make([]float32, n), n, hd%4)
			g.Scores(want, q, k, stride, scale)
			a.Scores(got, q, k, stride, scale)
			checkGuards(t, "Scores("+label+")", sbuf, n, hd%4)
			sameBits(t, "Scores("+label+")", got, want, false)
			g.ScoresF16(want, q, k16, stride, scale)
			a.ScoresF16(got, q, k16, stride, scale)
			checkGuards(t, "ScoresF16("+label+")", sbuf, n, hd%4)
			sameBits(t, "ScoresF16("+label+")", got, want, false)

			w := kerneltest.RandVec(r, n, 1)
			o0 := kerneltest.RandVec(r, hd, 1)
			wo := append([]float32(nil), o0...)
			g.WeightedSum(wo, w, k, stride)
			buf, go1 := guarded(o0, hd, n%4)
			a.WeightedSum(go1, w, k, stride)
			checkGuards(t, "WeightedSum("+label+")", buf, hd, n%4)
			sameBits(t, "WeightedSum("+label+")", go1, wo, false)
			wo = append(wo[:0], o0...)
			g.WeightedSumF16(wo, w, k16, stride)
			buf, go1 = guarded(o0, hd, n%4)
			a.WeightedSumF16(go1, w, k16, stride)
			checkGuards(t, "WeightedSumF16("+label+")", buf, hd, n%4)
			sameBits(t, "WeightedSumF16("+label+")", go1, wo, false)
		}
	}
}
