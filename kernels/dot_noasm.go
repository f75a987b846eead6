//go:build !amd64 || purego

package kernels

// Without amd64 assembly (another architecture, or the purego build tag)
// there is nothing to register: only the Generic path exists, and
// AVX2.Supported() and AVX512.Supported() report false.

// registerPath is called only by the assembly paths' init functions.
var _ = registerPath
