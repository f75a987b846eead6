// Command lanesz generates kernels/lanesz_amd64.s and
// kernels/lanesz_amd64_stubs.go, the AVX-512 (F, BW, VNNI) prefill kernels
// of package kernels for the Q8_0 weight type, with avo. Run it through go
// generate in kernels/ (see lanesz_amd64.go); CI regenerates and fails on
// a diff.
//
// Q8_0's row rule (kernels/doc.go) keeps eight float accumulators per
// output, lane j taking the sum of products 4j..4j+3 of every block in
// turn, so a block costs eight float steps per output and the integer
// sums may not be added up within a block. These kernels put 16 weight
// rows in the 16 lanes of a ZMM, which makes every step a vector
// instruction over 16 outputs with nothing to shuffle:
//
//   - The rows come prepared (amxPrepQ8_0 and amxPrep16Q8_0 of _asm/amx):
//     per block, eight ZMMs W_j whose dword r holds quants 4j..4j+3 of
//     row r plus 128 (unsigned), and the rows' 16 scales as float32s.
//   - For token m, block b and lane j, one VPDPBUSD of W_j with the token's quants 4j..4j+3 broadcast from
//     memory gives s_bj + 128*(those four quants' sum) in every row's
//     dword; it starts from the negation of that offset, which the packed
//     activation carries (kernels.packLanes), so the sum is exactly s_bj.
//     VCVTDQ2PS and one FMA by dw_b*d_b (one VMULPS a block, for all eight
//     lanes) then update row r's lane-j accumulator.
//   - After the last block, each token's eight accumulators go through the
//     fixed tree and the 16 results are stored under the row mask.
//
// Every output is exactly the Q8_0 row rule: the integer sums are exact
// and every float32 operation is the same IEEE operation, on the same
// operands, as in kernels/dot_generic.go.
package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

// maxTokens is the most tokens one kernel takes: 8 accumulators each, 24
// of the 32 vector registers at three.
const maxTokens = 3

func main() {
	ConstraintExpr("amd64,!purego")
	for k := 1; k <= maxTokens; k++ {
		kernel(k)
	}
	Generate()
}

// kernel generates avx512LanesQ8_0_k(dst []float32, ldd int, q []int8, ts,
// nb, nr int, wv []byte, dws []float32, d []float32, pf []byte): k tokens (token m's
// quants at q[m*ts:], 32 a block, and its offsets at q[m*ts+32*nb:], eight
// int32 a block; its block scales at d[m*nb:]) against 16 prepared rows
// (wv: 512 bytes a block; dws: 16 float32 a block), row r < nr of token m
// to dst[m*ldd+r]. It also asks for the nb 34-byte blocks at pf to come
// into L2 (a row the next prepare reads), one cache line a block.
func kernel(k int) {
	fn := fmt.Sprintf("avx512LanesQ8_0_%d", k)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, q []int8, ts, nb, nr int, wv []byte, dws []float32, d []float32, pf []byte)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes %d tokens against 16 prepared Q8_0 rows (see _asm/lanesz).", fn, k))

	qp := Load(Param("q").Base(), GP64())
	ts := Load(Param("ts"), GP64())
	nb := Load(Param("nb"), GP64())
	cx := GP64() // the offsets: q + 32*nb
	MOVQ(nb, cx)
	SHLQ(U8(5), cx)
	ADDQ(qp, cx)
	wv := Load(Param("wv").Base(), GP64())
	dws := Load(Param("dws").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	pf := Load(Param("pf").Base(), GP64())
	nb4 := GP64() // token m's scales at dp + m*nb4
	MOVQ(nb, nb4)
	SHLQ(U8(2), nb4)

	// tok returns token m's operand at base+disp (m < maxTokens = 3).
	tok := func(base, stride reg.Register, m, disp int) Mem {
		return avx2.Token(base, stride, nil, m, disp)
	}

	acc := make([][8]reg.VecVirtual, k)
	for m := range acc {
		for j := range acc[m] {
			acc[m][j] = ZMM()
			VPXORD(acc[m][j], acc[m][j], acc[m][j])
		}
	}

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	avx2.LoopLabel(fn + "_block")
	PREFETCHT1(Mem{Base: pf})
	// dw_b*d_b for every row, per token (exact: two float16 values).
	ds := make([]reg.VecVirtual, k)
	dw := ZMM()
	VMOVUPS(Mem{Base: dws}, dw)
	for m := range ds {
		ds[m] = ZMM()
		VMULPS_BCST(tok(dp, nb4, m, 0), dw, ds[m])
	}
	for j := range 8 {
		w := ZMM()
		VMOVDQU64(Mem{Base: wv, Disp: 64 * j}, w)
		for m := range k {
			s := ZMM()
			VPBROADCASTD(tok(cx, ts, m, 4*j), s)
			VPDPBUSD_BCST(tok(qp, ts, m, 4*j), w, s)
			VCVTDQ2PS(s, s)
			VFMADD231PS(s, ds[m], acc[m][j])
		}
	}
	ADDQ(U32(32), qp)
	ADDQ(U32(32), cx)
	ADDQ(U32(512), wv)
	ADDQ(U32(64), dws)
	ADDQ(U32(4), dp)
	ADDQ(U32(34), pf)
	DECQ(nb)
	JNZ(LabelRef(fn + "_block"))

	Label(fn + "_done")
	// The row mask of the stores.
	mask := K()
	one, t := GP64(), GP64()
	MOVQ(U32(1), one)
	nr := Load(Param("nr"), GP64())
	SHLXQ(nr, one, t)
	DECQ(t)
	KMOVW(t.As32(), mask)
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for m := range k {
		a := &acc[m]
		VADDPS(a[4], a[0], a[0])
		VADDPS(a[6], a[2], a[2])
		VADDPS(a[5], a[1], a[1])
		VADDPS(a[7], a[3], a[3])
		VADDPS(a[2], a[0], a[0])
		VADDPS(a[3], a[1], a[1])
		VADDPS(a[1], a[0], a[0])
		VMOVUPS(a[0], mask, Mem{Base: dst})
		if m+1 < k {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}
