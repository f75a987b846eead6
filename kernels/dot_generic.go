package kernels

import (
	"encoding/binary"
	"math"

	"github.com/stratanet/strata/weights/quant"
)

// genericKernels is the reference path: every entry follows the package
// doc's canonical order literally, in portable Go. The other paths are
// tested against it bit for bit.
var genericKernels = RowKernels{
	Q4_0: dotQ4_0,
	Q5_0: dotQ5_0,
	Q8_0: dotQ8_0,
	Q4_1: dotQ4_1,
	Q5_1: dotQ5_1,
	Q4_K: dotQ4K,
	Q5_K: dotQ5K,
	Q6_K: dotQ6K,
	F32:  dotF32,
	F16:  dotF16,
	BF16: dotBF16,
}

// Block geometry of the weight formats read here (see weights/quant).
const (
	q4_0Bytes = 18
	q4_1Bytes = 20
	q5_0Bytes = 22
	q5_1Bytes = 24
	q8_0Bytes = 34
	q4KBytes  = 144
	q5KBytes  = 176
	q6KBytes  = 210
)

// fp16 reads a little-endian IEEE half at b[0:2] and converts it exactly:
// normal values inline, the rest with fp16Rare.
func fp16(b []byte) float32 {
	h := binary.LittleEndian.Uint16(b)
	if h&0x7c00-0x400 < 0x7800 { // exponent neither 0 nor 31
		// Rebias the exponent from 15 to 127: add (127-15)<<23.
		return math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 112<<23))
	}
	return fp16Rare(h)
}

