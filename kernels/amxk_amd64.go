//go:build !purego

package kernels

import "fmt"

//go:generate sh -c "cd _asm/amxk && go run . -out ../../amxk_amd64.s -stubs ../../amxk_amd64_stubs.go -pkg kernels"

// The AMX path's batch (prefill) tile kernels of the K-quant weight types
// against the Q8K activation form, from _asm/amxk (amxk_amd64.s,
// amxk_amd64_stubs.go). For 16 rows at a time a prepare kernel writes
// each super-block's quants, times the two 3-bit digits of their 6-bit
// sub-block scales, as TDPBSSD B tiles, and the dot kernels compute the
// exact integer isum and msum of 16 tokens by 16 rows with TDPBSSD and
// TDPBUSD; AVX-512 applies the package doc's per-block float steps, so
// every output has the bits of every other path.

// amxKQuantKernels installs the AMX K-quant batch kernels in the AMX
// path's table t (see amx_amd64.go).
func amxKQuantKernels(t *TileKernels) {
	t.Q4_KBatch = TileQ8K{Run: tileQ4KAMX, Scratch: amxK4Scratch, Rows: amxRows, MinTokens: amxKBatchTokens}
	t.Q6_KBatch = TileQ8K{Run: tileQ6KAMX, Scratch: amxK6Scratch, Rows: amxRows, MinTokens: amxKBatchTokens}
}

const (
	// amxK4Block is the bytes of one prepared Q4_K super-block of 16 rows:
	// eight 1 KiB B tiles (h and l for each K-step of 64), two 512-byte
	// tiles of the mins, the rows' d and dmin as float32s.
	amxK4Block = 8*1024 + 2*512 + 2*64
	// amxK6Block is the same for Q6_K: twelve 1 KiB B tiles (three
	// digits for each K-step), the rows' d.
	amxK6Block = 12*1024 + 64
	// amxKAccBytes is the dot kernels' scratch: four C tiles, the
	// group's scales of a block, eight lanes of 16 tokens × 16 rows of
	// float32 sums.
	amxKAccBytes = 4*1024 + 64 + 8*amxTokens*64
)

// amxK4Scratch and amxK6Scratch are TileQ8K.Scratch of the AMX K-quant
// kernels: the dot kernels' scratch and the prepared rows, 64-byte
// aligned.
func amxK4Scratch(nb int) int { return 64 + amxKAccBytes + nb*amxK4Block }
func amxK6Scratch(nb int) int { return 64 + amxKAccBytes + nb*amxK6Block }

func tileQ4KAMX(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, sc []byte) {
	tileKAMX(false, dst, ldd, w, rb, nr, q, d, bsums, nt, sc)
}

func tileQ6KAMX(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, sc []byte) {
	tileKAMX(true, dst, ldd, w, rb, nr, q, d, bsums, nt, sc)
}

// tileKAMX prepares 16 rows at a time (of Q6_K with q6, else Q4_K) and
// runs the dot kernels over their tokens, in groups of amxTokens and then
// the rest, slicing every operand to what the kernels read so that a
// short one panics instead.
func tileKAMX(q6 bool, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int, sc []byte) {
	if nt <= 0 || nr <= 0 {
		return
	}
	name, size, blk, scratch := "Q4_K", q4KBytes, amxK4Block, amxK4Scratch
	if q6 {
		name, size, blk, scratch = "Q6_K", q6KBytes, amxK6Block, amxK6Scratch
	}
	nb := len(d) / nt
	if len(d) != nt*nb || len(q) != nt*nb*Q8KBlock || len(bsums) != nt*nb*16 || len(sc) < scratch(nb) || rb > 1<<26 || nb > 1<<20 {
		panic(fmt.Sprintf("kernels: %s AMX tile of %d tokens with len(q) = %d, len(d) = %d, len(bsums) = %d, rb = %d, %d bytes of scratch", name, nt, len(q), len(d), len(bsums), rb, len(sc)))
	}
	w = w[:rowsSpan(rb, nr, nb*size)]
	_ = dst[(nt-1)*ldd+nr-1]
	if nb == 0 {
		clearTile(dst, ldd, nr, nt)
		return
	}
	sc = align64(sc)
	acc := sc[:amxKAccBytes]
	wv := sc[amxKAccBytes : amxKAccBytes+nb*blk]
	n, ng := nb*Q8KBlock, nb*16
	full, tail := nt/amxTokens, nt%amxTokens
	var cfgFull, cfgTail [64]byte
	amxKConfig(&cfgFull, amxTokens, q6)
	amxKConfig(&cfgTail, tail, q6)
	for r0 := 0; r0 < nr; r0 += 16 {
		rows := min(16, nr-r0)
		wr := w[r0*rb : r0*rb+rowsSpan(rb, rows, nb*size)]
		if q6 {
			amxPrepQ6_K(wv, wr, rb, rows, nb)
		} else {
			amxPrepQ4_K(wv, wr, rb, rows, nb)
		}
		if full > 0 {
			t1 := full * amxTokens
			amxDotK(q6, amxTokens, dst[r0:(t1-1)*ldd+r0+rows], ldd, q[:t1*n], d[:t1*nb], bsums[:t1*ng], nb, full, rows, wv, cfgFull[:], acc)
		}
		if tail > 0 {
			t0 := full * amxTokens
			amxDotK(q6, tail, dst[t0*ldd+r0:(nt-1)*ldd+r0+rows], ldd, q[t0*n:], d[t0*nb:], bsums[t0*ng:], nb, 1, rows, wv, cfgTail[:], acc)
		}
	}
}

