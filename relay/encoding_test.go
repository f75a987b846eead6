package relay

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/weights/quant"
)

func randValues(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

func TestActivationsF32Exact(t *testing.T) {
	x := []float32{0, float32(math.Copysign(0, -1)), 1, -1.5, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(-1))}
	b, err := EncodeActivations(F32, x)
	if err != nil {
		t.Fatal(err)
	}
	y, err := DecodeActivations(F32, b, len(x))
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			t.Errorf("f32 value %d = %v, want %v", i, y[i], x[i])
		}
	}
}

func TestActivationsF16(t *testing.T) {
	// Every finite f16 value round-trips exactly.
	var x []float32
	for h := range 1 << 16 {
		if h&0x7c00 != 0x7c00 {
			x = append(x, quant.FP16ToFP32(uint16(h)))
		}
	}
	b, err := EncodeActivations(F16, x)
	if err != nil {
		t.Fatal(err)
	}
	y, err := DecodeActivations(F16, b, len(x))
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			t.Fatalf("f16 value %v came back as %v", x[i], y[i])
		}
	}
	// Arbitrary values: relative error <= 2^-11 in the normal range,
	// absolute <= 2^-25 below it.
	rng := rand.New(rand.NewPCG(1, 2))
	for _, scale := range []float64{1e-6, 1e-3, 1, 100, 10000} {
		x := randValues(rng, 4096, scale)
		b, _ := EncodeActivations(F16, x)
		y, err := DecodeActivations(F16, b, len(x))
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			ax, e := math.Abs(float64(x[i])), math.Abs(float64(y[i])-float64(x[i]))
			switch {
			case ax > 65504:
			case ax >= 0x1p-14 && e > ax*0x1p-11:
				t.Fatalf("f16(%v) = %v, relative error %g > 2^-11", x[i], y[i], e/ax)
			case ax < 0x1p-14 && e > 0x1p-25:
				t.Fatalf("f16(%v) = %v, absolute error %g > 2^-25", x[i], y[i], e)
			}
		}
	}
}

func TestActivationsQ8_0Bound(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, scale := range []float64{1e-9, 1e-5, 1e-2, 1, 50, 1e4} {
		x := randValues(rng, 32*256, scale)
		x[5] = 0 // a zero and a constant block
		for i := 64; i < 96; i++ {
			x[i] = float32(scale)
		}
		b, err := EncodeActivations(Q8_0, x)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != len(x)/32*34 {
			t.Fatalf("len = %d, want %d", len(b), len(x)/32*34)
		}
		y, err := DecodeActivations(Q8_0, b, len(x))
		if err != nil {
			t.Fatal(err)
		}
		for blk := 0; blk < len(x); blk += 32 {
			var amax float64
			for _, v := range x[blk : blk+32] {
				amax = max(amax, math.Abs(float64(v)))
			}
			bound := amax/254 + amax/2048 + 127*0x1p-25 + amax*1e-6
			for i := blk; i < blk+32; i++ {
				if e := math.Abs(float64(y[i]) - float64(x[i])); e > bound {
					t.Fatalf("scale %g: q8_0(%v) = %v, error %g > bound %g (amax %g)", scale, x[i], y[i], e, bound, amax)
				}
			}
		}
	}
}

func TestActivationsErrors(t *testing.T) {
	if _, err := EncodeActivations(Q8_0, make([]float32, 33)); !errors.Is(err, ErrActivation) {
		t.Errorf("EncodeActivations(q8_0, 33 values) = %v, want ErrActivation", err)
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), 65504 * 128} {
		x := make([]float32, 32)
		x[3] = float32(v)
		if _, err := EncodeActivations(Q8_0, x); !errors.Is(err, ErrActivation) {
			t.Errorf("EncodeActivations(q8_0, %v) = %v, want ErrActivation", v, err)
		}
	}
	if _, err := EncodeActivations(Encoding(0), make([]float32, 4)); !errors.Is(err, ErrActivation) {
		t.Errorf("EncodeActivations(encoding 0) = %v, want ErrActivation", err)
	}
	infScale := make([]byte, 34)
	infScale[1] = 0x7c
	tests := []struct {
		name string
		enc  Encoding
		b    []byte
		n    int
	}{
		{"f32 short", F32, make([]byte, 7), 2},
		{"f32 long", F32, make([]byte, 9), 2},
		{"f16 short", F16, make([]byte, 3), 2},
		{"q8_0 odd n", Q8_0, make([]byte, 34), 31},
		{"q8_0 short", Q8_0, make([]byte, 33), 32},
		{"q8_0 inf scale", Q8_0, infScale, 32},
		{"negative n", F16, nil, -1},
		{"huge n", F32, make([]byte, 4), math.MaxInt},
		{"unknown", Encoding(9), make([]byte, 4), 1},
	}
	for _, tt := range tests {
		if x, err := DecodeActivations(tt.enc, tt.b, tt.n); !errors.Is(err, ErrActivation) {
			t.Errorf("%s: DecodeActivations(%v, %d bytes, %d) = %d values, %v, want ErrActivation", tt.name, tt.enc, len(tt.b), tt.n, len(x), err)
		}
	}
}

func TestFP16FastPaths(t *testing.T) {
	var out [2]byte
	check := func(b uint32) {
		f := math.Float32frombits(b)
		encodeF16(out[:], []float32{f})
		if got, want := uint16(out[0])|uint16(out[1])<<8, quant.FP32ToFP16(f); got != want {
			t.Fatalf("encodeF16(%#08x) = %#04x, want %#04x", b, got, want)
		}
	}
	// Every float32 whose low 13 bits (the rounded-off part) are near a
	// tie, over all exponents and signs, plus a strided sweep of the rest.
	for hi := uint32(0); hi < 1<<19; hi++ {
		for _, lo := range []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff} {
			check(hi<<13 | lo)
		}
	}
	for b := uint32(0); b < math.MaxUint32-7919; b += 7919 {
		check(b)
	}
}

func TestF16LoopsMatchScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	x := randValues(rng, 1<<14, 1000)
	for i := range x {
		if i%7 == 0 {
			x[i] = math.Float32frombits(rng.Uint32())
		}
	}
	b := make([]byte, 2*len(x))
	encodeF16(b, x)
	for i, v := range x {
		if h := uint16(b[2*i]) | uint16(b[2*i+1])<<8; h != quant.FP32ToFP16(v) {
			t.Fatalf("encodeF16(%v) = %#04x, want %#04x", v, h, quant.FP32ToFP16(v))
		}
	}
	all := make([]byte, 2<<16)
	for h := range 1 << 16 {
		all[2*h], all[2*h+1] = byte(h), byte(h>>8)
	}
	y := make([]float32, 1<<16)
	decodeF16(y, all)
	for h, v := range y {
		if want := quant.FP16ToFP32(uint16(h)); math.Float32bits(v) != math.Float32bits(want) {
			t.Fatalf("decodeF16(%#04x) = %v, want %v", h, v, want)
		}
	}
}
