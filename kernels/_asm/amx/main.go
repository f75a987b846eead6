// Command amx generates kernels/amx_amd64.s and kernels/amx_amd64_stubs.go,
// the AMX (Advanced Matrix Extensions, AMX-TILE and AMX-INT8) tile kernels
// of package kernels for the Q4_0 and Q8_0 weight types against the Q8
// activation form (and the prepare kernels of Q8_0's AVX-512 prefill),
// with avo. Run it through go generate in kernels/ (see amx_amd64.go); CI
// regenerates and fails on a diff.
//
// Neither avo nor the Go assembler knows the AMX instructions, so they are
// written out as bytes (_asm/amxenc); every general-purpose register in
// the functions that use them is a physical one, so the bytes name the
// registers the code set.
//
// The work is split in two steps, both for 16 weight rows:
//
//   - A prepare kernel writes the rows' quants in TDPBSSD's B layout (the
//     "VNNI" layout), one 512-byte tile per block: row j of block b's tile
//     holds, for each weight row r < 16, quants 4j..4j+3 of that row's
//     block b, for Q4_0 as signed bytes (its nibbles minus 8), for Q8_0 as
//     they are (amxPrep*Q8_0Signed), and the rows' block scales as
//     float32s, 16 per block. The other Q8_0 prepare kernels write its
//     quants plus 128, unsigned, for the AVX-512 kernels of _asm/lanesz.
//     Rows past nr repeat row nr-1, so nothing past the matrix is read.
//   - A dot kernel, one per token count k = 1..16, runs groups of k
//     tokens: for every block, one TDPBSSD of the tokens' quants (A: k
//     rows of the block's 32 quants, which kernels.packAMX lays out
//     block-major in each group so that they are 512 contiguous bytes)
//     with the block's B tile gives the k×16 exact integer block dots
//     isum_b; AVX-512 then does the float step of kernels/doc.go with a
//     ZMM of 16 rows per token. For Q4_0 (amxDotQ8_k) that is
//     acc[b%8] = fma(dw_b*d_b, float32(isum_b), acc[b%8]): the blocks of
//     one lane b%8 run in one pass with the k accumulators in registers
//     (the lanes are independent sums, so doing them one after the other
//     keeps every lane's order); each lane's sums go to scratch and the
//     fixed tree of kernels/doc.go reduces them at the end. For Q8_0
//     (amxChainQ8_0_k) it is the one chain over every block in order,
//     a = fma(dw_b*d_b, float32(isum_b), a), stored as it is.
//
// Every output is exactly the row rule: the integer dots are exact,
// whichever unit computes them, and every float32 operation is the same
// IEEE operation, on the same operands, as in kernels/dot_generic.go.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/amxenc"
	"github.com/stratanet/strata/kernels/_asm/avx2"
	"github.com/stratanet/strata/kernels/_asm/avx512"
)

// quants is how a prepare kernel writes the quants of a block.
type quants int

const (
	q4Quants   quants = iota // Q4_0's nibbles minus 8, signed
	q8Unsigned               // Q8_0's quants plus 128, unsigned (for _asm/lanesz)
	q8Signed                 // Q8_0's quants as they are (for TDPBSSD)
)

// prefetchBlocks is how many blocks ahead prepare16 prefetches its rows.
const prefetchBlocks = 8

// maxTokens is the most tokens one dot kernel call takes per group: the
// rows of the A and C tiles.
const maxTokens = 16

// The dot kernels' scratch: eight lanes of 16 tokens × 16 rows of float32
// sums, then the C tile (16 rows of 16 int32).
const (
	laneBytes = maxTokens * 64
	cOffset   = 8 * laneBytes
)

var (
	cIota Mem // int32 0..15
	cNib  Mem // 64 × 0x0f
	c8    Mem // 64 × 8
	cX80  Mem // 64 × 0x80
)

func main() {
	ConstraintExpr("amd64,!purego")
	iota := make([]byte, 64)
	for i := range 16 {
		iota[4*i] = byte(i)
	}
	cIota = avx2.BytesConst("amx_iota", iota)
	cNib = avx2.BytesConst("amx_nib", avx2.Rep(0x0f, 64))
	c8 = avx2.BytesConst("amx_8", avx2.Rep(8, 64))
	cX80 = avx2.BytesConst("amx_x80", avx2.Rep(0x80, 64))
	prepare("amxPrepQ4_0", 18, q4Quants)
	prepare("amxPrepQ8_0", 34, q8Unsigned)
	prepare("amxPrepQ8_0Signed", 34, q8Signed)
	prepare16("amxPrep16Q4_0", 18, q4Quants)
	prepare16("amxPrep16Q8_0", 34, q8Unsigned)
	prepare16("amxPrep16Q8_0Signed", 34, q8Signed)
	for k := 1; k <= maxTokens; k++ {
		dot(k, false)
	}
	for k := 1; k <= maxTokens; k++ {
		dot(k, true)
	}
	Generate()
}

