//go:build !purego

package kernels

// avx512KQuantKernels installs the AVX-512 kernels of _asm/kquantz in the
// AVX-512 path's tables (see avx512_amd64.go).
func avx512KQuantKernels(k *RowKernels, t *TileKernels) {}
