package kerneltest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/quant"
)

// EngineFunc returns an Engine that runs path p on threads goroutines.
// Whatever it starts is stopped when tb's test ends.
type EngineFunc func(tb testing.TB, p kernels.Path, threads int) *kernels.Engine

// PoolEngine is the plain EngineFunc: an Engine on a kernels.NewPool of
// threads goroutines, closed by tb.Cleanup.
func PoolEngine(tb testing.TB, p kernels.Path, threads int) *kernels.Engine {
	tb.Helper()
	pool := kernels.NewPool(threads)
	tb.Cleanup(pool.Close)
	e, err := kernels.NewEngine(p, pool)
	if err != nil {
		tb.Fatalf("NewEngine(%s, %d threads) = %v", p, threads, err)
	}
	return e
}

// MatMulTypes are the weight types that matrix products support: those
// with row kernels and those dequantized to F32.
var MatMulTypes = []quant.Type{
	quant.F32, quant.F16, quant.BF16,
	quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0, quant.Q8_1,
	quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.Q8_K,
}

// MatMulThreads are the thread counts whose results must all agree.
var MatMulThreads = []int{1, 2, 3, 7}

// MatMulTokens are the token counts tried for every matrix.
var MatMulTokens = []int{1, 2, 3, 7, 16, 35}

// TestMatMul is the conformance suite for kernels.Engine.MatMul on path p.
// For every type in MatMulTypes, random weights (gaussian rows of varying
// scale, quantized with quant.Quantize) of odd and even row counts and
// column counts from one block up, and every token count in MatMulTokens,
// it checks that:
//
//	(a) the result equals the generic path's at 1 thread, bit for bit;
//	(b) it is the same at every thread count in MatMulThreads;
//	(c) a batch equals its tokens multiplied one at a time;
//	(d) it agrees with a float64 reference within the bound of RefTolerance;
//	(e) nothing is written outside dst (mmGuard bands of NaN sentinels) and x
//	    is not written;
//	(f) all this holds with x and the weights at unaligned offsets.
//
// It also checks the errors for bad shapes and unsupported types, and that
// repeated products allocate nothing. newEngine makes the engines: for p and
// for kernels.Generic.
func TestMatMul(t *testing.T, p kernels.Path, newEngine EngineFunc) {
	ref := newEngine(t, kernels.Generic, 1)
	engines := make([]*kernels.Engine, len(MatMulThreads))
	for i, n := range MatMulThreads {
		engines[i] = newEngine(t, p, n)
	}
	for _, typ := range MatMulTypes {
		t.Run(typ.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(typ), 1))
			for _, sh := range matMulShapes(typ) {
				m := mmMatrix(t, r, typ, sh[0], sh[1])
				for _, nTok := range MatMulTokens {
					x := mmActivations(r, nTok*m.Cols, nTok%4)
					c := matMulCase{name: fmt.Sprintf("%s %d×%d tok=%d", typ, m.Rows, m.Cols, nTok), m: m, x: x, nTok: nTok}
					c.check(t, p, ref, engines)
				}
			}
		})
	}
	t.Run("errors", func(t *testing.T) { testMatMulErrors(t, engines[1]) })
	t.Run("allocs", func(t *testing.T) { testMatMulAllocs(t, engines) })
}

// matMulShapes are the (rows, cols) tried for typ: 1, 3, 17 and 67 rows
// against column counts of one block, a few blocks, more than eight blocks
// (every lane used, then wrapped) and, for float types, counts with a tail
// beyond the last 32; and 257 rows of the narrowest, for thread splits.
// With -short (for -race runs) fewer.
func matMulShapes(typ quant.Type) [][2]int {
	var cols []int
	switch bs := typ.BlockSize(); bs {
	case 1:
		cols = []int{1, 7, 32, 33, 100, 544}
	case quant.QK_K:
		cols = []int{bs, 3 * bs, 9 * bs}
	default:
		cols = []int{bs, 2 * bs, 9 * bs, 17 * bs}
	}
	rows, split := []int{1, 3, 17, 67}, 257
	if testing.Short() {
		rows, cols, split = rows[:3], cols[:len(cols)-1], 67
	}
	var shapes [][2]int
	for _, nr := range rows {
		for _, nc := range cols {
			shapes = append(shapes, [2]int{nr, nc})
		}
	}
	return append(shapes, [2]int{split, cols[0]})
}

