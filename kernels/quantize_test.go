package kernels

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

// block32 returns a 32-element block: vals followed by zeros.
func block32(vals ...float32) []float32 {
	x := make([]float32, 32)
	copy(x, vals)
	return x
}

func TestQ8QuantizeExamples(t *testing.T) {
	tests := []struct {
		name  string
		x     []float32
		amax  float32 // d is amax/127 rounded to half precision
		wantQ []int8  // leading values; the rest are 0
	}{
		{"zeros", block32(), 0, nil},
		// amax 127: d = 1, id = 1, and the halves round to even.
		{"ties to even", block32(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -126.5), 127, []int8{127, 0, 2, 2, 0, -2, -2, -126}},
		{"negative max", block32(-254, 1, 2, 3), 254, []int8{-127, 0, 1, 2}},
		{"single value", block32(0, 0, 3e-3), 3e-3, []int8{0, 0, 127}},
		// 127/amax overflows float32: values saturate, zeros stay 0 (and d
		// rounds to 0 in half precision).
		{"tiny block", block32(1e-40, -1e-40, 0), 1e-40, []int8{127, -127, 0}},
		// An infinite element makes d infinite and id 0.
		{"infinity", block32(float32(math.Inf(1)), 5), float32(math.Inf(1)), []int8{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Q8
			wantD := quant.FP16ToFP32(quant.FP32ToFP16(tt.amax / 127))
			if err := a.Quantize(tt.x); err != nil {
				t.Fatalf("Quantize(%v) = %v, want nil", tt.x, err)
			}
			wantQ := make([]int8, 32)
			copy(wantQ, tt.wantQ)
			var wantS int32
			for _, v := range wantQ {
				wantS += int32(v)
			}
			if math.Float32bits(a.D[0]) != math.Float32bits(wantD) || !slices.Equal(a.Q, wantQ) || a.S[0] != wantS {
				t.Errorf("Quantize(%v) = d %g q %v s %d, want d %g q %v s %d", tt.x, a.D[0], a.Q, a.S[0], wantD, wantQ, wantS)
			}
		})
	}
}

// checkQuantized checks the properties that the package doc's rules imply
// for one block: for Q8 (k false) d = fp16(amax/127) and q = RNE(x*(127/amax));
// for Q8K (k true) q = RNE(x*(-127/max)) with max the signed element of
// largest magnitude and d = 1/(-127/max); q in [-127, 127], the element of
// largest magnitude maps to ±127, and |x - d*q| is about d/2 at most.
func checkQuantized(t *testing.T, x []float32, q []int8, d float32, k bool) {
	t.Helper()
	var amax, mx float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); a > amax {
			amax, mx = a, v
		}
	}
	var wantD, mul float32
	switch {
	case amax == 0:
	case k:
		mul = -127 / mx
		wantD = 1 / mul
	default:
		wantD = quant.FP16ToFP32(quant.FP32ToFP16(amax / 127))
		mul = 127 / amax
	}
	if math.Float32bits(d) != math.Float32bits(wantD) {
		t.Fatalf("d = %g, want %g", d, wantD)
	}
	for i, v := range x {
		want := int8(math.RoundToEven(float64(float32(v * mul))))
		if q[i] != want || q[i] < -127 {
			t.Fatalf("q[%d] = %d for x = %g, want %d", i, q[i], v, want)
		}
		// d/2 for the rounding of q, plus up to 127 half-precision ulps of d.
		bound := math.Abs(float64(d))*(0.5+127.0/2048+1e-6) + 1e-6*math.Abs(float64(v))
		if err := math.Abs(float64(v) - float64(d)*float64(q[i])); err > bound {
			t.Fatalf("|x - d*q| = %g for x = %g, d = %g, q = %d: more than %g", err, v, d, q[i], bound)
		}
		if math.Abs(float64(v)) == float64(amax) && amax != 0 && (q[i] != 127 && q[i] != -127) {
			t.Fatalf("largest element %g quantized to %d, want ±127", v, q[i])
		}
	}
}

func TestQ8QuantizeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, n := range []int{0, 32, 64, 32 * 9, 4096} {
		x := randomFloats(r, n)
		var a Q8
		if err := a.Quantize(x); err != nil {
			t.Fatalf("Quantize(%d values) = %v, want nil", n, err)
		}
		if len(a.Q) != n || len(a.D) != n/32 || len(a.S) != n/32 {
			t.Fatalf("Quantize(%d values): lengths %d, %d, %d, want %d, %d, %d", n, len(a.Q), len(a.D), len(a.S), n, n/32, n/32)
		}
		for b := range n / 32 {
			checkQuantized(t, x[32*b:32*b+32], a.Q[32*b:32*b+32], a.D[b], false)
			var s int32
			for _, v := range a.Q[32*b : 32*b+32] {
				s += int32(v)
			}
			if a.S[b] != s {
				t.Fatalf("S[%d] = %d, want %d", b, a.S[b], s)
			}
		}
	}
}

