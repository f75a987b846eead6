//go:build !purego

package kernels

// avx512FloatKernels installs the AVX-512 kernels of _asm/floatz in the
// AVX-512 path's tables (see avx512_amd64.go).
func avx512FloatKernels(k *RowKernels, t *TileKernels) {}