// fp16Rare converts a half whose exponent field is 0 (zero or subnormal:
// mantissa × 2^-24, exact in float32) or 31 (Inf, NaN: as
// quant.FP16ToFP32).
func fp16Rare(h uint16) float32 {
	if h&0x7c00 != 0 {
		return quant.FP16ToFP32(h)
	}
	v := float32(h&0x3ff) * 0x1p-24
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// tree8 is the package doc's fixed reduction of eight lane accumulators:
// ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)).
func tree8(a *[8]float32) float32 {
	return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

// dotQ4_0 is the Q4_0 row rule: w is len(d) blocks of 18 bytes, q and d the
// Q8 activation.
func dotQ4_0(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	w, q = w[:nb*q4_0Bytes], q[:nb*Q8Block]
	var acc [8]float32
	for b := range nb {
		wb := (*[q4_0Bytes]byte)(w[b*q4_0Bytes:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		qs := (*[16]byte)(wb[2:])
		var s0, s1, s2, s3 int32
		for j := 0; j < 16; j += 2 {
			v0, v1 := qs[j], qs[j+1]
			s0 += (int32(v0&15) - 8) * int32(qb[j])
			s1 += (int32(v1&15) - 8) * int32(qb[j+1])
			s2 += (int32(v0>>4) - 8) * int32(qb[j+16])
			s3 += (int32(v1>>4) - 8) * int32(qb[j+17])
		}
		isum := (s0 + s1) + (s2 + s3)
		acc[b&7] = fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
	}
	return tree8(&acc)
}

// dotQ5_0 is the Q5_0 row rule.
func dotQ5_0(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	w, q = w[:nb*q5_0Bytes], q[:nb*Q8Block]
	var acc [8]float32
	for b := range nb {
		wb := (*[q5_0Bytes]byte)(w[b*q5_0Bytes:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		qh := binary.LittleEndian.Uint32(wb[2:])
		qs := (*[16]byte)(wb[6:])
		var s0, s1, s2, s3 int32
		for j := 0; j < 16; j += 2 {
			v0, v1 := qs[j], qs[j+1]
			h0, h1 := qh>>j, qh>>(j+16)
			s0 += (int32(v0&15|byte(h0<<4)&16) - 16) * int32(qb[j])
			s1 += (int32(v1&15|byte(h0<<3)&16) - 16) * int32(qb[j+1])
			s2 += (int32(v0>>4|byte(h1<<4)&16) - 16) * int32(qb[j+16])
			s3 += (int32(v1>>4|byte(h1<<3)&16) - 16) * int32(qb[j+17])
		}
		isum := (s0 + s1) + (s2 + s3)
		acc[b&7] = fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
	}
	return tree8(&acc)
}

// dotQ8_0 is the Q8_0 row rule: one accumulator, each block's whole
// integer dot added in order (llama.cpp's AMX order).
func dotQ8_0(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	w, q = w[:nb*q8_0Bytes], q[:nb*Q8Block]
	var acc float32
	for b := range nb {
		wb := (*[q8_0Bytes]byte)(w[b*q8_0Bytes:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		qs := (*[Q8Block]byte)(wb[2:])
		var s int32
		for i := range Q8Block {
			s += int32(int8(qs[i])) * int32(qb[i])
		}
		acc = fma32(float32(fp16(wb[0:])*d[b]), float32(s), acc)
	}
	return acc
}

// dotQ4_1 is the Q4_1 row rule: s holds the Q8 block sums.
func dotQ4_1(w []byte, q []int8, d []float32, s []int32) float32 {
	nb := len(d)
	w, q, s = w[:nb*q4_1Bytes], q[:nb*Q8Block], s[:nb]
	var acc [8]float32
	for b := range nb {
		wb := (*[q4_1Bytes]byte)(w[b*q4_1Bytes:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		qs := (*[16]byte)(wb[4:])
		var s0, s1, s2, s3 int32
		for j := 0; j < 16; j += 2 {
			v0, v1 := qs[j], qs[j+1]
			s0 += int32(v0&15) * int32(qb[j])
			s1 += int32(v1&15) * int32(qb[j+1])
			s2 += int32(v0>>4) * int32(qb[j+16])
			s3 += int32(v1>>4) * int32(qb[j+17])
		}
		isum := (s0 + s1) + (s2 + s3)
		a := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
		acc[b&7] = fma32(float32(fp16(wb[2:])*d[b]), float32(s[b]), a)
	}
	return tree8(&acc)
}

// dotQ5_1 is the Q5_1 row rule.
func dotQ5_1(w []byte, q []int8, d []float32, s []int32) float32 {
	nb := len(d)
	w, q, s = w[:nb*q5_1Bytes], q[:nb*Q8Block], s[:nb]
	var acc [8]float32
	for b := range nb {
		wb := (*[q5_1Bytes]byte)(w[b*q5_1Bytes:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		qh := binary.LittleEndian.Uint32(wb[4:])
		qs := (*[16]byte)(wb[8:])
		var s0, s1, s2, s3 int32
		for j := 0; j < 16; j += 2 {
			v0, v1 := qs[j], qs[j+1]
			h0, h1 := qh>>j, qh>>(j+16)
			s0 += int32(v0&15|byte(h0<<4)&16) * int32(qb[j])
			s1 += int32(v1&15|byte(h0<<3)&16) * int32(qb[j+1])
			s2 += int32(v0>>4|byte(h1<<4)&16) * int32(qb[j+16])
			s3 += int32(v1>>4|byte(h1<<3)&16) * int32(qb[j+17])
		}
		isum := (s0 + s1) + (s2 + s3)
		a := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
		acc[b&7] = fma32(float32(fp16(wb[2:])*d[b]), float32(s[b]), a)
	}
	return tree8(&acc)
}

// dotQ4K is the Q4_K row rule against a Q8K activation: w is len(d)
// super-blocks of 144 bytes; bsums holds 16 group sums per super-block.
func dotQ4K(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	w, q, bsums = w[:nb*q4KBytes], q[:nb*Q8KBlock], bsums[:nb*16]
	var acc [8]float32
	for b := range nb {
		wb := (*[q4KBytes]byte)(w[b*q4KBytes:])
		qb := (*[Q8KBlock]int8)(q[b*Q8KBlock:])
		gb := (*[16]int16)(bsums[b*16:])
		scales := wb[4:16]
		var isum, msum int32
		for j := range 4 {
			qs := (*[32]byte)(wb[16+32*j:])
			lo := (*[32]int8)(qb[64*j:])
			hi := (*[32]int8)(qb[64*j+32:])
			var s0, s1, s2, s3 int32
			for l := 0; l < 32; l += 2 {
				v0, v1 := qs[l], qs[l+1]
				s0 += int32(v0&15) * int32(lo[l])
				s1 += int32(v1&15) * int32(lo[l+1])
				s2 += int32(v0>>4) * int32(hi[l])
				s3 += int32(v1>>4) * int32(hi[l+1])
			}
			sc0, m0 := quant.ScaleMinK4(2*j, scales)
			sc1, m1 := quant.ScaleMinK4(2*j+1, scales)
			isum += int32(sc0)*(s0+s1) + int32(sc1)*(s2+s3)
			msum += int32(m0)*(int32(gb[4*j])+int32(gb[4*j+1])) + int32(m1)*(int32(gb[4*j+2])+int32(gb[4*j+3]))
		}
		a := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
		acc[b&7] = fma32(-float32(fp16(wb[2:])*d[b]), float32(msum), a)
	}
	return tree8(&acc)
}

// dotQ5K is the Q5_K row rule against a Q8K activation.
func dotQ5K(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	w, q, bsums = w[:nb*q5KBytes], q[:nb*Q8KBlock], bsums[:nb*16]
	var acc [8]float32
	for b := range nb {
		wb := (*[q5KBytes]byte)(w[b*q5KBytes:])
		qb := (*[Q8KBlock]int8)(q[b*Q8KBlock:])
		gb := (*[16]int16)(bsums[b*16:])
		scales := wb[4:16]
		qh := (*[32]byte)(wb[16:])
		var isum, msum int32
		for j := range 4 {
			qs := (*[32]byte)(wb[48+32*j:])
			lo := (*[32]int8)(qb[64*j:])
			hi := (*[32]int8)(qb[64*j+32:])
			sh := uint(2 * j)
			var s0, s1, s2, s3 int32
			for l := 0; l < 32; l += 2 {
				v0, v1 := qs[l], qs[l+1]
				h0, h1 := qh[l]>>sh, qh[l+1]>>sh
				s0 += int32(v0&15|h0<<4&16) * int32(lo[l])
				s1 += int32(v1&15|h1<<4&16) * int32(lo[l+1])
				s2 += int32(v0>>4|h0<<3&16) * int32(hi[l])
				s3 += int32(v1>>4|h1<<3&16) * int32(hi[l+1])
			}
			sc0, m0 := quant.ScaleMinK4(2*j, scales)
			sc1, m1 := quant.ScaleMinK4(2*j+1, scales)
			isum += int32(sc0)*(s0+s1) + int32(sc1)*(s2+s3)
			msum += int32(m0)*(int32(gb[4*j])+int32(gb[4*j+1])) + int32(m1)*(int32(gb[4*j+2])+int32(gb[4*j+3]))
		}
		a := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b&7])
		acc[b&7] = fma32(-float32(fp16(wb[2:])*d[b]), float32(msum), a)
	}
	return tree8(&acc)
}

// dotQ6K is the Q6_K row rule against a Q8K activation (the group sums are
// not needed: the quants are centred before the product).
func dotQ6K(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	w, q = w[:nb*q6KBytes], q[:nb*Q8KBlock]
	var acc [8]float32
	for b := range nb {
		wb := (*[q6KBytes]byte)(w[b*q6KBytes:])
		qb := (*[Q8KBlock]int8)(q[b*Q8KBlock:])
		var isum int32
		for h := range 2 {
			ql := (*[64]byte)(wb[64*h:])
			qh := (*[32]byte)(wb[128+32*h:])
			sc := (*[8]byte)(wb[192+8*h:])
			x := (*[128]int8)(qb[128*h:])
			// Elements l, l+32, l+64, l+96 of this half share byte l of
			// qh; sub-block k (16 elements) has scale sc[k].
			for l0 := 0; l0 < 32; l0 += 16 {
				var s0, s1, s2, s3 int32
				for l := l0; l < l0+16; l++ {
					a, c, hb := ql[l], ql[l+32], qh[l]
					s0 += (int32(a&15|hb<<4&0x30) - 32) * int32(x[l])
					s1 += (int32(c&15|hb<<2&0x30) - 32) * int32(x[l+32])
					s2 += (int32(a>>4|hb&0x30) - 32) * int32(x[l+64])
					s3 += (int32(c>>4|hb>>2&0x30) - 32) * int32(x[l+96])
				}
				k := l0 / 16
				isum += int32(int8(sc[k]))*s0 + int32(int8(sc[k+2]))*s1 +
					int32(int8(sc[k+4]))*s2 + int32(int8(sc[k+6]))*s3
			}
		}
		acc[b&7] = fma32(float32(fp16(wb[208:])*d[b]), float32(isum), acc[b&7])
	}
	return tree8(&acc)
}

// reduce32 is the package doc's fixed reduction of the float rule's 32
// lane accumulators: r_j = (acc[j]+acc[j+8]) + (acc[j+16]+acc[j+24]), then
// tree8 of r.
func reduce32(acc *[32]float32) float32 {
	var r [8]float32
	for j := range r {
		r[j] = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24])
	}
	return tree8(&r)
}

// dotF32 is the float rule for F32 weights: w holds len(x) little-endian
// float32s.
func dotF32(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:4*n]
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		wb := (*[128]byte)(w[4*i:])
		xb := (*[32]float32)(x[i:])
		for j := range 32 {
			acc[j] = fma32(math.Float32frombits(binary.LittleEndian.Uint32(wb[4*j:])), xb[j], acc[j])
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:])), x[i], t)
	}
	return reduce32(&acc) + t
}

// dotF16 is the float rule for F16 weights: w holds len(x) little-endian
// halves, converted exactly.
func dotF16(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		wb := (*[64]byte)(w[2*i:])
		xb := (*[32]float32)(x[i:])
		for j := range 32 {
			// fp16, inlined: normal values here, the rest by a call.
			h := binary.LittleEndian.Uint16(wb[2*j:])
			v := math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 112<<23))
			if h&0x7c00-0x400 >= 0x7800 {
				v = fp16Rare(h)
			}
			acc[j] = fma32(v, xb[j], acc[j])
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(fp16(w[2*i:]), x[i], t)
	}
	return reduce32(&acc) + t
}

// dotBF16 is the float rule for BF16 weights.
func dotBF16(w []byte, x []float32) float32 {
	n := len(x)
	w = w[:2*n]
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		wb := (*[64]byte)(w[2*i:])
		xb := (*[32]float32)(x[i:])
		for j := range 32 {
			acc[j] = fma32(math.Float32frombits(uint32(binary.LittleEndian.Uint16(wb[2*j:]))<<16), xb[j], acc[j])
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(math.Float32frombits(uint32(binary.LittleEndian.Uint16(w[2*i:]))<<16), x[i], t)
	}
	return reduce32(&acc) + t
}
