package kernels

import "math"

// Softmax replaces x with softmax(x), in place. Canonical order:
//
//	m    = max_i x_i           (exact; any order gives the same value)
//	e_i  = Exp(x_i - m)        (x_i - m rounded, then Exp)
//	s    = sum(e)              (the float rule, see RMSNorm's file)
//	inv  = 1 / s
//	x_i  = e_i * inv
//
// Entries of -Inf become 0 (if not all are -Inf). NaN inputs are the
// caller's bug: the result is then unspecified. An empty x is left as is.
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	for i, v := range x {
		x[i] = Exp(v - m)
	}
	inv := 1 / sumVec(x)
	for i, v := range x {
		x[i] = v * inv
	}
}
