package quant

import (
	"encoding/binary"
	"math"
)

// The legacy block formats: 32 elements per block, one fp16 scale d (and for
// the _1 formats an fp16 offset m, or for Q8_1 the fp16 sum s = d*Σq), then
// the quants. Within a 4- or 5-bit block, byte j holds element j in its low
// nibble and element j+16 in its high nibble; the fifth bits (qh, a
// little-endian uint32) hold element j at bit j.
//
//	Q4_0  d qs[16]        x = (q-8)*d     q in 0..15
//	Q4_1  d m qs[16]      x = q*d + m     q in 0..15
//	Q5_0  d qh qs[16]     x = (q-16)*d    q in 0..31
//	Q5_1  d m qh qs[16]   x = q*d + m     q in 0..31
//	Q8_0  d qs[32]        x = q*d         q in -128..127 (int8)
//	Q8_1  d s qs[32]      x = q*d         s is not read
//
// The quantizers reproduce quantize_row_*_ref of ggml as compiled for x86-64
// (the release in testdata/golden): every float32 operation in ggml's order,
// rounded after each step, and float to integer conversions as CVTTSS2SI
// performs them (see truncCVT), which also fixes what happens to NaN, Inf and
// to the infinite inverse scale of a block of subnormals.

const legacyQK = 32

func init() {
	register(Q4_0, dequantQ4_0, quantQ4_0)
	register(Q4_1, dequantQ4_1, quantQ4_1)
	register(Q5_0, dequantQ5_0, quantQ5_0)
	register(Q5_1, dequantQ5_1, quantQ5_1)
	register(Q8_0, dequantQ8_0, quantQ8_0)
	register(Q8_1, dequantQ8_1, quantQ8_1)
}

// truncCVT converts f to an integer, truncating toward zero, with the result
// of x86's CVTTSS2SI for values that have no int32: NaN and anything outside
// [-2³¹, 2³¹) give math.MinInt32. ggml's reference quantizers narrow floats
// to int8 or uint8 through this instruction and keep its low byte. Go leaves
// such conversions implementation-defined, so they are spelled out here.
func truncCVT(f float32) int32 {
	if f >= -(1<<31) && f < 1<<31 {
		return int32(f)
	}
	return math.MinInt32
}

// roundHalfAway is C's roundf: to the nearest integer, halves away from zero.
// The float64 detour is exact.
func roundHalfAway(f float32) float32 { return float32(math.Round(float64(f))) }

// clampQ is C's MIN(hi, (int8_t)v) stored into a uint8, as the 4- and 5-bit
// quantizers write it: the comparison is signed.
func clampQ(v int32, hi int8) uint8 { return uint8(min(hi, int8(v))) }

func fp16le(b []byte) float32 { return FP16ToFP32(binary.LittleEndian.Uint16(b)) }

func putFP16le(b []byte, f float32) { binary.LittleEndian.PutUint16(b, FP32ToFP16(f)) }

// absMax returns the element of largest magnitude, the first one on ties
// (0 for a block of zeros or NaNs).
func absMax(x *[legacyQK]float32) float32 {
	var amax, m float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); amax < a {
			amax, m = a, v
		}
	}
	return m
}

// absMaxMacro returns max |x| with C's MAX(a, b) = a > b ? a : b.
func absMaxMacro(x *[legacyQK]float32) float32 {
	var amax float32
	for _, v := range x {
		if a := float32(math.Abs(float64(v))); !(amax > a) {
			amax = a
		}
	}
	return amax
}

// minMax returns the least and greatest elements (NaNs are passed over).
func minMax(x *[legacyQK]float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func inverse(d float32) float32 {
	if d != 0 {
		return 1 / d
	}
	return 0
}

func dequantQ4_0(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[18]byte)(src[i*18:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d := fp16le(b[0:])
		for j, q := range b[2:] {
			y[j] = float32(int32(q&0x0f)-8) * d
			y[j+16] = float32(int32(q>>4)-8) * d
		}
	}
}

func quantQ4_0(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[18]byte)(dst[i*18:])
		d := absMax(x) / -8
		id := inverse(d)
		putFP16le(b[0:], d)
		for j := range 16 {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			q0 := clampQ(truncCVT(x0+8.5), 15)
			q1 := clampQ(truncCVT(x1+8.5), 15)
			b[2+j] = q0 | q1<<4
		}
	}
}

func dequantQ4_1(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[20]byte)(src[i*20:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d, m := fp16le(b[0:]), fp16le(b[2:])
		for j, q := range b[4:] {
			y[j] = float32(float32(q&0x0f)*d) + m
			y[j+16] = float32(float32(q>>4)*d) + m
		}
	}
}

