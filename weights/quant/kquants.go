package quant

import "math"

// K-quant super-blocks hold QK_K = 256 elements. Their layouts, as byte
// offsets into one block (multi-byte fields little-endian, "half" is FP16):
//
//	Q2_K  84 bytes: scales[16] @0 (low nibble scale, high nibble min, 16
//	      sub-blocks of 16), qs[64] @16 (2-bit quants), d half @80,
//	      dmin half @82.
//	Q3_K 110 bytes: hmask[32] @0 (third bit of each quant), qs[64] @32
//	      (low 2 bits), scales[12] @96 (16 signed 6-bit scales, see
//	      Q3KScales), d half @108.
//	Q4_K 144 bytes: d half @0, dmin half @2, scales[12] @4 (8 pairs of 6-bit
//	      scale and min, see ScaleMinK4), qs[128] @16 (4-bit quants).
//	Q5_K 176 bytes: d half @0, dmin half @2, scales[12] @4 (as Q4_K),
//	      qh[32] @16 (fifth bit), qs[128] @48 (low 4 bits).
//	Q6_K 210 bytes: ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits),
//	      scales[16] @192 (int8, sub-blocks of 16), d half @208.
//	Q8_K 292 bytes: d float32 @0, qs[256] int8 @4, bsums[16] int16 @260
//	      (sum of each run of 16 quants).
//
// In the 2-bit packings (Q2_K, Q3_K qs) each 128-element half of the block
// uses 32 bytes: element 32*k+l of that half sits in bits 2k..2k+1 of byte l.
// In the 4-bit packings (Q4_K, Q5_K qs, Q6_K ql) each 64-element run uses 32
// bytes: element l in the low nibble and element 32+l in the high nibble of
// byte l.
const (
	q2KScales = 0
	q2KQs     = 16
	q2KD      = 80
	q2KDmin   = 82

	q3KHmask  = 0
	q3KQs     = 32
	q3KScales = 96
	q3KD      = 108

	q4KD      = 0
	q4KDmin   = 2
	q4KScales = 4
	q4KQs     = 16

	q5KD      = 0
	q5KDmin   = 2
	q5KScales = 4
	q5KQh     = 16
	q5KQs     = 48

	q6KQl     = 0
	q6KQh     = 128
	q6KScales = 192
	q6KD      = 208

	q8KD     = 0
	q8KQs    = 4
	q8KBsums = 260
)

func init() {
	register(Q2_K, dequantQ2K, quantQ2K)
	register(Q3_K, dequantQ3K, quantQ3K)
	register(Q4_K, dequantQ4K, quantQ4K)
	register(Q5_K, dequantQ5K, quantQ5K)
	register(Q6_K, dequantQ6K, quantQ6K)
	register(Q8_K, dequantQ8K, quantQ8K)
}

// ScaleMinK4 returns the 6-bit scale and min of sub-block j (0 <= j < 8) from
// the 12 packed scale bytes q of a Q4_K or Q5_K block. Sub-blocks 0..3 keep
// their scale in the low 6 bits of q[j] and their min in the low 6 bits of
// q[j+4]; sub-blocks 4..7 keep the low 4 bits of scale and min in the two
// nibbles of q[j+4] and their high 2 bits in the top bits of q[j-4] and q[j].
func ScaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	sc = q[j+4]&0xF | (q[j-4]>>6)<<4
	m = q[j+4]>>4 | (q[j]>>6)<<4
	return sc, m
}

// Q3KScales unpacks the 12 scale bytes q of a Q3_K block into its 16 signed
// sub-block scales (each a 6-bit value minus 32, in [-32, 31]). Scale j has
// its low 4 bits in a nibble of q[j%8] (low nibble for j < 8) and its high 2
// bits in bits 2*(j/4) of q[8+j%4].
func Q3KScales(q []byte) [16]int8 {
	_ = q[11]
	var s [16]int8
	for j := range s {
		lo := q[j%8] & 0xF
		if j >= 8 {
			lo = q[j-8] >> 4
		}
		hi := (q[8+j%4] >> (2 * (j / 4))) & 3
		s[j] = int8(lo|hi<<4) - 32
	}
	return s
}

// packScaleMinK4 stores eight 6-bit scales and mins into the 12-byte layout
// that ScaleMinK4 reads.
func packScaleMinK4(q []byte, ls, lm *[8]uint8) {
	for j := range 4 {
		q[j] = ls[j]
		q[j+4] = lm[j]
	}
	for j := 4; j < 8; j++ {
		q[j+4] = ls[j]&0xF | (lm[j]&0xF)<<4
		q[j-4] |= (ls[j] >> 4) << 6
		q[j] |= (lm[j] >> 4) << 6
	}
}

// groupMaxEps is the absolute value below which ggml treats a group as zero.
const groupMaxEps = 1e-15

// nearestInt rounds f to the nearest integer, ties to even, the way ggml's
// nearest_int does: by adding 1.5*2^23 and reading the low mantissa bits.
// It is exact for |f| <= 2^22-1; beyond that it returns the same wrapped
// value as ggml. f is rounded to float32 first: a product passed in is never
// fused with the addition.
func nearestInt(f float32) int {
	v := float32(f) + 12582912
	return int(math.Float32bits(v)&0x007fffff) - 0x00400000
}

