//go:build !purego

package kernels

import "fmt"

//go:generate sh -c "cd _asm/q8z && go run . -out ../../q8z_amd64.s -stubs ../../q8z_amd64_stubs.go -pkg kernels"

// The AVX-512 tile kernels of the Q4_0 and Q8_0 weight types: nr rows
// against one to eight tokens in assembly generated with avo from
// _asm/q8z (q8z_amd64.s, q8z_amd64_stubs.go), with VPDPBUSD for the
// integer block dots; every output is computed in exactly the package
// doc's canonical order, so that it has the row kernel's bits. They serve
// one token too (decode): a group of eight weight blocks is transposed
// with a few permutations, cheaper than the row kernel's reductions.

// avx512Q8Kernels installs the kernels of _asm/q8z in the AVX-512 path's
// tables (see avx512_amd64.go).
func avx512Q8Kernels(_ *RowKernels, t *TileKernels) {
	t.Q4_0 = TileQ8{Run: tileQ4_0AVX512, Pack: packQ8Z(8), Single: true}
	t.Q8_0 = TileQ8{Run: tileQ8_0AVX512, Pack: packQ8Z(128), Single: true}
}

// q8zTokens is the most tokens one kernel call computes: the packed form
// interleaves the tokens of each chunk of q8zTokens.
const q8zTokens = 8

// packQ8Z returns the TileQ8.Pack of the AVX-512 kernels whose unsigned
// weight quants are off above the signed ones. Within each chunk of up to
// q8zTokens tokens (tokens c..c+k-1, starting at c*n quants and c*nb
// blocks), for each whole group g of eight blocks and token t it writes
// the token's 256 quants of the group in packQ8's layout, the group's
// eight scales and, for each block, -off times its quant sum; then for
// each of the last nb%8 blocks and each token, the 32 quants as they are,
// the scale and -off times the sum (see _asm/q8z).
func packQ8Z(off int32) func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int) {
	return func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int) {
		if nt == 0 {
			return
		}
		n, nb := len(q)/nt, len(d)/nt
		ng := nb / 8
		for c := 0; c < nt; c += q8zTokens {
			k := min(q8zTokens, nt-c)
			oq, od, os := pq[c*n:(c+k)*n], pd[c*nb:(c+k)*nb], ps[c*nb:(c+k)*nb]
			for t := range k {
				tq, td, ts := q[(c+t)*n:(c+t+1)*n], d[(c+t)*nb:(c+t+1)*nb], s[(c+t)*nb:(c+t+1)*nb]
				for g := range ng {
					i := g*k + t
					packQ8(oq[256*i:256*(i+1)], tq[256*g:256*(g+1)], 1)
					copy(od[8*i:8*(i+1)], td[8*g:8*(g+1)])
					for b := range 8 {
						os[8*i+b] = -off * ts[8*g+b]
					}
				}
				for b := 8 * ng; b < nb; b++ {
					i := (b-8*ng)*k + t
					copy(oq[256*ng*k+32*i:256*ng*k+32*(i+1)], tq[32*b:32*(b+1)])
					od[8*ng*k+i] = td[b]
					os[8*ng*k+i] = -off * ts[b]
				}
			}
		}
	}
}

// avx512TileQ4_0 and avx512TileQ8_0 hold the kernels of 1..8 tokens.
var (
	avx512TileQ4_0 = [...]tileZFunc{
		avx512Tile1Q4_0, avx512Tile2Q4_0, avx512Tile3Q4_0, avx512Tile4Q4_0,
		avx512Tile5Q4_0, avx512Tile6Q4_0, avx512Tile7Q4_0, avx512Tile8Q4_0,
	}
	avx512TileQ8_0 = [...]tileZFunc{
		avx512Tile1Q8_0, avx512Tile2Q8_0, avx512Tile3Q8_0, avx512Tile4Q8_0,
		avx512Tile5Q8_0, avx512Tile6Q8_0, avx512Tile7Q8_0, avx512Tile8Q8_0,
	}
)

type tileZFunc = func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nb int)

// tileQ4_0AVX512 reads the activation in packQ8Z(8)'s form.
func tileQ4_0AVX512(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int) {
	tileZ(&avx512TileQ4_0, "Q4_0", q4_0Bytes, dst, ldd, w, rb, nr, q, d, s, nt)
}

// tileQ8_0AVX512 reads the activation in packQ8Z(128)'s form.
func tileQ8_0AVX512(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int) {
	tileZ(&avx512TileQ8_0, "Q8_0", q8_0Bytes, dst, ldd, w, rb, nr, q, d, s, nt)
}

// tileZ runs the kernels f (of blocks of size bytes) over the tile,
// q8zTokens tokens at a time, slicing every operand to what the kernel
// reads so that a short one panics instead.
func tileZ(f *[q8zTokens]tileZFunc, name string, size int, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ok := tileQ8Shape(q, d, s, nt)
	if !ok {
		panic(fmt.Sprintf("kernels: %s tile of %d tokens with len(q) = %d, len(d) = %d, len(s) = %d", name, nt, len(q), len(d), len(s)))
	}
	w = w[:rowsSpan(rb, nr, nb*size)]
	for t := 0; t < nt; t += q8zTokens {
		k := min(q8zTokens, nt-t)
		_ = dst[(t+k-1)*ldd+nr-1]
		f[k-1](dst[t*ldd:], ldd, w, rb, nr, q[t*n:(t+k)*n], d[t*nb:(t+k)*nb], s[t*nb:(t+k)*nb], nb)
	}
}