// mmMatrix returns nr×nc weights of typ: gaussian rows with each block
// scaled by a random power of two in [2^-3, 2^3] (so that the order of
// float operations shows in the bits), quantized by quant.Quantize, at an
// offset of 1..3 bytes from an allocation's start.
func mmMatrix(t *testing.T, r *rand.Rand, typ quant.Type, nr, nc int) kernels.Matrix {
	t.Helper()
	vals := make([]float32, nr*nc)
	bs := max(typ.BlockSize(), 32)
	for i := 0; i < len(vals); i += bs {
		scale := math.Ldexp(0.05, r.IntN(7)-3)
		for j := i; j < min(i+bs, len(vals)); j++ {
			vals[j] = float32(scale * r.NormFloat64())
		}
	}
	rb, err := typ.RowSize(int64(nc))
	if err != nil {
		t.Fatal(err)
	}
	off := 1 + (nr+nc)%3
	buf := make([]byte, off+nr*int(rb))
	data := buf[off:]
	if err := quant.Quantize(typ, data, vals); err != nil {
		t.Fatalf("Quantize(%s, %d×%d) = %v", typ, nr, nc, err)
	}
	m, err := kernels.NewMatrix(typ, nr, nc, data)
	if err != nil {
		t.Fatalf("NewMatrix(%s, %d, %d) = %v", typ, nr, nc, err)
	}
	return m
}

// mmActivations returns n gaussian values with varying block scales and
// a few outliers, starting off floats into an allocation.
func mmActivations(r *rand.Rand, n, off int) []float32 {
	x := make([]float32, off+n)[off:]
	for i := 0; i < n; i += 32 {
		scale := math.Ldexp(1, r.IntN(5)-2)
		for j := i; j < min(i+32, n); j++ {
			v := scale * r.NormFloat64()
			if r.IntN(64) == 0 {
				v *= 8
			}
			x[j] = float32(v)
		}
	}
	return x
}

// mmGuard is the number of sentinels on each side of dst.
const mmGuard = 8

// mmSentinel is a NaN with a payload that no kernel produces.
var mmSentinel = math.Float32frombits(0x7fa5a5a5)

type matMulCase struct {
	name string
	m    kernels.Matrix
	x    []float32
	nTok int
}

// check runs the case on the generic reference engine ref and on every
// engine of path p, and checks (a) to (f).
func (c *matMulCase) check(t *testing.T, p kernels.Path, ref *kernels.Engine, engines []*kernels.Engine) {
	t.Helper()
	want := c.run(t, ref)
	c.checkReference(t, want)
	for i, e := range engines {
		if got := c.run(t, e); !mmSameBits(got, want) {
			t.Fatalf("MatMul(%s) on %s, %d threads = %v, want %v (generic, 1 thread)", c.name, p, MatMulThreads[i], mmHead(got), mmHead(want))
		}
	}
	if c.nTok == 1 {
		return
	}
	nr, nc := c.m.Rows, c.m.Cols
	got := make([]float32, len(want))
	e := engines[len(engines)-1]
	for tok := range c.nTok {
		if err := e.MatMul(got[tok*nr:(tok+1)*nr], c.m, c.x[tok*nc:(tok+1)*nc], 1); err != nil {
			t.Fatalf("MatMul(%s, token %d alone) = %v", c.name, tok, err)
		}
	}
	if !mmSameBits(got, want) {
		t.Fatalf("MatMul(%s) one token at a time on %s = %v, want %v (the batch)", c.name, p, mmHead(got), mmHead(want))
	}
}

