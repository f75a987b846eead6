package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

// tileQ8_0 generates avx2TileNQ8_0: Q8_0's row rule (kernels/doc.go, one
// accumulator taking each block's whole integer dot in order, as
// avx2DotQ8_0 computes it) for nr rows against nt tokens in Q8's own
// layout. Each weight block is loaded, its absolute values taken and its
// scale converted once for all the tokens; per token it costs VPSIGNB,
// VPMADDUBSW and VPMADDWD, and the tokens' eight partial sums each are
// then added up together (three VPHADDDs and one add give the four
// tokens' block dots in the lanes of one XMM), so that one VCVTDQ2PS,
// VMULPS and FMA do the float step of every token, token t in lane t.
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
	acc := XMM() // token t's sum in lane t
	VXORPS(acc, acc, acc)
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
	dw := avx2.LoadF16(Mem{Base: bp})
	var p [4]reg.VecVirtual
	for t := range p {
		p[t] = YMM()
		if t >= nt {
			VPXOR(p[t], p[t], p[t])
			continue
		}
		VMOVDQU(tok(qp, qs, qs3, t, 0), p[t])
		VPSIGNB(x, p[t], p[t])
		VPMADDUBSW(p[t], ax, p[t]) // pair sums up to 2*128*127
		VPMADDWD(ones, p[t], p[t])
	}
	// {t0 01, t0 23, t1 01, t1 23 | t0 45, t0 67, t1 45, t1 67}, and
	// the same of tokens 2 and 3; then each token's four quarter sums
	// in both halves, and their sum (every sum exact: |isum| < 2^20).
	VPHADDD(p[1], p[0], p[0])
	VPHADDD(p[3], p[2], p[2])
	VPHADDD(p[2], p[0], p[0])
	hi := XMM()
	VEXTRACTI128(U8(1), p[0], hi)
	s4 := p[0].AsX()
	VPADDD(hi, s4, s4)
	VCVTDQ2PS(s4, s4)
	// dw_b*d_b of token t in lane t (exact: two float16 values).
	db := XMM()
	VMOVSS(tok(dp, ds, ds3, 0, 0), db)
	for t := 1; t < nt; t++ {
		VINSERTPS(U8(t<<4), tok(dp, ds, ds3, t, 0), db, db)
	}
	VBROADCASTSS(dw, dw)
	VMULPS(dw, db, db)
	VFMADD231PS(s4, db, acc)
	ADDQ(U8(34), bp)
	ADDQ(U8(32), qp)
	ADDQ(U8(4), dp)
	DECQ(left)
	JNZ(LabelRef(fn + "_block"))

	Label(fn + "_sum")
	out := GP64()
	MOVQ(dst, out)
	for t := range nt {
		if t == 0 {
			VMOVSS(acc, Mem{Base: out})
		} else {
			VEXTRACTPS(U8(t), acc, Mem{Base: out})
		}
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
