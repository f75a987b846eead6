package kernels

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// ulpErr32 is |got - want| in units of the float32 spacing at want (the
// spacing of the subnormals below the normal range).
func ulpErr32(got float32, want float64) float64 {
	if math.IsInf(want, 0) || want > math.MaxFloat32 {
		if float64(got) == want || (want > 0 && math.IsInf(float64(got), 1)) {
			return 0
		}
		return math.Inf(1)
	}
	a := math.Abs(want)
	var ulp float64
	if a < 0x1p-126 {
		ulp = 0x1p-149
	} else {
		_, e := math.Frexp(a) // a = f * 2^e, f in [0.5, 1)
		ulp = math.Ldexp(1, e-24)
	}
	return math.Abs(float64(got)-want) / ulp
}

func TestMathConstants(t *testing.T) {
	tests := []struct {
		name string
		got  float32
		want float64
	}{
		{"expLog2e", expLog2e, math.Log2E},
		{"expLn2Hi", expLn2Hi, math.Ln2},
		{"expLn2Lo", expLn2Lo, math.Ln2 - float64(float32(math.Ln2))},
		{"geluK", geluK, -2 * math.Sqrt(2/math.Pi)},
	}
	for _, tt := range tests {
		if tt.got != float32(tt.want) {
			t.Errorf("%s = %v, want float32(%v) = %v", tt.name, tt.got, tt.want, float32(tt.want))
		}
	}
	// The polynomial constants must be float32 values (no silent rounding
	// of the literal).
	for i, c := range []float64{expC2, expC3, expC4, expC5, expC6, expLn2Lo, geluK} {
		if float64(float32(c)) != c {
			t.Errorf("constant %d = %v is not a float32", i, c)
		}
	}
}

// TestExpSweep checks Exp against math.Exp over a sweep of float32 bit
// patterns across the whole finite domain (every 211th pattern; every
// one with STRATA_EXHAUSTIVE=1, several minutes; the maximum found then
// was 0.919 ulp): at most 1 ulp.
func TestExpSweep(t *testing.T) {
	step := uint32(211)
	if testing.Short() {
		step = 16411
	}
	if os.Getenv("STRATA_EXHAUSTIVE") != "" {
		step = 1
	}
	var maxErr float64
	var maxAt float32
	check := func(x float32) {
		got := Exp(x)
		e := ulpErr32(got, math.Exp(float64(x)))
		if e > maxErr {
			maxErr, maxAt = e, x
		}
	}
	// Positive from 0 to 89, negative from -0 to -104 (beyond: constants).
	for b := uint32(0); b <= math.Float32bits(89); b += step {
		check(math.Float32frombits(b))
	}
	for b := uint32(0x80000000); b <= math.Float32bits(-104); b += step {
		check(math.Float32frombits(b))
	}
	t.Logf("max error %.4f ulp at x = %v (%#08x)", maxErr, maxAt, math.Float32bits(maxAt))
	if maxErr > 1 {
		t.Errorf("Exp(%v) = %v, want %v: error %.3f ulp > 1", maxAt, Exp(maxAt), math.Exp(float64(maxAt)), maxErr)
	}
}

func TestExpSpecial(t *testing.T) {
	inf := float32(math.Inf(1))
	maxf := float32(math.MaxFloat32)
	tests := []struct{ x, want float32 }{
		{0, 1},
		{float32(math.Copysign(0, -1)), 1},
		{1, float32(math.E)},
		{inf, inf},
		{-inf, 0},
		{89, inf},
		{88.72284, inf},                   // just past ln(MaxFloat32)
		{88.72283, 3.4027898e38},          // just below: finite
		{maxf, inf},                       //
		{-maxf, 0},                        //
		{-87.33655, 1.1754953e-38},        // ~ smallest normal
		{-103.27893, 1.4e-45},             // smallest subnormal
		{-103.97208, 0},                   // below half of it
		{0x1p-30, 1},                      // tiny: 1
		{-0x1p-30, 1},                     // tiny: 1 (1-2^-30 rounds to 1)
		{float32(math.Ln2), 2},            //
		{10, float32(math.Exp(10))},       //
		{-10, float32(math.Exp(-10))},     //
		{-100, float32(math.Exp(-100))},   // subnormal
		{-20.5, float32(math.Exp(-20.5))}, //
	}
	for _, tt := range tests {
		got := Exp(tt.x)
		if got != tt.want && ulpErr32(got, math.Exp(float64(tt.x))) > 1 {
			t.Errorf("Exp(%v) = %v, want %v", tt.x, got, tt.want)
		}
	}
	if got := Exp(float32(math.NaN())); got == got {
		t.Errorf("Exp(NaN) = %v, want NaN", got)
	}
}

func TestSiLUGELUScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	xs := []float32{0, 1, -1, 0.5, -0.5, 5, -5, 20, -20, 88, -88, 100, -100, 1e-30, -1e-30, 3e38, -3e38}
	for range 200000 {
		xs = append(xs, float32(r.NormFloat64()*4))
	}
	for _, x := range xs {
		x64 := float64(x)
		// silu: Exp's 1 ulp, then 1+e and x/d each half an ulp: within 3.
		// Below x = -88.7, Exp(-x) overflows and silu is -0 where the true
		// value is below 3e-37 in magnitude (as in ggml).
		want := x64 / (1 + math.Exp(-x64))
		if e := ulpErr32(silu(x), want); e > 3 && !(x < -88.7 && math.Abs(want) < 3e-37) {
			t.Fatalf("silu(%v) = %v, want %v (%.2f ulp)", x, silu(x), want, e)
		}
		// gelu: the error of z (a few ulp of z) moves the result by up to
		// |δz| relative, so allow (4 + 3|z|) ulp.
		u := math.Sqrt(2/math.Pi) * x64 * (1 + 0.044715*x64*x64)
		want = 0.5 * x64 * (1 + math.Tanh(u))
		if u < -5 { // 1 + tanh(u) cancels in float64: the same value, stably
			want = x64 / (1 + math.Exp(-2*u))
		}
		if math.IsInf(u, 0) || math.IsNaN(u) {
			want = math.Max(x64, 0) // the limit: x or 0
		}
		// Where Exp(z) overflows, gelu is -0 for a true value below
		// |x|*e^-88.7.
		if e := ulpErr32(gelu(x), want); e > 4+3*math.Abs(2*u) && math.Abs(float64(gelu(x))-want) > math.Abs(x64)*3e-39 {
			t.Fatalf("gelu(%v) = %v, want %v (%.2f ulp)", x, gelu(x), want, e)
		}
	}
}

func TestSinCos64(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var xs []float64
	for range 300000 {
		switch r.IntN(3) {
		case 0:
			xs = append(xs, (r.Float64()*2-1)*4)
		case 1:
			xs = append(xs, (r.Float64()*2-1)*2e6)
		default:
			xs = append(xs, r.Float64()*1e4)
		}
	}
	xs = append(xs, 0, math.Pi/4, -math.Pi/4, math.Pi/2, math.Pi, 1e6, -1e6, 1647099, 1647100, 3e9, 1e300)
	for _, x := range xs {
		// math.Sin/Cos are accurate to about 1e-16 absolute here; ours to
		// about one ulp: allow 1e-15.
		if d := math.Abs(sin64(x) - math.Sin(x)); d > 1e-15 {
			t.Fatalf("sin64(%v) = %v, want %v", x, sin64(x), math.Sin(x))
		}
		if d := math.Abs(cos64(x) - math.Cos(x)); d > 1e-15 {
			t.Fatalf("cos64(%v) = %v, want %v", x, cos64(x), math.Cos(x))
		}
	}
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if s, c := sin64(x), cos64(x); s == s || c == c {
			t.Errorf("sin64, cos64(%v) = %v, %v, want NaN", x, s, c)
		}
	}
	if got := sin64(math.Copysign(0, -1)); math.Signbit(got) != true || got != 0 {
		t.Errorf("sin64(-0) = %v, want -0", got)
	}
}

