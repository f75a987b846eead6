package quant

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

var legacyTypes = []Type{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1}

// fp16Err bounds |v - FP16ToFP32(FP32ToFP16(v))| for |v| <= 65504: half an
// ulp, 2⁻¹¹ relative for normals and 2⁻²⁵ absolute in the subnormal range.
func fp16Err(v float64) float64 { return max(math.Abs(v)*0x1p-11, 0x1p-25) }

// legacyBound returns, for each element of one block x, the largest error
// that quantizing and dequantizing it may have, derived from the format:
//
//   - symmetric (Q4_0, Q5_0): d = max/-k with max the element of largest
//     magnitude, q = round(x/d) on the grid -k..k-1. x/d lies in [-k, k];
//     rounding costs |d|/2, and x/d above k-1/2 is clamped to k-1, which
//     costs up to |d| more in total.
//   - Q8_0, Q8_1: d = amax/127, q = round(x/d) in -127..127: |d|/2.
//   - with offset (Q4_1, Q5_1): d = (max-min)/k, q = round((x-min)/d) in 0..k:
//     d/2, plus the error of storing min as fp16.
//
// The stored scale is fp16(d), which moves each value by at most
// |q|·|d-fp16(d)|. float32 arithmetic adds a few ulps of the block's range.
func legacyBound(t Type, x []float32) []float64 {
	var amax, maxv float64
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range x {
		f := float64(v)
		if a := math.Abs(f); a > amax {
			amax, maxv = a, f
		}
		lo, hi = min(lo, f), max(hi, f)
	}
	slack := 1e-6 * amax
	b := make([]float64, len(x))
	switch t {
	case Q4_0, Q5_0:
		k := 8.0
		if t == Q5_0 {
			k = 16
		}
		d := maxv / -k
		for i, v := range x {
			r := 0.0
			if d != 0 {
				r = float64(v) / d
			}
			b[i] = math.Abs(d)/2 + max(0, r-(k-0.5))*math.Abs(d) + k*fp16Err(d) + slack
		}
	case Q8_0, Q8_1:
		d := amax / 127
		for i := range b {
			b[i] = d/2 + 127*fp16Err(d) + slack
		}
	case Q4_1, Q5_1:
		k := 15.0
		if t == Q5_1 {
			k = 31
		}
		d := (hi - lo) / k
		for i := range b {
			b[i] = d/2 + k*fp16Err(d) + fp16Err(lo) + slack
		}
	default:
		panic("legacyBound: " + t.String())
	}
	return b
}

func TestLegacyRoundTrip(t *testing.T) {
	const n = 64 * 32
	gens := []struct {
		name string
		gen  func(r *rand.Rand, j int) float32
	}{
		{"gauss", func(r *rand.Rand, _ int) float32 { return float32(r.NormFloat64()) }},
		{"gauss_0.02", func(r *rand.Rand, _ int) float32 { return float32(0.02 * r.NormFloat64()) }},
		{"gauss_1000", func(r *rand.Rand, _ int) float32 { return float32(1000 * r.NormFloat64()) }},
		{"tiny", func(r *rand.Rand, _ int) float32 { return float32(1e-7 * r.NormFloat64()) }},
		{"positive", func(r *rand.Rand, _ int) float32 { return r.Float32() }},
		{"negative", func(r *rand.Rand, _ int) float32 { return -3 * r.Float32() }},
		{"outliers", func(r *rand.Rand, j int) float32 {
			if j%97 == 0 {
				return float32(40 * r.NormFloat64())
			}
			return float32(r.NormFloat64())
		}},
		{"zeros", func(*rand.Rand, int) float32 { return 0 }},
		{"constant", func(*rand.Rand, int) float32 { return -1.75 }},
		{"grid", func(_ *rand.Rand, j int) float32 { return float32(j%33-16) / 4 }},
	}
	for _, typ := range legacyTypes {
		for gi, g := range gens {
			t.Run(typ.String()+"/"+g.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(typ), uint64(gi)))
				x := make([]float32, n)
				for j := range x {
					x[j] = g.gen(r, j)
				}
				q := make([]byte, n/typ.BlockSize()*typ.TypeSize())
				if err := Quantize(typ, q, x); err != nil {
					t.Fatalf("Quantize(%v) = %v", typ, err)
				}
				y := make([]float32, n)
				if err := Dequantize(typ, y, q); err != nil {
					t.Fatalf("Dequantize(%v) = %v", typ, err)
				}
				bad := 0
				for blk := 0; blk < n/32; blk++ {
					xs := x[blk*32 : blk*32+32]
					for i, bound := range legacyBound(typ, xs) {
						j := blk*32 + i
						if err := math.Abs(float64(y[j]) - float64(x[j])); !(err <= bound) {
							if bad++; bad <= 5 {
								t.Errorf("Dequantize(Quantize(%v, x))[%d] = %g, want %g within %g (error %g)",
									typ, j, y[j], x[j], bound, err)
							}
						}
					}
				}
			})
		}
	}
}

