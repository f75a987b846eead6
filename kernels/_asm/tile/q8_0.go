package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

// tileQ8_0 generates avx2TileNQ8_0: Q8_0's row rule (kernels/doc.go, eight
// lanes of four products, as avx2DotQ8_0 computes it) for nr rows against
// nt tokens in Q8's own layout. Each weight block is loaded, its absolute
// values taken and its scale converted once for all the tokens; per token
// the block costs VPSIGNB, VPMADDUBSW, VPMADDWD, VCVTDQ2PS, VMULPS and the
// lane FMA.
func tileQ8_0(nt int) {
	fn := fmt.Sprintf("avx2Tile%dQ8_0", nt)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, nb int)")
	Pragma("noescape")
	tokens := "tokens"
	if nt == 1 {
		tokens = "token"
	}
	Doc(
		fmt.Sprintf("%s is the Q8_0 row rule of the package doc for nr rows of nb", fn),
		fmt.Sprintf("blocks (row r at w[r*rb:]) against %d %s (token t's quants at q[32*nb*t:],", nt, tokens),
		"its block scales at d[nb*t:]): it writes dst[t*ldd+r] with avx2DotQ8_0's bits.",
	)
	wp := Load(Param("w").Base(), GP64())
	rb := Load(Param("rb"), GP64())
	nr := Load(Param("nr"), GP64())
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	nbp := Load(Param("nb"), GP64())
	qs := GP64() // token stride of q: 32*nb
	MOVQ(nbp, qs)
	SHLQ(U8(5), qs)
	ds := GP64() // of d: 4*nb
	MOVQ(nbp, ds)
	SHLQ(U8(2), ds)
	var qs3, ds3 reg.GPVirtual
	if nt == 4 {
		qs3, ds3 = GP64(), GP64()
		LEAQ(Mem{Base: qs, Index: qs, Scale: 2}, qs3)
		LEAQ(Mem{Base: ds, Index: ds, Scale: 2}, ds3)
	}
	tok := avx2.Token
	ones := YMM()
	VMOVDQU(cOnes16, ones)

	Label(fn + "_row")
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	bp := GP64()
	MOVQ(wp, bp)
	acc := make([]reg.VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
	}
	left := GP64()
	MOVQ(nbp, left)
	TESTQ(left, left)
	JZ(LabelRef(fn + "_sum"))
	loopLabel(fn + "_block")
	PREFETCHT0(Mem{Base: bp, Disp: quantPrefetch})
	x := YMM()
	VMOVDQU(Mem{Base: bp, Disp: 2}, x)
	ax := YMM()
	VPABSB(x, ax)
	h := XMM()
	VPBROADCASTW(Mem{Base: bp}, h)
	dw := YMM()
	VCVTPH2PS(h, dw)
	for t := range nt {
		p := YMM()
		VMOVDQU(tok(qp, qs, qs3, t, 0), p)
		VPSIGNB(x, p, p)
		VPMADDUBSW(p, ax, p) // pair sums up to 2*128*127
		VPMADDWD(ones, p, p)
		VCVTDQ2PS(p, p)
		db := YMM()
		VBROADCASTSS(tok(dp, ds, ds3, t, 0), db)
		VMULPS(dw, db, db)
		VFMADD231PS(p, db, acc[t])
	}
	ADDQ(U8(34), bp)
	ADDQ(U8(32), qp)
	ADDQ(U8(4), dp)
	DECQ(left)
	JNZ(LabelRef(fn + "_block"))

	Label(fn + "_sum")
	out := GP64()
	MOVQ(dst, out)
	for t, a := range acc {
		r := hsumF32(a)
		VMOVSS(r, Mem{Base: out})
		if t+1 < nt {
			ADDQ(ldd, out)
		}
	}
	ADDQ(U8(4), dst)
	ADDQ(rb, wp)
	DECQ(nr)
	JNZ(LabelRef(fn + "_row"))
	VZEROUPPER()
	RET()
}
