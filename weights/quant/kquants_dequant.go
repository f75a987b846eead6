package quant

import (
	"encoding/binary"
	"math"
)

// The K-quant dequantizers below are bit-exact with ggml's dequantize_row_*:
// each value is computed with the same float32 operations in the same order,
// and every product that C rounds before an addition is rounded explicitly
// with float32(...) so that it is never fused into an FMA.

// dequantQ2K: x = d*scale*q - dmin*min per sub-block of 16, q in [0, 3].
func dequantQ2K(dst []float32, src []byte) {
	const ts = 84
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d, dmin := fp16le(b[q2KD:]), fp16le(b[q2KDmin:])
		scales := b[q2KScales : q2KScales+16]
		for h := range 2 {
			q := b[q2KQs+32*h : q2KQs+32*h+32]
			for j := range 4 {
				shift := 2 * j
				for k := range 2 {
					sc := scales[8*h+2*j+k]
					dl := d * float32(sc&0xF)
					ml := float32(dmin * float32(sc>>4))
					out := y[128*h+32*j+16*k : 128*h+32*j+16*k+16]
					for l := range out {
						out[l] = float32(dl*float32((q[16*k+l]>>shift)&3)) - ml
					}
				}
			}
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}

// dequantQ3K: x = d*scale*q per sub-block of 16, q in [-4, 3].
func dequantQ3K(dst []float32, src []byte) {
	const ts = 110
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d := fp16le(b[q3KD:])
		scales := Q3KScales(b[q3KScales : q3KScales+12])
		hm := b[q3KHmask : q3KHmask+32]
		for h := range 2 {
			q := b[q3KQs+32*h : q3KQs+32*h+32]
			for j := range 4 {
				shift := 2 * j
				m := byte(1) << (4*h + j)
				for k := range 2 {
					dl := d * float32(int(scales[8*h+2*j+k]))
					out := y[128*h+32*j+16*k : 128*h+32*j+16*k+16]
					for l := range out {
						v := int((q[16*k+l] >> shift) & 3)
						if hm[16*k+l]&m == 0 {
							v -= 4
						}
						out[l] = dl * float32(v)
					}
				}
			}
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}

// dequantQ4K: x = d*scale*q - dmin*min per sub-block of 32, q in [0, 15].
func dequantQ4K(dst []float32, src []byte) {
	const ts = 144
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d, dmin := fp16le(b[q4KD:]), fp16le(b[q4KDmin:])
		scales := b[q4KScales : q4KScales+12]
		for j := range 4 {
			q := b[q4KQs+32*j : q4KQs+32*j+32]
			sc, m := ScaleMinK4(2*j, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = ScaleMinK4(2*j+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			lo, hi := y[64*j:64*j+32], y[64*j+32:64*j+64]
			for l := range 32 {
				lo[l] = float32(d1*float32(q[l]&0xF)) - m1
				hi[l] = float32(d2*float32(q[l]>>4)) - m2
			}
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}

// dequantQ5K: x = d*scale*q - dmin*min per sub-block of 32, q in [0, 31].
func dequantQ5K(dst []float32, src []byte) {
	const ts = 176
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d, dmin := fp16le(b[q5KD:]), fp16le(b[q5KDmin:])
		scales := b[q5KScales : q5KScales+12]
		qh := b[q5KQh : q5KQh+32]
		for j := range 4 {
			ql := b[q5KQs+32*j : q5KQs+32*j+32]
			sc, m := ScaleMinK4(2*j, scales)
			d1, m1 := d*float32(sc), float32(dmin*float32(m))
			sc, m = ScaleMinK4(2*j+1, scales)
			d2, m2 := d*float32(sc), float32(dmin*float32(m))
			u1, u2 := byte(1)<<(2*j), byte(2)<<(2*j)
			lo, hi := y[64*j:64*j+32], y[64*j+32:64*j+64]
			for l := range 32 {
				v1, v2 := ql[l]&0xF, ql[l]>>4
				if qh[l]&u1 != 0 {
					v1 += 16
				}
				if qh[l]&u2 != 0 {
					v2 += 16
				}
				lo[l] = float32(d1*float32(v1)) - m1
				hi[l] = float32(d2*float32(v2)) - m2
			}
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}

// dequantQ6K: x = d*scale*q per sub-block of 16, q in [-32, 31].
func dequantQ6K(dst []float32, src []byte) {
	const ts = 210
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d := fp16le(b[q6KD:])
		for h := range 2 {
			ql := b[q6KQl+64*h : q6KQl+64*h+64]
			qh := b[q6KQh+32*h : q6KQh+32*h+32]
			sc := b[q6KScales+8*h : q6KScales+8*h+8]
			out := y[128*h : 128*h+128]
			for l := range 32 {
				is := l / 16
				q1 := int(ql[l]&0xF|(qh[l]&3)<<4) - 32
				q2 := int(ql[l+32]&0xF|((qh[l]>>2)&3)<<4) - 32
				q3 := int(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
				q4 := int(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
				out[l] = d * float32(int8(sc[is])) * float32(q1)
				out[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				out[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				out[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}

// dequantQ8K: x = d*q.
func dequantQ8K(dst []float32, src []byte) {
	const ts = 292
	for len(src) >= ts {
		b, y := src[:ts], dst[:QK_K]
		d := math.Float32frombits(binary.LittleEndian.Uint32(b[q8KD:]))
		qs := b[q8KQs : q8KQs+QK_K]
		for j, q := range qs {
			y[j] = d * float32(int8(q))
		}
		src, dst = src[ts:], dst[QK_K:]
	}
}
