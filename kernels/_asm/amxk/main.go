// Command amxk generates kernels/amxk_amd64.s and
// kernels/amxk_amd64_stubs.go, the AMX-INT8 batch (prefill) tile kernels
// of package kernels for the Q4_K and Q6_K weight types against the Q8K
// activation form, with avo. Run it through go generate in kernels/ (see
// amxk_amd64.go); CI regenerates and fails on a diff.
//
// The AMX instructions are written out as bytes (package amxenc), so every
// general-purpose register of the dot kernels is a physical one.
//
// The work is split in two steps, both for 16 weight rows (Q4_K here; Q6_K
// differs only in its digits, see prepQ6K, and needs no msum):
//
//   - A prepare kernel writes, for every super-block b of the rows, the B
//     tiles (TDPBSSD's "VNNI" layout: row j of a tile holds, for each
//     weight row r < 16, elements 4j..4j+3 of that row's K-step) of
//     h_s*qw and l_s*qw, where sc = 8*h + l splits each 6-bit sub-block
//     scale into two 3-bit digits (h*qw and l*qw are at most 7*15 = 105,
//     a signed byte), one pair of 1 KiB tiles for each of the block's four
//     K-steps of 64 elements; two 512-byte tiles of the mins against the
//     activation's int16 group sums, and the rows' d and dmin as float32s.
//     Rows past nr repeat row nr-1, so nothing past the matrix is read.
//   - A dot kernel, one per token count k = 1..16, runs groups of k
//     tokens. For every super-block, TDPBSSD of the tokens' quants (A: k
//     rows of 64 bytes, straight from the Q8K activation) with the h and
//     l tiles accumulates C_h and C_l over the whole block, so that
//     isum = 8*C_h + C_l exactly (|C_h|, |C_l| <= 256*105*128 < 2^22).
//     For msum the A tile is the tokens' 16 bsums of the block, as 32
//     bytes: TDPBUSD against the mins at the low bytes (unsigned) gives
//     C_1, TDPBSSD against them at the high bytes (signed) gives C_2, and
//     msum = C_1 + 256*C_2 exactly, since every bsum is its low byte plus
//     256 times its signed high byte. AVX-512 then does the float step of
//     kernels/doc.go, with a ZMM of 16 rows per token:
//     acc[b%8] = fma(dw_b*d_b, float32(isum_b), acc[b%8]);
//     acc[b%8] = fma(-(dmin_b*d_b), float32(msum_b), acc[b%8]).
//     The blocks of one lane b%8 run in one pass with the k accumulators
//     in registers (the lanes are independent sums, so doing them one
//     after the other keeps every lane's order); each lane's sums go to
//     scratch and the fixed tree of kernels/doc.go reduces them at the end.
//
// Every output is exactly the row rule: the integer sums are exact,
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

// maxTokens is the most tokens one dot kernel call takes per group: the
// rows of the A and C tiles.
const maxTokens = 16

// A prepared Q4_K super-block of 16 rows: for K-step s, the h tile at
// 2048s and the l tile at 2048s+1024; the mins tiles (low bytes, high
// bytes), then the rows' d and dmin.
const (
	q4kBlk   = 144
	k4Lo     = 8192
	k4Hi     = k4Lo + 512
	k4D      = k4Hi + 512
	k4DMin   = k4D + 64
	k4Bytes  = k4DMin + 64
	k4Blocks = 8 // lanes
)

// A prepared Q6_K super-block of 16 rows: for K-step s, the tiles of
// digits 0, 1, 2 at 3072s + 1024i, then the rows' d.
const (
	q6kBlk  = 210
	k6D     = 12 * 1024
	k6Bytes = k6D + 64
)

// The dot kernels' scratch: the C tiles (C_h, C_l, C_1, C_2), the group's
// activation scales of the block, then eight lanes of 16 tokens × 16
// rows of float32 sums.
const (
	cH, cL, c1, c2 = 0, 1024, 2048, 3072
	dgOff          = 4096
	accOff         = dgOff + 64
	laneBytes      = maxTokens * 64
	scratchBytes   = accOff + 8*laneBytes
)

