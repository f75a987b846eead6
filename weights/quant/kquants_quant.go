package quant

import (
	"encoding/binary"
	"math"
)

// The K-quant quantizers below produce the same bytes as ggml's
// quantize_row_*_ref: the same searches (makeQKX2, makeQXRMSE1, makeQ3), the
// same float32 operations in the same order, the same integer truncations.
// Each first fits every sub-block on its own, then quantizes the sub-block
// scales against the largest one, then requantizes the elements with the
// scales as stored (so that decoding sees what encoding assumed). A sub-block
// whose stored scale is zero keeps the quants of its first fit.

// pack2Bit stores 256 2-bit values L into qs[64] (the Q2_K/Q3_K layout).
func pack2Bit(qs []byte, L *[QK_K]uint8) {
	for h := range 2 {
		for l := range 32 {
			j := 128*h + l
			qs[32*h+l] = L[j] | L[j+32]<<2 | L[j+64]<<4 | L[j+96]<<6
		}
	}
}

func quantQ2K(dst []byte, src []float32) {
	const ts = 84
	const q4scale = 15
	var (
		L            [QK_K]uint8
		laux         [16]uint8
		weights      [16]float32
		scales, mins [QK_K / 16]float32
	)
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		var maxScale, maxMin float32
		for j := range QK_K / 16 {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = abs32(v)
			}
			scales[j], mins[j] = makeQKX2(3, xs, weights[:], L[16*j:16*j+16], laux[:], -0.5, 0.1, 15, true)
			maxScale = max32(maxScale, scales[j])
			maxMin = max32(maxMin, mins[j])
		}
		sc := b[q2KScales : q2KScales+16]
		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			putFP16le(b[q2KD:], maxScale/q4scale)
		} else {
			clear(sc)
			putFP16le(b[q2KD:], 0)
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			putFP16le(b[q2KDmin:], maxMin/q4scale)
		} else {
			putFP16le(b[q2KDmin:], 0)
		}
		d, dmin := fp16le(b[q2KD:]), fp16le(b[q2KDmin:])
		for j := range QK_K / 16 {
			dj := d * float32(sc[j]&0xF)
			if dj == 0 {
				continue
			}
			dm := float32(dmin * float32(sc[j]>>4))
			for i, v := range x[16*j : 16*j+16] {
				L[16*j+i] = uint8(clampInt(nearestInt((v+dm)/dj), 0, 3))
			}
		}
		pack2Bit(b[q2KQs:q2KQs+64], &L)
		src, dst = src[QK_K:], dst[ts:]
	}
}

func quantQ3K(dst []byte, src []float32) {
	const ts = 110
	var (
		L      [QK_K]int8
		scales [QK_K / 16]float32
	)
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		var maxScale, amax float32
		for j := range QK_K / 16 {
			scales[j] = makeQ3(4, x[16*j:16*j+16], L[16*j:16*j+16])
			if s := abs32(scales[j]); s > amax {
				amax, maxScale = s, scales[j]
			}
		}
		sc := b[q3KScales : q3KScales+12]
		clear(sc)
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := range QK_K / 16 {
				l := uint8(clampInt(int(int8(nearestInt(iscale*scales[j]))), -32, 31) + 32)
				if j < 8 {
					sc[j] = l & 0xF
				} else {
					sc[j-8] |= (l & 0xF) << 4
				}
				sc[8+j%4] |= (l >> 4) << (2 * (j / 4))
			}
			putFP16le(b[q3KD:], 1/iscale)
		} else {
			putFP16le(b[q3KD:], 0)
		}
		d := fp16le(b[q3KD:])
		stored := Q3KScales(sc)
		for j := range QK_K / 16 {
			dj := d * float32(int(stored[j]))
			if dj == 0 {
				continue
			}
			for i, v := range x[16*j : 16*j+16] {
				L[16*j+i] = int8(clampInt(nearestInt(v/dj), -4, 3) + 4)
			}
		}
		hmask := b[q3KHmask : q3KHmask+32]
		clear(hmask)
		var low [QK_K]uint8
		for j, l := range L {
			if l > 3 {
				hmask[j%32] |= 1 << (j / 32)
				l -= 4
			}
			low[j] = uint8(l)
		}
		pack2Bit(b[q3KQs:q3KQs+64], &low)
		src, dst = src[QK_K:], dst[ts:]
	}
}