// run computes the product on e into a guarded buffer, checks the guards
// and that x is unchanged, and returns the result.
func (c *matMulCase) run(t *testing.T, e *kernels.Engine) []float32 {
	t.Helper()
	n := c.nTok * c.m.Rows
	buf := make([]float32, n+2*mmGuard)
	for i := range buf {
		buf[i] = mmSentinel
	}
	x0 := slices.Clone(c.x)
	dst := buf[mmGuard : mmGuard+n]
	if err := e.MatMul(dst, c.m, c.x, c.nTok); err != nil {
		t.Fatalf("MatMul(%s) = %v, want nil", c.name, err)
	}
	for i, v := range buf {
		if (i < mmGuard || i >= mmGuard+n) && math.Float32bits(v) != math.Float32bits(mmSentinel) {
			t.Fatalf("MatMul(%s) on %s wrote %g at mmGuard index %d (dst is [%d, %d))", c.name, e.Path(), v, i, mmGuard, mmGuard+n)
		}
	}
	if !mmSameBits(c.x, x0) {
		t.Fatalf("MatMul(%s) on %s changed x", c.name, e.Path())
	}
	return dst
}

// mmActBlock is the activation quantization block that typ's product uses,
// or 0 when x is used as it is (float and dequantized types).
func mmActBlock(typ quant.Type) int {
	switch typ {
	case quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0:
		return 32
	case quant.Q4_K, quant.Q5_K, quant.Q6_K:
		return quant.QK_K
	}
	return 0
}

// RefTolerance is the bound that (d) checks, for one output: a weight row
// w (as dequantized to float32) against activations x of n elements.
//
// With activation quantization in blocks of B (B = 32 for Q8, 256 for Q8K)
// each x_i is replaced by x̂_i = d_b*q_i with d_b = amax_b/127 and q_i
// rounded to nearest, so |x_i - x̂_i| <= d_b/2 + 3u|x_i| (u = 2^-24, the
// rounding of 1/d_b and of x_i*id). The kernel's integer sums are exact;
// each block adds one or two fused terms to one of eight lanes, after the
// roundings of dw*d_b and of float32(isum); the dequantized weights differ
// from the values the kernel uses by at most u|w_i|. A lane thus sees at
// most K = 2*ceil(nb/8) + 3 (tree) + 3 roundings, and the float error is at
// most γ_K Σ|w_i||x̂_i|. In all:
//
//	tol = Σ|w_i| d_b/2 + (K+3) * 2u * (Σ|w_i||x_i| + Σ|w_i| d_b/2)
//
// where 2u rather than u covers the second-order terms of γ_K. Without
// activation quantization (float and dequantized weights) the lane depth
// is K = ceil(n/32) + 2 + 3 + (n mod 32) + 1 and
//
//	tol = (K+1) * 2u * Σ|w_i||x_i|.
//
// absWX is Σ|w_i||x_i| and absWD is Σ|w_i| d_b (0 for float rules); 2^-126
// is added against underflow.
func RefTolerance(typ quant.Type, n int, absWX, absWD float64) float64 {
	const u2 = 0x1p-23
	tiny := 0x1p-126
	if mmActBlock(typ) == 0 {
		k := (n+31)/32 + 6 + n%32
		return float64(k+1)*u2*absWX + tiny
	}
	nb := n / typ.BlockSize()
	k := 2*((nb+7)/8) + 6
	return absWD/2 + float64(k+3)*u2*(absWX+absWD/2) + tiny
}

