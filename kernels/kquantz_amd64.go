//go:build !purego

package kernels

import "fmt"

//go:generate sh -c "cd _asm/kquantz && go run . -out ../../kquantz_amd64.s -stubs ../../kquantz_amd64_stubs.go -pkg kernels"

// The AVX-512 kernels of the Q4_K and Q6_K weight types against the Q8K
// activation form: nr rows against one to eight tokens in assembly
// generated with avo from _asm/kquantz (kquantz_amd64.s,
// kquantz_amd64_stubs.go), with VPDPBUSD for the integer dots and the
// float steps of eight blocks at a time on eight lanes; every output is
// computed in exactly the package doc's canonical order, so that it has the
// row kernel's bits. They serve one token too (decode, Single), and the
// Q4_K and Q5_K row kernels are the one-row, one-token case. The Q6_K row
// kernel stays the AVX2 one: its signature has no bsums, which the
// AVX-512 kernel uses for the quants' offset of 32 (decode reaches the
// AVX-512 kernel through the tile, which has them).

// avx512KQuantKernels installs the AVX-512 kernels of _asm/kquantz in the
// AVX-512 path's tables (see avx512_amd64.go).
func avx512KQuantKernels(k *RowKernels, t *TileKernels) {
	k.Q4_K = dotQ4KAVX512
	k.Q5_K = dotQ5KAVX512
	t.Q4_K = TileQ8K{Run: tileQ4KAVX512, Single: true}
	t.Q6_K = TileQ8K{Run: tileQ6KAVX512, Single: true}
}

// kqzTokens is the most tokens one kernel call computes.
const kqzTokens = 8

type tileKZFunc = func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nb int)

// avx512TileQ4_K and avx512TileQ6_K hold the kernels of 1..8 tokens.
var (
	avx512TileQ4_K = [kqzTokens]tileKZFunc{
		avx512Tile1Q4_K, avx512Tile2Q4_K, avx512Tile3Q4_K, avx512Tile4Q4_K,
		avx512Tile5Q4_K, avx512Tile6Q4_K, avx512Tile7Q4_K, avx512Tile8Q4_K,
	}
	avx512TileQ6_K = [kqzTokens]tileKZFunc{
		avx512Tile1Q6_K, avx512Tile2Q6_K, avx512Tile3Q6_K, avx512Tile4Q6_K,
		avx512Tile5Q6_K, avx512Tile6Q6_K, avx512Tile7Q6_K, avx512Tile8Q6_K,
	}
)

// dotQ4KAVX512 is the Q4_K row rule: the one-token kernel on one row.
func dotQ4KAVX512(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	var r [1]float32
	avx512Tile1Q4_K(r[:], 0, w[:nb*q4KBytes], nb*q4KBytes, 1, q[:nb*Q8KBlock], d, bsums[:nb*16], nb)
	return r[0]
}

// dotQ5KAVX512 is the Q5_K row rule: the one-token Q5_K kernel on one row.
func dotQ5KAVX512(w []byte, q []int8, d []float32, bsums []int16) float32 {
	nb := len(d)
	var r [1]float32
	avx512Tile1Q5_K(r[:], 0, w[:nb*q5KBytes], nb*q5KBytes, 1, q[:nb*Q8KBlock], d, bsums[:nb*16], nb)
	return r[0]
}

func tileQ4KAVX512(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, _ []byte) {
	tileKZ(&avx512TileQ4_K, q4KBytes, dst, ldd, w, rb, nr, q, d, bsums, nt)
}

func tileQ6KAVX512(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, _ []byte) {
	tileKZ(&avx512TileQ6_K, q6KBytes, dst, ldd, w, rb, nr, q, d, bsums, nt)
}

// tileKZ runs the kernels f (of super-blocks of size bytes) over the tile,
// kqzTokens tokens at a time, reslicing every operand to what the
// kernel reads so that a short one panics.
func tileKZ(f *[kqzTokens]tileKZFunc, size int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ng := len(q)/nt, len(d)/nt, len(bsums)/nt
	if n != Q8KBlock*nb || ng != 16*nb {
		panic(fmt.Sprintf("kernels: K-quant tile of %d tokens with len(q) = %d, len(d) = %d, len(bsums) = %d", nt, len(q), len(d), len(bsums)))
	}
	w = w[:rowsSpan(rb, nr, nb*size)]
	for t := 0; t < nt; t += kqzTokens {
		k := min(kqzTokens, nt-t)
		qt, dt, gt := q[t*n:(t+k)*n], d[t*nb:(t+k)*nb], bsums[t*ng:(t+k)*ng]
		_ = dst[(t+k-1)*ldd+nr-1]
		f[k-1](dst[t*ldd:], ldd, w, rb, nr, qt, dt, gt, nb)
	}
}
