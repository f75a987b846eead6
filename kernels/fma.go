package kernels

import "math"

// fma32 returns a*b+c rounded once to float32 (round to nearest, ties to
// even): the float32 fused multiply-add of IEEE 754, as VFMADD…SS computes
// it. It is the fma of the package doc, in pure Go, and small enough to be
// inlined.
//
// x = a*b is exact in float64 (two 24-bit significands need at most 48
// bits, and float64's exponent range holds every product of two float32s).
// s = RN64(x+c) has a single rounding, but converting s to float32 would
// round a second time, which is wrong when s lands on a midpoint between
// two float32s that the exact sum is not on. So the sum is rounded to odd
// instead: TwoSum gives the exact error e = (x+c) - s; when e != 0, s is
// replaced by the neighbour toward zero if s was rounded away from zero
// (e*s < 0), and its last bit is set. Since 53 >= 24+2, rounding that
// round-to-odd value to float32 gives the correctly rounded result,
// subnormal results included. (e*s neither underflows nor overflows: a
// nonzero e is at least 2^-298 and s at least 2^-246 then.)
//
// Fusing x into the additions (which the Go compiler may do) changes
// nothing because x is exact. NaN and infinite operands give the IEEE
// result (e is then NaN and s is left as it is; a NaN's payload is not
// specified).
func fma32(a, b, c float32) float32 {
	x, y := float64(a)*float64(b), float64(c)
	s := x + y
	t := s - y
	e := (x - t) + (y - (s - t))
	u := math.Float64bits(s)
	if e*s < 0 {
		u--
	}
	if e != 0 && e == e {
		u |= 1
	}
	return float32(math.Float64frombits(u))
}
