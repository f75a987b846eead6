package kernels

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// fmaRef is a*b+c computed exactly with math/big and rounded once to
// float32 (nearest, ties to even). Operands must be finite.
func fmaRef(a, b, c float32) float32 {
	const prec = 1200 // exact: the sum spans at most 2^256 .. 2^-298
	x := new(big.Float).SetPrec(prec).SetFloat64(float64(a))
	y := new(big.Float).SetPrec(prec).SetFloat64(float64(b))
	z := new(big.Float).SetPrec(prec).SetFloat64(float64(c))
	x.Mul(x, y)
	x.Add(x, z)
	f, _ := x.Float32()
	return f
}

// randF32 returns a finite float32 with random sign and significand and an
// unbiased exponent in [lo, hi] (which may reach into the subnormals: a
// biased exponent of 0 gives a subnormal).
func randF32(r *rand.Rand, lo, hi int) float32 {
	e := lo + r.IntN(hi-lo+1) + 127
	e = max(0, min(e, 254))
	return math.Float32frombits(r.Uint32()&0x807fffff | uint32(e)<<23)
}

// fmaCase returns operands drawn from one of several families, chosen to
// reach the hard cases: cancellation, sums on float32 midpoints, subnormal
// results, overflow and signed zeros.
func fmaCase(r *rand.Rand) (a, b, c float32) {
	switch r.IntN(8) {
	case 0: // anything finite
		for {
			a = math.Float32frombits(r.Uint32())
			b = math.Float32frombits(r.Uint32())
			c = math.Float32frombits(r.Uint32())
			if !isInfNaN32(a) && !isInfNaN32(b) && !isInfNaN32(c) {
				return
			}
		}
	case 1: // comparable magnitudes: p and c overlap
		a = randF32(r, -20, 20)
		b = randF32(r, -20, 20)
		e := exponent32(a) + exponent32(b)
		c = randF32(r, e-30, e+30)
		return
	case 2: // near cancellation: c ≈ -a*b
		a = randF32(r, -60, 60)
		b = randF32(r, -60, 60)
		c = -float32(float64(a) * float64(b))
		if !isInfNaN32(c) {
			c = math.Float32frombits(math.Float32bits(c) + uint32(r.IntN(5)) - 2)
		}
		return
	case 3, 4: // exact sum just off a float32 midpoint of c (the double-rounding case)
		c = randF32(r, -100, 100)
		i := float32(1 + r.IntN(1<<10))
		j := i
		if r.IntN(2) == 0 {
			j = float32(1 + r.IntN(1<<10))
		}
		u := ulp32(c)
		a = u / 2 * (1 + i*0x1p-23)
		b = 1 - j*0x1p-23
		if r.IntN(2) == 0 {
			a, b = -a, -b
		}
		if r.IntN(2) == 0 {
			a = -a
		}
		return
	case 5: // subnormal products and addends
		a = randF32(r, -80, -40)
		b = randF32(r, -80, -40)
		c = randF32(r, -150, -120)
		return
	case 6: // around the overflow threshold
		a = randF32(r, 60, 64)
		b = randF32(r, 60, 64)
		c = randF32(r, 120, 127)
		return
	default: // small integers: exact results, signed zeros
		a = float32(r.IntN(7) - 3)
		b = float32(r.IntN(7) - 3)
		c = float32(r.IntN(19) - 9)
		if r.IntN(2) == 0 {
			c = float32(math.Copysign(0, float64(r.IntN(2)*2-1)))
		}
		return
	}
}

func isInfNaN32(x float32) bool { return math.IsInf(float64(x), 0) || x != x }

func exponent32(x float32) int { return int(math.Float32bits(x)>>23&0xff) - 127 }

// ulp32 is the spacing of float32s at |x| (a finite x).
func ulp32(x float32) float32 {
	b := math.Float32bits(x) &^ (1 << 31)
	if b == 0x7f7fffff {
		return math.Float32frombits(b) - math.Float32frombits(b-1)
	}
	return math.Float32frombits(b+1) - math.Float32frombits(b)
}