var (
	cIota Mem // int32 0..15
	cNib  Mem // 64 × 0x0f
	c7    Mem // 64 × 0x07
	cD63  Mem // 16 × int32 63
	cD15  Mem // 16 × int32 15
	cD30  Mem // 16 × int32 0x30
	cWord Mem // VPSHUFB: byte 0 of each dword to bytes 0 and 2
	cSign Mem // 16 × float32 sign bit
	// Q6_K
	cD3     Mem // 16 × int32 3
	cD7     Mem // 16 × int32 7
	cWord16 Mem // VPSHUFB: word 0 of each dword to both words
	cQ6H    [4]Mem
	c32     Mem // 64 × 32
	cLo8    Mem // 32 × int16 0x00ff
)

func main() {
	ConstraintExpr("amd64,!purego")
	iota := make([]byte, 64)
	for i := range 16 {
		iota[4*i] = byte(i)
	}
	cIota = avx2.BytesConst("amxk_iota", iota)
	cNib = avx2.BytesConst("amxk_nib", avx2.Rep(0x0f, 64))
	c7 = avx2.BytesConst("amxk_7", avx2.Rep(7, 64))
	cD63 = avx2.BytesConst("amxk_d63", dwords(63))
	cD15 = avx2.BytesConst("amxk_d15", dwords(15))
	cD30 = avx2.BytesConst("amxk_d30", dwords(0x30))
	cSign = avx2.BytesConst("amxk_sign", dwords(0x80000000))
	w := make([]byte, 64)
	for i := range 16 {
		b := byte(4 * (i % 4))
		w[4*i], w[4*i+1], w[4*i+2], w[4*i+3] = b, 0x80, b, 0x80
	}
	cWord = avx2.BytesConst("amxk_word", w)
	cD3 = avx2.BytesConst("amxk_d3", dwords(3))
	cD7 = avx2.BytesConst("amxk_d7", dwords(7))
	w16 := make([]byte, 64)
	for i := range 16 {
		b := byte(4 * (i % 4))
		w16[4*i], w16[4*i+1], w16[4*i+2], w16[4*i+3] = b, b+1, b, b+1
	}
	cWord16 = avx2.BytesConst("amxk_word16", w16)
	for c, m := range []byte{0x03, 0x0c, 0x30, 0xc0} {
		cQ6H[c] = avx2.BytesConst(fmt.Sprintf("amxk_q6h%d", c), avx2.Rep(m, 64))
	}
	c32 = avx2.BytesConst("amxk_32", avx2.Rep(32, 64))
	cLo8 = avx2.BytesConst("amxk_lo8", dwords(0x00ff00ff))
	prepQ4K()
	prepQ6K()
	for _, t := range []*kType{q4k, q6k} {
		for k := 1; k <= maxTokens; k++ {
			dot(k, t)
		}
	}
	Generate()
}

