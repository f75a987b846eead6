//go:build !purego

package kernels

//go:generate sh -c "cd _asm && go run . -out ../dot_amd64.s -stubs ../dot_amd64_stubs.go -pkg kernels"

// The AVX2 path: row kernels in assembly generated with avo from _asm/
// (dot_amd64.s, dot_amd64_stubs.go), each computing exactly the package
// doc's canonical order, so that its results are bit-identical to the
// generic path's. They need AVX2, FMA and F16C (cpuHas(AVX2)).
//
// The wrappers below reslice the operands exactly as the generic kernels
// do (a short operand panics the same way); the assembly reads only within
// those lengths.

func init() {
	if !cpuHas(AVX2) {
		return
	}
	registerPath(AVX2, avx2RowKernels())
}

// avx2RowKernels is the AVX2 path's table, which the AVX-512 path
// (avx512_amd64.go) starts from.
func avx2RowKernels() RowKernels {
	return RowKernels{
		Q4_0: dotQ4_0AVX2,
		Q5_0: dotQ5_0AVX2,
		Q8_0: dotQ8_0AVX2,
		Q4_1: dotQ4_1AVX2,
		Q5_1: dotQ5_1AVX2,
		Q4_K: dotQ4KAVX2,
		Q5_K: dotQ5KAVX2,
		Q6_K: dotQ6KAVX2,
		F32:  dotF32AVX2,
		F16:  dotF16AVX2,
		BF16: dotBF16AVX2,
	}
}

func dotQ4_0AVX2(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	return avx2DotQ4_0(w[:nb*q4_0Bytes], q[:nb*Q8Block], d)
}

func dotQ5_0AVX2(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	return avx2DotQ5_0(w[:nb*q5_0Bytes], q[:nb*Q8Block], d)
}

func dotQ8_0AVX2(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	return avx2DotQ8_0(w[:nb*q8_0Bytes], q[:nb*Q8Block], d)
}

func dotQ4_1AVX2(w []byte, q []int8, d []float32, s []int32) float32 {
	nb := len(d)
	return avx2DotQ4_1(w[:nb*q4_1Bytes], q[:nb*Q8Block], d, s[:nb])
}

func dotQ5_1AVX2(w []byte, q []int8, d []float32, s []int32) float32 {
	nb := len(d)
	return avx2DotQ5_1(w[:nb*q5_1Bytes], q[:nb*Q8Block], d, s[:nb])
}

func dotQ4KAVX2(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	return avx2DotQ4_K(w[:nb*q4KBytes], q[:nb*Q8KBlock], d, bsums[:nb*16])
}

func dotQ5KAVX2(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	return avx2DotQ5_K(w[:nb*q5KBytes], q[:nb*Q8KBlock], d, bsums[:nb*16])
}

func dotQ6KAVX2(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	return avx2DotQ6_K(w[:nb*q6KBytes], q[:nb*Q8KBlock], d)
}

func dotF32AVX2(w []byte, x []float32) float32 { return avx2DotF32(w[:4*len(x)], x) }

func dotF16AVX2(w []byte, x []float32) float32 { return avx2DotF16(w[:2*len(x)], x) }

func dotBF16AVX2(w []byte, x []float32) float32 { return avx2DotBF16(w[:2*len(x)], x) }