func TestQ8KQuantizeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, n := range []int{0, 256, 512, 256 * 9} {
		x := randomFloats(r, n)
		var a Q8K
		if err := a.Quantize(x); err != nil {
			t.Fatalf("Quantize(%d values) = %v, want nil", n, err)
		}
		if len(a.Q) != n || len(a.D) != n/256 || len(a.BSums) != n/16 {
			t.Fatalf("Quantize(%d values): lengths %d, %d, %d, want %d, %d, %d", n, len(a.Q), len(a.D), len(a.BSums), n, n/256, n/16)
		}
		for b := range n / 256 {
			checkQuantized(t, x[256*b:256*b+256], a.Q[256*b:256*b+256], a.D[b], true)
		}
		for g := range n / 16 {
			var s int16
			for _, v := range a.Q[16*g : 16*g+16] {
				s += int16(v)
			}
			if a.BSums[g] != s {
				t.Fatalf("BSums[%d] = %d, want %d", g, a.BSums[g], s)
			}
		}
	}
}

// TestQ8QuantizeConcatenation checks that tokens laid end to end quantize as
// each token alone, which MatMul relies on.
func TestQ8QuantizeConcatenation(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	x := randomFloats(r, 3*512)
	var all, one Q8
	var allK, oneK Q8K
	if err := all.Quantize(x); err != nil {
		t.Fatal(err)
	}
	if err := allK.Quantize(x); err != nil {
		t.Fatal(err)
	}
	for tok := range 3 {
		if err := one.Quantize(x[512*tok : 512*tok+512]); err != nil {
			t.Fatal(err)
		}
		if err := oneK.Quantize(x[512*tok : 512*tok+512]); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(one.Q, all.Q[512*tok:512*tok+512]) || !slices.Equal(one.D, all.D[16*tok:16*tok+16]) || !slices.Equal(one.S, all.S[16*tok:16*tok+16]) {
			t.Errorf("Q8 of token %d alone differs from its part of the batch", tok)
		}
		if !slices.Equal(oneK.Q, allK.Q[512*tok:512*tok+512]) || !slices.Equal(oneK.D, allK.D[2*tok:2*tok+2]) || !slices.Equal(oneK.BSums, allK.BSums[32*tok:32*tok+32]) {
			t.Errorf("Q8K of token %d alone differs from its part of the batch", tok)
		}
	}
}

func TestQuantizeBadLength(t *testing.T) {
	for _, n := range []int{1, 31, 33, 255} {
		var a Q8
		var k Q8K
		if err := a.Quantize(make([]float32, n)); n%32 != 0 && !errors.Is(err, ErrShape) {
			t.Errorf("Q8.Quantize(%d values) = %v, want ErrShape", n, err)
		}
		if err := k.Quantize(make([]float32, n)); !errors.Is(err, ErrShape) {
			t.Errorf("Q8K.Quantize(%d values) = %v, want ErrShape", n, err)
		}
	}
}

func TestQuantizeNoAlloc(t *testing.T) {
	x := randomFloats(rand.New(rand.NewPCG(8, 8)), 2048)
	var a Q8
	var k Q8K
	allocs := testing.AllocsPerRun(10, func() {
		if err := a.Quantize(x); err != nil {
			t.Fatal(err)
		}
		if err := k.Quantize(x); err != nil {
			t.Fatal(err)
		}
		if err := a.Quantize(x[:1024]); err != nil { // shrinking reuses storage
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Quantize allocations per run = %v, want 0", allocs)
	}
}

func BenchmarkQuantize(b *testing.B) {
	x := randomFloats(rand.New(rand.NewPCG(9, 9)), 5632)
	b.Run("Q8/n=5632", func(b *testing.B) {
		var a Q8
		b.SetBytes(4 * int64(len(x)))
		b.ReportAllocs()
		for b.Loop() {
			_ = a.Quantize(x)
		}
	})
	b.Run("Q8K/n=5632", func(b *testing.B) {
		var a Q8K
		xk := x[:5632/256*256]
		b.SetBytes(4 * int64(len(xk)))
		b.ReportAllocs()
		for b.Loop() {
			_ = a.Quantize(xk)
		}
	})
}

// TestQuantizeGolden pins the bits of both activation forms on fixed
// inputs, against a compiler fusing x*id (GOAMD64=v3 permits it where the
// source does not round).
func TestQuantizeGolden(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	x := randomFloats(r, 4096)
	var a Q8
	var k Q8K
	if err := a.Quantize(x); err != nil {
		t.Fatal(err)
	}
	if err := k.Quantize(x); err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	for _, v := range a.Q {
		h.Write([]byte{byte(v)})
	}
	for _, v := range k.Q {
		h.Write([]byte{byte(v)})
	}
	for _, v := range slices.Concat(a.D, k.D) {
		binary.Write(h, binary.LittleEndian, math.Float32bits(v))
	}
	const want = 0xf18e88311f1bc198
	if got := h.Sum64(); got != want {
		t.Errorf("hash of Q8 and Q8K forms = %#x, want %#x", got, uint64(want))
	}
}
