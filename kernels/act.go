package kernels

import "fmt"

// Activations, elementwise with the scalar functions of math.go, whose doc
// comments give the exact operation order. dst may be an input itself (not
// a partial overlap); lengths must match, or the functions panic.

// SiLU sets dst_i = silu(x_i) = x_i / (1 + Exp(-x_i)).
func SiLU(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: SiLU: len(dst), len(x) = %d, %d", len(dst), len(x)))
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = silu(v)
	}
}

// GELU sets dst_i = gelu(x_i), the tanh approximation (see gelu).
func GELU(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: GELU: len(dst), len(x) = %d, %d", len(dst), len(x)))
	}
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = gelu(v)
	}
}

// SwiGLU is the gated feed-forward activation of llama and qwen2:
// dst_i = silu(gate_i) * up_i (silu rounded, then the product).
func SwiGLU(dst, gate, up []float32) {
	checkLen3("SwiGLU", dst, gate, up)
	up = up[:len(gate)]
	dst = dst[:len(gate)]
	for i, g := range gate {
		dst[i] = silu(g) * up[i]
	}
}

// GeGLU is the GELU-gated feed-forward activation (gemma):
// dst_i = gelu(gate_i) * up_i.
func GeGLU(dst, gate, up []float32) {
	checkLen3("GeGLU", dst, gate, up)
	up = up[:len(gate)]
	dst = dst[:len(gate)]
	for i, g := range gate {
		dst[i] = gelu(g) * up[i]
	}
}
