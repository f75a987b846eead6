// Command floatz generates kernels/floatz_amd64.s and
// kernels/floatz_amd64_stubs.go, the AVX-512 float kernels of package
// kernels, with avo: the row kernels of F32, F16 and BF16 weights against
// float32 activations, the F16 tile kernels (several rows against several
// tokens), and for prefill the F16 pack and part kernels (part.go). Run
// it through go generate in kernels/ (see floatz_amd64.go); CI regenerates
// and fails on a diff.
//
// Every kernel computes exactly the float rule of kernels/doc.go: the 32
// lane accumulators acc[0..31] of one (row, token) are two ZMM registers
// (acc[0..15] and acc[16..31]), element i of the first n - n%32 fused into
// lane i%32; the reduction adds each ZMM's upper 256 bits onto its lower
// ones (acc[j]+acc[j+8], acc[j+16]+acc[j+24]), adds the two results and
// sums the eight lanes with the fixed tree; the last n%32 elements are
// fused in order into a scalar that is added last. Every float32
// operation is the same IEEE operation, on the same operands, as in
// kernels/dot_generic.go.
//
// Only EVEX-encodable instructions are used: avo's register allocator may
// hand out X16..X31 and Y16..Y31, which VEX cannot encode.
package main

import (
	. "github.com/mmcloughlin/avo/build"
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()

	rowDot(f32Weights)
	rowDot(f16Weights)
	rowDot(bf16Weights)

	for _, s := range tileShapes() {
		tileF16(s[0], s[1])
	}
	tileF16Split(splitShape[0], splitShape[1])
	for nr := 1; nr <= partRows; nr++ {
		packF16(nr)
		for nt := 1; nt <= partTokens; nt++ {
			partF16(nr, nt)
		}
	}
	Generate()
}
