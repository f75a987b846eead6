// Command kquantz generates kernels/kquantz_amd64.s and
// kernels/kquantz_amd64_stubs.go, the AVX-512 (F, BW, VL, VNNI, VBMI) tile
// kernels of package kernels for the Q4_K and Q6_K weight types against
// the Q8K activation form (and the one-row, one-token Q5_K kernel that
// serves as its row kernel), with avo. Run it through go generate in
// kernels/ (see kquantz_amd64.go); CI regenerates and fails on a diff.
//
// A kernel computes nr weight rows against one to eight tokens (one token
// is decode's matrix-vector product). Each 256-element super-block is
// unpacked once into four ZMM vectors of unsigned quants in the
// activation's own order (vector j: elements 64j..64j+63), so that one
// VPDPBUSD per 64 activation bytes gives sixteen exact int32 sums of four
// products, each within one sub-block. Pairs of those vectors are packed
// to int16 (exact: the bounds are in the comments) and multiplied by the
// sub-block scales with VPMADDWD and VPDPWSSD, which leaves sixteen int32
// partial sums of the block's isum in one vector, stored on the stack.
// After a group of eight blocks, a transposing reduction (shuffles and
// adds, at 256-, 128-, 64- and 32-bit granularity) puts block k's exact
// isum (and, for Q4_K and Q5_K, msum) in lane k, and the float step of the package
// doc runs as eight-lane vector operations: lane k of the accumulator is
// lane b%8 for block b = 8g+k. Integer sums are exact whatever their order
// (every intermediate fits, or wraps and unwraps exactly in int32), and
// every float32 operation is the same IEEE operation, on the same
// operands, as in kernels/dot_generic.go, so every output has the generic
// row kernel's bits.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

// maxTokens is the most tokens a kernel computes per call.
const maxTokens = 8

// prefetchDist and prefetchL1 are the software prefetch distances in
// bytes of weights ahead of the block being read (into the next rows at a
// row's end), into L2 (PREFETCHT1) and into L1 (PREFETCHT0). On Sapphire
// Rapids, decode's weight stream at 4 KiB ahead into L2 ran at about 1.5
// times the speed of PREFETCHT0 at 1 KiB alone (which is bound by the L1
// miss buffers), for one thread and for two; 8 KiB and PREFETCHT2 were
// within the noise of it. Both together, from huge pages as a shard's
// weights are, were another 9-16% (1 and 2 threads, Q4_K and Q6_K).
const (
	prefetchDist = 4096
	prefetchL1   = 1536
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()
	for nt := 1; nt <= maxTokens; nt++ {
		tile(nt, q4k)
	}
	for nt := 1; nt <= maxTokens; nt++ {
		tile(nt, q6k)
	}
	tile(1, q5k) // the row kernel: TileKernels has no Q5_K entry
	Generate()
}

var nconst int

func b64(b []byte) Mem {
	nconst++
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return avx2.BytesConst(fmt.Sprintf("kqz_%d", nconst), b)
}

func words(ix []int) []byte {
	b := make([]byte, 2*len(ix))
	for i, v := range ix {
		b[2*i], b[2*i+1] = byte(v), byte(v>>8)
	}
	return b
}

func dwords(ix []int) []byte {
	b := make([]byte, 4*len(ix))
	for i, v := range ix {
		b[4*i] = byte(v)
	}
	return b
}

func qwords(ix []int) []byte {
	b := make([]byte, 8*len(ix))
	for i, v := range ix {
		b[8*i] = byte(v)
	}
	return b
}

var (
	cNib Mem // 64 × 0x0f
	cX30 Mem // 64 × 0x30
	cX10 Mem // 64 × 0x10
	// Q5_K: qword shift counts that move bits 2j (low half) and 2j+1
	// (high half) of qh to bit 4: left for j < 2, right for j >= 2.
	cQ5S   [4]Mem
	cSh4   Mem // qword shift counts {0 ×4, 4 ×4}: low nibbles, then high
	cQ6SL  Mem // qword shift counts {4 ×4, 2 ×4}: qh bits 0,1 / 2,3 to bits 4,5
	cQ6SR  Mem // qword shift counts {0 ×4, 2 ×4}: qh bits 4,5 / 6,7 to bits 4,5
	cPermH Mem // VPERMD: the reduction's lane order to isum 0..7, msum 0..7
	cSignH Mem // float32 sign bits in lanes 8..15
	cMasks Mem // per block count r (0..8): 4 dword masks of bsums loads, the lane mask
	// Q4_K: the 6-bit scale and min unpacking (VPSHUFB controls, masks),
	// and the VPERMB indexes of the scale words and the min words.
	cK4I1, cK4I2, cK4M1, cK4S01, cK4S23, cK4MW Mem
	// Q6_K: the VPERMW indexes of the scale words.
	cK6S01, cK6S23 Mem
)

