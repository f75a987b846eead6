package kernels

import (
	"fmt"
	"math"

	"github.com/stratanet/strata/weights/quant"
)

// Block sizes of the activation forms.
const (
	// Q8Block is the number of activations per Q8 block.
	Q8Block = 32
	// Q8KBlock is the number of activations per Q8K block; a Q8K block has
	// Q8KBlock/16 group sums.
	Q8KBlock = 256
)

// Q8 is a float32 vector in the package doc's "Q8" form: element i is
// approximately D[i/32]*Q[i], and S[b] is the sum of the quantized values
// of 32-block b. It is the right-hand operand of the Q4_0, Q4_1, Q5_0,
// Q5_1 and Q8_0 row kernels.
//
// The zero value is ready to use; Quantize reuses the slices' storage when
// it is large enough, so a Q8 kept across calls stops allocating.
type Q8 struct {
	Q []int8    // n values, each in [-127, 127]
	D []float32 // n/32 scales
	S []int32   // n/32 block sums of Q
}

// Quantize sets a to the Q8 form of x following the package doc. len(x)
// must be a multiple of Q8Block. a does not share memory with x.
//
// Several vectors of equal length laid end to end quantize to the Q8 forms
// of each laid end to end: blocks are independent.
func (a *Q8) Quantize(x []float32) error { return a.quantize(x, quantizeQ8) }

// quantize is Quantize with f, a path's QuantizeQ8, doing the work.
func (a *Q8) quantize(x []float32, f func(q []int8, d []float32, s []int32, x []float32)) error {
	if len(x)%Q8Block != 0 {
		return fmt.Errorf("%w: Q8 quantization of %d values, not a multiple of %d", ErrShape, len(x), Q8Block)
	}
	nb := len(x) / Q8Block
	a.Q = grow(a.Q, len(x))
	a.D = grow(a.D, nb)
	a.S = grow(a.S, nb)
	f(a.Q, a.D, a.S, x)
	return nil
}

// Q8K is a float32 vector in the package doc's "Q8K" form: element i is
// approximately D[i/256]*Q[i], and BSums[g] is the sum of the quantized
// values of 16-element group g. It is the right-hand operand of the Q4_K,
// Q5_K and Q6_K row kernels.
//
// The zero value is ready to use; Quantize reuses the slices' storage when
// it is large enough.
type Q8K struct {
	Q     []int8    // n values, each in [-127, 127]
	D     []float32 // n/256 scales
	BSums []int16   // n/16 group sums of Q
}

// Quantize sets a to the Q8K form of x following the package doc. len(x)
// must be a multiple of Q8KBlock. a does not share memory with x.
func (a *Q8K) Quantize(x []float32) error { return a.quantize(x, quantizeQ8K) }

// quantize is Quantize with f, a path's QuantizeQ8K, doing the work.
func (a *Q8K) quantize(x []float32, f func(q []int8, d []float32, bsums []int16, x []float32)) error {
	if len(x)%Q8KBlock != 0 {
		return fmt.Errorf("%w: Q8K quantization of %d values, not a multiple of %d", ErrShape, len(x), Q8KBlock)
	}
	nb := len(x) / Q8KBlock
	a.Q = grow(a.Q, len(x))
	a.D = grow(a.D, nb)
	a.BSums = grow(a.BSums, len(x)/16)
	f(a.Q, a.D, a.BSums, x)
	return nil
}

// grow returns s resliced to n elements, reallocating only when its
// capacity is too small. The contents are not kept.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// quantizeQ8 writes the Q8 form of x (len(x) = 32*len(d)) into q, d and s.
func quantizeQ8(q []int8, d []float32, s []int32, x []float32) {
	nb := len(d)
	x, q, s = x[:nb*Q8Block], q[:nb*Q8Block], s[:nb]
	for b := range nb {
		xb := (*[Q8Block]float32)(x[b*Q8Block:])
		qb := (*[Q8Block]int8)(q[b*Q8Block:])
		db, id := q8Scale(absMax32(xb[:]))
		var sum int32
		for i, v := range xb {
			qi := roundQ8(float32(v * id))
			qb[i] = qi
			sum += int32(qi)
		}
		d[b], s[b] = db, sum
	}
}

// quantizeQ8K writes the Q8K form of x (len(x) = 256*len(d)) into q, d
// and bsums.
func quantizeQ8K(q []int8, d []float32, bsums []int16, x []float32) {
	nb := len(d)
	x, q, bsums = x[:nb*Q8KBlock], q[:nb*Q8KBlock], bsums[:nb*Q8KBlock/16]
	for b := range nb {
		xb := (*[Q8KBlock]float32)(x[b*Q8KBlock:])
		qb := (*[Q8KBlock]int8)(q[b*Q8KBlock:])
		gb := (*[Q8KBlock / 16]int16)(bsums[b*Q8KBlock/16:])
		mx := signedMax32(xb[:])
		var db, iscale float32
		if mx != 0 {
			iscale = -127 / mx
			db = 1 / iscale
		}
		for g := range gb {
			var sum int16
			for i := 16 * g; i < 16*g+16; i++ {
				qi := roundQ8(float32(iscale * xb[i]))
				qb[i] = qi
				sum += int16(qi)
			}
			gb[g] = sum
		}
		d[b] = db
	}
}

// absMax32 returns max |x_i| (NaNs are passed over).
func absMax32(x []float32) float32 {
	var amax float32
	for _, v := range x {
		if a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31)); a > amax {
			amax = a
		}
	}
	return amax
}

// signedMax32 returns the x_i of largest magnitude, the first on ties (0
// for a block of zeros; NaNs are passed over).
func signedMax32(x []float32) float32 {
	var amax, mx float32
	for _, v := range x {
		if a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31)); a > amax {
			amax, mx = a, v
		}
	}
	return mx
}

// q8Scale returns the Q8 block scale as ggml stores it, d = amax/127
// rounded to half precision, and the multiplier id = 127/amax (0 when amax
// is 0), as ggml's x86 quantize_row_q8_0 computes them.
func q8Scale(amax float32) (d, id float32) {
	d = quant.FP16ToFP32(quant.FP32ToFP16(amax / 127))
	if amax != 0 {
		id = 127 / amax
	}
	return d, id
}

// roundQ8 rounds f to the nearest integer, ties to even. f is within
// [-127, 127] after rounding unless 1/d overflowed (a block whose largest
// magnitude is below about 2^-128*127): then f is ±Inf, or NaN for a zero
// element, and the result saturates to ±127, or is 0 for NaN, so that the
// outcome is defined on every path.
func roundQ8(f float32) int8 {
	r := math.RoundToEven(float64(f))
	switch {
	case r > 127:
		return 127
	case r < -127:
		return -127
	case r == r:
		return int8(r)
	}
	return 0
}