func quantQ4_1(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[20]byte)(dst[i*20:])
		lo, hi := minMax(x)
		d := float32(hi-lo) / 15
		id := inverse(d)
		putFP16le(b[0:], d)
		putFP16le(b[2:], lo)
		for j := range 16 {
			x0 := float32(float32(x[j]-lo) * id)
			x1 := float32(float32(x[j+16]-lo) * id)
			q0 := clampQ(truncCVT(x0+0.5), 15)
			q1 := clampQ(truncCVT(x1+0.5), 15)
			b[4+j] = q0 | q1<<4
		}
	}
}

func dequantQ5_0(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[22]byte)(src[i*22:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d := fp16le(b[0:])
		qh := binary.LittleEndian.Uint32(b[2:])
		for j, q := range b[6:] {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32(int32(q&0x0f|h0)-16) * d
			y[j+16] = float32(int32(q>>4|h1)-16) * d
		}
	}
}

func quantQ5_0(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[22]byte)(dst[i*22:])
		d := absMax(x) / -16
		id := inverse(d)
		putFP16le(b[0:], d)
		var qh uint32
		for j := range 16 {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			q0 := clampQ(truncCVT(x0+16.5), 31)
			q1 := clampQ(truncCVT(x1+16.5), 31)
			b[6+j] = q0&0x0f | q1<<4
			qh |= uint32(q0>>4&1) << j
			qh |= uint32(q1>>4&1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
	}
}

func dequantQ5_1(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[24]byte)(src[i*24:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d, m := fp16le(b[0:]), fp16le(b[2:])
		qh := binary.LittleEndian.Uint32(b[4:])
		for j, q := range b[8:] {
			h0 := byte(qh>>j<<4) & 0x10
			h1 := byte(qh>>(j+12)) & 0x10
			y[j] = float32(float32(q&0x0f|h0)*d) + m
			y[j+16] = float32(float32(q>>4|h1)*d) + m
		}
	}
}

func quantQ5_1(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[24]byte)(dst[i*24:])
		lo, hi := minMax(x)
		d := float32(hi-lo) / 31
		id := inverse(d)
		putFP16le(b[0:], d)
		putFP16le(b[2:], lo)
		var qh uint32
		for j := range 16 {
			x0 := float32(float32(x[j]-lo) * id)
			x1 := float32(float32(x[j+16]-lo) * id)
			q0 := uint8(truncCVT(x0 + 0.5))
			q1 := uint8(truncCVT(x1 + 0.5))
			b[8+j] = q0&0x0f | q1<<4
			qh |= uint32(q0>>4&1) << j
			qh |= uint32(q1>>4&1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[4:], qh)
	}
}

func dequantQ8_0(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[34]byte)(src[i*34:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d := fp16le(b[0:])
		for j, q := range b[2:] {
			y[j] = float32(int8(q)) * d
		}
	}
}

func quantQ8_0(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[34]byte)(dst[i*34:])
		d := absMaxMacro(x) / 127
		id := inverse(d)
		putFP16le(b[0:], d)
		for j, v := range x {
			b[2+j] = uint8(truncCVT(roundHalfAway(v * id)))
		}
	}
}

// dequantQ8_1 has no counterpart in ggml, which uses Q8_1 only as the
// right-hand operand of dot products; it gives q*d as Q8_0 does.
func dequantQ8_1(dst []float32, src []byte) {
	for i := range len(dst) / legacyQK {
		b := (*[36]byte)(src[i*36:])
		y := (*[legacyQK]float32)(dst[i*legacyQK:])
		d := fp16le(b[0:])
		for j, q := range b[4:] {
			y[j] = float32(int8(q)) * d
		}
	}
}

func quantQ8_1(dst []byte, src []float32) {
	for i := range len(src) / legacyQK {
		x := (*[legacyQK]float32)(src[i*legacyQK:])
		b := (*[36]byte)(dst[i*36:])
		d := absMaxMacro(x) / 127
		id := inverse(d)
		putFP16le(b[0:], d)
		var sum int32
		for j := range 16 {
			q0 := int8(truncCVT(roundHalfAway(x[j] * id)))
			q1 := int8(truncCVT(roundHalfAway(x[j+16] * id)))
			b[4+j], b[20+j] = uint8(q0), uint8(q1)
			sum += int32(q0) + int32(q1)
		}
		putFP16le(b[2:], float32(sum)*d)
	}
}