func abs32(f float32) float32 {
	return math.Float32frombits(math.Float32bits(f) &^ (1 << 31))
}

// sqrt32 is a correctly rounded float32 square root (as C's sqrtf): rounding
// the float64 root again to float32 cannot double-round for float32 inputs.
func sqrt32(f float32) float32 { return float32(math.Sqrt(float64(f))) }

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }

// makeQKX2 fits x ≈ scale*L - theMin with L in [0, nmax], minimizing the
// weighted error (absolute if useMAD, else squared). It tries the plain
// min/max fit and nstep+1 rescaled grids, each refit by weighted least
// squares, and keeps the best. It is ggml's make_qkx2_quants, with the same
// float32 operations in the same order. L and laux hold len(x) values.
func makeQKX2(nmax int, x, weights []float32, L, laux []uint8, rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L[:n])
		return 0, -lo
	}
	fmax := float32(nmax)
	iscale := fmax / (hi - lo)
	scale = 1 / iscale
	var bestErr float32
	for i := range n {
		l := clampInt(nearestInt(iscale*(x[i]-lo)), 0, nmax)
		L[i] = uint8(l)
		diff := float32(scale*float32(l)) + lo - x[i]
		if useMAD {
			diff = abs32(diff)
		} else {
			diff = diff * diff
		}
		bestErr += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fmax) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i := range n {
			l := clampInt(nearestInt(iscale*(x[i]-lo)), 0, nmax)
			laux[i] = uint8(l)
			w, fl := weights[i], float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * x[i])
		}
		det := float32(sumW*sumL2) - float32(sumL*sumL)
		if det <= 0 {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / det
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / det
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var curErr float32
		for i := range n {
			diff := float32(thisScale*float32(laux[i])) + thisMin - x[i]
			if useMAD {
				diff = abs32(diff)
			} else {
				diff = diff * diff
			}
			curErr += float32(weights[i] * diff)
		}
		if curErr < bestErr {
			copy(L[:n], laux[:n])
			bestErr = curErr
			scale = thisScale
			lo = thisMin
		}
	}
	return scale, -lo
}

// makeQXRMSE1 fits x ≈ scale*(L-nmax) with L in [0, 2*nmax), weighting each
// element by x², trying 19 grids around nmax/max|x|. It is ggml's
// make_qx_quants with rmse_type 1 and no importance weights. An all-zero group
// gives scale 0 and L all 0.
func makeQXRMSE1(nmax int, x []float32, L []int8) float32 {
	n := len(x)
	var vmax, amax float32
	for i := range n {
		if ax := abs32(x[i]); ax > amax {
			amax, vmax = ax, x[i]
		}
	}
	if amax < groupMaxEps {
		clear(L[:n])
		return 0
	}
	fmax := float32(nmax)
	iscale := -fmax / vmax
	var sumLX, sumL2 float32
	for i := range n {
		l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w, fl := x[i]*x[i], float32(l)
		sumLX += float32(w * x[i] * fl)
		sumL2 += float32(w * fl * fl)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fmax + float32(float32(0.1)*float32(is))) / vmax
		sumLX, sumL2 = 0, 0
		for i := range n {
			l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
			w, fl := x[i]*x[i], float32(l)
			sumLX += float32(w * x[i] * fl)
			sumL2 += float32(w * fl * fl)
		}
		if sumL2 > 0 && sumLX*sumLX > best*sumL2 {
			for i := range n {
				L[i] = int8(nmax + clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1))
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// makeQ3 fits x ≈ scale*(L-nmax) with L in [0, 2*nmax), weighting each element
// by x², then improves single quants greedily for up to 5 passes. It is
// ggml's make_q3_quants with do_rmse set. An all-zero group gives scale 0 and
// L all 0.
func makeQ3(nmax int, x []float32, L []int8) float32 {
	n := len(x)
	var vmax, amax float32
	for i := range n {
		if ax := abs32(x[i]); ax > amax {
			amax, vmax = ax, x[i]
		}
	}
	if amax < groupMaxEps {
		clear(L[:n])
		return 0
	}
	iscale := -float32(nmax) / vmax
	var sumLX, sumL2 float32
	for i := range n {
		l := clampInt(nearestInt(iscale*x[i]), -nmax, nmax-1)
		L[i] = int8(l)
		w, fl := x[i]*x[i], float32(l)
		sumLX += float32(w * x[i] * fl)
		sumL2 += float32(w * fl * fl)
	}
	for range 5 {
		changed := 0
		for i := range n {
			w, fl := x[i]*x[i], float32(L[i])
			slx := sumLX - float32(w*x[i]*fl)
			if slx <= 0 {
				continue
			}
			sl2 := sumL2 - float32(w*fl*fl)
			nl := clampInt(nearestInt(x[i]*sl2/slx), -nmax, nmax-1)
			if nl == int(L[i]) {
				continue
			}
			fnl := float32(nl)
			slx += float32(w * x[i] * fnl)
			sl2 += float32(w * fnl * fnl)
			if sl2 > 0 && slx*slx*sumL2 > sumLX*sumLX*sl2 {
				L[i] = int8(nl)
				sumLX, sumL2 = slx, sl2
				changed++
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range n {
		L[i] += int8(nmax)
	}
	if sumL2 > 0 {
		return sumLX / sumL2
	}
	return 0
}