// TestRemPio2NearMultiples checks the fast reduction where it is hardest,
// at the float64s nearest to multiples of pi/2, against the exact one.
func TestRemPio2NearMultiples(t *testing.T) {
	pio2 := new(big.Float).SetPrec(piPrec).Quo(bigPi(), big.NewFloat(2))
	r := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		k := r.Int64N(1 << 20)
		m := new(big.Float).SetPrec(piPrec).Mul(pio2, new(big.Float).SetInt64(k))
		x, _ := m.Float64()
		x = math.Nextafter(x, math.Inf(int(r.IntN(3))-1))
		if math.Abs(x) >= mediumMax {
			continue
		}
		n, y0, y1 := remPio2(x)
		bn, by0, by1 := remPio2Big(x)
		if n&3 != bn&3 || math.Abs((y0+y1)-(by0+by1)) > 1e-30+math.Abs(by0)*0x1p-60 {
			t.Fatalf("remPio2(%v) = %d, %v, %v; exact %d, %v, %v", x, n, y0, y1, bn, by0, by1)
		}
	}
}

func TestBigPi(t *testing.T) {
	// The first 60 digits of pi.
	const want = "3.14159265358979323846264338327950288419716939937510582097494"
	if got := bigPi().Text('f', 59); got != want {
		t.Errorf("bigPi() = %s, want %s", got, want)
	}
}

func TestExpLog64(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 200000 {
		x := (r.Float64()*2 - 1) * 700
		if got, want := exp64(x), math.Exp(x); math.Abs(got-want) > 2*ulp64(want) {
			t.Fatalf("exp64(%v) = %v, want %v", x, got, want)
		}
		y := math.Exp((r.Float64()*2 - 1) * 700)
		if got, want := log64(y), math.Log(y); math.Abs(got-want) > 2*ulp64(want) {
			t.Fatalf("log64(%v) = %v, want %v", y, got, want)
		}
	}
	if log64(1) != 0 || log64(-1) == log64(-1) || !math.IsInf(log64(math.Inf(1)), 1) || exp64(0) != 1 {
		t.Errorf("log64(1) = %v, log64(-1) = %v, log64(+Inf) = %v, exp64(0) = %v", log64(1), log64(-1), log64(math.Inf(1)), exp64(0))
	}
}

func ulp64(x float64) float64 {
	x = math.Abs(x)
	return math.Nextafter(x, math.Inf(1)) - x
}