func TestFMA32Random(t *testing.T) {
	n := 2_000_000
	if testing.Short() {
		n = 200_000
	}
	r := rand.New(rand.NewPCG(1, 2))
	slow := 0
	for range n {
		a, b, c := fmaCase(r)
		got, want := fma32(a, b, c), fmaRef(a, b, c)
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fma32(%g, %g, %g) = %g (%#08x), want %g (%#08x)", a, b, c,
				got, math.Float32bits(got), want, math.Float32bits(want))
		}
		if float32(float64(a)*float64(b)+float64(c)) != got {
			slow++ // the naive double rounding is wrong here
		}
	}
	if slow == 0 {
		t.Errorf("no case where double rounding through float64 differs: the generator misses the hard cases")
	}
	t.Logf("%d cases, %d where naive double rounding is wrong", n, slow)
}

func TestFMA32Edge(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	maxf := float32(math.MaxFloat32)
	tiny := float32(math.SmallestNonzeroFloat32)
	negz := float32(math.Copysign(0, -1))
	tests := []struct {
		a, b, c, want float32
	}{
		{1, 1, 1, 2},
		{0, 5, negz, 0},
		{negz, 5, negz, negz},
		{negz, 5, 0, 0},
		{3, -2, 6, 0},          // exact cancellation is +0
		{maxf, 2, -maxf, maxf}, // the product overflows float32 but not the fma
		{maxf, 2, 0, inf},
		{tiny, 0.5, 0, 0},                          // half of the smallest subnormal: tie to even (0)
		{tiny, 0.75, 0, tiny},                      // above the half: up
		{tiny, 1.5, 0, 2 * tiny},                   // 1.5 ties to 2
		{tiny, 0.5, tiny, 2 * tiny},                // 1.5 ulp ties to even (2)
		{1 + 0x1p-23, 1 + 0x1p-23, 0, 1 + 0x1p-22}, // 1 + 2^-22 + 2^-46 rounds down
		{1 + 0x1p-23, 1 - 0x1p-23, -1, -0x1p-46},   // exact
		// 1 + 2^-24 - 2^-70: s = 1 + 2^-24 (a midpoint); the tie would go to
		// 1 (even), the right answer is 1 too. With c odd it would not be:
		{0x1p-24 * (1 + 0x1p-23), 1 - 0x1p-23, 1 + 0x1p-23, 1 + 0x1p-23},
		{0x1p-24 * (1 + 0x1p-23), 1 + 0x1p-23, 1, 1 + 0x1p-23},
	}
	for _, tt := range tests {
		if got := fma32(tt.a, tt.b, tt.c); math.Float32bits(got) != math.Float32bits(tt.want) {
			t.Errorf("fma32(%g, %g, %g) = %g (%#08x), want %g (%#08x)", tt.a, tt.b, tt.c,
				got, math.Float32bits(got), tt.want, math.Float32bits(tt.want))
		}
	}
	special := []struct {
		a, b, c float32
		want    float32 // NaN means any NaN
	}{
		{inf, 1, 1, inf},
		{inf, -1, 1, -inf},
		{inf, 0, 1, nan},
		{inf, 1, -inf, nan},
		{1, 1, inf, inf},
		{nan, 1, 1, nan},
		{1, 1, nan, nan},
		{maxf, maxf, -inf, -inf},
	}
	for _, tt := range special {
		got := fma32(tt.a, tt.b, tt.c)
		ok := math.Float32bits(got) == math.Float32bits(tt.want) || (tt.want != tt.want && got != got)
		if !ok {
			t.Errorf("fma32(%g, %g, %g) = %g, want %g", tt.a, tt.b, tt.c, got, tt.want)
		}
	}
}

// BenchmarkFMA32 is the latency of two dependent fma32s.
func BenchmarkFMA32(b *testing.B) {
	x, y, z := float32(1.25), float32(0.999), float32(0.5)
	b.ReportAllocs()
	for b.Loop() {
		z = fma32(x, y, z)
		x = fma32(y, z, x)
	}
	sink32 = x + z
}

var sink32 float32