func dwords(v uint32) []byte {
	b := make([]byte, 64)
	for i := range 16 {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return b
}

// rowOffsets returns a ZMM of min(r, nr-1)*rb for r < 16, the gathers'
// indexes.
func rowOffsets() reg.VecVirtual {
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
	return off
}

// prepQ4K generates amxPrepQ4_K(wv, w []byte, rb, nr, nb int): the
// prepared blocks (k4Bytes each) of the nb super-blocks of the 16 rows at
// w (row r at r*rb; rows from nr on repeat row nr-1).
func prepQ4K() {
	fn := "amxPrepQ4_K"
	TEXT(fn, NOSPLIT, "func(wv []byte, w []byte, rb, nr, nb int)")
	Pragma("noescape")
	Doc(fn + " writes the prepared super-blocks of 16 rows of Q4_K (see _asm/amxk).")
	wv := Load(Param("wv").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	nb := Load(Param("nb"), GP64())
	off := rowOffsets()
	nib, c7z := ZMM(), ZMM()
	VMOVDQU8(cNib, nib)
	VMOVDQU8(c7, c7z)

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	Label(fn + "_block")
	mask := K()
	gather := func(disp int) reg.VecVirtual {
		z := ZMM()
		KXNORW(mask, mask, mask)
		VPXORD(z, z, z)
		VPGATHERDD(Mem{Base: w, Index: off, Scale: 1, Disp: disp}, mask, z)
		return z
	}
	{
		z := gather(0)
		y, f := YMM(), ZMM()
		VPMOVDW(z, y)
		VCVTPH2PS(y, f)
		VMOVUPS(f, Mem{Base: wv, Disp: k4D})
		VPSRLD(U8(16), z, z)
		VPMOVDW(z, y)
		VCVTPH2PS(y, f)
		VMOVUPS(f, Mem{Base: wv, Disp: k4DMin})
	}
	// The 6-bit scales and mins (quant.ScaleMinK4) of sub-block j, a dword
	// per row, from s0, s1, s2 = bytes 4..7, 8..11, 12..15 of the block:
	//   j < 4:  sc = s0>>8j & 63,                      m = s1>>8j & 63
	//   j >= 4: sc = s2>>8i & 15 | s0>>(8i+2) & 0x30,  m = s2>>(8i+4) & 15 | s1>>(8i+2) & 0x30  (i = j-4)
	s0, s1, s2 := gather(4), gather(8), gather(12)
	scw := AllocLocal(8 * 64)
	for j := range 8 {
		sc, m := ZMM(), ZMM()
		if j < 4 {
			VPSRLD(U8(8*j), s0, sc)
			VPANDD(cD63, sc, sc)
			VPSRLD(U8(8*j), s1, m)
			VPANDD(cD63, m, m)
		} else {
			i := j - 4
			t := ZMM()
			VPSRLD(U8(8*i), s2, sc)
			VPANDD(cD15, sc, sc)
			VPSRLD(U8(8*i+2), s0, t)
			VPANDD(cD30, t, t)
			VPORD(t, sc, sc)
			VPSRLD(U8(8*i+4), s2, m)
			VPANDD(cD15, m, m)
			VPSRLD(U8(8*i+2), s1, t)
			VPANDD(cD30, t, t)
			VPORD(t, m, m)
		}
		// Both words of each dword.
		VPSHUFB(cWord, sc, sc)
		VMOVDQU32(sc, scw.Offset(64*j))
		// The mins tiles: row j holds (m, 0, m, 0) per weight row against
		// the low bytes of bsums 2j and 2j+1, (0, m, 0, m) against the
		// high bytes.
		VPSHUFB(cWord, m, m)
		VMOVDQU8(m, Mem{Base: wv, Disp: k4Lo + 64*j})
		VPSLLW(U8(8), m, m)
		VMOVDQU8(m, Mem{Base: wv, Disp: k4Hi + 64*j})
	}
	// The quants: K-step s is elements 64s..64s+63, the low nibbles of
	// bytes 32s..32s+31 of qs (sub-block 2s) and then their high nibbles
	// (sub-block 2s+1). B row jj < 8 is bytes 4jj..4jj+3's low nibbles,
	// row jj+8 their high nibbles. VPMULLW by (h, h) words multiplies both
	// bytes of each word exactly (each product is at most 105).
	sp, ws, wvs := GP64(), GP64(), GP64()
	LEAQ(scw, sp)
	MOVQ(w, ws)
	MOVQ(wv, wvs)
	steps := GP64()
	MOVQ(U32(4), steps)
	Label(fn + "_step")
	// sc = 8h + l, h and l in 0..7, as (h, h) and (l, l) words.
	var hw, lw [2]reg.VecVirtual
	for i := range 2 {
		hw[i], lw[i] = ZMM(), ZMM()
		VPSRLW(U8(3), Mem{Base: sp, Disp: 64 * i}, hw[i])
		VPANDD(Mem{Base: sp, Disp: 64 * i}, c7z, lw[i])
	}
	for jj := range 8 {
		z := ZMM()
		KXNORW(mask, mask, mask)
		VPXORD(z, z, z)
		VPGATHERDD(Mem{Base: ws, Index: off, Scale: 1, Disp: 16 + 4*jj}, mask, z)
		lo, hi, p := ZMM(), ZMM(), ZMM()
		VPANDD(nib, z, lo)
		VPSRLD(U8(4), z, hi)
		VPANDD(nib, hi, hi)
		VPMULLW(hw[0], lo, p)
		VMOVDQU8(p, Mem{Base: wvs, Disp: 64 * jj})
		VPMULLW(lw[0], lo, p)
		VMOVDQU8(p, Mem{Base: wvs, Disp: 1024 + 64*jj})
		VPMULLW(hw[1], hi, p)
		VMOVDQU8(p, Mem{Base: wvs, Disp: 64 * (jj + 8)})
		VPMULLW(lw[1], hi, p)
		VMOVDQU8(p, Mem{Base: wvs, Disp: 1024 + 64*(jj+8)})
	}
	ADDQ(U8(128), sp)
	ADDQ(U8(32), ws)
	ADDQ(U32(2048), wvs)
	DECQ(steps)
	JNZ(LabelRef(fn + "_step"))
	ADDQ(U32(q4kBlk), w)
	ADDQ(U32(k4Bytes), wv)
	DECQ(nb)
	JNZ(LabelRef(fn + "_block"))
	Label(fn + "_done")
	VZEROUPPER()
	RET()
}

// kType is what the dot kernels of one weight type differ in: the
// prepared block's size, the tile products of a block and the float step.
type kType struct {
	name     string
	blkBytes int
	// tiles runs the tile products of the block at bPtr (quants at aPtr,
	// bsums at bsPtr) and stores the C tiles to scratch at scP.
	tiles func(aPtr, bPtr, bsPtr, nStr, s64, bsStr, scP reg.Register)
	// scales are the offsets in the prepared block of its float32 scale
	// vectors (16 rows each), which dot loads for float.
	scales []int
	// float applies the float step of token m to acc, with the block's
	// scales sv and the token's at scP+dgOff+4m.
	float func(m int, acc reg.VecVirtual, sv []reg.VecVirtual, scP reg.Register, sign reg.VecVirtual)
}

var q4k = &kType{name: "Q4_K", blkBytes: k4Bytes, tiles: tilesQ4K, scales: []int{k4D, k4DMin}, float: floatQ4K}

// tilesQ4K: tiles 0 C_h, 1 C_l, 2 C_1 then C_2, 3 the quants (k×64), 4 the
// bsums (k×32), 5 and 6 h and l (16×64), 7 the mins (8×64).
func tilesQ4K(aPtr, bPtr, bsPtr, nStr, s64, bsStr, scP reg.Register) {
	amxenc.TileZero(0)
	amxenc.TileZero(1)
	amxenc.TileZero(2)
	amxenc.TileLoad(4, Mem{Base: bsPtr, Index: bsStr, Scale: 1})
	amxenc.TileLoad(7, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: k4Lo})
	amxenc.TDPBUSD(2, 4, 7)
	for s := range 4 {
		amxenc.TileLoad(3, Mem{Base: aPtr, Index: nStr, Scale: 1, Disp: 64 * s})
		amxenc.TileLoad(5, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: 2048 * s})
		amxenc.TDPBSSD(0, 3, 5)
		amxenc.TileLoad(6, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: 2048*s + 1024})
		amxenc.TDPBSSD(1, 3, 6)
		if s == 0 {
			amxenc.TileStore(Mem{Base: scP, Index: s64, Scale: 1, Disp: c1}, 2)
			amxenc.TileZero(2)
			amxenc.TileLoad(7, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: k4Hi})
			amxenc.TDPBSSD(2, 4, 7)
		}
	}
	amxenc.TileStore(Mem{Base: scP, Index: s64, Scale: 1, Disp: c2}, 2)
	amxenc.TileStore(Mem{Base: scP, Index: s64, Scale: 1, Disp: cH}, 0)
	amxenc.TileStore(Mem{Base: scP, Index: s64, Scale: 1, Disp: cL}, 1)
}