// quantQ45K is the shared body of the Q4_K and Q5_K quantizers: 8
// sub-blocks of 32 with a 6-bit scale and min each. It fills d, dmin and the
// scales of b and returns the quants L in [0, nmax].
func quantQ45K(b []byte, x []float32, L *[QK_K]uint8, nmax int, rmin float32, nstep int) {
	var (
		laux         [32]uint8
		ls, lm       [8]uint8
		weights      [32]float32
		scales, mins [QK_K / 32]float32
		maxScale     float32
		maxMin       float32
	)
	for j := range QK_K / 32 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2(nmax, xs, weights[:], L[32*j:32*j+32], laux[:], rmin, 0.1, nstep, false)
		maxScale = max32(maxScale, scales[j])
		maxMin = max32(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	for j := range QK_K / 32 {
		ls[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	sc := b[q4KScales : q4KScales+12] // same offset in Q5_K
	packScaleMinK4(sc, &ls, &lm)
	putFP16le(b[q4KD:], maxScale/63)
	putFP16le(b[q4KDmin:], maxMin/63)
	d, dmin := fp16le(b[q4KD:]), fp16le(b[q4KDmin:])
	for j := range QK_K / 32 {
		s, m := ScaleMinK4(j, sc)
		dj := d * float32(s)
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for i, v := range x[32*j : 32*j+32] {
			L[32*j+i] = uint8(clampInt(nearestInt((v+dm)/dj), 0, nmax))
		}
	}
}

func quantQ4K(dst []byte, src []float32) {
	const ts = 144
	var L [QK_K]uint8
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		quantQ45K(b, x, &L, 15, -1, 20)
		qs := b[q4KQs : q4KQs+128]
		for j := range 4 {
			for l := range 32 {
				qs[32*j+l] = L[64*j+l] | L[64*j+l+32]<<4
			}
		}
		src, dst = src[QK_K:], dst[ts:]
	}
}

func quantQ5K(dst []byte, src []float32) {
	const ts = 176
	var L [QK_K]uint8
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		quantQ45K(b, x, &L, 31, -0.5, 15)
		qh, ql := b[q5KQh:q5KQh+32], b[q5KQs:q5KQs+128]
		clear(qh)
		for j := range 4 {
			m1, m2 := byte(1)<<(2*j), byte(2)<<(2*j)
			for l := range 32 {
				l1, l2 := L[64*j+l], L[64*j+l+32]
				if l1 > 15 {
					l1 -= 16
					qh[l] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[l] |= m2
				}
				ql[32*j+l] = l1 | l2<<4
			}
		}
		src, dst = src[QK_K:], dst[ts:]
	}
}

func quantQ6K(dst []byte, src []float32) {
	const ts = 210
	var (
		L      [QK_K]int8
		scales [QK_K / 16]float32
	)
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		var maxScale, maxAbs float32
		for j := range QK_K / 16 {
			scales[j] = makeQXRMSE1(32, x[16*j:16*j+16], L[16*j:16*j+16])
			if s := abs32(scales[j]); s > maxAbs {
				maxAbs, maxScale = s, scales[j]
			}
		}
		if maxAbs < groupMaxEps {
			clear(b)
			src, dst = src[QK_K:], dst[ts:]
			continue
		}
		iscale := -128 / maxScale
		putFP16le(b[q6KD:], 1/iscale)
		sc := b[q6KScales : q6KScales+16]
		for j := range sc {
			sc[j] = uint8(int8(min(127, nearestInt(iscale*scales[j]))))
		}
		d := fp16le(b[q6KD:])
		for j := range QK_K / 16 {
			dj := d * float32(int8(sc[j]))
			if dj == 0 {
				continue
			}
			for i, v := range x[16*j : 16*j+16] {
				L[16*j+i] = int8(clampInt(nearestInt(v/dj), -32, 31) + 32)
			}
		}
		for h := range 2 {
			ql := b[q6KQl+64*h : q6KQl+64*h+64]
			qh := b[q6KQh+32*h : q6KQh+32*h+32]
			for l := range 32 {
				j := 128*h + l
				q1, q2, q3, q4 := uint8(L[j]), uint8(L[j+32]), uint8(L[j+64]), uint8(L[j+96])
				ql[l] = q1&0xF | (q3&0xF)<<4
				ql[l+32] = q2&0xF | (q4&0xF)<<4
				qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
		src, dst = src[QK_K:], dst[ts:]
	}
}

func quantQ8K(dst []byte, src []float32) {
	const ts = 292
	for len(src) >= QK_K {
		x, b := src[:QK_K], dst[:ts]
		var vmax, amax float32
		for _, v := range x {
			if ax := abs32(v); ax > amax {
				amax, vmax = ax, v
			}
		}
		qs := b[q8KQs : q8KQs+QK_K]
		if amax == 0 {
			clear(b)
			src, dst = src[QK_K:], dst[ts:]
			continue
		}
		iscale := -127 / vmax
		for j, v := range x {
			qs[j] = uint8(int8(min(127, nearestInt(iscale*v))))
		}
		for j := range QK_K / 16 {
			var sum int
			for _, q := range qs[16*j : 16*j+16] {
				sum += int(int8(q))
			}
			binary.LittleEndian.PutUint16(b[q8KBsums+2*j:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(b[q8KD:], math.Float32bits(1/iscale))
		src, dst = src[QK_K:], dst[ts:]
	}
}

// max32 returns the larger of m and v, keeping m unless v > m (as ggml's
// running maxima do; it differs from max for NaN and signed zeros).
func max32(m, v float32) float32 {
	if v > m {
		return v
	}
	return m
}