// checkReference compares got with a float64 product of the dequantized
// weights and the unquantized activations (gonum's Dgemm), within
// RefTolerance.
func (c *matMulCase) checkReference(t *testing.T, got []float32) {
	t.Helper()
	m, nTok := c.m, c.nTok
	w := make([]float32, m.Rows*m.Cols)
	if err := quant.Dequantize(m.Type, w, m.Data); err != nil {
		t.Fatalf("Dequantize(%s) = %v", m.Type, err)
	}
	w64, aw := make([]float64, len(w)), make([]float64, len(w))
	for i, v := range w {
		w64[i], aw[i] = float64(v), math.Abs(float64(v))
	}
	x64, ax, dx := make([]float64, len(c.x)), make([]float64, len(c.x)), make([]float64, len(c.x))
	for i, v := range c.x {
		x64[i], ax[i] = float64(v), math.Abs(float64(v))
	}
	if bs := mmActBlock(m.Type); bs > 0 {
		for b := 0; b < len(c.x); b += bs {
			var amax float64
			for _, v := range ax[b : b+bs] {
				amax = max(amax, v)
			}
			for i := b; i < b+bs; i++ {
				dx[i] = amax / 127
			}
		}
	}
	W := func(d []float64) blas64.General {
		return blas64.General{Rows: m.Rows, Cols: m.Cols, Data: d, Stride: m.Cols}
	}
	X := func(d []float64) blas64.General {
		return blas64.General{Rows: nTok, Cols: m.Cols, Data: d, Stride: m.Cols}
	}
	out := func() blas64.General {
		return blas64.General{Rows: nTok, Cols: m.Rows, Data: make([]float64, nTok*m.Rows), Stride: m.Rows}
	}
	ref, absWX, absWD := out(), out(), out()
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, X(x64), W(w64), 0, ref)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, X(ax), W(aw), 0, absWX)
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, X(dx), W(aw), 0, absWD)
	for i, g := range got {
		tol := RefTolerance(m.Type, m.Cols, absWX.Data[i], absWD.Data[i])
		if diff := math.Abs(float64(g) - ref.Data[i]); !(diff <= tol) {
			t.Fatalf("MatMul(%s)[token %d, row %d] = %g, want %g ± %g (float64 reference; off by %g)", c.name, i/m.Rows, i%m.Rows, g, ref.Data[i], tol, diff)
		}
	}
}