// floatQ4K: isum = 8*C_h + C_l, msum = C_1 + 256*C_2;
// acc = fma(dw*d, float32(isum), acc); acc = fma(-(dmin*d), float32(msum), acc).
func floatQ4K(m int, a reg.VecVirtual, sv []reg.VecVirtual, scP reg.Register, sign reg.VecVirtual) {
	x, s := ZMM(), ZMM()
	VPSLLD(U8(3), Mem{Base: scP, Disp: cH + 64*m}, x)
	VPADDD(Mem{Base: scP, Disp: cL + 64*m}, x, x)
	VCVTDQ2PS(x, x)
	VMULPS_BCST(Mem{Base: scP, Disp: dgOff + 4*m}, sv[0], s)
	VFMADD231PS(x, s, a)
	y, t := ZMM(), ZMM()
	VPSLLD(U8(8), Mem{Base: scP, Disp: c2 + 64*m}, y)
	VPADDD(Mem{Base: scP, Disp: c1 + 64*m}, y, y)
	VCVTDQ2PS(y, y)
	VMULPS_BCST(Mem{Base: scP, Disp: dgOff + 4*m}, sv[1], t)
	VXORPS(sign, t, t)
	VFMADD231PS(y, t, a)
}

var q6k = &kType{name: "Q6_K", blkBytes: k6Bytes, tiles: tilesQ6K, scales: []int{k6D}, float: floatQ6K}