// prepare generates fn(wv []byte, dws []float32, w []byte, rb, nr, nb int):
// the B tiles (wv, 512 bytes a block) and scales (dws, 16 a block) of the
// nb blocks of 16 rows at w (row r at r*rb; rows from nr on repeat row
// nr-1), for blocks of bs bytes, a float16 scale and then the quants:
// Q4_0's 16 bytes of nibbles with q4, else Q8_0's 32 signed bytes.
func prepare(fn string, bs int, qk quants) {
	q4 := qk == q4Quants
	TEXT(fn, NOSPLIT, "func(wv []byte, dws []float32, w []byte, rb, nr, nb int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s writes the B tiles and scales of 16 rows of %d-byte blocks (see _asm/amx).", fn, bs))
	wv := Load(Param("wv").Base(), GP64())
	dws := Load(Param("dws").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	nb := Load(Param("nb"), GP64())

	// Row r's offset, min(r, nr-1)*rb, for the gathers.
	off := ZMM()
	t := GP64()
	Load(Param("rb"), t)
	VPBROADCASTD(t.As32(), off)
	rows := ZMM()
	Load(Param("nr"), t)
	DECQ(t)
	VPBROADCASTD(t.As32(), rows)
	VPMINUD(cIota, rows, rows)
	VPMULLD(rows, off, off)
	nib, eight, x80 := ZMM(), ZMM(), ZMM()
	if q4 {
		VMOVDQU8(cNib, nib)
		VMOVDQU8(c8, eight)
	} else if qk == q8Unsigned {
		VMOVDQU8(cX80, x80)
	}

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	Label(fn + "_block")
	mask := K()
	gather := func(disp int) reg.VecVirtual { return gatherRows(w, off, disp, mask) }
	scales(w, off, dws, mask)
	if q4 {
		for j := range 4 {
			z := gather(2 + 4*j)
			lo, hi := ZMM(), ZMM()
			VPANDD(nib, z, lo)
			VPSRLD(U8(4), z, hi)
			VPANDD(nib, hi, hi)
			VPSUBB(eight, lo, lo)
			VPSUBB(eight, hi, hi)
			VMOVDQU8(lo, Mem{Base: wv, Disp: 64 * j})
			VMOVDQU8(hi, Mem{Base: wv, Disp: 64 * (j + 4)})
		}
	} else {
		for j := range 8 {
			z := gather(2 + 4*j)
			if qk == q8Unsigned {
				VPXORD(x80, z, z)
			}
			VMOVDQU8(z, Mem{Base: wv, Disp: 64 * j})
		}
	}
	ADDQ(U32(bs), w)
	ADDQ(U32(512), wv)
	ADDQ(U32(64), dws)
	DECQ(nb)
	JNZ(LabelRef(fn + "_block"))
	Label(fn + "_done")
	VZEROUPPER()
	RET()
}

// gatherRows returns the dword at disp of every row: row r's at
// w + off[r] + disp.
// mask is the function's one gather mask (KXNORW reads it: a fresh mask
// each time would look live from the function's start).
func gatherRows(w reg.Register, off reg.VecVirtual, disp int, mask reg.Register) reg.VecVirtual {
	z := ZMM()
	KXNORW(mask, mask, mask)
	VPXORD(z, z, z)
	VPGATHERDD(Mem{Base: w, Index: off, Scale: 1, Disp: disp}, mask, z)
	return z
}

// scales writes the float16 block scales at w + off[r] of the 16 rows
// as float32s to dws.
func scales(w reg.Register, off reg.VecVirtual, dws, mask reg.Register) {
	z := gatherRows(w, off, 0, mask)
	y := YMM()
	VPMOVDW(z, y)
	VCVTPH2PS(y, z)
	VMOVUPS(z, Mem{Base: dws})
}

