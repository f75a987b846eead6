package kernels

import "fmt"

// Elementwise arithmetic: each output is one correctly rounded float32
// operation, so every implementation agrees bit for bit. dst may be one of
// the operands itself (not a partial overlap). The lengths must match; the
// functions panic otherwise.

// Add sets dst_i = a_i + b_i.
func Add(dst, a, b []float32) {
	checkLen3("Add", dst, a, b)
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v + b[i]
	}
}

// Mul sets dst_i = a_i * b_i.
func Mul(dst, a, b []float32) {
	checkLen3("Mul", dst, a, b)
	b = b[:len(a)]
	dst = dst[:len(a)]
	for i, v := range a {
		dst[i] = v * b[i]
	}
}

// Scale sets dst_i = x_i * s.
func Scale(dst, x []float32, s float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: Scale: len(dst), len(x) = %d, %d", len(dst), len(x)))
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = v * s
	}
}

func checkLen3(name string, dst, a, b []float32) {
	if len(dst) != len(a) || len(b) != len(a) {
		panic(fmt.Sprintf("kernels: %s: len(dst), len(a), len(b) = %d, %d, %d", name, len(dst), len(a), len(b)))
	}
}