// TestMathGolden pins the bits of the scalar functions and the kernels
// built on them over fixed inputs.
// A change means a change of numerics profile; running the test under
// GOAMD64=v3 (where the compiler may fuse a*b+c) must give the same hash.
func TestMathGolden(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	xs32 := make([]float32, 100000)
	for i := range xs32 {
		xs32[i] = float32(r.NormFloat64() * 30)
	}
	xs64 := make([]float64, 100000)
	for i := range xs64 {
		xs64[i] = r.Float64() * 1e5
	}
	tests := []struct {
		name string
		want uint64
		f    func(h *bitHash)
	}{
		{"fma32", 0xd5f0824b09ea4933, func(h *bitHash) {
			for i := 0; i+2 < len(xs32); i++ {
				h.f32(fma32(xs32[i], xs32[i+1], xs32[i+2]))
			}
		}},
		{"Exp", 0xeb48adabf425a311, func(h *bitHash) {
			for _, x := range xs32 {
				h.f32(Exp(x))
			}
		}},
		{"silu", 0xca84bac7a5eeb782, func(h *bitHash) {
			for _, x := range xs32 {
				h.f32(silu(x))
			}
		}},
		{"gelu", 0xbf4858ed4ce1ab47, func(h *bitHash) {
			for _, x := range xs32 {
				h.f32(gelu(x / 4))
			}
		}},
		{"sincos64", 0xdefcc2ebe4ea393c, func(h *bitHash) {
			for _, x := range xs64 {
				h.f64(sin64(x))
				h.f64(cos64(x))
			}
		}},
		{"explog64", 0x41e38433eac824b0, func(h *bitHash) {
			for _, x := range xs64 {
				h.f64(exp64(x / 200))
				h.f64(log64(x))
			}
		}},
		{"RMSNorm", 0xc7f83241d9f918c8, func(h *bitHash) {
			dst := make([]float32, 4099)
			RMSNorm(dst, xs32[:4099], xs32[5000:9099], 1e-5)
			h.f32s(dst)
		}},
		{"Softmax", 0x56ce5e057e66e007, func(h *bitHash) {
			x := append([]float32(nil), xs32[:4099]...)
			Softmax(x)
			h.f32s(x)
		}},
		{"activations", 0xd27662e45125a834, func(h *bitHash) {
			dst := make([]float32, 1000)
			SiLU(dst, xs32[:1000])
			h.f32s(dst)
			GELU(dst, xs32[:1000])
			h.f32s(dst)
			SwiGLU(dst, xs32[:1000], xs32[1000:2000])
			h.f32s(dst)
			GeGLU(dst, xs32[:1000], xs32[1000:2000])
			h.f32s(dst)
		}},
		{"RoPE", 0x9c5968acb4614f8f, func(h *bitHash) {
			for _, mode := range []RoPEMode{RoPENormal, RoPENeox} {
				r, err := NewRoPE(RoPEConfig{Mode: mode, Dims: 64, Base: 10000, Scale: 0.5})
				if err != nil {
					t.Fatal(err)
				}
				x := append([]float32(nil), xs32[:4*2*80]...)
				r.Apply(x, []int32{0, 5, 4000, 100000}, 2, 80)
				h.f32s(x)
			}
		}},
		{"Attention", 0x1e969e7c7cd2fb57, func(h *bitHash) {
			const heads, kvHeads, hd, ctx = 4, 2, 40, 50
			k := KV{F32: xs32[:ctx*kvHeads*hd]}
			v16 := make([]uint16, ctx*kvHeads*hd)
			for i := range v16 {
				v16[i] = quant.FP32ToFP16(xs32[10000+i] / 30)
			}
			v := KV{F16: v16}
			q := make([]float32, 3*heads*hd)
			for i := range q {
				q[i] = xs32[20000+i] / 30
			}
			dst := make([]float32, len(q))
			var a Attention
			a.Forward(dst, q, k, v, []int32{7, 48, 49}, heads, kvHeads, hd, 0.15, nil)
			h.f32s(dst)
		}},
	}
	for _, tt := range tests {
		h := &bitHash{h: fnv.New64a()}
		tt.f(h)
		if got := h.h.Sum64(); got != tt.want {
			t.Errorf("%s golden hash = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// bitHash hashes the bits of float values.
type bitHash struct {
	h   hash.Hash64
	buf [8]byte
}

func (h *bitHash) f32(v float32) {
	binary.LittleEndian.PutUint32(h.buf[:], math.Float32bits(v))
	h.h.Write(h.buf[:4])
}

func (h *bitHash) f32s(v []float32) {
	for _, x := range v {
		h.f32(x)
	}
}

func (h *bitHash) f64(v float64) {
	binary.LittleEndian.PutUint64(h.buf[:], math.Float64bits(v))
	h.h.Write(h.buf[:])
}

// BenchmarkExp is Exp over 1024 arguments in [-8, 8).
func BenchmarkExp(b *testing.B) {
	xs := make([]float32, 1024)
	for i := range xs {
		xs[i] = float32(i)/64 - 8
	}
	b.SetBytes(4 * int64(len(xs)))
	b.ReportAllocs()
	for b.Loop() {
		var s float32
		for _, x := range xs {
			s += Exp(x)
		}
		sink32 = s
	}
}

func ExampleExp() {
	fmt.Println(Exp(1), Exp(-1))
	// Output: 2.7182817 0.36787945
}
