package kernels

import (
	"math"
	"math/big"
	"sync"
)

// Strata's own transcendental functions. Every operation below rounds to
// its type after each step; fma32 is the exact float32 fused multiply-add;
// float64 code wraps each product that meets an addition in an explicit
// float64(...) conversion so that no compiler may fuse it. The results are
// therefore the same bits on every platform and path; the assembly paths
// implement Exp, silu and gelu with exactly these steps.

// Constants of Exp. ln2Hi + ln2Lo is ln 2 to about 2^-57 relative.
const (
	expLog2e = 0x1.715476p+0   // log2(e) rounded to float32
	expLn2Hi = 0x1.62e430p-1   // ln 2 rounded to float32 (24 bits)
	expLn2Lo = -0x1.05c610p-29 // ln 2 - ln2Hi rounded to float32
	// Minimax coefficients of exp(r) ≈ 1 + r + r²(c2 + r(c3 + … r c6)) on
	// |r| <= 0.3466, relative error 0.09 ulp of float32 with these
	// float32 values.
	expC2 = 0x1.fffffep-2  // 0.49999997
	expC3 = 0x1.55547ep-3  // 0.166665062
	expC4 = 0x1.555638p-5  // 0.0416670889
	expC5 = 0x1.1246e6p-7  // 0.00837026816
	expC6 = 0x1.6c350ep-10 // 0.00138934038
	// Beyond these bounds Exp is +Inf or 0 without computing.
	expMaxArg = 89
	expMinArg = -104
)

// Exp returns e^x in float32 with at most 1 ulp of error (tested over
// every float32 in the finite range), subnormal results included.
//
// Canonical order (the assembly paths compute exactly this):
//
//	x is NaN          → x
//	x > 89            → +Inf
//	x < -104          → +0
//	k  = roundToNearestEven(x * log2e)            (x*log2e rounded to float32)
//	r  = fma(k, -ln2Hi, x)                        (exact)
//	r  = fma(k, -ln2Lo, r)
//	p  = fma(c6, r, c5); p = fma(p, r, c4); p = fma(p, r, c3); p = fma(p, r, c2)
//	p  = fma(p, r, 1);  p = fma(p, r, 1)          (p ≈ e^r)
//	k1 = k >> 1 (arithmetic), k2 = k - k1         (k in [-150, 129])
//	y  = (p * 2^k1) * 2^k2                        (the first product is exact)
//
// with the constants expLog2e … expC6 of this file.
func Exp(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expMaxArg:
		return float32(math.Inf(1))
	case x < expMinArg:
		return 0
	}
	k := float32(math.RoundToEven(float64(float32(x * expLog2e))))
	r := fma32(k, -expLn2Hi, x)
	r = fma32(k, -expLn2Lo, r)
	p := fma32(expC6, r, expC5)
	p = fma32(p, r, expC4)
	p = fma32(p, r, expC3)
	p = fma32(p, r, expC2)
	p = fma32(p, r, 1)
	p = fma32(p, r, 1)
	ki := int32(k)
	k1 := ki >> 1
	k2 := ki - k1
	return float32(p*pow2f(k1)) * pow2f(k2)
}

// pow2f is 2^k for k in [-126, 127], a normal float32.
func pow2f(k int32) float32 { return math.Float32frombits(uint32(k+127) << 23) }

// silu is x * sigmoid(x), computed as
//
//	e = Exp(-x); d = 1 + e; y = x / d
//
// (silu(-Inf) is NaN, as in ggml).
func silu(x float32) float32 {
	e := Exp(-x)
	return x / (1 + e)
}

// Constants of gelu.
const (
	geluA = 0.044715
	// geluK is -2*sqrt(2/pi) rounded to float32.
	geluK = -0x1.988454p+0
)

// gelu is the tanh approximation of GELU that llama.cpp's GELU uses,
// 0.5*x*(1 + tanh(sqrt(2/pi)*x*(1 + 0.044715*x²))), written through the
// identity 0.5*(1 + tanh(u)) = 1/(1 + e^(-2u)) so that no cancellation
// loses precision for negative x:
//
//	t = fma(0.044715, x*x, 1)
//	z = (geluK * x) * t          (geluK = -2*sqrt(2/pi) in float32)
//	y = x / (1 + Exp(z))
func gelu(x float32) float32 {
	t := fma32(geluA, x*x, 1)
	z := float32(geluK*x) * t
	return x / (1 + Exp(z))
}

// The float64 functions below serve the rotary-embedding tables: their
// results are rounded to float32, so the about one ulp of float64 error
// they have never shows except in the rare near-tie; being deterministic is
// what matters.

// Coefficients of fdlibm's __kernel_sin and __kernel_cos on [-pi/4, pi/4].
const (
	sinS1 = -1.66666666666666324348e-01
	sinS2 = 8.33333333332248946124e-03
	sinS3 = -1.98412698298579493134e-04
	sinS4 = 2.75573137070700676789e-06
	sinS5 = -2.50507602534068634195e-08
	sinS6 = 1.58969099521155010221e-10

	cosC1 = 4.16666666666666019037e-02
	cosC2 = -1.38888888888741095749e-03
	cosC3 = 2.48015872894767294178e-05
	cosC4 = -2.75573143513906633035e-07
	cosC5 = 2.08757232129817482790e-09
	cosC6 = -1.13596475577881948265e-11
)