func testMatMulErrors(t *testing.T, e *kernels.Engine) {
	r := rand.New(rand.NewPCG(7, 7))
	m := mmMatrix(t, r, quant.Q4_0, 4, 64)
	x := mmActivations(r, 2*64, 0)
	tests := []struct {
		name string
		m    kernels.Matrix
		dst  []float32
		x    []float32
		nTok int
		want error
	}{
		{"short x", m, make([]float32, 8), x[:127], 2, kernels.ErrShape},
		{"long x", m, make([]float32, 8), append(slices.Clone(x), 0), 2, kernels.ErrShape},
		{"short dst", m, make([]float32, 7), x, 2, kernels.ErrShape},
		{"long dst", m, make([]float32, 9), x, 2, kernels.ErrShape},
		{"negative tokens", m, make([]float32, 8), x, -2, kernels.ErrShape},
		{"short data", kernels.Matrix{Type: quant.Q4_0, Rows: 4, Cols: 64, Data: m.Data[:len(m.Data)-1]}, make([]float32, 8), x, 2, kernels.ErrShape},
		{"long data", kernels.Matrix{Type: quant.Q4_0, Rows: 4, Cols: 64, Data: append(slices.Clone(m.Data), 0)}, make([]float32, 8), x, 2, kernels.ErrShape},
		{"partial block", kernels.Matrix{Type: quant.Q4_0, Rows: 4, Cols: 48, Data: m.Data}, make([]float32, 8), x[:96], 2, kernels.ErrShape},
		{"negative rows", kernels.Matrix{Type: quant.Q4_0, Rows: -4, Cols: 64, Data: m.Data}, make([]float32, 8), x, 2, kernels.ErrShape},
		{"huge rows", kernels.Matrix{Type: quant.Q4_0, Rows: math.MaxInt / 8, Cols: 64, Data: m.Data}, make([]float32, 8), x, 2, kernels.ErrShape},
		{"unsupported type", kernels.Matrix{Type: quant.IQ2_XXS, Rows: 1, Cols: 256, Data: make([]byte, 66)}, make([]float32, 1), make([]float32, 256), 1, kernels.ErrType},
		{"integer type", kernels.Matrix{Type: quant.I32, Rows: 1, Cols: 4, Data: make([]byte, 16)}, make([]float32, 1), make([]float32, 4), 1, kernels.ErrType},
		{"unknown type", kernels.Matrix{Type: 99, Rows: 1, Cols: 4, Data: make([]byte, 16)}, make([]float32, 1), make([]float32, 4), 1, kernels.ErrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.dst {
				tt.dst[i] = mmSentinel
			}
			err := e.MatMul(tt.dst, tt.m, tt.x, tt.nTok)
			if !errors.Is(err, tt.want) {
				t.Fatalf("MatMul(%s) = %v, want %v", tt.name, err, tt.want)
			}
			for i, v := range tt.dst {
				if math.Float32bits(v) != math.Float32bits(mmSentinel) {
					t.Fatalf("MatMul(%s) failed but wrote dst[%d] = %g", tt.name, i, v)
				}
			}
			badMatrix := tt.m.Type != m.Type || tt.m.Rows != m.Rows || tt.m.Cols != m.Cols || len(tt.m.Data) != len(m.Data)
			if _, err := kernels.NewMatrix(tt.m.Type, tt.m.Rows, tt.m.Cols, tt.m.Data); badMatrix && !errors.Is(err, tt.want) {
				t.Fatalf("NewMatrix(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
	// Empty products are not errors; with no columns every output is +0.
	for _, tt := range []struct {
		name string
		m    kernels.Matrix
		nTok int
	}{
		{"no tokens", m, 0},
		{"no rows", kernels.Matrix{Type: quant.Q4_0, Rows: 0, Cols: 64}, 2},
		{"no columns Q4_0", kernels.Matrix{Type: quant.Q4_0, Rows: 3, Cols: 0}, 2},
		{"no columns Q4_K", kernels.Matrix{Type: quant.Q4_K, Rows: 3, Cols: 0}, 2},
		{"no columns F16", kernels.Matrix{Type: quant.F16, Rows: 3, Cols: 0}, 2},
		{"no columns Q3_K", kernels.Matrix{Type: quant.Q3_K, Rows: 3, Cols: 0}, 2},
	} {
		dst := make([]float32, tt.nTok*tt.m.Rows)
		for i := range dst {
			dst[i] = mmSentinel
		}
		if err := e.MatMul(dst, tt.m, make([]float32, tt.nTok*tt.m.Cols), tt.nTok); err != nil {
			t.Errorf("MatMul(%s) = %v, want nil", tt.name, err)
		}
		for i, v := range dst {
			if math.Float32bits(v) != 0 {
				t.Errorf("MatMul(%s)[%d] = %g, want +0", tt.name, i, v)
			}
		}
	}
}

// testMatMulAllocs checks that once an engine has seen a shape, products of
// that shape do not allocate.
func testMatMulAllocs(t *testing.T, engines []*kernels.Engine) {
	r := rand.New(rand.NewPCG(8, 8))
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_1, quant.Q4_K, quant.Q6_K, quant.F16, quant.Q3_K} {
		m := mmMatrix(t, r, typ, 67, 512)
		for _, nTok := range []int{1, 7} {
			x := mmActivations(r, nTok*512, 0)
			dst := make([]float32, nTok*67)
			for i, e := range engines {
				allocs := testing.AllocsPerRun(5, func() {
					if err := e.MatMul(dst, m, x, nTok); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("MatMul(%s 67×512, tok=%d) on %d threads: %v allocations per call, want 0", typ, nTok, MatMulThreads[i], allocs)
				}
			}
		}
	}
}

func mmSameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// head is the start of v, for messages.
func mmHead(v []float32) []float32 { return v[:min(len(v), 8)] }
