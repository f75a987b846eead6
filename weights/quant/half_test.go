package quant

import (
	"math"
	"testing"
)

// halfValue is the exact value of a finite half, from its definition.
func halfValue(h uint16) float64 {
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	v := math.Ldexp(mant, -24) // subnormal: mant·2⁻²⁴
	if exp != 0 {
		v = math.Ldexp(1024+mant, exp-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func isHalfNaN(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }

func TestFP16ToFP32All(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := math.Float32bits(FP16ToFP32(h))
		var want uint32
		switch {
		case isHalfNaN(h): // quiet, payload kept, as F16C and ggml give
			want = uint32(h&0x8000)<<16 | 0x7fc00000 | uint32(h&0x3ff)<<13
		case h&0x7fff == 0x7c00:
			want = uint32(h&0x8000)<<16 | 0x7f800000
		default:
			want = math.Float32bits(float32(halfValue(h))) // exact: -0 stays -0
		}
		if got != want {
			t.Errorf("FP16ToFP32(%#04x) = %#08x, want %#08x", h, got, want)
		}
	}
}

func TestFP16RoundTripAll(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		want := h
		if isHalfNaN(h) {
			want |= 0x200 // quieted
		}
		if got := FP32ToFP16(FP16ToFP32(h)); got != want {
			t.Errorf("FP32ToFP16(FP16ToFP32(%#04x)) = %#04x, want %#04x", h, got, want)
		}
	}
}

// TestFP32ToFP16Ties checks, between every pair of adjacent finite halves
// (and between 65504 and the overflow to Inf), that the midpoint goes to the
// even one and that one float32 ulp either side goes to the nearer one. All
// the midpoints, subnormal ones included, are float32 values.
func TestFP32ToFP16Ties(t *testing.T) {
	for _, sign := range []uint16{0, 0x8000} {
		for h := uint16(0); h < 0x7c00; h++ {
			a, b := h|sign, (h+1)|sign
			bv := halfValue(b)
			if h+1 == 0x7c00 {
				bv = math.Copysign(65536, halfValue(a)) // Inf rounds as 2¹⁶
			}
			mid := float32((halfValue(a) + bv) / 2)
			if float64(mid) != (halfValue(a)+bv)/2 {
				t.Fatalf("midpoint of %#04x and %#04x is not a float32", a, b)
			}
			even := a
			if a&1 != 0 {
				even = b
			}
			below := math.Nextafter32(mid, 0)
			above := math.Nextafter32(mid, float32(math.Copysign(math.Inf(1), float64(mid))))
			for _, c := range []struct {
				in   float32
				want uint16
			}{{mid, even}, {below, a}, {above, b}} {
				if got := FP32ToFP16(c.in); got != c.want {
					t.Errorf("FP32ToFP16(%g (%#08x)) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
				}
			}
		}
	}
}

func TestFP32ToFP16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},
		{65504, 0x7bff},
		{65519.996, 0x7bff},
		{65520, 0x7c00},
		{-65520, 0xfc00},
		{1e6, 0x7c00},
		{math.MaxFloat32, 0x7c00},
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{0x1p-14, 0x0400},   // smallest normal
		{0x1p-24, 0x0001},   // smallest subnormal
		{0x1p-25, 0x0000},   // tie: to even, zero
		{0x1.8p-24, 0x0002}, // tie between 1 and 2: to 2
		{-0x1p-26, 0x8000},
		{math.SmallestNonzeroFloat32, 0x0000},
		{-math.SmallestNonzeroFloat32, 0x8000},
		{0x1.ffcp-15, 0x0400}, // largest subnormal + half ulp: ties up to the normal
	}
	for _, tt := range tests {
		if got := FP32ToFP16(tt.in); got != tt.want {
			t.Errorf("FP32ToFP16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestFP32ToFP16NaN(t *testing.T) {
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7fa00000, 0xffbfe000} {
		got := FP32ToFP16(math.Float32frombits(bits))
		want := uint16(bits>>16)&0x8000 | 0x7e00 | uint16(bits>>13&0x3ff)
		if got != want {
			t.Errorf("FP32ToFP16(%#08x) = %#04x, want %#04x", bits, got, want)
		}
	}
}

// checkNearest checks that h, the conversion of x, is a correctly rounded
// neighbour: no other representable value (Inf counting as the next power of
// two, as IEEE 754 rounds) is nearer to x, and ties go to the even one.
func checkNearest(t *testing.T, name string, x float32, h uint16, value func(uint16) float64, maxMag uint16) {
	t.Helper()
	if math.Signbit(float64(x)) != (h&0x8000 != 0) {
		t.Fatalf("%s(%g) = %#04x: wrong sign", name, x, h)
	}
	mag := h & 0x7fff
	if mag > maxMag {
		t.Fatalf("%s(%g) = %#04x: not finite or Inf", name, x, h)
	}
	xv := math.Abs(float64(x))
	err := math.Abs(xv - value(mag))
	for _, nb := range []int{int(mag) - 1, int(mag) + 1} {
		if nb < 0 || nb > int(maxMag) {
			continue
		}
		e := math.Abs(xv - value(uint16(nb)))
		if e < err || (e == err && mag&1 != 0) {
			t.Fatalf("%s(%g) = %#04x, want %#04x", name, x, h, uint16(nb)|h&0x8000)
		}
	}
}

// TestFP32ToFP16Sweep checks correct rounding for float32 values spread over
// the whole bit space.
func TestFP32ToFP16Sweep(t *testing.T) {
	value := func(m uint16) float64 {
		if m == 0x7c00 {
			return 65536
		}
		return halfValue(m)
	}
	for u := uint64(0); u < 1<<32; u += 4093 {
		x := math.Float32frombits(uint32(u))
		if x != x {
			continue
		}
		checkNearest(t, "FP32ToFP16", x, FP32ToFP16(x), value, 0x7c00)
	}
}

func TestBF16All(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToFP32(h)
		if got, want := math.Float32bits(f), uint32(h)<<16; got != want {
			t.Errorf("BF16ToFP32(%#04x) = %#08x, want %#08x", h, got, want)
		}
		want := h
		if h&0x7f80 == 0x7f80 && h&0x7f != 0 {
			want |= 0x40 // NaN: quieted
		}
		if got := FP32ToBF16(f); got != want {
			t.Errorf("FP32ToBF16(BF16ToFP32(%#04x)) = %#04x, want %#04x", h, got, want)
		}
		if h&0x7fff >= 0x7f80 {
			continue
		}
		// Ties to even, one ulp either side to the nearer.
		mid := uint32(h)<<16 | 0x8000
		even := h
		if h&1 != 0 {
			even = h + 1
		}
		for _, c := range []struct {
			in   uint32
			want uint16
		}{{mid, even}, {mid - 1, h}, {mid + 1, h + 1}} {
			if got := FP32ToBF16(math.Float32frombits(c.in)); got != c.want {
				t.Errorf("FP32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
			}
		}
	}
}

func TestFP32ToBF16NaN(t *testing.T) {
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff} {
		got := FP32ToBF16(math.Float32frombits(bits))
		if want := uint16(bits>>16) | 0x40; got != want {
			t.Errorf("FP32ToBF16(%#08x) = %#04x, want %#04x", bits, got, want)
		}
	}
}

func TestFP32ToBF16Sweep(t *testing.T) {
	value := func(m uint16) float64 {
		if m == 0x7f80 {
			return 0x1p128
		}
		return float64(BF16ToFP32(m))
	}
	for u := uint64(0); u < 1<<32; u += 4093 {
		x := math.Float32frombits(uint32(u))
		if x != x {
			continue
		}
		checkNearest(t, "FP32ToBF16", x, FP32ToBF16(x), value, 0x7f80)
	}
}
