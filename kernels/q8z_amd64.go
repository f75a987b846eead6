//go:build !purego

package kernels

// avx512Q8Kernels installs the AVX-512 kernels of _asm/q8z in the
// AVX-512 path's tables (see avx512_amd64.go).
func avx512Q8Kernels(k *RowKernels, t *TileKernels) {}
