//go:build amd64 && !purego

package kernels

import "unsafe"

//go:generate sh -c "cd _asm/vec && go run . -out ../../vec_amd64.s -stubs ../../vec_amd64_stubs.go -pkg kernels"

// The AVX2 vector kernels: assembly generated with avo from _asm/vec/
// (vec_amd64.s, vec_amd64_stubs.go), each computing exactly the generic
// kernel's operations lane by lane, so that its results are bit-identical
// to the generic path's. The float rule's dot products reuse the AVX2 row
// kernels of dot_amd64.s. They need AVX2, FMA and F16C (cpuHas(AVX2)).
//
// The wrappers below reslice the operands exactly as the generic kernels
// do (a short operand panics the same way); the assembly reads only within
// those lengths.

func init() {
	if !cpuHas(AVX2) {
		return
	}
	k := VecKernels{
		Dot:        dotVecAVX2,
		MeanSquare: avx2MeanSquare,
		DotF16:     dotVecF16AVX2,
		Sum:        avx2SumF32,
		Max:        avx2MaxF32,
		Axpy:       axpyAVX2,
		AxpyF16:    axpyF16AVX2,
		Exp:        expAVX2,
		ExpSub:     expSubAVX2,
		Scale:      scaleAVX2,
		ScaleMul:   scaleMulAVX2,
		SiLU:       siluAVX2,
		SwiGLU:     swigluAVX2,

		Scores:         scoresAVX2,
		ScoresF16:      scoresF16AVX2,
		WeightedSum:    weightedSumAVX2,
		WeightedSumF16: weightedSumF16AVX2,
	}
	registerVec(AVX2, k)
	if cpuHas(AVX512) {
		// The AVX-512 path's own vector kernels; the rest are AVX2's.
		k.QuantizeQ8 = quantizeQ8AVX512
		k.QuantizeQ8K = quantizeQ8KAVX512
		registerVec(AVX512, k)
	}
	if cpuHas(AMX) {
		registerVec(AMX, k)
	}
}

// quantizeQ8KAVX512 is quantizeQ8K (_asm/q8z).
func quantizeQ8KAVX512(q []int8, d []float32, bsums []int16, x []float32) {
	nb := len(d)
	avx512QuantizeQ8K(q[:nb*Q8KBlock], d, bsums[:nb*Q8KBlock/16], x[:nb*Q8KBlock])
}

// quantizeQ8AVX512 is quantizeQ8 (_asm/q8z).
func quantizeQ8AVX512(q []int8, d []float32, s []int32, x []float32) {
	nb := len(d)
	avx512QuantizeQ8(q[:nb*Q8Block], d, s[:nb], x[:nb*Q8Block])
}

// f32Bytes views x's memory as bytes (little-endian float32s).
func f32Bytes(x []float32) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 4*len(x))
}

// u16Bytes views x's memory as bytes (little-endian uint16s).
func u16Bytes(x []uint16) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(x))), 2*len(x))
}

// dotVecAVX2 is dotVec: avx2DotF32 computes fma(w_i, x_i, ·) with w = a.
func dotVecAVX2(a, b []float32) float32 { return avx2DotF32(f32Bytes(a), b[:len(a)]) }

// dotVecF16AVX2 is dotVecF16.
func dotVecF16AVX2(a []uint16, b []float32) float32 {
	return avx2DotF16(u16Bytes(a), b[:len(a)])
}

func axpyAVX2(dst, x []float32, a float32) { avx2AxpyF32(dst, x[:len(dst)], a) }

func axpyF16AVX2(dst []float32, x []uint16, a float32) { avx2AxpyF16(dst, x[:len(dst)], a) }

func expAVX2(dst, x []float32) { avx2ExpF32(dst, x[:len(dst)]) }

func expSubAVX2(dst, x []float32, m float32) { avx2ExpSubF32(dst, x[:len(dst)], m) }

func scaleAVX2(dst, x []float32, s float32) { avx2ScaleF32(dst, x[:len(dst)], s) }

func scaleMulAVX2(dst, x, w []float32, s float32) {
	avx2ScaleMulF32(dst, x[:len(dst)], w[:len(dst)], s)
}

func siluAVX2(dst, x []float32) { avx2SiLUF32(dst, x[:len(dst)]) }

func swigluAVX2(dst, g, up []float32) { avx2SwiGLUF32(dst, g[:len(dst)], up[:len(dst)]) }

// rowsEnd is the length that n rows of hd elements, stride apart, need.
func rowsEnd(n, hd, stride int) int {
	if n == 0 {
		return 0
	}
	return (n-1)*stride + hd
}

// The attention kernels slice the cache to what the rows need (panicking
// as the generic ones do on a short cache) and check the stride.

func scoresAVX2(s, q, k []float32, stride int, scale float32) {
	if stride < 0 {
		panic("kernels: Scores: negative stride")
	}
	avx2ScoresF32(s, q, k[:rowsEnd(len(s), len(q), stride)], stride, scale)
}

func scoresF16AVX2(s, q []float32, k []uint16, stride int, scale float32) {
	if stride < 0 {
		panic("kernels: Scores: negative stride")
	}
	avx2ScoresF16(s, q, k[:rowsEnd(len(s), len(q), stride)], stride, scale)
}

func weightedSumAVX2(out, w, v []float32, stride int) {
	if stride < 0 {
		panic("kernels: WeightedSum: negative stride")
	}
	avx2WeightedSumF32(out, w, v[:rowsEnd(len(w), len(out), stride)], stride)
}

func weightedSumF16AVX2(out, w []float32, v []uint16, stride int) {
	if stride < 0 {
		panic("kernels: WeightedSum: negative stride")
	}
	avx2WeightedSumF16(out, w, v[:rowsEnd(len(w), len(out), stride)], stride)
}
