//go:build !purego

package kernels

import "unsafe"

//go:generate sh -c "cd _asm/floatz && go run . -out ../../floatz_amd64.s -stubs ../../floatz_amd64_stubs.go -pkg kernels"

// The AVX-512 float kernels, generated with avo from _asm/floatz/
// (floatz_amd64.s, floatz_amd64_stubs.go): the row kernels of F32, F16
// and BF16 weights, whose 32 lane accumulators are two ZMM registers, and
// the F16 tile kernels of up to four rows against up to twelve tokens. Each
// computes exactly the package doc's float rule, the bits of the generic
// path. They need AVX-512F (and BW, VL: cpuHas(AVX512)).
//
// The wrappers reslice the operands exactly as the generic kernels do (a
// short operand panics the same way); the assembly reads only within
// those lengths.

// avx512FloatKernels installs the AVX-512 kernels of _asm/floatz in the
// AVX-512 path's tables (see avx512_amd64.go). The F16 tile kernel is not
// Single: for one token (decode, weights streamed from memory) the row
// kernel, with its prefetches, reads faster.
func avx512FloatKernels(k *RowKernels, t *TileKernels) {
	k.F32 = dotF32AVX512
	k.F16 = dotF16AVX512
	k.BF16 = dotBF16AVX512
	t.F16 = TileFloat{Run: tileF16AVX512}
}

func dotF32AVX512(w []byte, x []float32) float32 { return avx512DotF32(w[:4*len(x)], x) }

func dotF16AVX512(w []byte, x []float32) float32 { return avx512DotF16(w[:2*len(x)], x) }

func dotBF16AVX512(w []byte, x []float32) float32 { return avx512DotBF16(w[:2*len(x)], x) }

type tileF16Func = func(dst []float32, ldd int, w []byte, rb int, x []float32, n int)

// avx512TileF16 holds the F16 tile kernels: [r-1][t-1] computes r rows
// against t tokens.
var avx512TileF16 = [...][]tileF16Func{
	{
		avx512Tile1x1F16, avx512Tile1x2F16, avx512Tile1x3F16, avx512Tile1x4F16,
		avx512Tile1x5F16, avx512Tile1x6F16, avx512Tile1x7F16, avx512Tile1x8F16,
		avx512Tile1x9F16, avx512Tile1x10F16, avx512Tile1x11F16, avx512Tile1x12F16,
	},
	{
		avx512Tile2x1F16, avx512Tile2x2F16, avx512Tile2x3F16, avx512Tile2x4F16,
		avx512Tile2x5F16, avx512Tile2x6F16, avx512Tile2x7F16,
	},
	{avx512Tile3x1F16, avx512Tile3x2F16, avx512Tile3x3F16, avx512Tile3x4F16},
	{avx512Tile4x1F16, avx512Tile4x2F16, avx512Tile4x3F16},
}

// tileF16AVX512 runs the tile kernels over nr rows, up to four at a time,
// and for each group of rows over the tokens, as many at a time as its
// kernels take.
func tileF16AVX512(dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n := len(x) / nt
	w = w[:rowsSpan(rb, nr, 2*n)]
	_ = dst[(nt-1)*ldd+nr-1]
	// Tiles of consecutive rows alternate the order of the tokens, so that
	// a tile starts on the activations that the last one read last, still
	// in cache when all of them are not (a tile of one long row reads
	// more activations than L2 holds). The outputs do not depend on the
	// order.
	back := (uintptr(unsafe.Pointer(&dst[0]))/4/uintptr(nr))%2 == 1
	for r := 0; r < nr; {
		kr := min(len(avx512TileF16), nr-r)
		fs := avx512TileF16[kr-1]
		wr := w[r*rb : (r+kr-1)*rb+2*n]
		if kr == 4 {
			// Four rows: six tokens at a time in two passes over the
			// row (avx512Tile4x6F16), the rest three at a time.
			tokenGroups(nt, 6, back, func(t, kt int) {
				if kt == 6 {
					avx512Tile4x6F16(dst[t*ldd+r:], ldd, wr, rb, x[t*n:(t+kt)*n], n)
					return
				}
				tokenGroups(kt, len(fs), false, func(u, ku int) {
					fs[ku-1](dst[(t+u)*ldd+r:], ldd, wr, rb, x[(t+u)*n:(t+u+ku)*n], n)
				})
			})
		} else {
			tokenGroups(nt, len(fs), back, func(t, kt int) {
				fs[kt-1](dst[t*ldd+r:], ldd, wr, rb, x[t*n:(t+kt)*n], n)
			})
		}
		r += kr
	}
}

// tokenGroups calls f(t, k) for groups of k <= most tokens from t that
// cover tokens 0..nt-1: from the first, or with back from the last.
func tokenGroups(nt, most int, back bool, f func(t, k int)) {
	if back {
		for t := nt; t > 0; {
			k := min(most, t)
			t -= k
			f(t, k)
		}
		return
	}
	for t := 0; t < nt; {
		k := min(most, nt-t)
		f(t, k)
		t += k
	}
}