func declareConstants() {
	cNib = b64(avx2.Rep(0x0f, 64))
	cX30 = b64(avx2.Rep(0x30, 64))
	cX10 = b64(avx2.Rep(0x10, 64))
	for j := range cQ5S {
		lo, hi := 4-2*j, 4-(2*j+1)
		if j >= 2 {
			lo, hi = -lo, -hi
		}
		cQ5S[j] = b64(qwords([]int{lo, lo, lo, lo, hi, hi, hi, hi}))
	}
	cSh4 = b64(qwords([]int{0, 0, 0, 0, 4, 4, 4, 4}))
	cQ6SL = b64(qwords([]int{4, 4, 4, 4, 2, 2, 2, 2}))
	cQ6SR = b64(qwords([]int{0, 0, 0, 0, 2, 2, 2, 2}))
	// After the reduction lane 4i of 128-bit lane i holds isum_i, 4i+1
	// isum_{4+i}, 4i+2 msum_i, 4i+3 msum_{4+i}.
	var ph []int
	for b := range 8 {
		ph = append(ph, 4*(b%4)+b/4)
	}
	for b := range 8 {
		ph = append(ph, 4*(b%4)+2+b/4)
	}
	cPermH = b64(dwords(ph))
	sg := make([]byte, 64)
	for i := 8; i < 16; i++ {
		sg[4*i+3] = 0x80
	}
	cSignH = b64(sg)
	// Entry r (16 bytes): uint16 masks of the four 64-byte bsums loads
	// (two blocks each, 8 dwords a block) and the 8-lane mask, of r valid
	// blocks.
	var mk []byte
	for r := 0; r <= 8; r++ {
		e := make([]byte, 16)
		for p := range 4 {
			var m uint16
			if 2*p < r {
				m |= 0x00ff
			}
			if 2*p+1 < r {
				m |= 0xff00
			}
			e[2*p], e[2*p+1] = byte(m), byte(m>>8)
		}
		e[8] = byte(1<<r - 1)
		mk = append(mk, e...)
	}
	cMasks = b64(mk)

	// Q4_K scales: byte o of A = sc_o (o < 8), m_{o-8} (o >= 8), from the
	// 12 bytes s = wb[4:16] (quant.ScaleMinK4):
	//   sc_j = s[j]&63,           m_j = s[j+4]&63          (j < 4)
	//   sc_j = s[j+4]&15 | (s[j-4]>>6)<<4, m_j = s[j+4]>>4 | (s[j]>>6)<<4
	// The low parts are VPSHUFB(I1) (bytes 12..15 then shifted right by 4)
	// and M1; the high parts VPSHUFB(I2), shifted right by 2, and 0x30.
	i1 := []byte{0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11}
	i2 := []byte{0x80, 0x80, 0x80, 0x80, 0, 1, 2, 3, 0x80, 0x80, 0x80, 0x80, 4, 5, 6, 7}
	m1 := []byte{63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15}
	cK4I1, cK4I2, cK4M1 = b64(i1), b64(i2), b64(m1)
	// Scale words against VPACKSSDW(D_{2a}, D_{2a+1}): in 128-bit lane i,
	// words 0..3 come from D_{2a} (sub-block 2*(2a)+i/2), words 4..7 from
	// D_{2a+1} (sub-block 2*(2a+1)+i/2). Byte 16 of A is zero.
	k4s := func(a int) Mem {
		var b []byte
		for i := range 4 {
			for w := range 8 {
				j := 2*a + w/4
				b = append(b, byte(2*j+i/2), 16)
			}
		}
		return b64(b)
	}
	cK4S01, cK4S23 = k4s(0), k4s(1)
	var mw []byte
	for g := range 16 {
		mw = append(mw, byte(8+g/2), 16)
	}
	cK4MW = b64(mw)
	// Q6_K: against VPACKSSDW(D_{2a}, D_{2a+1}), 128-bit lane i, words
	// 0..3 from sub-block 4*(2a)+i, words 4..7 from 4*(2a+1)+i.
	k6s := func(a int) Mem {
		var ix []int
		for i := range 4 {
			for w := range 8 {
				j := 2*a + w/4
				ix = append(ix, 4*j+i)
			}
		}
		return b64(words(ix))
	}
	cK6S01, cK6S23 = k6s(0), k6s(1)
}