// kernelSin is sin(x+y) for |x+y| <= pi/4, |y| small (fdlibm).
func kernelSin(x, y float64) float64 {
	z := float64(x * x)
	v := float64(z * x)
	r := sinS2 + float64(z*(sinS3+float64(z*(sinS4+float64(z*(sinS5+float64(z*sinS6)))))))
	return x - ((float64(z*(float64(0.5*y)-float64(v*r))) - y) - float64(v*sinS1))
}

// kernelCos is cos(x+y) for |x+y| <= pi/4, |y| small (fdlibm).
func kernelCos(x, y float64) float64 {
	z := float64(x * x)
	w := float64(z * z)
	r := float64(z*(cosC1+float64(z*(cosC2+float64(z*cosC3))))) +
		float64(float64(w*w)*(cosC4+float64(z*(cosC5+float64(z*cosC6)))))
	hz := float64(0.5 * z)
	w = 1 - hz
	return w + (((1 - w) - hz) + (float64(z*r) - float64(x*y)))
}

// Constants of the medium-size argument reduction (fdlibm
// __ieee754_rem_pio2): pio2_1 has 33 bits, so fn*pio2_1 is exact for
// |fn| < 2^20; each tail continues pi/2.
const (
	invPio2 = 6.36619772367581382433e-01
	pio2_1  = 1.57079632673412561417e+00
	pio2_1t = 6.07710050650619224932e-11
	pio2_2  = 6.07710050630396597660e-11
	pio2_2t = 2.02226624879595063154e-21
	pio2_3  = 2.02226624871116645580e-21
	pio2_3t = 8.47842766036889956997e-32
	// mediumMax bounds the arguments reduced by remPio2's fast path:
	// 2^20 * pi/2.
	mediumMax = 0x1.921fb6p+20
)

// remPio2 returns n and y0+y1 = x - n*pi/2 with |y0+y1| <= pi/4 (about),
// y0+y1 accurate to well beyond float64 precision: fdlibm's three-step
// Cody-Waite reduction for |x| < 2^20*pi/2, an exact reduction with
// math/big beyond.
func remPio2(x float64) (n int, y0, y1 float64) {
	if math.Abs(x) >= mediumMax {
		return remPio2Big(x)
	}
	fn := math.RoundToEven(float64(x * invPio2))
	r := x - float64(fn*pio2_1)
	w := float64(fn * pio2_1t)
	j := exponent64(x)
	y0 = r - w
	if j-exponent64(y0) > 16 { // cancellation: second round
		t := r
		w = float64(fn * pio2_2)
		r = t - w
		w = float64(fn*pio2_2t) - ((t - r) - w)
		y0 = r - w
		if j-exponent64(y0) > 49 { // third round
			t := r
			w = float64(fn * pio2_3)
			r = t - w
			w = float64(fn*pio2_3t) - ((t - r) - w)
			y0 = r - w
		}
	}
	y1 = (r - y0) - w
	return int(fn), y0, y1
}

// exponent64 is the biased exponent field of x.
func exponent64(x float64) int { return int(math.Float64bits(x)>>52) & 0x7ff }

// piBig is pi to piPrec bits, computed once with Machin's formula.
var (
	piOnce sync.Once
	piBig  *big.Float
)

const piPrec = 1400 // enough for |x| < 2^1024 with 53+ bits left

func bigPi() *big.Float {
	piOnce.Do(func() {
		// pi = 16 atan(1/5) - 4 atan(1/239).
		atanInv := func(n int64) *big.Float {
			// atan(1/n) = Σ (-1)^k / ((2k+1) n^(2k+1))
			sum := new(big.Float).SetPrec(piPrec + 64)
			pow := new(big.Float).SetPrec(piPrec+64).Quo(big.NewFloat(1).SetPrec(piPrec+64), new(big.Float).SetInt64(n))
			nn := new(big.Float).SetPrec(piPrec + 64).SetInt64(n * n)
			term := new(big.Float).SetPrec(piPrec + 64)
			eps := new(big.Float).SetMantExp(big.NewFloat(1), -(piPrec + 32))
			for k := int64(0); ; k++ {
				term.Quo(pow, new(big.Float).SetInt64(2*k+1))
				if k%2 == 0 {
					sum.Add(sum, term)
				} else {
					sum.Sub(sum, term)
				}
				if term.Cmp(eps) < 0 {
					return sum
				}
				pow.Quo(pow, nn)
			}
		}
		a := atanInv(5)
		a.Mul(a, big.NewFloat(16))
		b := atanInv(239)
		b.Mul(b, big.NewFloat(4))
		piBig = new(big.Float).SetPrec(piPrec).Sub(a, b)
	})
	return piBig
}