func TestLegacyZeroBlock(t *testing.T) {
	// A block of zeros has scale 0 (-0 for the symmetric 4- and 5-bit
	// formats, whose d is max/-k) and every quant at the grid's zero.
	zero := map[Type]string{
		Q4_0: "0080" + repeatHex("88", 16),
		Q4_1: "00000000" + repeatHex("00", 16),
		Q5_0: "0080" + "ffffffff" + repeatHex("00", 16),
		Q5_1: "00000000" + "00000000" + repeatHex("00", 16),
		Q8_0: "0000" + repeatHex("00", 32),
		Q8_1: "00000000" + repeatHex("00", 32),
	}
	for _, typ := range legacyTypes {
		got := make([]byte, typ.TypeSize())
		if err := Quantize(typ, got, make([]float32, 32)); err != nil {
			t.Fatalf("Quantize(%v) = %v", typ, err)
		}
		if h := hex.EncodeToString(got); h != zero[typ] {
			t.Errorf("Quantize(%v, zeros) = %s, want %s", typ, h, zero[typ])
		}
	}
}

func repeatHex(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// TestLegacyNonFinite pins what ggml's reference quantizers (x86-64 build)
// write for NaN, ±Inf and subnormal inputs, where C's float to int
// conversion is undefined and the compiled code decides.
func TestLegacyNonFinite(t *testing.T) {
	nan := math.Float32frombits(0x7fc00000)
	inf := float32(math.Inf(1))
	// Block 0: NaN and ±Inf among finite values. Block 1: subnormals, so
	// that 1/d is Inf. Block 2: NaN first, and at every third element.
	x := make([]float32, 96)
	for j := range 32 {
		x[j] = float32(j-13) * 0.25
		x[32+j] = float32((j*7)%17-8) * math.SmallestNonzeroFloat32
		x[64+j] = float32(j - 16)
		if j%3 == 0 {
			x[64+j] = nan
		}
	}
	x[3], x[7], x[20] = nan, inf, -inf

	// From testdata/gen's ggml, quantize_row_*_ref of x, one string per block.
	want := []struct {
		typ    Type
		blocks []string
	}{
		{Q4_0, []string{"00fc88888880088888808888888888888888", "000000000000000000000000000000000000", "803f809001a0a202b0c304d0d505e0f607f0"}},
		{Q4_1, []string{"007c00fc00000000000000000000000000000000", "0000008000000000000000000000000000000000", "004080cb80800190a202b0b304c0d505e0e607f0"}},
		{Q5_0, []string{"00fc77ffefff00000000000000000000000000000000", "0000ffffffff00000000000000000000000000000000", "803b0000dbb6001001304304607607a0ba0bd0ed0ef0"}},
		{Q5_1, []string{"007c00fc0000000000000000000000000000000000000000", "000000800000000000000000000000000000000000000000", "be3b80cb0000dbb600100130430460760790a90ac0dc0df0"}},
		{Q8_0, []string{"007c0000000000000000000000000000000000000000000000000000000000000000", "00000000000000000000000000000000000000000000000000000000000000000000", "8f2f008189009aa300b4bc00cdd600e7ef00000800192200333b004c5500666e007f"}},
		{Q8_1, []string{"007c00fe0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000000000000000000000000000000000000000000000000000", "8f2f14c5008189009aa300b4bc00cdd600e7ef00000800192200333b004c5500666e007f"}},
	}
	for _, w := range want {
		ts := w.typ.TypeSize()
		got := make([]byte, 3*ts)
		if err := Quantize(w.typ, got, x); err != nil {
			t.Fatalf("Quantize(%v) = %v", w.typ, err)
		}
		for b, ws := range w.blocks {
			g := got[b*ts : (b+1)*ts]
			if w.typ == Q8_1 && b == 0 {
				// s = 0·Inf is a NaN whose sign the CPU picks (x86: negative).
				if s := FP16ToFP32(uint16(g[2]) | uint16(g[3])<<8); s == s {
					t.Errorf("Quantize(Q8_1, block 0).s = %g, want NaN", s)
				}
				g[2], g[3] = 0x00, 0xfe
			}
			if h := hex.EncodeToString(g); h != ws {
				t.Errorf("Quantize(%v, x)[block %d] = %s, want %s", w.typ, b, h, ws)
			}
		}
	}
}

func TestTruncCVT(t *testing.T) {
	tests := []struct {
		in   float32
		want int32
	}{
		{0, 0},
		{float32(math.Copysign(0, -1)), 0},
		{0.99999994, 0},
		{-0.99999994, 0},
		{8.5, 8},
		{-8.5, -8},
		{16.5, 16},
		{2147483520, 2147483520},
		{-2147483648, math.MinInt32},
		{2147483648, math.MinInt32},
		{-2147483904, math.MinInt32},
		{float32(math.Inf(1)), math.MinInt32},
		{float32(math.Inf(-1)), math.MinInt32},
		{float32(math.NaN()), math.MinInt32},
	}
	for _, tt := range tests {
		if got := truncCVT(tt.in); got != tt.want {
			t.Errorf("truncCVT(%g) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestRoundHalfAway(t *testing.T) {
	tests := []struct{ in, want float32 }{
		{0.5, 1},
		{-0.5, -1},
		{1.5, 2},
		{2.5, 3},
		{-2.5, -3},
		{0.49999997, 0},
		{126.5, 127},
		{8388609, 8388609},
	}
	for _, tt := range tests {
		if got := roundHalfAway(tt.in); got != tt.want {
			t.Errorf("roundHalfAway(%g) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

func TestLengthErrors(t *testing.T) {
	for i := range table {
		typ := Type(i)
		if !typ.Known() {
			continue
		}
		bs, ts := typ.BlockSize(), typ.TypeSize()
		if typ.CanDequantize() {
			for _, c := range []struct{ src, dst int }{
				{ts + 1, bs}, // not whole blocks
				{ts, bs + 1}, // too many values
				{2 * ts, bs}, // too few values
				{ts - 1, bs}, // short block
			} {
				err := Dequantize(typ, make([]float32, c.dst), make([]byte, c.src))
				if !errors.Is(err, ErrLength) {
					t.Errorf("Dequantize(%v, [%d]float32, [%d]byte) = %v, want %v", typ, c.dst, c.src, err, ErrLength)
				}
			}
			if err := Dequantize(typ, nil, nil); err != nil {
				t.Errorf("Dequantize(%v, nil, nil) = %v, want nil", typ, err)
			}
		}
		if typ.CanQuantize() {
			for _, c := range []struct{ src, dst int }{
				{bs, ts + 1},
				{bs, ts - 1},
				{2 * bs, ts},
				{bs + 1, ts},
			} {
				err := Quantize(typ, make([]byte, c.dst), make([]float32, c.src))
				if !errors.Is(err, ErrLength) {
					t.Errorf("Quantize(%v, [%d]byte, [%d]float32) = %v, want %v", typ, c.dst, c.src, err, ErrLength)
				}
			}
		}
	}
}

func TestUnsupportedAndUnknown(t *testing.T) {
	if err := Dequantize(Type(4), nil, nil); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Dequantize(type 4) = %v, want %v", err, ErrUnknownType)
	}
	if err := Quantize(Type(1000), nil, nil); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Quantize(type 1000) = %v, want %v", err, ErrUnknownType)
	}
	for _, typ := range legacyTypes {
		if !typ.CanDequantize() || !typ.CanQuantize() {
			t.Errorf("%v: CanDequantize, CanQuantize = %v, %v, want true, true", typ, typ.CanDequantize(), typ.CanQuantize())
		}
	}
}

// FuzzDequantize feeds arbitrary bytes to every dequantizer: no panic, and
// every element of the output is written.
func FuzzDequantize(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{0x00, 0x7c, 0x01, 0xfc})
	for i, typ := range goldenTypes {
		if g, err := readGolden(fmt.Sprintf("testdata/golden/%v.dequant.bin", typ)); err == nil {
			f.Add(uint8(i), g.blocks[:min(len(g.blocks), 4*typ.TypeSize())])
		}
	}
	var types []Type
	for i := range table {
		if Type(i).CanDequantize() {
			types = append(types, Type(i))
		}
	}
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		for k := range types {
			typ := types[(int(sel)+k)%len(types)]
			ts, bs := typ.TypeSize(), typ.BlockSize()
			src := data[:len(data)/ts*ts]
			n := len(src) / ts * bs
			dst := make([]float32, n+1)
			canary := math.Float32frombits(0x7fa5a5a5)
			for i := range dst {
				dst[i] = canary
			}
			if err := Dequantize(typ, dst[:n], src); err != nil {
				t.Fatalf("Dequantize(%v, [%d]float32, [%d]byte) = %v", typ, n, len(src), err)
			}
			if math.Float32bits(dst[n]) != 0x7fa5a5a5 {
				t.Fatalf("Dequantize(%v) wrote past its output", typ)
			}
			if len(data)%ts != 0 {
				if err := Dequantize(typ, dst[:n], data); !errors.Is(err, ErrLength) {
					t.Fatalf("Dequantize(%v, [%d]float32, [%d]byte) = %v, want %v", typ, n, len(data), err, ErrLength)
				}
			}
		}
	})
}

// FuzzQuantize feeds arbitrary float32 bits, NaN and Inf included, to every
// quantizer: no panic, and the output is deterministic.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x00, 0x00, 0xc0, 0x7f, 0x00, 0x00, 0x80, 0xff, 0x01, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Two super-blocks, the data's float32s repeated to fill them.
		x := make([]float32, 2*QK_K)
		if m := len(data) / 4; m > 0 {
			for i := range x {
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*(i%m):]))
			}
		}
		for i := range table {
			typ := Type(i)
			if !typ.CanQuantize() {
				continue
			}
			n := len(x) / typ.BlockSize() * typ.BlockSize()
			a := make([]byte, n/typ.BlockSize()*typ.TypeSize())
			b := make([]byte, len(a))
			if err := Quantize(typ, a, x[:n]); err != nil {
				t.Fatalf("Quantize(%v) = %v", typ, err)
			}
			if err := Quantize(typ, b, x[:n]); err != nil {
				t.Fatalf("Quantize(%v) = %v", typ, err)
			}
			if string(a) != string(b) {
				t.Fatalf("Quantize(%v) is not deterministic", typ)
			}
		}
	})
}
