//go:build !purego

package kernels

// The AVX-512 path: AVX-512 F, BW, VL and VNNI assembly generated with avo
// (cpuHas(AVX512)). It starts from the AVX2 path's tables and replaces the
// kernels that have an AVX-512 version, so no entry is ever the generic
// one; every kernel computes the package doc's canonical order and so the
// same bits as every other path.
//
// The kernels come from four generators, each with its own assembly
// file: _asm/q8z (Q4_0 against Q8, q8z_amd64.go), _asm/lanesz (the
// prefill of Q8_0, lanesz_amd64.go),
// _asm/floatz (F32, F16, BF16, floatz_amd64.go) and _asm/kquantz (the K
// types against Q8K, kquantz_amd64.go).
func init() {
	if !cpuHas(AVX512) {
		return
	}
	k, t := avx512Tables()
	registerPath(AVX512, k)
	registerTiles(AVX512, t)
}

// avx512Tables returns the AVX-512 path's tables (the AMX path starts from
// them too).
func avx512Tables() (RowKernels, TileKernels) {
	k, t := avx2RowKernels(), avx2TileKernels()
	avx512Q8Kernels(&k, &t)
	avx512LanesKernels(&k, &t)
	avx512FloatKernels(&k, &t)
	avx512KQuantKernels(&k, &t)
	return k, t
}