// prepare16 generates fn(wv []byte, dws []float32, w []byte, rb, nb int),
// prepare's function for exactly 16 rows, which loads the quants rather
// than gathering them: 16 bytes (four dwords) of each row go into one
// 128-bit lane each of four ZMMs, Z_p lane l holding row 4l+p, and a 4×4
// dword transposition within the lanes (VPUNPCK{L,H}DQ, then
// VPUNPCK{L,H}QDQ) leaves dword j of row 4l+p at dword 4l+p of U_j:
// row j of the block's B tile (Q4_0: the low nibbles in row j, the high
// ones in row j+4; Q8_0: twice, for dwords 0..3 and 4..7).
func prepare16(fn string, bs int, qk quants) {
	q4 := qk == q4Quants
	TEXT(fn, NOSPLIT, "func(wv []byte, dws []float32, w []byte, rb, nb int)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s writes the B tiles and scales of 16 rows of %d-byte blocks (see _asm/amx).", fn, bs))
	wv := Load(Param("wv").Base(), GP64())
	dws := Load(Param("dws").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	nb := Load(Param("nb"), GP64())
	rb := GP64()
	Load(Param("rb"), rb)

	off := ZMM() // row r's offset r*rb, for the scales' gather
	VPBROADCASTD(rb.As32(), off)
	VPMULLD(cIota, off, off)
	// Row p's pointers (p < 4), and the strides 4rb and 12rb to rows
	// 4l+p.
	var base [4]reg.GPVirtual
	for p := range base {
		base[p] = GP64()
		if p == 0 {
			MOVQ(w, base[p])
		} else {
			LEAQ(Mem{Base: base[p-1], Index: rb, Scale: 1}, base[p])
		}
	}
	rb4, rb12 := GP64(), GP64()
	MOVQ(rb, rb4)
	SHLQ(U8(2), rb4)
	LEAQ(Mem{Base: rb4, Index: rb4, Scale: 2}, rb12)
	nib, eight, x80 := ZMM(), ZMM(), ZMM()
	if q4 {
		VMOVDQU8(cNib, nib)
		VMOVDQU8(c8, eight)
	} else if qk == q8Unsigned {
		VMOVDQU8(cX80, x80)
	}

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	Label(fn + "_block")
	scales(w, off, dws, K())
	// transposed returns U_0..U_3 of the 16 bytes at disp of every row.
	transposed := func(disp int) [4]reg.VecVirtual {
		var z [4]reg.VecVirtual
		for p := range z {
			z[p] = ZMM()
			VMOVDQU32(Mem{Base: base[p], Disp: disp}, z[p].AsX())
			VINSERTI32X4(U8(1), Mem{Base: base[p], Index: rb4, Scale: 1, Disp: disp}, z[p], z[p])
			VINSERTI32X4(U8(2), Mem{Base: base[p], Index: rb4, Scale: 2, Disp: disp}, z[p], z[p])
			VINSERTI32X4(U8(3), Mem{Base: base[p], Index: rb12, Scale: 1, Disp: disp}, z[p], z[p])
		}
		t0, t1, t2, t3 := ZMM(), ZMM(), ZMM(), ZMM()
		VPUNPCKLDQ(z[1], z[0], t0) // rows (p0, p1) dwords 0, 1
		VPUNPCKHDQ(z[1], z[0], t1) // rows (p0, p1) dwords 2, 3
		VPUNPCKLDQ(z[3], z[2], t2)
		VPUNPCKHDQ(z[3], z[2], t3)
		var u [4]reg.VecVirtual
		for j := range u {
			u[j] = ZMM()
		}
		VPUNPCKLQDQ(t2, t0, u[0])
		VPUNPCKHQDQ(t2, t0, u[1])
		VPUNPCKLQDQ(t3, t1, u[2])
		VPUNPCKHQDQ(t3, t1, u[3])
		return u
	}
	// The 16 row streams run ahead of the hardware prefetchers: ask for
	// every row's bytes prefetchBlocks blocks on.
	for p := range base {
		PREFETCHT0(Mem{Base: base[p], Disp: prefetchBlocks * bs})
		PREFETCHT0(Mem{Base: base[p], Index: rb4, Scale: 1, Disp: prefetchBlocks * bs})
		PREFETCHT0(Mem{Base: base[p], Index: rb4, Scale: 2, Disp: prefetchBlocks * bs})
		PREFETCHT0(Mem{Base: base[p], Index: rb12, Scale: 1, Disp: prefetchBlocks * bs})
	}
	if q4 {
		u := transposed(2)
		for j, z := range u {
			lo, hi := ZMM(), ZMM()
			VPANDD(nib, z, lo)
			VPSRLD(U8(4), z, hi)
			VPANDD(nib, hi, hi)
			VPSUBB(eight, lo, lo)
			VPSUBB(eight, hi, hi)
			VMOVDQU8(lo, Mem{Base: wv, Disp: 64 * j})
			VMOVDQU8(hi, Mem{Base: wv, Disp: 64 * (j + 4)})
		}
	} else {
		for h := range 2 {
			for j, z := range transposed(2 + 16*h) {
				if qk == q8Unsigned {
					VPXORD(x80, z, z)
				}
				VMOVDQU8(z, Mem{Base: wv, Disp: 64 * (4*h + j)})
			}
		}
	}
	ADDQ(U32(bs), w)
	for _, b := range base {
		ADDQ(U32(bs), b)
	}
	ADDQ(U32(512), wv)
	ADDQ(U32(64), dws)
	DECQ(nb)
	JNZ(LabelRef(fn + "_block"))
	Label(fn + "_done")
	VZEROUPPER()
	RET()
}