// remPio2Big is remPio2 for large finite x, exact to float64 double-double
// precision (slow: used only far beyond the rotary tables' usual range).
func remPio2Big(x float64) (n int, y0, y1 float64) {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, math.NaN(), 0
	}
	const prec = piPrec
	pio2 := new(big.Float).SetPrec(prec).Quo(bigPi(), big.NewFloat(2))
	bx := new(big.Float).SetPrec(prec).SetFloat64(x)
	q := new(big.Float).SetPrec(prec).Quo(bx, pio2)
	// k = round(q), halves away from zero (any rounding works here).
	half := big.NewFloat(0.5)
	if q.Sign() < 0 {
		half.Neg(half)
	}
	kf := new(big.Float).SetPrec(prec).Add(q, half)
	ki, _ := kf.Int(nil) // truncates toward zero
	kb := new(big.Float).SetPrec(prec).SetInt(ki)
	r := new(big.Float).SetPrec(prec).Mul(kb, pio2)
	r.Sub(bx, r)
	y0, _ = r.Float64()
	r.Sub(r, new(big.Float).SetFloat64(y0))
	y1, _ = r.Float64()
	m := new(big.Int).And(ki, big.NewInt(3)) // two's complement: k mod 4
	return int(m.Int64()), y0, y1
}

// sin64 is sin(x), about 1 ulp, deterministic. NaN and ±Inf give NaN.
func sin64(x float64) float64 {
	if math.Abs(x) <= math.Pi/4 {
		if x == 0 {
			return x
		}
		return kernelSin(x, 0)
	}
	n, y0, y1 := remPio2(x)
	switch n & 3 {
	case 0:
		return kernelSin(y0, y1)
	case 1:
		return kernelCos(y0, y1)
	case 2:
		return -kernelSin(y0, y1)
	default:
		return -kernelCos(y0, y1)
	}
}

// cos64 is cos(x), about 1 ulp, deterministic. NaN and ±Inf give NaN.
func cos64(x float64) float64 {
	if math.Abs(x) <= math.Pi/4 {
		return kernelCos(x, 0)
	}
	n, y0, y1 := remPio2(x)
	switch n & 3 {
	case 0:
		return kernelCos(y0, y1)
	case 1:
		return -kernelSin(y0, y1)
	case 2:
		return -kernelCos(y0, y1)
	default:
		return kernelSin(y0, y1)
	}
}

// Constants of exp64 and log64 (fdlibm, as in Go's math package).
const (
	ln2Hi64 = 6.93147180369123816490e-01
	ln2Lo64 = 1.90821492927058770002e-10
	log2e64 = 1.44269504088896338700e+00

	expP1 = 1.66666666666666657415e-01
	expP2 = -2.77777777770155933842e-03
	expP3 = 6.61375632143793436117e-05
	expP4 = -1.65339022054652515390e-06
	expP5 = 4.13813679705723846039e-08

	logL1 = 6.666666666666735130e-01
	logL2 = 3.999999999940941908e-01
	logL3 = 2.857142874366239149e-01
	logL4 = 2.222219843214978396e-01
	logL5 = 1.818357216161805012e-01
	logL6 = 1.531383769920937332e-01
	logL7 = 1.479819860511658591e-01
)

// exp64 is e^x for |x| <= 700 (about 1 ulp, deterministic); the rotary
// tables need no more. Outside it returns +Inf or 0.
func exp64(x float64) float64 {
	switch {
	case x != x:
		return x
	case x > 700:
		return math.Inf(1)
	case x < -700:
		return 0
	case math.Abs(x) < 0x1p-28:
		return 1 + x
	}
	var k int
	if x < 0 {
		k = int(float64(log2e64*x) - 0.5)
	} else {
		k = int(float64(log2e64*x) + 0.5)
	}
	hi := x - float64(float64(k)*ln2Hi64)
	lo := float64(float64(k) * ln2Lo64)
	r := hi - lo
	t := float64(r * r)
	c := r - float64(t*(expP1+float64(t*(expP2+float64(t*(expP3+float64(t*(expP4+float64(t*expP5)))))))))
	y := 1 - ((lo - float64(r*c)/(2-c)) - hi)
	return math.Ldexp(y, k) // exact: k in [-1010, 1010] and y in [0.7, 1.5]
}

// log64 is the natural logarithm of a positive normal x (about 1 ulp,
// deterministic); other arguments give NaN (x <= 0, NaN) or +Inf.
func log64(x float64) float64 {
	switch {
	case x != x || x <= 0:
		return math.NaN()
	case math.IsInf(x, 1):
		return x
	}
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := float64(s * s)
	s4 := float64(s2 * s2)
	t1 := float64(s2 * (logL1 + float64(s4*(logL3+float64(s4*(logL5+float64(s4*logL7)))))))
	t2 := float64(s4 * (logL2 + float64(s4*(logL4+float64(s4*logL6)))))
	R := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi64) - ((hfsq - (float64(s*(hfsq+R)) + float64(k*ln2Lo64))) - f)
}
