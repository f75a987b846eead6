//go:build !purego

package kernels

import "fmt"

//go:generate sh -c "cd _asm/tile && go run . -out ../../tile_amd64.s -stubs ../../tile_amd64_stubs.go -pkg kernels"

// The AVX2 tile kernels: one weight row against up to four tokens (three
// for F16) in assembly generated with avo from _asm/tile/ (tile_amd64.s,
// tile_amd64_stubs.go), each weight block unpacked once for all the
// tokens and every output computed in exactly the package doc's canonical
// order, so that it has the row kernel's bits. They need AVX2, FMA and
// F16C (cpuHas(AVX2)).

func init() {
	if !cpuHas(AVX2) {
		return
	}
	registerTiles(AVX2, avx2TileKernels())
}

// avx2TileKernels is the AVX2 path's table, which the AVX-512 path
// (avx512_amd64.go) starts from.
func avx2TileKernels() TileKernels {
	return TileKernels{
		Q4_0: TileQ8{Run: tileQ4_0AVX2, Pack: packQ8Tile},
		Q8_0: TileQ8{Run: tileQ8_0AVX2},
		Q4_K: TileQ8K{Run: tileQ4KAVX2},
		Q6_K: TileQ8K{Run: tileQ6KAVX2},
		F16:  TileFloat{Run: tileF16AVX2},
	}
}

// tileQ8Shape returns the per-token lengths of a Q8 activation of nt > 0
// tokens, and whether the tile kernels' layout holds: q of 32*nb values
// per token, and block sums for every block.
func tileQ8Shape(q []int8, d []float32, s []int32, nt int) (n, nb int, ok bool) {
	n, nb = len(q)/nt, len(d)/nt
	return n, nb, n == Q8Block*nb && len(s) >= len(d)
}

// rowsSpan is the length of nr > 0 rows of row bytes at a stride of rb:
// the bytes that a kernel looping over the rows reads. It panics, as a
// short slice would, when rb < row.
func rowsSpan(rb, nr, row int) int {
	if rb < row {
		panic(fmt.Sprintf("kernels: row stride %d shorter than a row of %d bytes", rb, row))
	}
	return (nr-1)*rb + row
}

// avx2TileQ4_0 holds the Q4_0 kernels of 1..4 tokens.
var avx2TileQ4_0 = [...]func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int){
	avx2Tile1Q4_0, avx2Tile2Q4_0, avx2Tile3Q4_0, avx2Tile4Q4_0,
}

// tileQ4_0AVX2 reads q in the tile layout (packQ8Tile).
func tileQ4_0AVX2(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, _ []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ok := tileQ8Shape(q, d, s, nt)
	if !ok {
		panic(fmt.Sprintf("kernels: Q4_0 tile of %d tokens with len(q) = %d, len(d) = %d, len(s) = %d", nt, len(q), len(d), len(s)))
	}
	for t := 0; t < nt; t += 4 {
		k := min(4, nt-t)
		f := avx2TileQ4_0[k-1]
		qt, dt, st := q[t*n:(t+k)*n], d[t*nb:(t+k)*nb], s[t*nb:(t+k)*nb]
		_ = dst[(t+k-1)*ldd+nr-1]
		f(dst[t*ldd:], ldd, w[:rowsSpan(rb, nr, nb*q4_0Bytes)], rb, nr, qt, dt, st, nb)
	}
}

// avx2TileQ8_0 holds the Q8_0 kernels of 1..4 tokens.
var avx2TileQ8_0 = [...]func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, nb int){
	avx2Tile1Q8_0, avx2Tile2Q8_0, avx2Tile3Q8_0, avx2Tile4Q8_0,
}

// tileQ8_0AVX2 reads q in Q8's own layout.
func tileQ8_0AVX2(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, _ []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ok := tileQ8Shape(q, d, s, nt)
	if !ok {
		panic(fmt.Sprintf("kernels: Q8_0 tile of %d tokens with len(q) = %d, len(d) = %d, len(s) = %d", nt, len(q), len(d), len(s)))
	}
	w = w[:rowsSpan(rb, nr, nb*q8_0Bytes)]
	for t := 0; t < nt; t += 4 {
		k := min(4, nt-t)
		_ = dst[(t+k-1)*ldd+nr-1]
		avx2TileQ8_0[k-1](dst[t*ldd:], ldd, w, rb, nr, q[t*n:(t+k)*n], d[t*nb:(t+k)*nb], nb)
	}
}

// avx2TileQ4_K and avx2TileQ6_K hold the kernels of 1..4 tokens.
var (
	avx2TileQ4_K = [...]tileKFunc{avx2Tile1Q4_K, avx2Tile2Q4_K, avx2Tile3Q4_K, avx2Tile4Q4_K}
	avx2TileQ6_K = [...]tileKFunc{avx2Tile1Q6_K, avx2Tile2Q6_K, avx2Tile3Q6_K, avx2Tile4Q6_K}
)

type tileKFunc = func(dst []float32, ldd int, w []byte, q []int8, d []float32, bsums []int16, nb int)

func tileQ4KAVX2(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, _ []byte) {
	tileKAVX2(&avx2TileQ4_K, q4KBytes, dst, ldd, w, rb, nr, q, d, bsums, nt)
}

func tileQ6KAVX2(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, _ []byte) {
	tileKAVX2(&avx2TileQ6_K, q6KBytes, dst, ldd, w, rb, nr, q, d, bsums, nt)
}

// tileKAVX2 runs the K-quant kernels f (of blocks of size bytes) over the
// tile, four tokens at a time.
func tileKAVX2(f *[4]tileKFunc, size int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int) {
	if nt <= 0 {
		return
	}
	n, nb, ng := len(q)/nt, len(d)/nt, len(bsums)/nt
	if n != Q8KBlock*nb || ng != 16*nb {
		panic(fmt.Sprintf("kernels: K-quant tile of %d tokens with len(q) = %d, len(d) = %d, len(bsums) = %d", nt, len(q), len(d), len(bsums)))
	}
	for t := 0; t < nt; t += 4 {
		k := min(4, nt-t)
		qt, dt, gt := q[t*n:(t+k)*n], d[t*nb:(t+k)*nb], bsums[t*ng:(t+k)*ng]
		for r := range nr {
			_ = dst[(t+k-1)*ldd+r]
			f[k-1](dst[t*ldd+r:], ldd, w[r*rb:r*rb+nb*size], qt, dt, gt, nb)
		}
	}
}

// avx2TileF16 holds the F16 kernels of 1..3 tokens.
var avx2TileF16 = [...]func(dst []float32, ldd int, w []byte, x []float32, n int){
	avx2Tile1F16, avx2Tile2F16, avx2Tile3F16,
}

func tileF16AVX2(dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int, _ []byte) {
	if nt <= 0 {
		return
	}
	n := len(x) / nt
	for t := 0; t < nt; t += len(avx2TileF16) {
		k := min(len(avx2TileF16), nt-t)
		xt := x[t*n : (t+k)*n]
		for r := range nr {
			_ = dst[(t+k-1)*ldd+r]
			avx2TileF16[k-1](dst[t*ldd+r:], ldd, w[r*rb:r*rb+2*n], xt, n)
		}
	}
}
