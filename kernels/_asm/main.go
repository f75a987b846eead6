// Command _asm generates kernels/dot_amd64.s and kernels/dot_amd64_stubs.go,
// the AVX2 + FMA + F16C row kernels of package kernels, with avo. Run it
// through go generate in kernels/ (see dot_amd64.go); CI regenerates and
// fails on a diff.
//
// Every kernel computes exactly the canonical order of kernels/doc.go: the
// integer block dot products are exact (no int16 saturation can occur for
// the operand ranges stated below), and every float32 operation is the
// same IEEE operation, on the same operands, as in kernels/dot_generic.go.
package main

import (
	. "github.com/mmcloughlin/avo/build"
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()

	chainQ8_0("avx2DotQ8_0", quantPrefetch, 0)
	chainQ8_0("avx512DotQ8_0", 1536, 4096)
	legacyQ4_0()
	legacyQ5_0()
	legacyQ4_1()
	legacyQ5_1()

	kquantQ4K()
	kquantQ5K()
	kquantQ6K()

	floatDot(f32Weights)
	floatDot(f16Weights)
	floatDot(bf16Weights)

	Generate()
}
