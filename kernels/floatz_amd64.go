//go:build !purego

package kernels

import (
	"fmt"
	"unsafe"
)

//go:generate sh -c "cd _asm/floatz && go run . -out ../../floatz_amd64.s -stubs ../../floatz_amd64_stubs.go -pkg kernels"

// The AVX-512 float kernels, generated with avo from _asm/floatz/
// (floatz_amd64.s, floatz_amd64_stubs.go): the row kernels of F32, F16
// and BF16 weights, whose 32 lane accumulators are two ZMM registers; the
// F16 tile kernels of up to four rows against up to twelve tokens, for
// products of a few tokens; and, for many tokens (prefill), the pack
// kernels, which convert a tile's F16 rows to float32 once, and the part
// kernels, which run up to four packed rows against up to six tokens over
// one part of the rows, keeping each output's lane accumulators between
// the parts. Each computes exactly the package doc's float rule, the bits
// of the generic path. They need AVX-512F (and BW, VL: cpuHas(AVX512)).
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
	t.F16 = TileFloat{Run: tileF16AVX512, Scratch: f16Scratch}
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

// tileF16AVX512 is the AVX-512 path's F16 tile kernel: tileF16Parts for
// at least partMinTokens tokens, otherwise the tile kernels over nr rows,
// up to four at a time, and for each group of rows over the tokens, as
// many at a time as its kernels take.
func tileF16AVX512(dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int, sc []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	if nt >= partMinTokens {
		tileF16Parts(dst, ldd, w, rb, nr, x, nt, sc, partSteps)
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

// The packed prefill path. Its working set, for one group of six tokens
// and one part of the rows: the group's activations of the part (24 KiB)
// and the state of the group's outputs in up to partMaxRows rows (24 KiB)
// in L1, the packed weights of the part (up to 128 KiB) streamed from L2.
// Measured on Sapphire Rapids (128 tokens, a TinyLlama layer's shapes),
// parts of 32 steps and tiles of 32 rows are best; 16 or 48 steps, or 16
// rows, are 5-15% slower.
const (
	partMinTokens = 16 // fewer: the tile kernels (packing costs too much)
	partMaxRows   = 32 // the most rows that one pass over the tokens takes
	partTokens    = 6  // the most tokens of a part kernel
	partRows      = 4  // the most rows of a part kernel's block
)

// partSteps is the length of the rows' parts, in 32-element steps
// (tileF16Parts takes it as an argument, so that the tests can cut rows
// into many parts).
const partSteps = 32

// f16Scratch is TileFloat.Scratch of tileF16AVX512: the packed float32
// weights of up to partMaxRows rows of n elements (the whole 32-element
// steps), 64-byte aligned.
func f16Scratch(n int) int { return 64 + 4*partMaxRows*(n&^31) }

// tileF16Parts is the F16 tile kernel for many tokens. For each group of
// up to partMaxRows rows, it converts the rows to float32 in the pack
// kernels' layout, in the scratch sc (f16Scratch bytes); then for each
// group of up to six tokens, for each part of partSteps steps of the rows
// (the last one shorter), it runs the part
// kernel over every block of four rows (and one of the last nr%4), whose
// outputs' accumulators go to the state st between the parts. Each output
// sees its elements in increasing order, with its own 32 lane
// accumulators: exactly the package doc's float rule.
func tileF16Parts(dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int, sc []byte, partSteps int) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n := len(x) / nt
	w = w[:rowsSpan(rb, nr, 2*n)]
	_ = dst[(nt-1)*ldd+nr-1]
	steps := n / 32
	n32 := 32 * steps
	if len(sc) < f16Scratch(n) || partSteps < 1 {
		panic(fmt.Sprintf("kernels: F16 tile of rows of %d with %d bytes of scratch, parts of %d steps", n, len(sc), partSteps))
	}
	sc = align64(sc)
	packed := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(sc))), min(nr, partMaxRows)*n32)
	// The state, 64-byte aligned: each half of an output's accumulators
	// one cache line.
	var stb [partMaxRows*partTokens*32 + 15]float32
	a := int(-uintptr(unsafe.Pointer(&stb[0])) / 4 % 16)
	st := stb[a : a+partMaxRows*partTokens*32]
	// Tiles of consecutive rows alternate the order of the token groups,
	// so that a tile starts on the activations that the last one read
	// last, still in cache when all of them are not. The outputs do not
	// depend on the order.
	back := (uintptr(unsafe.Pointer(&dst[0]))/4/uintptr(nr))%2 == 1
	for r0 := 0; r0 < nr; r0 += partMaxRows {
		rows := min(partMaxRows, nr-r0)
		// Block b (rows 4b..) of part p0 at pb[4b*n32 + kr*32*p0:], kr
		// its rows.
		pb := packed[:rows*n32]
		for r := 0; r < rows; r += partRows {
			kr, wr := min(partRows, rows-r), w[(r0+r)*rb:]
			for p0 := 0; p0 < steps; p0 += partSteps {
				ps := min(partSteps, steps-p0)
				packCall(kr, pb[r*n32+kr*32*p0:r*n32+kr*32*(p0+ps)], wr[64*p0:(kr-1)*rb+64*(p0+ps)], rb, ps)
			}
		}
		full, rem := rows/partRows, rows%partRows
		tokenGroups(nt, partTokens, back, func(t0, kt int) {
			xt := x[t0*n : (t0+kt)*n]
			dt := dst[t0*ldd+r0 : (t0+kt-1)*ldd+r0+rows]
			for p0 := 0; ; p0 += partSteps {
				ps, flags := min(partSteps, steps-p0), 0
				if p0 > 0 {
					flags |= 1 // the accumulators from st
				}
				if p0+ps >= steps {
					flags |= 2 // the last part: the outputs to dst
				}
				if full > 0 {
					r := partRows * full
					partCall(partRows, kt, dt, ldd, pb[partRows*32*p0:(r-partRows)*n32+partRows*32*(p0+ps)], xt[32*p0:], n,
						st[:32*kt*r], ps, flags, w[r0*rb+2*n32:(r0+r-1)*rb+2*n], rb, full)
				}
				if rem > 0 {
					r := partRows * full
					partCall(rem, kt, dt[r:], ldd, pb[r*n32+rem*32*p0:r*n32+rem*32*(p0+ps)], xt[32*p0:], n,
						st[32*kt*r:32*kt*rows], ps, flags, w[(r0+r)*rb+2*n32:(r0+rows-1)*rb+2*n], rb, 1)
				}
				if flags&2 != 0 {
					break
				}
			}
		})
	}
}

