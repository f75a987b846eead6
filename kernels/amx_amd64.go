//go:build !purego

package kernels

import (
	"fmt"
	"unsafe"
)

//go:generate sh -c "cd _asm/amx && go run . -out ../../amx_amd64.s -stubs ../../amx_amd64_stubs.go -pkg kernels"

// The AMX path: the AVX-512 path's tables with AMX-INT8 tile kernels for
// the prefill of Q4_0 and Q8_0 weights, and amxk_amd64.go's for Q4_K and
// Q6_K (products of amxBatchTokens, or amxKBatchTokens, tokens or more;
// fewer, and decode, keep the AVX-512 kernels). The kernels come
// from _asm/amx (amx_amd64.s, amx_amd64_stubs.go): TDPBSSD computes the
// exact integer block dots of 16 tokens by 16 rows at a time, and
// AVX-512 applies the package doc's per-block float step to them, so
// every output has the bits of every other path.
func init() {
	if !cpuHas(AMX) {
		return
	}
	k, t := avx512Tables()
	t.Q4_0Batch = TileQ8{Run: tileQ4_0AMX, Pack: packAMX, Scratch: amxScratch, Rows: amxRows, MinTokens: amxBatchTokens}
	t.Q8_0Batch = TileQ8{Run: tileQ8_0AMX, Pack: packAMX, Scratch: amxScratch, Rows: amxRows, MinTokens: amxBatchTokens}
	amxKQuantKernels(&t)
	registerPath(AMX, k)
	registerTiles(AMX, t)
}

const (
	// amxTokens is the tokens of one tile product: the A tile's rows.
	amxTokens = 16
	// amxRows is the rows a worker takes at a time: two B tiles' worth.
	amxRows = 32
	// amxBatchTokens and amxKBatchTokens are the fewest tokens the AMX
	// kernels of the 32-block and of the K types take: below, a group of
	// 16 is mostly empty and the AVX-512 kernels are faster (measured
	// with BenchmarkMatMulSmall: Q4_0 at 12 tokens 323 GFLOP/s on AVX-512
	// against 309 on AMX; Q4_K at 12, 167 against 235, at 8 178 against
	// 170).
	amxBatchTokens  = 16
	amxKBatchTokens = 12
	// amxAccBytes is the dot kernels' scratch: eight lanes of 16 tokens
	// × 16 rows of float32 sums, and two C tiles.
	amxAccBytes = 8*amxTokens*64 + 2*amxTokens*64
)

// amxScratch is TileQ8.Scratch of the AMX kernels: the dot kernels'
// sums, and the prepared rows (a 512-byte B tile and 16 scales a block),
// 64-byte aligned.
func amxScratch(nb int) int {
	return 64 + amxAccBytes + nb*(64+512)
}

// packAMX is TileQ8.Pack of the AMX kernels: each chunk of amxTokens
// tokens (c.., k of them) goes block-major, the quants as
// pq[c*n + b*32*k + 32*m + i] = q[(c+m)*n + 32*b + i] (a block's A tile
// is 512 contiguous bytes) and the scales as pd[c*nb + b*k + m] =
// d[(c+m)*nb + b]. The block sums are not used.
func packAMX(pq []int8, pd []float32, _ []int32, q []int8, d []float32, _ []int32, nt int) {
	if nt == 0 {
		return
	}
	n, nb := len(q)/nt, len(d)/nt
	for c := 0; c < nt; c += amxTokens {
		k := min(amxTokens, nt-c)
		out, in := pd[c*nb:(c+k)*nb], d[c*nb:(c+k)*nb]
		oq, iq := pq[c*n:(c+k)*n], q[c*n:(c+k)*n]
		for m := range k {
			for b, v := range in[m*nb : (m+1)*nb] {
				out[b*k+m] = v
				copy(oq[b*32*k+32*m:b*32*k+32*m+32], iq[m*n+32*b:m*n+32*b+32])
			}
		}
	}
}

// tileQ4_0AMX reads the activation in packAMX's form.
func tileQ4_0AMX(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, sc []byte) {
	tileAMX(amxPrep16Q4_0, amxPrepQ4_0, "Q4_0", q4_0Bytes, false, dst, ldd, w, rb, nr, q, d, s, nt, sc)
}

// tileQ8_0AMX reads the activation in packAMX's form: Q8_0's one chain
// per output (the package doc), from the whole-block dots TDPBSSD gives.
func tileQ8_0AMX(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, sc []byte) {
	tileAMX(amxPrep16Q8_0Signed, amxPrepQ8_0Signed, "Q8_0", q8_0Bytes, true, dst, ldd, w, rb, nr, q, d, s, nt, sc)
}

