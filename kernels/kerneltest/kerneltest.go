// Package kerneltest is the conformance suite that every implementation of
// Strata's kernels runs: the generic Go path, the assembly paths, and any
// other backend. Each suite takes the implementation under test as a
// function and checks it against a float64 reference within a stated
// tolerance, against the determinism rules (bitwise equality across thread
// counts, batch sizes and memory layouts), and for memory safety (guard
// bands of sentinel NaNs around every output, inputs at unaligned offsets,
// inputs left unwritten). The Compare functions check one implementation
// against another bit for bit.
//
// The helpers (Guarded, Unaligned, EqualBits, WithinTol, RandVec, Sizes)
// serve suites of other kernels too.
package kerneltest

import (
	"math"
	"math/rand/v2"
	"testing"
)

// GuardLen is the number of sentinel elements that Guarded puts on each
// side of a slice.
const GuardLen = 16

// SentinelBits is the bit pattern of the NaN that fills guard bands and
// fresh outputs; no kernel produces it from finite inputs.
const SentinelBits = 0x7fa5a5a5

// Offsets are the element offsets at which suites place inputs and
// outputs, so that slices start unaligned to vector widths.
var Offsets = []int{0, 1, 2, 3}

// Guarded is a slice of float32 inside a larger buffer whose elements
// before and after it, and initially the slice itself, hold the sentinel
// NaN. Check reports a write outside the slice.
type Guarded struct {
	buf    []float32
	lo, hi int
}

// NewGuarded returns a guarded slice of n elements that starts off
// elements (0..3 typically) past an aligned position.
func NewGuarded(n, off int) *Guarded {
	buf := make([]float32, GuardLen+off+n+GuardLen)
	s := math.Float32frombits(SentinelBits)
	for i := range buf {
		buf[i] = s
	}
	return &Guarded{buf: buf, lo: GuardLen + off, hi: GuardLen + off + n}
}

// GuardedCopy returns a guarded slice holding a copy of x.
func GuardedCopy(x []float32, off int) *Guarded {
	g := NewGuarded(len(x), off)
	copy(g.Slice(), x)
	return g
}

// Slice is the guarded slice (its capacity ends with it).
func (g *Guarded) Slice() []float32 { return g.buf[g.lo:g.hi:g.hi] }

// Check fails tb if an element outside the slice is not the sentinel.
func (g *Guarded) Check(tb testing.TB, name string) {
	tb.Helper()
	for i, v := range g.buf {
		if (i < g.lo || i >= g.hi) && math.Float32bits(v) != SentinelBits {
			where := i - g.hi
			side := "after"
			if i < g.lo {
				where, side = g.lo-1-i, "before"
			}
			tb.Errorf("%s: wrote %v (%#08x) %d elements %s the end of the output (len %d)", name, v, math.Float32bits(v), where+1, side, g.hi-g.lo)
			return
		}
	}
}

// Unaligned returns a copy of x that starts off elements into a fresh
// allocation (so, but for tiny lengths, 4*off bytes past an 8-byte
// boundary).
func Unaligned(x []float32, off int) []float32 {
	buf := make([]float32, off+len(x))
	copy(buf[off:], x)
	return buf[off:]
}

// RandVec returns n values from a normal distribution with standard
// deviation scale.
func RandVec(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

// Sizes returns the lengths 0..max followed by extra: every tail length
// of the 8- and 16-wide vector loops and of the 32-lane float rule, then
// larger sizes.
func Sizes(max int, extra ...int) []int {
	s := make([]int, 0, max+1+len(extra))
	for n := 0; n <= max; n++ {
		s = append(s, n)
	}
	return append(s, extra...)
}

// EqualBits fails tb and returns false unless got and want have the same
// length and the same bits, describing the first difference.
func EqualBits(tb testing.TB, name string, got, want []float32) bool {
	tb.Helper()
	if len(got) != len(want) {
		tb.Errorf("%s: len = %d, want %d", name, len(got), len(want))
		return false
	}
	first, count := -1, 0
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if first < 0 {
				first = i
			}
			count++
		}
	}
	if count == 0 {
		return true
	}
	tb.Errorf("%s[%d] = %v (%#08x), want %v (%#08x); %d of %d elements differ",
		name, first, got[first], math.Float32bits(got[first]), want[first], math.Float32bits(want[first]), count, len(got))
	return false
}

// WithinTol fails tb and returns false unless |got_i - want_i| <= tol(i)
// for every i, describing the worst element relative to its tolerance.
// NaN in got fails unless want_i is NaN too.
func WithinTol(tb testing.TB, name string, got []float32, want []float64, tol func(i int) float64) bool {
	tb.Helper()
	if len(got) != len(want) {
		tb.Errorf("%s: len = %d, want %d", name, len(got), len(want))
		return false
	}
	worst, ratio := -1, 1.0
	for i, g := range got {
		w := want[i]
		if math.IsNaN(w) && g != g {
			continue
		}
		d := math.Abs(float64(g) - w)
		if float64(g) == w || (math.IsInf(float64(g), 0) && float32(w) == g) {
			d = 0 // equal infinities, or an exact value that overflows float32
		}
		tl := tol(i)
		if d > tl || d != d {
			if r := d / tl; worst < 0 || r > ratio || r != r {
				worst, ratio = i, r
			}
		}
	}
	if worst < 0 {
		return true
	}
	tb.Errorf("%s[%d] = %v, want %v ± %.3g (off by %.3g times the tolerance)", name, worst, got[worst], want[worst], tol(worst), ratio)
	return false
}

// U is the unit roundoff of float32, 2^-24: half the spacing of float32s
// in [1, 2).
const U = 0x1p-24

// MinSubnormal is the smallest positive float32, the absolute slack that
// tolerances allow for results in the subnormal range.
const MinSubnormal = 0x1p-149

// ULP is the spacing of float32s at |x| (that of the subnormals below
// the normal range).
func ULP(x float64) float64 {
	a := math.Abs(x)
	if a < 0x1p-126 {
		return MinSubnormal
	}
	_, e := math.Frexp(a)
	return math.Ldexp(1, e-24)
}

func f64s(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}
