package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"
)

// chainQ8_0 generates avx2DotQ8_0, the Q8_0 row rule of kernels/doc.go:
// one float accumulator taking each block's whole integer dot in order.
// VPMADDWD of VPMADDUBSW's pair sums gives eight int32 partial sums of a
// block, added up exactly to isum_b; the float step is then one scalar
// FMA per block, which makes the FMA's latency the chain's pace (4 cycles
// a block), still faster than memory brings the rows.
//
// It is generated twice: avx2DotQ8_0 prefetches into L1 quantPrefetch
// bytes ahead (best on Zen 3); avx512DotQ8_0, the AVX-512 path's (its
// instructions are AVX2's), into L1 at 1.5 KiB and L2 at 4 KiB ahead,
// like _asm/q8z's one-token kernels (best on Sapphire Rapids).
func chainQ8_0(fn string, prefetchL1, prefetchL2 int) {
	TEXT(fn, NOSPLIT, "func(w []byte, q []int8, d []float32) float32")
	Pragma("noescape")
	Doc(
		fn+" is the Q8_0 row rule of the package doc with len(d) blocks",
		"(AVX2, FMA, F16C; see _asm/q8chain.go). It computes exactly, with w and q at least 34*len(d)",
		"and 32*len(d) long (not checked) and every q[i] in [-127, 127]:",
		"",
		"\tvar acc float32",
		"\tfor b := range d {",
		"\t\twb := w[34*b:]",
		"\t\tvar s int32",
		"\t\tfor i := range 32 {",
		"\t\t\ts += int32(int8(wb[2+i])) * int32(q[32*b+i])",
		"\t\t}",
		"\t\tacc = fma32(float32(fp16(wb[0:])*d[b]), float32(s), acc)",
		"\t}",
		"\treturn acc",
	)
	wp := Load(Param("w").Base(), GP64())
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	ones := load(cOnes16)
	acc := XMM()
	VXORPS(acc, acc, acc)

	// sums returns block k's eight int32 partial sums.
	sums := func(k int) reg.VecVirtual {
		x := YMM()
		VMOVDQU(Mem{Base: wp, Disp: 34*k + 2}, x)
		p := signedDot(x, qp, 32*k) // pair sums up to 2*128*127
		VPMADDWD(ones, p, p)
		return p
	}
	block := func(k int) {
		s := avx2.HSumI32(sums(k))
		VCVTDQ2PS(s, s)
		dw := avx2.LoadF16(Mem{Base: wp, Disp: 34 * k})
		VMULSS(Mem{Base: dp, Disp: 4 * k}, dw, dw)
		VFMADD231SS(s, dw, acc)
	}

	// pair is block(0) and block(1) with their sums added up together:
	// VPHADDD leaves {b0 01, b0 23, b1 01, b1 23} in each half, the halves'
	// sum and a second VPHADDD each block's whole dot (lane 0: block 0,
	// lane 1: block 1), and one VCVTDQ2PS and VMULPS then serve both.
	pair := func() {
		p := [2]reg.VecVirtual{sums(0), sums(1)}
		VPHADDD(p[1], p[0], p[0])
		hi := XMM()
		VEXTRACTI128(U8(1), p[0], hi)
		s := p[0].AsX()
		VPADDD(hi, s, s)
		VPHADDD(s, s, s)
		VCVTDQ2PS(s, s)
		h := XMM()
		g := GP32()
		MOVWLZX(Mem{Base: wp}, g)
		VMOVD(g, h)
		VPINSRW(U8(1), Mem{Base: wp, Disp: 34}, h, h)
		dw := XMM()
		VCVTPH2PS(h, dw)
		db := XMM()
		VMOVSD(Mem{Base: dp}, db)
		VMULPS(db, dw, dw)
		VFMADD231SS(s, dw, acc)
		VMOVSHDUP(s, s)
		VMOVSHDUP(dw, dw)
		VFMADD231SS(s, dw, acc)
	}

	loop, tail, done := fn+"_loop2", fn+"_tail", fn+"_done"
	n2 := GP64()
	MOVQ(nb, n2)
	SHRQ(U8(1), n2)
	JZ(LabelRef(tail))
	loopLabel(loop)
	for o := 0; o < 2*34; o += 64 {
		PREFETCHT0(Mem{Base: wp, Disp: prefetchL1 + o})
		if prefetchL2 > 0 {
			PREFETCHT1(Mem{Base: wp, Disp: prefetchL2 + o})
		}
	}
	pair()
	ADDQ(U32(2*34), wp)
	ADDQ(U32(2*32), qp)
	ADDQ(U32(2*4), dp)
	DECQ(n2)
	JNZ(LabelRef(loop))

	Label(tail)
	ANDQ(U32(1), nb)
	JZ(LabelRef(done))
	block(0)

	Label(done)
	VZEROUPPER()
	Store(acc, ReturnIndex(0))
	RET()
}
