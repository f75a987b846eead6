package kernels

import (
	"fmt"
	"math"

	"github.com/stratanet/strata/weights/quant"
)

// The canonical sum. Every kernel in this package that adds up n float32
// terms uses the package doc's float rule: the dot product dot(a, b) keeps
// 32 lane accumulators over the first n32 = n - n%32 terms
// (acc[i%32] = fma(a_i, b_i, acc[i%32])), reduces them with the fixed tree
// of reduce32, adds the sequential tail t = fma(a_i, b_i, t) for
// n32 <= i < n, and returns head + t. A plain sum Σ x_i is the same rule
// with acc[i%32] = acc[i%32] + x_i, which is what fma(1, x_i, acc) gives, so
// sum(x) == dot(1, x) bit for bit.

// dotVec is the float rule's dot product of a and b[:len(a)].
func dotVec(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		av := (*[32]float32)(a[i:])
		bv := (*[32]float32)(b[i:])
		for j := range 32 {
			acc[j] = fma32(av[j], bv[j], acc[j])
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(a[i], b[i], t)
	}
	return reduce32(&acc) + t
}

// dotVecF16 is dotVec with a given as IEEE half bits, converted exactly.
func dotVecF16(a []uint16, b []float32) float32 {
	n := len(a)
	b = b[:n]
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		av := (*[32]uint16)(a[i:])
		bv := (*[32]float32)(b[i:])
		for j := range 32 {
			acc[j] = fma32(quant.FP16ToFP32(av[j]), bv[j], acc[j])
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t = fma32(quant.FP16ToFP32(a[i]), b[i], t)
	}
	return reduce32(&acc) + t
}

// sumVec is the float rule's sum of x (dot(1, x)).
func sumVec(x []float32) float32 {
	n := len(x)
	n32 := n &^ 31
	var acc [32]float32
	for i := 0; i < n32; i += 32 {
		xv := (*[32]float32)(x[i:])
		for j := range 32 {
			acc[j] += xv[j]
		}
	}
	var t float32
	for i := n32; i < n; i++ {
		t += x[i]
	}
	return reduce32(&acc) + t
}

// RMSNorm sets dst to x normalized by its root mean square and multiplied
// by the weights w: dst_i = (x_i * scale) * w_i. dst, x and w have the same
// length n (dst may be x itself); it panics otherwise. Canonical order:
//
//	sq_i  = x_i * x_i                         (rounded to float32)
//	s_j   = Σ float64(sq_i) over i ≡ j mod 8, i < n8 = n - n%8, in order of i
//	ss    = ((s0+s4)+(s2+s6))+((s1+s5)+(s3+s7)), then + float64(sq_i)
//	        for n8 <= i < n in order          (float64 throughout)
//	mean  = float32(ss / float64(n))
//	scale = 1 / sqrt(mean + eps)   (float32; sqrt correctly rounded)
//	dst_i = (x_i * scale) * w_i    (two roundings)
//
// This is ggml's rms_norm followed by its multiplication by the norm
// weight: ggml adds the float32 squares in float64 too, in one chain,
// which gives the same sum as the eight chains unless a partial sum has
// to round (the squares of a row span a range of more than 2^29 or so),
// so a hidden state rarely differs from llama.cpp's by an ulp there (a
// float32 sum of the squares made that common enough to flip Q8
// activation quants: on the Q8_0 golden model, 21 positions of one
// prompt beyond 1e-2 of llama.cpp's logits before, 9 after, and none
// once Q8_0's dots took ggml's order too).
func RMSNorm(dst, x, w []float32, eps float32) {
	if len(dst) != len(x) || len(w) != len(x) {
		panic(fmt.Sprintf("kernels: RMSNorm: len(dst), len(x), len(w) = %d, %d, %d", len(dst), len(x), len(w)))
	}
	rmsNorm(dst, x, w, eps)
}

func rmsNorm(dst, x, w []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	mean := meanSquare(x)
	scale := 1 / sqrt32(mean+eps)
	dst = dst[:n]
	w = w[:n]
	for i, v := range x {
		dst[i] = float32(v*scale) * w[i]
	}
}

// meanSquare is RMSNorm's mean of the squares (its doc has the order).
func meanSquare(x []float32) float32 {
	var s [8]float64
	n8 := len(x) &^ 7
	for i := 0; i < n8; i += 8 {
		v := (*[8]float32)(x[i:])
		for j := range 8 {
			s[j] += float64(float32(v[j] * v[j]))
		}
	}
	ss := ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))
	for _, v := range x[n8:] {
		ss += float64(float32(v * v))
	}
	return float32(ss / float64(len(x)))
}

// sqrt32 is the correctly rounded float32 square root (float64's sqrt is
// correctly rounded and 53 >= 2*24+2, so rounding it again is exact).
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// RMSNormRows applies RMSNorm to each row of len(w) elements of x (tokens
// after one another: x is [len(w)][rows], innermost first), writing dst
// (same shape; dst may be x). It panics if len(x) is not a multiple of
// len(w) or len(dst) != len(x). Rows are independent: a caller may as well
// split them across a Pool's threads itself.
func RMSNormRows(dst, x, w []float32, eps float32) {
	n := len(w)
	if len(dst) != len(x) || (n == 0 && len(x) != 0) || (n != 0 && len(x)%n != 0) {
		panic(fmt.Sprintf("kernels: RMSNormRows: len(dst), len(x), len(w) = %d, %d, %d", len(dst), len(x), len(w)))
	}
	for r := 0; r < len(x); r += n {
		rmsNorm(dst[r:r+n], x[r:r+n], w, eps)
	}
}
