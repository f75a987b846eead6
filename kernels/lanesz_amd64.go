//go:build !purego

package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

//go:generate sh -c "cd _asm/lanesz && go run . -out ../../lanesz_amd64.s -stubs ../../lanesz_amd64_stubs.go -pkg kernels"

// The AVX-512 prefill kernels of Q8_0 (two tokens or more; decode keeps
// the row kernel, which streams at the memory's speed): 16 rows in the
// lanes of a ZMM against up to eight tokens at a time, in assembly
// generated with avo from _asm/lanesz (lanesz_amd64.s,
// lanesz_amd64_stubs.go). The rows are prepared with _asm/amx's Q8_0
// prepare kernels, which use AVX-512 only.

// avx512LanesKernels installs the Q8_0 kernels in the AVX-512 path's
// tables (the AMX path's too): the prefill kernel, and the row kernel
// with the prefetch distances that stream best there.
func avx512LanesKernels(k *RowKernels, t *TileKernels) {
	k.Q8_0 = dotQ8_0AVX512
	t.Q8_0 = TileQ8{Run: tileQ8_0Lanes, Pack: packLanes, PackScale: 2, Scratch: lanesScratch, Rows: lanesRows}
}

// dotQ8_0AVX512 is the AVX-512 path's Q8_0 row kernel: avx2DotQ8_0's
// code with Sapphire Rapids' prefetch distances (see _asm/q8chain.go).
func dotQ8_0AVX512(w []byte, q []int8, d []float32) float32 {
	nb := len(d)
	return avx512DotQ8_0(w[:nb*q8_0Bytes], q[:nb*Q8Block], d)
}

// lanesRows is the rows a worker takes at a time: every 16 of them are
// prepared once and then meet all the tokens, while the kernels bring the
// next 16 into L2.
const lanesRows = 128

// lanesScratch is TileQ8.Scratch of tileQ8_0Lanes: the prepared rows (a
// 512-byte block of quants and 16 scales a block), 64-byte aligned.
func lanesScratch(nb int) int {
	return 64 + nb*(64+512)
}

// lanesBlockBytes is the bytes of one block of one token in packLanes's
// form.
const lanesBlockBytes = 40

// packLanes is TileQ8.Pack of tileQ8_0Lanes (PackScale 2): token t's part,
// from pq[2n*t] (n quants a token), is 40 bytes a block: its 32 quants as
// they are, -128 times their sum as a little-endian int32 (what VPDPBUSD's
// unsigned weights add), and the block's scale as a little-endian
// float32. pd and ps are not written: the kernels do not read them.
func packLanes(pq []int8, _ []float32, _ []int32, q []int8, d []float32, s []int32, nt int) {
	if nt == 0 {
		return
	}
	n, nb := len(q)/nt, len(d)/nt
	for t := range nt {
		src, out := q[t*n:(t+1)*n], pq[2*n*t:2*n*(t+1)]
		ob := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(out))), len(out))
		for b := range nb {
			o := ob[lanesBlockBytes*b : lanesBlockBytes*(b+1)]
			copy(out[lanesBlockBytes*b:], src[32*b:32*b+32])
			binary.LittleEndian.PutUint32(o[32:], uint32(-128*s[t*nb+b]))
			binary.LittleEndian.PutUint32(o[36:], math.Float32bits(d[t*nb+b]))
		}
	}
}

// lanesKernels holds the kernels of 1..8 tokens.
var lanesKernels = [...]func(dst []float32, ldd int, q []int8, ts, nb, nr int, wv []byte, dws []float32, pf []byte){
	avx512LanesQ8_0_1, avx512LanesQ8_0_2, avx512LanesQ8_0_3, avx512LanesQ8_0_4,
	avx512LanesQ8_0_5, avx512LanesQ8_0_6, avx512LanesQ8_0_7, avx512LanesQ8_0_8,
}

// tileQ8_0Lanes reads the activation in packLanes's form: it prepares 16
// rows at a time and runs them against the tokens, eight at a time,
// slicing every operand to what the kernels read so that a short one
// panics instead.
func tileQ8_0Lanes(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, _ []int32, nt int, sc []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	ts, nb := len(q)/nt, len(d)/nt
	if ts != 2*Q8Block*nb || len(sc) < lanesScratch(nb) || rb > 1<<26 {
		panic(fmt.Sprintf("kernels: Q8_0 lanes tile of %d tokens with len(q) = %d, len(d) = %d, rb = %d, %d bytes of scratch", nt, len(q), len(d), rb, len(sc)))
	}
	w = w[:rowsSpan(rb, nr, nb*q8_0Bytes)]
	_ = dst[(nt-1)*ldd+nr-1]
	if nb == 0 {
		clearTile(dst, ldd, nr, nt)
		return
	}
	sc = align64(sc)
	dws := unsafe.Slice((*float32)(unsafe.Pointer(&sc[0])), 16*nb)
	wv := sc[64*nb : 64*nb+512*nb]
	for r0 := 0; r0 < nr; r0 += 16 {
		rows := min(16, nr-r0)
		if rows == 16 {
			amxPrep16Q8_0(wv, dws, w[r0*rb:], rb, nb)
		} else {
			amxPrepQ8_0(wv, dws, w[r0*rb:], rb, rows, nb)
		}
		// Call c brings row r0+16+c, of the next prepare, into L2 (row
		// nr-1, already there, past the tile's rows).
		for c, t := 0, 0; t < nt; c, t = c+1, t+len(lanesKernels) {
			k := min(len(lanesKernels), nt-t)
			pr := min(r0+16+c, nr-1) * rb
			lanesKernels[k-1](dst[t*ldd+r0:(t+k-1)*ldd+r0+rows], ldd, q[t*ts:(t+k)*ts], ts, nb, rows, wv, dws, w[pr:pr+nb*q8_0Bytes])
		}
	}
}