// tilesQ6K: tiles 0..2 C_0..C_2, 3 and 4 the quants (k×64), 5..7 the
// digit tiles (16×64).
func tilesQ6K(aPtr, bPtr, _, nStr, s64, _, scP reg.Register) {
	for i := range 3 {
		amxenc.TileZero(i)
	}
	for s := range 4 {
		a := 3 + s%2
		amxenc.TileLoad(a, Mem{Base: aPtr, Index: nStr, Scale: 1, Disp: 64 * s})
		for i := range 3 {
			amxenc.TileLoad(5+i, Mem{Base: bPtr, Index: s64, Scale: 1, Disp: 3072*s + 1024*i})
			amxenc.TDPBSSD(i, a, 5+i)
		}
	}
	for i := range 3 {
		amxenc.TileStore(Mem{Base: scP, Index: s64, Scale: 1, Disp: 1024 * i}, i)
	}
}

// floatQ6K: isum = C_0 + 8*C_1 + 64*C_2; acc = fma(dw*d, float32(isum), acc).
func floatQ6K(m int, a reg.VecVirtual, sv []reg.VecVirtual, scP reg.Register, _ reg.VecVirtual) {
	x, y, s := ZMM(), ZMM(), ZMM()
	VPSLLD(U8(3), Mem{Base: scP, Disp: 1024 + 64*m}, x)
	VPSLLD(U8(6), Mem{Base: scP, Disp: 2048 + 64*m}, y)
	VPADDD(Mem{Base: scP, Disp: 64 * m}, x, x)
	VPADDD(y, x, x)
	VCVTDQ2PS(x, x)
	VMULPS_BCST(Mem{Base: scP, Disp: dgOff + 4*m}, sv[0], s)
	VFMADD231PS(x, s, a)
}