// packCall calls the pack kernel of nr rows.
func packCall(nr int, dst []float32, w []byte, rb, steps int) {
	switch nr {
	case 1:
		avx512Pack1F16(dst, w, rb, steps)
	case 2:
		avx512Pack2F16(dst, w, rb, steps)
	case 3:
		avx512Pack3F16(dst, w, rb, steps)
	case 4:
		avx512Pack4F16(dst, w, rb, steps)
	}
}

// partCall calls the part kernel of nr rows against nt tokens directly (a
// call through a function value would move the state to the heap).
func partCall(nr, nt int, dst []float32, ldd int, w, x []float32, n int, st []float32, steps, flags int, wt []byte, rb, blocks int) {
	switch nr*8 + nt {
	case 1*8 + 1:
		avx512Part1x1F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 1*8 + 2:
		avx512Part1x2F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 1*8 + 3:
		avx512Part1x3F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 1*8 + 4:
		avx512Part1x4F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 1*8 + 5:
		avx512Part1x5F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 1*8 + 6:
		avx512Part1x6F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 1:
		avx512Part2x1F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 2:
		avx512Part2x2F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 3:
		avx512Part2x3F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 4:
		avx512Part2x4F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 5:
		avx512Part2x5F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 2*8 + 6:
		avx512Part2x6F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 1:
		avx512Part3x1F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 2:
		avx512Part3x2F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 3:
		avx512Part3x3F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 4:
		avx512Part3x4F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 5:
		avx512Part3x5F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 3*8 + 6:
		avx512Part3x6F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 1:
		avx512Part4x1F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 2:
		avx512Part4x2F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 3:
		avx512Part4x3F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 4:
		avx512Part4x4F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 5:
		avx512Part4x5F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	case 4*8 + 6:
		avx512Part4x6F16(dst, ldd, w, x, n, st, steps, flags, wt, rb, blocks)
	}
}
