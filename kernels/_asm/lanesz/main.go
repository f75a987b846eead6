// Command lanesz generates kernels/lanesz_amd64.s and
// kernels/lanesz_amd64_stubs.go, the AVX-512 (F, BW, VNNI) tile kernels
// of package kernels for the Q8_0 weight type, with avo. Run it through go
// generate in kernels/ (see lanesz_amd64.go); CI regenerates and fails on
// a diff.
//
// Q8_0's row rule (kernels/doc.go) is one float accumulator per output,
// taking each block's whole integer dot in order. These kernels put 16
// weight rows in the 16 lanes of a ZMM, which makes every step a vector
// instruction over 16 outputs with nothing to shuffle:
//
//   - The rows come prepared (amxPrepQ8_0 and amxPrep16Q8_0 of _asm/amx):
//     per block, eight ZMMs W_j whose dword r holds quants 4j..4j+3 of
//     row r plus 128 (unsigned), and the rows' 16 scales as float32s.
//   - For token m and block b, eight VPDPBUSDs, of W_j with the token's
//     quants 4j..4j+3 broadcast from memory, add up isum_b + 128*(the
//     token's block sum) in every row's dword; they start from the
//     negation of that offset, which the packed activation carries
//     (kernels.packLanes), so the sum is exactly isum_b. VCVTDQ2PS and
//     one FMA by dw_b*d_b (one VMULPS) then update row r's accumulator.
//   - After the last block, the 16 results are stored under the row mask.
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

// maxTokens is the most tokens one kernel takes: two accumulators each
// (the integer sum of the block, the float sum), 16 of the 32 vector
// registers at eight.
const maxTokens = 8

func main() {
	ConstraintExpr("amd64,!purego")
	for k := 1; k <= maxTokens; k++ {
		kernel(k)
	}
	Generate()
}

// kernel generates avx512LanesQ8_0_k(dst []float32, ldd int, q []int8, ts,
// nb, nr int, wv []byte, dws []float32, pf []byte): k tokens, token m's
// packed activation at q[m*ts:] (kernels.packLanes: 40 bytes a block, the
// 32 quants, the int32 offset, the float32 scale), against 16 prepared
// rows (wv: 512 bytes a block; dws: 16 float32 a block), row r < nr of
// token m to dst[m*ldd+r]. It also asks for the nb 34-byte blocks at pf to
// come into L2 (a row the next prepare reads), one cache line a block.
func kernel(k int) {
	fn := fmt.Sprintf("avx512LanesQ8_0_%d", k)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, q []int8, ts, nb, nr int, wv []byte, dws []float32, pf []byte)")
	Pragma("noescape")
	Doc(fmt.Sprintf("%s computes %d tokens against 16 prepared Q8_0 rows (see _asm/lanesz).", fn, k))

	qp := Load(Param("q").Base(), GP64())
	ts := Load(Param("ts"), GP64())
	ts3 := GP64() // 3*ts
	LEAQ(Mem{Base: ts, Index: ts, Scale: 2}, ts3)
	var qp4 reg.GPVirtual // token 4's activation, with more than four tokens
	if k > 4 {
		qp4 = GP64()
		LEAQ(Mem{Base: qp, Index: ts, Scale: 4}, qp4)
	}
	nb := Load(Param("nb"), GP64())
	wv := Load(Param("wv").Base(), GP64())
	dws := Load(Param("dws").Base(), GP64())
	pf := Load(Param("pf").Base(), GP64())

	// tok returns token m's operand at disp in its current block.
	tok := func(m, disp int) Mem {
		if m < 4 {
			return avx2.Token(qp, ts, ts3, m, disp)
		}
		return avx2.Token(qp4, ts, ts3, m-4, disp)
	}

	acc := make([]reg.VecVirtual, k)
	for m := range acc {
		acc[m] = ZMM()
		VPXORD(acc[m], acc[m], acc[m])
	}

	TESTQ(nb, nb)
	JZ(LabelRef(fn + "_done"))
	avx2.LoopLabel(fn + "_block")
	PREFETCHT1(Mem{Base: pf})
	is := make([]reg.VecVirtual, k)
	for m := range is {
		is[m] = ZMM()
		VPBROADCASTD(tok(m, 32), is[m])
	}
	for j := range 8 {
		w := ZMM()
		VMOVDQU64(Mem{Base: wv, Disp: 64 * j}, w)
		for m := range k {
			VPDPBUSD_BCST(tok(m, 4*j), w, is[m])
		}
	}
	// dw_b*d_b for every row, per token (exact: two float16 values).
	dw := ZMM()
	VMOVUPS(Mem{Base: dws}, dw)
	for m := range k {
		ds := ZMM()
		VMULPS_BCST(tok(m, 36), dw, ds)
		VCVTDQ2PS(is[m], is[m])
		VFMADD231PS(is[m], ds, acc[m])
	}
	ADDQ(U32(40), qp)
	if k > 4 {
		ADDQ(U32(40), qp4)
	}
	ADDQ(U32(512), wv)
	ADDQ(U32(64), dws)
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
		VMOVUPS(acc[m], mask, Mem{Base: dst})
		if m+1 < k {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}