// dot generates amxDotQ8_k(dst []float32, ldd int, q []int8, n int, pd
// []float32, nb, ng, nr int, wv []byte, dws []float32, cfg []byte, sc
// []float32): ng groups of k tokens (group g's block b of token m at
// q[g*k*n + b*32*k + 32*m:], its block scales at pd[g*k*nb + b*k + m],
// n = 32*nb, its outputs at
// dst[(g*k+m)*ldd:] for rows r < nr) against the prepared rows (wv, dws).
// cfg is the tile configuration of k tokens; sc holds 8*16*16 + 2*16*16
// float32s of scratch.
func dot(k int, chain bool) {
	fn := fmt.Sprintf("amxDotQ8_%d", k)
	// step is the blocks between two of one lane: the lane rule's eight
	// lanes; Q8_0's chain is one lane of every block.
	step := 8
	if chain {
		fn = fmt.Sprintf("amxChainQ8_0_%d", k)
		step = 1
	}
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, q []int8, n int, pd []float32, nb, ng, nr int, wv []byte, dws []float32, cfg []byte, sc []float32)")
	Pragma("noescape")
	if chain {
		Doc(fmt.Sprintf("%s computes groups of %d tokens against 16 prepared Q8_0 rows in Q8_0's order (see _asm/amx).", fn, k))
	} else {
		Doc(fmt.Sprintf("%s computes groups of %d tokens against 16 prepared rows (see _asm/amx).", fn, k))
	}
	var (
		aPtr  = reg.RAX // A tile (tokens' quants of block b)
		bPtr  = reg.RBX // B tile of block b
		cPtr  = reg.RCX // the C tile's scratch
		aStr  = reg.RDX // A's row stride, 32
		s64   = reg.RSI // B's and C's row stride, 64
		pdPtr = reg.RDI // the group's scales of block b
		wdPtr = reg.R8  // the rows' scales of block b
		qg    = reg.R9  // the group's quants
		left  = reg.R10 // blocks of the lane left
		lane  = reg.R11 // lane, 0..7
		accP  = reg.R12 // the lane's sums in scratch
		ng    = reg.R13 // groups left
		dstP  = reg.R14 // the group's outputs
		pdg   = reg.R15 // the group's scales
	)
	Load(Param("cfg").Base(), aPtr)
	amxenc.LDTILECFG(aPtr)
	Load(Param("dst").Base(), dstP)
	Load(Param("q").Base(), qg)
	Load(Param("pd").Base(), pdg)
	Load(Param("ng"), ng)
	MOVQ(U32(32), aStr)
	MOVQ(U32(64), s64)
	// The row mask of the stores.
	rmask := K()
	MOVQ(U32(1), aPtr)
	Load(Param("nr"), cPtr)
	SHLQ(reg.CL, aPtr)
	DECQ(aPtr)
	KMOVW(aPtr.As32(), rmask)

	acc := make([]reg.VecVirtual, k)
	for m := range acc {
		acc[m] = ZMM()
	}
	Label(fn + "_group")
	XORQ(lane, lane)
	Load(Param("sc").Base(), accP)
	Label(fn + "_lane")
	for _, a := range acc {
		VPXORD(a, a, a)
	}
	// aPtr = qg + 32kl, bPtr = wv + 512l, wdPtr = dws + 64l, pdPtr = pdg + 4kl
	// for the lane's first block l; left = the lane's blocks, (nb-l+7)/8.
	IMUL3Q(U32(32*k), lane, aPtr)
	ADDQ(qg, aPtr)
	Load(Param("wv").Base(), bPtr)
	MOVQ(lane, left)
	SHLQ(U8(9), left)
	ADDQ(left, bPtr)
	Load(Param("dws").Base(), wdPtr)
	MOVQ(lane, left)
	SHLQ(U8(6), left)
	ADDQ(left, wdPtr)
	IMUL3Q(U32(4*k), lane, pdPtr)
	ADDQ(pdg, pdPtr)
	Load(Param("sc").Base(), cPtr)
	ADDQ(U32(cOffset), cPtr)
	Load(Param("nb"), left)
	if !chain {
		SUBQ(lane, left)
		ADDQ(U8(7), left)
		SHRQ(U8(3), left)
	}
	TESTQ(left, left)
	JZ(LabelRef(fn + "_laneDone"))

	// The lane's blocks go through two sets of tiles (tmm0-2, tmm3-5)
	// and two C scratch tiles in turn, with the float step of each block
	// after the next block's tile product is issued: the tile
	// instructions run in order, and a tile load also waits for the
	// vector loads before it, so the float step must never wait for the
	// store just issued.
	epilogue := func(slot int) {
		w := ZMM()
		VMOVUPS(Mem{Base: wdPtr}, w)
		for m, a := range acc {
			s, t := ZMM(), ZMM()
			VMULPS_BCST(Mem{Base: pdPtr, Disp: 4 * m}, w, s)
			VCVTDQ2PS(Mem{Base: cPtr, Disp: 1024*slot + 64*m}, t)
			VFMADD231PS(t, s, a)
		}
	}
	// product issues the tile product of the block blk lanes on into
	// slot's tiles and C scratch.
	product := func(slot int, blk int32) {
		t := 3 * slot
		amxenc.TileLoad(t, Mem{Base: aPtr, Index: aStr, Scale: 1, Disp: 32 * k * step * int(blk)})
		amxenc.TileLoad(t+1, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: 512 * step * int(blk)})
		amxenc.TileZero(t + 2)
		amxenc.TDPBSSD(t+2, t, t+1)
		amxenc.TileStore(Mem{Base: cPtr, Index: s64, Scale: 1, Disp: 1024 * slot}, t+2)
	}
	advance := func() {
		ADDQ(U32(step*32*k), aPtr)
		ADDQ(U32(step*512), bPtr)
		ADDQ(U32(step*64), wdPtr)
		ADDQ(U32(step*4*k), pdPtr)
	}
	product(0, 0)
	DECQ(left)
	JZ(LabelRef(fn + "_drain0"))
	Label(fn + "_blocks")
	product(1, 1)
	epilogue(0)
	advance()
	DECQ(left)
	JZ(LabelRef(fn + "_drain1"))
	product(0, 1)
	epilogue(1)
	advance()
	DECQ(left)
	JNZ(LabelRef(fn + "_blocks"))
	Label(fn + "_drain0")
	epilogue(0)
	JMP(LabelRef(fn + "_laneDone"))
	Label(fn + "_drain1")
	epilogue(1)

	Label(fn + "_laneDone")
	if chain {
		// The one lane is the result.
		MOVQ(dstP, aPtr)
		Load(Param("ldd"), bPtr)
		SHLQ(U8(2), bPtr)
		for m, a := range acc {
			VMOVUPS(a, rmask, Mem{Base: aPtr})
			if m+1 < k {
				ADDQ(bPtr, aPtr)
			}
		}
	} else {
		for m, a := range acc {
			VMOVUPS(a, Mem{Base: accP, Disp: 64 * m})
		}
		ADDQ(U32(laneBytes), accP)
		INCQ(lane)
		CMPQ(lane, U8(8))
		JL(LabelRef(fn + "_lane"))

		// The fixed tree over the lanes, per token.
		Load(Param("sc").Base(), accP)
		MOVQ(dstP, aPtr)
		Load(Param("ldd"), bPtr)
		SHLQ(U8(2), bPtr)
		avx512.LaneTrees(accP, laneBytes, k, aPtr, bPtr, rmask)
	}
	// Next group: k tokens on.
	IMUL3Q(U32(k), bPtr, cPtr)
	ADDQ(cPtr, dstP)
	Load(Param("n"), cPtr)
	IMUL3Q(U32(k), cPtr, cPtr)
	ADDQ(cPtr, qg)
	Load(Param("nb"), cPtr)
	IMUL3Q(U32(4*k), cPtr, cPtr)
	ADDQ(cPtr, pdg)
	DECQ(ng)
	JNZ(LabelRef(fn + "_group"))
	amxenc.TILERELEASE()
	VZEROUPPER()
	RET()
}