// prepQ6K generates amxPrepQ6_K(wv, w []byte, rb, nr, nb int): the
// prepared blocks (k6Bytes each) of the nb super-blocks of the 16 rows at
// w (row r at r*rb; rows from nr on repeat row nr-1).
//
// Each signed sub-block scale sc (16 elements) is split into three
// digits, sc = e0 + 8*e1 + 64*e2 with e0, e1 in -3..4 and e2 in -2..2, so
// that every e*(qw-32) lies in -128..124, a signed byte; digit tile i of
// K-step s holds e_i*(qw-32) in TDPBSSD's B layout, and isum = C_0 +
// 8*C_1 + 64*C_2 exactly (|C_i| <= 256*128*128 = 2^22).
func prepQ6K() {
	fn := "amxPrepQ6_K"
	// Not NOSPLIT: the digits' stack buffer is over the nosplit limit.
	TEXT(fn, 0, "func(wv []byte, w []byte, rb, nr, nb int)")
	Pragma("noescape")
	Doc(fn + " writes the prepared super-blocks of 16 rows of Q6_K (see _asm/amxk).")
	// The digits of sub-block j at 192j + 64i, as (e, e) int16 words per row.
	dig := AllocLocal(16 * 3 * 64)
	wv := Load(Param("wv").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	nb := Load(Param("nb"), GP64())
	off := rowOffsets()
	nib, k32, lo8 := ZMM(), ZMM(), ZMM()
	VMOVDQU8(cNib, nib)
	VMOVDQU8(c32, k32)
	VMOVDQU8(cLo8, lo8)

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	Label(fn + "_block")
	mask := K()
	gather := func(base reg.Register, disp int) reg.VecVirtual {
		z := ZMM()
		KXNORW(mask, mask, mask)
		VPXORD(z, z, z)
		VPGATHERDD(Mem{Base: base, Index: off, Scale: 1, Disp: disp}, mask, z)
		return z
	}
	{
		// d is the half at 208: the high half of the dword at 206 (a dword
		// at 208 would read past the block).
		z := gather(w, 206)
		y := YMM()
		VPSRLD(U8(16), z, z)
		VPMOVDW(z, y)
		VCVTPH2PS(y, z)
		VMOVUPS(z, Mem{Base: wv, Disp: k6D})
	}
	for g := range 4 {
		z := gather(w, 192+4*g)
		for t := range 4 {
			j := 4*g + t
			sc, e, r := ZMM(), ZMM(), ZMM()
			if t < 3 {
				VPSLLD(U8(24-8*t), z, sc)
				VPSRAD(U8(24), sc, sc)
			} else {
				VPSRAD(U8(24), z, sc)
			}
			// e0 = ((sc+3)&7) - 3, r = (sc-e0)>>3, e1 = ((r+3)&7) - 3, e2 = (r-e1)>>3.
			for i := range 2 {
				VPADDD_BCST(cD3, sc, e)
				VPANDD_BCST(cD7, e, e)
				VPSUBD_BCST(cD3, e, e)
				VPSUBD(e, sc, r)
				VPSRAD(U8(3), r, r)
				VPSHUFB(cWord16, e, e)
				VMOVDQU32(e, dig.Offset(192*j+64*i))
				sc = r
				if i == 1 {
					VPSHUFB(cWord16, r, r)
					VMOVDQU32(r, dig.Offset(192*j+128))
				} else {
					r = ZMM()
				}
			}
		}
	}
	// The quants: element 128h + 32c + l (c < 4, l < 32) is
	//   c = 0: ql[64h+l] & 15    | (qh[32h+l]    & 3) << 4
	//   c = 1: ql[64h+32+l] & 15 | (qh[32h+l]>>2 & 3) << 4
	//   c = 2: ql[64h+l] >> 4    | (qh[32h+l]>>4 & 3) << 4
	//   c = 3: ql[64h+32+l] >> 4 | (qh[32h+l]>>6 & 3) << 4
	// in sub-block 8h + 2c + l/16, and in K-step s = 2h + c/2, B row
	// l/4 + 8*(c%2). One pass per h and l/16 (t) does rows l/4 = 4t..4t+3.
	qlp, qhp, out, dp := GP64(), GP64(), GP64(), GP64()
	hs, ts := GP64(), GP64()
	MOVQ(w, qlp)
	LEAQ(Mem{Base: w, Disp: 128}, qhp)
	MOVQ(wv, out)
	LEAQ(dig, dp)
	MOVQ(U32(2), hs)
	Label(fn + "_h")
	MOVQ(U32(2), ts)
	Label(fn + "_t")
	for r := range 4 {
		a, b, q := gather(qlp, 4*r), gather(qlp, 32+4*r), gather(qhp, 4*r)
		a4, b4 := ZMM(), ZMM()
		VPSRLD(U8(4), a, a4)
		VPSRLD(U8(4), b, b4)
		var v [4]reg.VecVirtual
		for c, src := range []reg.VecVirtual{a, b, a4, b4} {
			h := ZMM()
			VPANDD(cQ6H[c], q, h)
			switch c {
			case 0:
				VPSLLD(U8(4), h, h)
			case 1:
				VPSLLD(U8(2), h, h)
			case 3:
				VPSRLD(U8(2), h, h)
			}
			// src&15 | h (h holds bits 4 and 5 only).
			VPTERNLOGD(U8(0xe4), nib, h, src)
			VPSUBB(k32, src, src)
			v[c] = src
		}
		for c, u := range v {
			// Digit tile i: e_i*u per byte, two VPMULLW by the (e, e) words
			// (even bytes, odd bytes), merged.
			ev, od := ZMM(), ZMM()
			VPANDD(lo8, u, ev)
			VPANDND(u, lo8, od)
			j := 2 * c // sub-block 8h + t + 2c, dp at 8h + t
			s := c / 2
			row := r + 8*(c%2)
			for i := range 3 {
				pe, po := ZMM(), ZMM()
				VPMULLW(Mem{Base: dp, Disp: 192*j + 64*i}, ev, pe)
				VPMULLW(Mem{Base: dp, Disp: 192*j + 64*i}, od, po)
				VPTERNLOGD(U8(0xe4), lo8, po, pe)
				VMOVDQU8(pe, Mem{Base: out, Disp: 3072*s + 1024*i + 64*row})
			}
		}
	}
	// Next t: l/4 four rows on, the digits a sub-block on.
	ADDQ(U8(16), qlp)
	ADDQ(U8(16), qhp)
	ADDQ(U32(4*64), out)
	ADDQ(U32(192), dp)
	DECQ(ts)
	JNZ(LabelRef(fn + "_t"))
	// Next h: from t = 2 to the next half (ql 64 on, qh 32, steps 2, sub-blocks 8).
	ADDQ(U8(64-32), qlp)
	ADDQ(U32(6144-512), out)
	ADDQ(U32(192*(8-2)), dp)
	DECQ(hs)
	JNZ(LabelRef(fn + "_h"))

	ADDQ(U32(q6kBlk), w)
	ADDQ(U32(k6Bytes), wv)
	DECQ(nb)
	JNZ(LabelRef(fn + "_block"))
	Label(fn + "_done")
	VZEROUPPER()
	RET()
}

// dot generates amxDot<type>_k(dst []float32, ldd int, q []int8, d
// []float32, bs []int16, nb, ng, nr int, wv, cfg, sc []byte): ng groups of
// k tokens (group g's token m at q[(g*k+m)*256*nb:], d[(g*k+m)*nb:] and
// bs[(g*k+m)*16*nb:] (Q4_K only), its outputs at dst[(g*k+m)*ldd:] for rows r < nr)
// against the prepared rows wv. cfg is the tile configuration of k
// tokens; sc, 64-byte aligned, holds scratchBytes of scratch.
func dot(k int, t *kType) {
	fn := fmt.Sprintf("amxDot%s_%d", t.name, k)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, q []int8, d []float32, bs []int16, nb, ng, nr int, wv, cfg, sc []byte)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes groups of %d tokens against 16 prepared %s rows (see _asm/amxk).", fn, k, t.name))
	var (
		aPtr  = reg.RAX // A tiles: the group's quants of block b
		bPtr  = reg.RBX // prepared block b
		bsPtr = reg.RCX // A tile: the group's bsums of block b
		nStr  = reg.RDX // quants' row stride, 256*nb
		s64   = reg.RSI // B's and C's row stride, 64
		bsStr = reg.RDI // bsums' row stride, 32*nb
		dPtr  = reg.R8  // the group's scales of block b
		cnt   = reg.R9  // blocks left in the lane
		scP   = reg.R10 // scratch
		lane  = reg.R11 // lane, 0..7
		tmp   = reg.R12
		ng    = reg.R13 // groups left
		dstP  = reg.R14 // the group's outputs
		accP  = reg.R15 // the lane's sums in scratch
	)
	qg, dg, bsg := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	Load(Param("cfg").Base(), aPtr)
	amxenc.LDTILECFG(aPtr)
	Load(Param("sc").Base(), scP)
	Load(Param("nb"), tmp)
	MOVQ(tmp, nStr)
	SHLQ(U8(8), nStr)
	MOVQ(tmp, bsStr)
	SHLQ(U8(5), bsStr)
	MOVQ(U32(64), s64)
	// The gather indexes of the group's block scales: 4*nb*m.
	dIdx := ZMM()
	SHLQ(U8(2), tmp)
	VPBROADCASTD(tmp.As32(), dIdx)
	VPMULLD(cIota, dIdx, dIdx)
	// The row mask of the stores.
	rmask := K()
	MOVQ(U32(1), aPtr)
	Load(Param("nr"), reg.RCX)
	SHLQ(reg.CL, aPtr)
	DECQ(aPtr)
	KMOVW(aPtr.As32(), rmask)
	sign := ZMM()
	VMOVDQU32(cSign, sign)

	Load(Param("q").Base(), tmp)
	MOVQ(tmp, qg)
	Load(Param("d").Base(), tmp)
	MOVQ(tmp, dg)
	Load(Param("bs").Base(), tmp)
	MOVQ(tmp, bsg)
	Load(Param("dst").Base(), dstP)
	Load(Param("ng"), ng)

	acc := make([]reg.VecVirtual, k)
	for m := range acc {
		acc[m] = ZMM()
	}
	Label(fn + "_group")
	XORQ(lane, lane)
	LEAQ(Mem{Base: scP, Disp: accOff}, accP)
	Label(fn + "_lane")
	for _, a := range acc {
		VPXORD(a, a, a)
	}
	// cnt = ceil((nb - lane) / 8) blocks lane, lane+8, ...
	Load(Param("nb"), cnt)
	SUBQ(lane, cnt)
	JLE(LabelRef(fn + "_laneDone"))
	ADDQ(U8(7), cnt)
	SHRQ(U8(3), cnt)
	MOVQ(lane, aPtr)
	SHLQ(U8(8), aPtr)
	ADDQ(qg, aPtr)
	IMUL3Q(U32(t.blkBytes), lane, bPtr)
	Load(Param("wv").Base(), tmp)
	ADDQ(tmp, bPtr)
	MOVQ(lane, bsPtr)
	SHLQ(U8(5), bsPtr)
	ADDQ(bsg, bsPtr)
	MOVQ(lane, dPtr)
	SHLQ(U8(2), dPtr)
	ADDQ(dg, dPtr)

	Label(fn + "_block")
	t.tiles(aPtr, bPtr, bsPtr, nStr, s64, bsStr, scP)
	// The group's activation scales of block b, d[m*nb + b] for m < k.
	{
		dm := K()
		dv := ZMM()
		MOVL(U32(1<<k-1), tmp.As32())
		KMOVW(tmp.As32(), dm)
		VPXORD(dv, dv, dv)
		VPGATHERDD(Mem{Base: dPtr, Index: dIdx, Scale: 1}, dm, dv)
		VMOVUPS(dv, Mem{Base: scP, Disp: dgOff})
	}
	sv := make([]reg.VecVirtual, len(t.scales))
	for i, o := range t.scales {
		sv[i] = ZMM()
		VMOVUPS(Mem{Base: bPtr, Disp: o}, sv[i])
	}
	for m, a := range acc {
		t.float(m, a, sv, scP, sign)
	}
	ADDQ(U32(8*256), aPtr)
	ADDQ(U32(8*t.blkBytes), bPtr)
	ADDQ(U32(8*32), bsPtr)
	ADDQ(U8(8*4), dPtr)
	DECQ(cnt)
	JNZ(LabelRef(fn + "_block"))

	Label(fn + "_laneDone")
	for m, a := range acc {
		VMOVUPS(a, Mem{Base: accP, Disp: 64 * m})
	}
	ADDQ(U32(laneBytes), accP)
	INCQ(lane)
	CMPQ(lane, U8(8))
	JL(LabelRef(fn + "_lane"))

	// The fixed tree over the lanes, per token.
	LEAQ(Mem{Base: scP, Disp: accOff}, accP)
	MOVQ(dstP, aPtr)
	Load(Param("ldd"), bPtr)
	SHLQ(U8(2), bPtr)
	avx512.LaneTrees(accP, laneBytes, k, aPtr, bPtr, rmask)
	// Next group: k tokens on.
	IMUL3Q(U32(k), bPtr, tmp)
	ADDQ(tmp, dstP)
	IMUL3Q(U32(k), nStr, tmp)
	ADDQ(tmp, qg)
	IMUL3Q(U32(k), bsStr, tmp)
	ADDQ(tmp, bsg)
	Load(Param("nb"), tmp)
	IMUL3Q(U32(4*k), tmp, tmp)
	ADDQ(tmp, dg)
	DECQ(ng)
	JNZ(LabelRef(fn + "_group"))
	amxenc.TILERELEASE()
	VZEROUPPER()
	RET()
}