// tileAMX prepares 16 rows at a time with prep16 (fewer, at the end, with
// prep; for blocks of size bytes) and runs the dot kernels over their
// tokens (the lane rule's, or with chain Q8_0's), in groups of amxTokens
// and then the rest, slicing every operand to what the kernels read so
// that a short one panics instead.
func tileAMX(prep16 func(wv []byte, dws []float32, w []byte, rb, nb int), prep func(wv []byte, dws []float32, w []byte, rb, nr, nb int), name string, size int, chain bool, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int, sc []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	n, nb, ok := tileQ8Shape(q, d, s, nt)
	if !ok || len(sc) < amxScratch(nb) || rb > 1<<26 {
		panic(fmt.Sprintf("kernels: %s AMX tile of %d tokens with len(q) = %d, len(d) = %d, len(s) = %d, rb = %d, %d bytes of scratch", name, nt, len(q), len(d), len(s), rb, len(sc)))
	}
	w = w[:rowsSpan(rb, nr, nb*size)]
	_ = dst[(nt-1)*ldd+nr-1]
	if nb == 0 {
		clearTile(dst, ldd, nr, nt)
		return
	}
	sc = align64(sc)
	acc := unsafe.Slice((*float32)(unsafe.Pointer(&sc[0])), amxAccBytes/4)
	dws := unsafe.Slice((*float32)(unsafe.Pointer(&sc[amxAccBytes])), 16*nb)
	wv := sc[amxAccBytes+64*nb : amxAccBytes+64*nb+512*nb]
	full, tail := nt/amxTokens, nt%amxTokens
	var cfgFull, cfgTail [64]byte
	amxConfig(&cfgFull, amxTokens)
	amxConfig(&cfgTail, tail)
	for r0 := 0; r0 < nr; r0 += 16 {
		rows := min(16, nr-r0)
		if rows == 16 {
			prep16(wv, dws, w[r0*rb:], rb, nb)
		} else {
			prep(wv, dws, w[r0*rb:], rb, rows, nb)
		}
		if full > 0 {
			amxDot(chain, amxTokens, dst[r0:(full*amxTokens-1)*ldd+r0+rows], ldd, q[:full*amxTokens*n], n, d[:full*amxTokens*nb], nb, full, rows, wv, dws, cfgFull[:], acc)
		}
		if tail > 0 {
			t0 := full * amxTokens
			amxDot(chain, tail, dst[t0*ldd+r0:(nt-1)*ldd+r0+rows], ldd, q[t0*n:nt*n], n, d[t0*nb:nt*nb], nb, 1, rows, wv, dws, cfgTail[:], acc)
		}
	}
}

// clearTile sets the outputs of a tile of empty rows (no blocks): every
// sum is the tree of +0s.
func clearTile(dst []float32, ldd, nr, nt int) {
	for t := range nt {
		clear(dst[t*ldd : t*ldd+nr])
	}
}

// align64 returns sc from its first 64-byte aligned byte (a scratch
// buffer sized with 64 bytes to spare).
func align64(sc []byte) []byte {
	return sc[int(-uintptr(unsafe.Pointer(unsafe.SliceData(sc))))&63:]
}

// amxConfig writes the tile configuration of groups of k tokens: tmm0 the
// A tile (k rows of a block's 32 quants), tmm1 the B tile (8 rows of 16
// rows' four quants), tmm2 the C tile (k rows of 16 int32), and the same
// again in tmm3..tmm5.
func amxConfig(c *[64]byte, k int) {
	*c = [64]byte{0: 1}
	set := func(t, rows, colsb int) {
		c[16+2*t], c[17+2*t] = byte(colsb), byte(colsb>>8)
		c[48+t] = byte(rows)
	}
	for t := 0; t < 6; t += 3 { // two sets, for two products in flight
		set(t, k, 32)
		set(t+1, 8, 64)
		set(t+2, k, 64)
	}
}

// amxDot calls the dot kernel of k tokens (with chain, Q8_0's) directly
// (a call through a function value would make its operands escape).
func amxDot(chain bool, k int, dst []float32, ldd int, q []int8, n int, pd []float32, nb, ng, nr int, wv []byte, dws []float32, cfg []byte, sc []float32) {
	if chain {
		amxChain(k, dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
		return
	}
	switch k {
	case 1:
		amxDotQ8_1(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 2:
		amxDotQ8_2(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 3:
		amxDotQ8_3(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 4:
		amxDotQ8_4(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 5:
		amxDotQ8_5(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 6:
		amxDotQ8_6(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 7:
		amxDotQ8_7(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 8:
		amxDotQ8_8(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 9:
		amxDotQ8_9(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 10:
		amxDotQ8_10(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 11:
		amxDotQ8_11(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 12:
		amxDotQ8_12(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 13:
		amxDotQ8_13(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 14:
		amxDotQ8_14(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 15:
		amxDotQ8_15(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 16:
		amxDotQ8_16(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	default:
		panic(fmt.Sprintf("kernels: no AMX dot kernel of %d tokens", k))
	}
}

// amxChain is amxDot for Q8_0's chain kernels.
func amxChain(k int, dst []float32, ldd int, q []int8, n int, pd []float32, nb, ng, nr int, wv []byte, dws []float32, cfg []byte, sc []float32) {
	switch k {
	case 1:
		amxChainQ8_0_1(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 2:
		amxChainQ8_0_2(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 3:
		amxChainQ8_0_3(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 4:
		amxChainQ8_0_4(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 5:
		amxChainQ8_0_5(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 6:
		amxChainQ8_0_6(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 7:
		amxChainQ8_0_7(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 8:
		amxChainQ8_0_8(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 9:
		amxChainQ8_0_9(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 10:
		amxChainQ8_0_10(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 11:
		amxChainQ8_0_11(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 12:
		amxChainQ8_0_12(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 13:
		amxChainQ8_0_13(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 14:
		amxChainQ8_0_14(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 15:
		amxChainQ8_0_15(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	case 16:
		amxChainQ8_0_16(dst, ldd, q, n, pd, nb, ng, nr, wv, dws, cfg, sc)
	default:
		panic(fmt.Sprintf("kernels: no AMX Q8_0 kernel of %d tokens", k))
	}
}