// amxKConfig writes the tile configuration of the K-quant dot kernels
// for groups of k tokens: tmm0..2 the C tiles (k rows of 16 int32), tmm3
// the quants (k rows of 64), tmm4 the bsums (k rows of 32; with q6 the
// quants), tmm5 and tmm6 B tiles of 16 rows, tmm7 a B tile of 8 rows (16
// with q6).
func amxKConfig(c *[64]byte, k int, q6 bool) {
	*c = [64]byte{0: 1}
	set := func(t, rows, colsb int) {
		c[16+2*t], c[17+2*t] = byte(colsb), byte(colsb>>8)
		c[48+t] = byte(rows)
	}
	for t := range 3 {
		set(t, k, 64)
	}
	set(3, k, 64)
	set(4, k, 32)
	set(5, 16, 64)
	set(6, 16, 64)
	set(7, 8, 64)
	if q6 {
		set(4, k, 64)
		set(7, 16, 64)
	}
}

// amxDotK calls the dot kernel of k tokens (Q6_K with q6, else Q4_K)
// directly (a call through a function value would make its operands
// escape).
func amxDotK(q6 bool, k int, dst []float32, ldd int, q []int8, d []float32, bs []int16, nb, ng, nr int, wv, cfg, sc []byte) {
	if q6 {
		switch k {
		case 1:
			amxDotQ6_K_1(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 2:
			amxDotQ6_K_2(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 3:
			amxDotQ6_K_3(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 4:
			amxDotQ6_K_4(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 5:
			amxDotQ6_K_5(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 6:
			amxDotQ6_K_6(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 7:
			amxDotQ6_K_7(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 8:
			amxDotQ6_K_8(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 9:
			amxDotQ6_K_9(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 10:
			amxDotQ6_K_10(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 11:
			amxDotQ6_K_11(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 12:
			amxDotQ6_K_12(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 13:
			amxDotQ6_K_13(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 14:
			amxDotQ6_K_14(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 15:
			amxDotQ6_K_15(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 16:
			amxDotQ6_K_16(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		}
	} else {
		switch k {
		case 1:
			amxDotQ4_K_1(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 2:
			amxDotQ4_K_2(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 3:
			amxDotQ4_K_3(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 4:
			amxDotQ4_K_4(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 5:
			amxDotQ4_K_5(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 6:
			amxDotQ4_K_6(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 7:
			amxDotQ4_K_7(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 8:
			amxDotQ4_K_8(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 9:
			amxDotQ4_K_9(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 10:
			amxDotQ4_K_10(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 11:
			amxDotQ4_K_11(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 12:
			amxDotQ4_K_12(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 13:
			amxDotQ4_K_13(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 14:
			amxDotQ4_K_14(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 15:
			amxDotQ4_K_15(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		case 16:
			amxDotQ4_K_16(dst, ldd, q, d, bs, nb, ng, nr, wv, cfg, sc)
			return
		}
	}
	panic(fmt.Sprintf("kernels: no AMX K-quant dot kernel of %d tokens", k))
}
