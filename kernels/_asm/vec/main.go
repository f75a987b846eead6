// Command vec generates kernels/vec_amd64.s and kernels/vec_amd64_stubs.go,
// the AVX2 + FMA + F16C vector kernels of package kernels (attention's
// weighted sum, Exp, SiLU, SwiGLU, the pieces of Softmax and RMSNorm),
// with avo. Run it through go generate in kernels/ (see vec_amd64.go); CI
// regenerates and fails on a diff.
//
// Every kernel computes exactly the canonical order of kernels/math.go,
// softmax.go, norm.go and attention.go: each lane performs the same IEEE
// float32 operations, on the same operands and in the same order, as the
// generic Go code, so the results are the same bits. Elementwise kernels
// run eight lanes at a time and then the same instruction sequence on one
// lane (the low lane of an XMM register) for the last len%8 elements.
package main

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/stratanet/strata/kernels/_asm/avx2"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	declareConstants()

	axpy(false)
	axpy(true)
	expKernel(expPlain)
	expKernel(expSub)
	expKernel(expSiLU)
	expKernel(expSwiGLU)
	scaleKernel(false)
	scaleKernel(true)
	sumKernel()
	meanSquareKernel()
	maxKernel()
	scoresKernel(false)
	scoresKernel(true)
	weightedSumKernel(false)
	weightedSumKernel(true)

	Generate()
}

// Constants of Exp, as in kernels/math.go; each is a vector of eight equal
// float32 (or int32) lanes.
const (
	expLog2e  = 0x1.715476p+0
	expLn2Hi  = 0x1.62e430p-1
	expLn2Lo  = -0x1.05c610p-29
	expC2     = 0x1.fffffep-2
	expC3     = 0x1.55547ep-3
	expC4     = 0x1.555638p-5
	expC5     = 0x1.1246e6p-7
	expC6     = 0x1.6c350ep-10
	expMaxArg = 89
	expMinArg = -104
)

var (
	cLog2e, cNegLn2Hi, cNegLn2Lo  Mem
	cC2, cC3, cC4, cC5, cC6, cOne Mem
	cMaxArg, cMinArg, cInf, cSign Mem
	cBias                         Mem // int32 127
	cNegInf                       Mem
)

// vecConst declares a 32-byte constant of eight copies of the 32-bit word u.
func vecConst(name string, u uint32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, u)
	binary.LittleEndian.PutUint32(b[4:], u)
	for i := 0; i < 32; i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b)))
	}
	return m
}

func f32Const(name string, f float32) Mem { return vecConst(name, math.Float32bits(f)) }

func declareConstants() {
	cLog2e = f32Const("veclog2e", expLog2e)
	cNegLn2Hi = f32Const("vecnegln2hi", -expLn2Hi)
	cNegLn2Lo = f32Const("vecnegln2lo", -expLn2Lo)
	cC2 = f32Const("vecc2", expC2)
	cC3 = f32Const("vecc3", expC3)
	cC4 = f32Const("vecc4", expC4)
	cC5 = f32Const("vecc5", expC5)
	cC6 = f32Const("vecc6", expC6)
	cOne = f32Const("vecone", 1)
	cMaxArg = f32Const("vecmaxarg", expMaxArg)
	cMinArg = f32Const("vecminarg", expMinArg)
	cInf = f32Const("vecinf", float32(math.Inf(1)))
	cNegInf = f32Const("vecneginf", float32(math.Inf(-1)))
	cSign = vecConst("vecsign", 0x80000000)
	cBias = vecConst("vecbias", 127)
}

// loopLabel is the shared 32-byte aligned loop label.
var loopLabel = avx2.LoopLabel

// width is the form of an elementwise step: eight lanes in a YMM, or one
// lane in the low lane of an XMM.
type width struct {
	vec   func() reg.VecVirtual
	lanes int
	load  func(m Mem) reg.VecVirtual // float32 lanes from memory
	store func(v reg.VecVirtual, m Mem)
}

var (
	wide = width{
		vec:   func() reg.VecVirtual { return YMM() },
		lanes: 8,
		load: func(m Mem) reg.VecVirtual {
			y := YMM()
			VMOVUPS(m, y)
			return y
		},
		store: func(v reg.VecVirtual, m Mem) { VMOVUPS(v, m) },
	}
	narrow = width{
		vec:   func() reg.VecVirtual { return XMM() },
		lanes: 1,
		load: func(m Mem) reg.VecVirtual {
			x := XMM()
			VMOVSS(m, x)
			return x
		},
		store: func(v reg.VecVirtual, m Mem) { VMOVSS(v, m) },
	}
)

// of is the register of y (a YMM) that a step of width w uses.
func (w width) of(y reg.VecVirtual) reg.Register {
	if w.lanes == 1 {
		return y.AsX()
	}
	return y
}

// elementwise emits the loop over n elements: body(w, i) handles w.lanes
// elements at byte offset 4*i (i is a GP64 element index, advanced here).
func elementwise(fn string, n reg.Register, body func(w width, i reg.GPVirtual)) {
	i := GP64()
	XORQ(i, i)
	n8 := GP64()
	MOVQ(n, n8)
	ANDQ(I32(-8), n8)
	loop, tail, tailLoop, done := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_done"
	CMPQ(i, n8)
	JGE(LabelRef(tail))
	loopLabel(loop)
	body(wide, i)
	ADDQ(U8(8), i)
	CMPQ(i, n8)
	JL(LabelRef(loop))
	Label(tail)
	CMPQ(i, n)
	JGE(LabelRef(done))
	Label(tailLoop)
	body(narrow, i)
	INCQ(i)
	CMPQ(i, n)
	JL(LabelRef(tailLoop))
	Label(done)
	VZEROUPPER()
	RET()
}

// at is the element i of the float32 (or, with size 2, uint16) array at base.
func at(base, i reg.Register, size uint8) Mem { return Mem{Base: base, Index: i, Scale: size} }

// broadcast loads the float32 argument name into every lane of a YMM.
func broadcast(name string) reg.VecVirtual {
	y := YMM()
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	VBROADCASTSS(b.Addr, y)
	return y
}

func axpy(f16 bool) {
	fn, typ, conv := "avx2AxpyF32", "[]float32", "x[i]"
	if f16 {
		fn, typ, conv = "avx2AxpyF16", "[]uint16", "quant.FP16ToFP32(x[i])"
	}
	TEXT(fn, NOSPLIT, fmt.Sprintf("func(dst []float32, x %s, a float32)", typ))
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s computes exactly, with len(x) >= len(dst) (not checked):", fn),
		"",
		"\tfor i := range dst {",
		fmt.Sprintf("\t\tdst[i] = fma32(a, %s, dst[i])", conv),
		"\t}",
	)
	dp := Load(Param("dst").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	a := broadcast("a")
	elementwise(fn, n, func(w width, i reg.GPVirtual) {
		d := w.load(at(dp, i, 4))
		var v reg.VecVirtual
		if f16 {
			v = w.vec()
			if w.lanes == 8 {
				VCVTPH2PS(at(xp, i, 2), v)
			} else {
				r := GP32()
				MOVWLZX(at(xp, i, 2), r)
				VMOVD(r, v)
				VCVTPH2PS(v, v)
			}
		} else {
			v = w.load(at(xp, i, 4))
		}
		VFMADD231PS(v, w.of(a), d) // d = a*v + d
		w.store(d, at(dp, i, 4))
	})
}

// The kinds of Exp kernel.
const (
	expPlain  = iota // dst[i] = Exp(x[i])
	expSub           // dst[i] = Exp(x[i] - m)
	expSiLU          // dst[i] = silu(x[i])
	expSwiGLU        // dst[i] = silu(x[i]) * up[i]
)

// exp emits y = Exp(x) in the canonical order of kernels.Exp, lane by lane.
// x is left unchanged.
func exp(w width, x reg.VecVirtual) reg.VecVirtual {
	k := w.vec()
	VMULPS(cLog2e, x, k)  // x*log2e
	VROUNDPS(U8(0), k, k) // roundToNearestEven
	r := w.vec()
	VMOVAPS(x, r)
	VFMADD231PS(cNegLn2Hi, k, r) // r = fma(k, -ln2Hi, x)
	VFMADD231PS(cNegLn2Lo, k, r) // r = fma(k, -ln2Lo, r)
	p := w.vec()
	VMOVUPS(cC6, p)
	VFMADD213PS(cC5, r, p) // p = fma(c6, r, c5)
	VFMADD213PS(cC4, r, p)
	VFMADD213PS(cC3, r, p)
	VFMADD213PS(cC2, r, p)
	VFMADD213PS(cOne, r, p)
	VFMADD213PS(cOne, r, p)
	k1 := w.vec()
	VCVTPS2DQ(k, k1) // exact: k is an integer
	k2 := w.vec()
	VPSRAD(U8(1), k1, k2) // k2 = k >> 1 (k1 of the doc)
	VPSUBD(k2, k1, k1)    // k1 = k - (k >> 1) (k2 of the doc)
	VPADDD(cBias, k2, k2)
	VPSLLD(U8(23), k2, k2)
	VPADDD(cBias, k1, k1)
	VPSLLD(U8(23), k1, k1)
	VMULPS(k2, p, p) // p * 2^(k>>1), exact
	VMULPS(k1, p, p)
	// Special cases: x > 89 → +Inf, x < -104 → +0, NaN → x.
	m := w.vec()
	VCMPPS(U8(0x1e), cMaxArg, x, m) // GT_OQ
	VBLENDVPS(m, cInf, p, p)
	VCMPPS(U8(0x11), cMinArg, x, m) // LT_OQ
	VANDNPS(p, m, p)
	VCMPPS(U8(3), x, x, m) // UNORD_Q
	VBLENDVPS(m, x, p, p)
	return p
}

func expKernel(kind int) {
	var fn, sig string
	var doc []string
	switch kind {
	case expPlain:
		fn, sig = "avx2ExpF32", "func(dst, x []float32)"
		doc = []string{"\t\tdst[i] = Exp(x[i])"}
	case expSub:
		fn, sig = "avx2ExpSubF32", "func(dst, x []float32, m float32)"
		doc = []string{"\t\tdst[i] = Exp(x[i] - m)"}
	case expSiLU:
		fn, sig = "avx2SiLUF32", "func(dst, x []float32)"
		doc = []string{"\t\tdst[i] = x[i] / (1 + Exp(-x[i])) // silu"}
	case expSwiGLU:
		fn, sig = "avx2SwiGLUF32", "func(dst, x, up []float32)"
		doc = []string{"\t\tdst[i] = x[i] / (1 + Exp(-x[i])) * up[i] // silu(x[i]) rounded, then the product"}
	}
	TEXT(fn, NOSPLIT, sig)
	Pragma("noescape")
	lens := "len(x) >= len(dst)"
	if kind == expSwiGLU {
		lens = "len(x), len(up) >= len(dst)"
	}
	d := []string{
		fmt.Sprintf("%s computes exactly, with %s (not checked):", fn, lens),
		"",
		"\tfor i := range dst {",
	}
	d = append(d, doc...)
	d = append(d, "\t}", "", "with Exp in the canonical order of kernels.Exp, eight lanes at a time.")
	Doc(d...)
	dp := Load(Param("dst").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	var up reg.Register
	if kind == expSwiGLU {
		up = Load(Param("up").Base(), GP64())
	}
	var mv reg.VecVirtual
	if kind == expSub {
		mv = broadcast("m")
	}
	elementwise(fn, n, func(w width, i reg.GPVirtual) {
		x := w.load(at(xp, i, 4))
		switch kind {
		case expPlain:
			w.store(exp(w, x), at(dp, i, 4))
		case expSub:
			VSUBPS(w.of(mv), x, x)
			w.store(exp(w, x), at(dp, i, 4))
		case expSiLU, expSwiGLU:
			nx := w.vec()
			VXORPS(cSign, x, nx) // -x
			e := exp(w, nx)
			VADDPS(cOne, e, e) // 1 + e
			y := w.vec()
			VDIVPS(e, x, y) // x / (1 + e)
			if kind == expSwiGLU {
				u := w.load(at(up, i, 4))
				VMULPS(u, y, y)
			}
			w.store(y, at(dp, i, 4))
		}
	})
}

// scaleKernel emits dst[i] = x[i] * s, or with mul dst[i] = (x[i] * s) * w[i].
func scaleKernel(mul bool) {
	fn, sig, lens, expr := "avx2ScaleF32", "func(dst, x []float32, s float32)", "len(x) >= len(dst)", "x[i] * s"
	if mul {
		fn, sig, lens, expr = "avx2ScaleMulF32", "func(dst, x, w []float32, s float32)", "len(x), len(w) >= len(dst)", "float32(x[i]*s) * w[i]"
	}
	TEXT(fn, NOSPLIT, sig)
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s computes exactly, with %s (not checked):", fn, lens),
		"",
		"\tfor i := range dst {",
		fmt.Sprintf("\t\tdst[i] = %s", expr),
		"\t}",
	)
	dp := Load(Param("dst").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	var wp reg.Register
	if mul {
		wp = Load(Param("w").Base(), GP64())
	}
	s := broadcast("s")
	elementwise(fn, n, func(w width, i reg.GPVirtual) {
		x := w.load(at(xp, i, 4))
		VMULPS(w.of(s), x, x)
		if mul {
			v := w.load(at(wp, i, 4))
			VMULPS(v, x, x)
		}
		w.store(x, at(dp, i, 4))
	})
}

// sumKernel emits the float rule's sum (kernels.sumVec).
func sumKernel() {
	fn := "avx2SumF32"
	TEXT(fn, NOSPLIT, "func(x []float32) float32")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s is the float rule's sum of x (kernels.sumVec). It computes exactly:", fn),
		"",
		"\tvar acc [32]float32",
		"\tn32 := len(x) &^ 31",
		"\tfor i := range n32 {",
		"\t\tacc[i%32] += x[i]",
		"\t}",
		"\tvar t float32",
		"\tfor i := n32; i < len(x); i++ {",
		"\t\tt += x[i]",
		"\t}",
		"\treturn reduce32(&acc) + t",
		"",
		"The 32 lanes are four YMM accumulators.",
	)
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	var acc [4]reg.VecVirtual
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	loop, tail, tailLoop, reduce := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_reduce"
	n32 := GP64()
	MOVQ(n, n32)
	SHRQ(U8(5), n32)
	JZ(LabelRef(tail))
	loopLabel(loop)
	for i := range acc {
		VADDPS(Mem{Base: xp, Disp: 32 * i}, acc[i], acc[i])
	}
	ADDQ(U32(128), xp)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	tl := XMM()
	VXORPS(tl, tl, tl)
	ANDQ(U8(31), n)
	JZ(LabelRef(reduce))
	Label(tailLoop)
	VADDSS(Mem{Base: xp}, tl, tl)
	ADDQ(U8(4), xp)
	DECQ(n)
	JNZ(LabelRef(tailLoop))

	Label(reduce)
	// r_j = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24]), then the tree.
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	lo := acc[0].AsX()
	hi := XMM()
	VEXTRACTF128(U8(1), acc[0], hi)
	VADDPS(hi, lo, lo) // b_j = a_j + a_{j+4}
	t := XMM()
	VMOVHLPS(lo, lo, t) // t0 = b2, t1 = b3
	VADDPS(t, lo, lo)   // c0 = b0 + b2, c1 = b1 + b3
	VMOVSHDUP(lo, t)    // t0 = c1
	VADDSS(t, lo, lo)   // c0 + c1
	VADDSS(tl, lo, lo)
	VZEROUPPER()
	Store(lo, ReturnIndex(0))
	RET()
}

// meanSquareKernel emits RMSNorm's mean of the squares (kernels.meanSquare):
// the eight float64 chains are two YMMs of four doubles, lanes 0..3 and
// 4..7.
func meanSquareKernel() {
	fn := "avx2MeanSquare"
	TEXT(fn, NOSPLIT, "func(x []float32) float32")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s is RMSNorm's mean of the squares of x (kernels.meanSquare).", fn),
		"It computes exactly, for len(x) > 0:",
		"",
		"	var s [8]float64",
		"	n8 := len(x) &^ 7",
		"	for i := range n8 {",
		"		s[i%8] += float64(float32(x[i] * x[i]))",
		"	}",
		"	ss := ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]))",
		"	for _, v := range x[n8:] {",
		"		ss += float64(float32(v * v))",
		"	}",
		"	return float32(ss / float64(len(x)))",
	)
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	lo, hi := YMM(), YMM()
	VXORPD(lo, lo, lo)
	VXORPD(hi, hi, hi)
	loop, reduce, tailLoop, done := fn+"_loop", fn+"_reduce", fn+"_tailloop", fn+"_done"
	n8 := GP64()
	MOVQ(n, n8)
	SHRQ(U8(3), n8)
	JZ(LabelRef(reduce))
	loopLabel(loop)
	v := YMM()
	VMOVUPS(Mem{Base: xp}, v)
	VMULPS(v, v, v)
	d := YMM()
	VCVTPS2PD(v.AsX(), d)
	VADDPD(d, lo, lo)
	h := XMM()
	VEXTRACTF128(U8(1), v, h)
	VCVTPS2PD(h, d)
	VADDPD(d, hi, hi)
	ADDQ(U8(32), xp)
	DECQ(n8)
	JNZ(LabelRef(loop))

	Label(reduce)
	VADDPD(hi, lo, lo) // t_j = s_j + s_{j+4}
	t := XMM()
	VEXTRACTF128(U8(1), lo, t)
	VADDPD(t, lo.AsX(), t) // (t0+t2, t1+t3)
	r := XMM()
	VUNPCKHPD(t, t, r)
	VADDSD(r, t, r) // (t0+t2) + (t1+t3)
	m := GP64()
	MOVQ(n, m)
	ANDQ(U8(7), m)
	JZ(LabelRef(done))
	Label(tailLoop)
	sq := XMM()
	VMOVSS(Mem{Base: xp}, sq)
	VMULSS(sq, sq, sq)
	VCVTSS2SD(sq, sq, sq)
	VADDSD(sq, r, r)
	ADDQ(U8(4), xp)
	DECQ(m)
	JNZ(LabelRef(tailLoop))
	Label(done)
	nd := XMM()
	VCVTSI2SDQ(n, nd, nd)
	VDIVSD(nd, r, r)
	res := XMM()
	VCVTSD2SS(r, res, res)
	VZEROUPPER()
	Store(res, ReturnIndex(0))
	RET()
}

// maxKernel emits the maximum of x.
func maxKernel() {
	fn := "avx2MaxF32"
	TEXT(fn, NOSPLIT, "func(x []float32) float32")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s returns the largest element of x, -Inf when x is empty. With no NaN", fn),
		"in x it is the value of",
		"",
		"\tm := float32(math.Inf(-1))",
		"\tfor _, v := range x {",
		"\t\tif v > m {",
		"\t\t\tm = v",
		"\t\t}",
		"\t}",
		"",
		"except that a zero result may have either sign.",
	)
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	var acc [4]reg.VecVirtual
	for i := range acc {
		acc[i] = YMM()
		VMOVUPS(cNegInf, acc[i])
	}
	loop, tail, tailLoop, reduce := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_reduce"
	n32 := GP64()
	MOVQ(n, n32)
	SHRQ(U8(5), n32)
	JZ(LabelRef(tail))
	loopLabel(loop)
	for i := range acc {
		VMAXPS(Mem{Base: xp, Disp: 32 * i}, acc[i], acc[i])
	}
	ADDQ(U32(128), xp)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	tl := XMM()
	VMOVUPS(cNegInf, tl)
	ANDQ(U8(31), n)
	JZ(LabelRef(reduce))
	Label(tailLoop)
	VMAXSS(Mem{Base: xp}, tl, tl)
	ADDQ(U8(4), xp)
	DECQ(n)
	JNZ(LabelRef(tailLoop))

	Label(reduce)
	VMAXPS(acc[1], acc[0], acc[0])
	VMAXPS(acc[3], acc[2], acc[2])
	VMAXPS(acc[2], acc[0], acc[0])
	lo := acc[0].AsX()
	hi := XMM()
	VEXTRACTF128(U8(1), acc[0], hi)
	VMAXPS(hi, lo, lo)
	t := XMM()
	VMOVHLPS(lo, lo, t)
	VMAXPS(t, lo, lo)
	VMOVSHDUP(lo, t)
	VMAXSS(t, lo, lo)
	VMAXSS(tl, lo, lo)
	VZEROUPPER()
	Store(lo, ReturnIndex(0))
	RET()
}

// elemType is a float32 or float16 (IEEE half) array element.
type elemType struct {
	name, goType, conv string // conv: element i of v as float32, for the doc
	size               uint8
	load8              func(m Mem) reg.VecVirtual
	load1              func(m Mem) reg.VecVirtual
}

var (
	f32Elem = elemType{"F32", "[]float32", "%s[%s]", 4,
		func(m Mem) reg.VecVirtual { y := YMM(); VMOVUPS(m, y); return y },
		func(m Mem) reg.VecVirtual { x := XMM(); VMOVSS(m, x); return x }}
	f16Elem = elemType{"F16", "[]uint16", "quant.FP16ToFP32(%s[%s])", 2,
		func(m Mem) reg.VecVirtual { y := YMM(); VCVTPH2PS(m, y); return y },
		func(m Mem) reg.VecVirtual {
			x := XMM()
			r := GP32()
			MOVWLZX(m, r)
			VMOVD(r, x)
			VCVTPH2PS(x, x)
			return x
		}}
)

func elemOf(f16 bool) elemType {
	if f16 {
		return f16Elem
	}
	return f32Elem
}

// scoresKernel emits attention's scores: one float-rule dot product of q
// with each of len(s) rows of k, stride elements apart, scaled.
func scoresKernel(f16 bool) {
	e := elemOf(f16)
	fn := "avx2Scores" + e.name
	TEXT(fn, NOSPLIT, fmt.Sprintf("func(s, q []float32, k %s, stride int, scale float32)", e.goType))
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s computes exactly, with len(k) >= (len(s)-1)*stride + len(q) (not checked):", fn),
		"",
		"\tfor j := range s {",
		"\t\tkj := k[j*stride : j*stride+len(q)]",
		"\t\tvar acc [32]float32",
		"\t\tn32 := len(q) &^ 31",
		"\t\tfor i := range n32 {",
		fmt.Sprintf("\t\t\tacc[i%%32] = fma32(%s, q[i], acc[i%%32])", fmt.Sprintf(e.conv, "kj", "i")),
		"\t\t}",
		"\t\tvar t float32",
		"\t\tfor i := n32; i < len(q); i++ {",
		fmt.Sprintf("\t\t\tt = fma32(%s, q[i], t)", fmt.Sprintf(e.conv, "kj", "i")),
		"\t\t}",
		"\t\ts[j] = float32((reduce32(&acc) + t) * scale)",
		"\t}",
		"",
		"that is, the float rule's dot product of q with each row (kernels.dotVec).",
	)
	sp := Load(Param("s").Base(), GP64())
	ns := Load(Param("s").Len(), GP64())
	qp := Load(Param("q").Base(), GP64())
	nq := Load(Param("q").Len(), GP64())
	kp := Load(Param("k").Base(), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(e.size/2), stride) // in bytes: size 4 <<2, size 2 <<1
	// The rows are a cache row apart (all heads' keys of a position): the
	// hardware prefetchers do not follow them across pages, so each row
	// asks for the one attnRowsAhead rows on.
	pfo := GP64()
	IMUL3Q(U8(attnRowsAhead), stride, pfo)
	sc := XMM()
	sb, err := Param("scale").Resolve()
	if err != nil {
		panic(err)
	}
	VMOVSS(sb.Addr, sc)
	done := fn + "_done"
	pfo1 := GP64() // row 1's row ahead, from row 0
	LEAQ(Mem{Base: pfo, Index: stride, Scale: 1}, pfo1)
	// body emits the dot products of r rows (kp, kp+stride, ...) with q
	// into s[0:r], each exactly as one row on its own; the rows' chains
	// are interleaved so that one's FMA latency hides behind the other's.
	body := func(r int) {
		sfx := fmt.Sprintf("_%d", r)
		wp, xp := GP64(), GP64()
		MOVQ(kp, wp)
		MOVQ(qp, xp)
		at := func(ri, disp int) Mem {
			if ri == 0 {
				return Mem{Base: wp, Disp: disp}
			}
			return Mem{Base: wp, Index: stride, Scale: 1, Disp: disp}
		}
		for ri := range r {
			for o := 0; o < 32*int(e.size)*4; o += 64 {
				m := Mem{Base: wp, Index: pfo, Scale: 1, Disp: o}
				if ri == 1 {
					m.Index = pfo1
				}
				PREFETCHT0(m)
			}
		}
		acc := make([][4]reg.VecVirtual, r)
		for ri := range acc {
			for i := range acc[ri] {
				acc[ri][i] = YMM()
				VXORPS(acc[ri][i], acc[ri][i], acc[ri][i])
			}
		}
		n32 := GP64()
		MOVQ(nq, n32)
		SHRQ(U8(5), n32)
		loop, tail, tailLoop, reduce := fn+"_loop"+sfx, fn+"_tail"+sfx, fn+"_tailloop"+sfx, fn+"_reduce"+sfx
		JZ(LabelRef(tail))
		Label(loop)
		for i := range 4 {
			for ri := range r {
				v := e.load8(at(ri, 8*int(e.size)*i))
				VFMADD231PS(Mem{Base: xp, Disp: 32 * i}, v, acc[ri][i])
			}
		}
		ADDQ(U32(32*int(e.size)), wp)
		ADDQ(U32(128), xp)
		DECQ(n32)
		JNZ(LabelRef(loop))
		Label(tail)
		tl := make([]reg.VecVirtual, r)
		for ri := range tl {
			tl[ri] = XMM()
			VXORPS(tl[ri], tl[ri], tl[ri])
		}
		n := GP64()
		MOVQ(nq, n)
		ANDQ(U8(31), n)
		JZ(LabelRef(reduce))
		Label(tailLoop)
		for ri := range r {
			v := e.load1(at(ri, 0))
			VFMADD231SS(Mem{Base: xp}, v, tl[ri])
		}
		ADDQ(U8(e.size), wp)
		ADDQ(U8(4), xp)
		DECQ(n)
		JNZ(LabelRef(tailLoop))
		Label(reduce)
		for ri := range r {
			a := acc[ri]
			VADDPS(a[1], a[0], a[0])
			VADDPS(a[3], a[2], a[2])
			VADDPS(a[2], a[0], a[0])
			lo := a[0].AsX()
			hi := XMM()
			VEXTRACTF128(U8(1), a[0], hi)
			VADDPS(hi, lo, lo)
			t := XMM()
			VMOVHLPS(lo, lo, t)
			VADDPS(t, lo, lo)
			VMOVSHDUP(lo, t)
			VADDSS(t, lo, lo)
			VADDSS(tl[ri], lo, lo) // head + t
			VMULSS(sc, lo, lo)     // * scale
			VMOVSS(lo, Mem{Base: sp, Disp: 4 * ri})
		}
	}
	pair, one := fn+"_pair", fn+"_one"
	CMPQ(ns, U8(2))
	JL(LabelRef(one))
	loopLabel(pair)
	body(2)
	ADDQ(U8(8), sp)
	LEAQ(Mem{Base: kp, Index: stride, Scale: 2}, kp)
	SUBQ(U8(2), ns)
	CMPQ(ns, U8(2))
	JGE(LabelRef(pair))
	Label(one)
	TESTQ(ns, ns)
	JZ(LabelRef(done))
	body(1)
	Label(done)
	VZEROUPPER()
	RET()
}

// attnRowsAhead is how many cache rows ahead the attention kernels
// prefetch.
const attnRowsAhead = 8

// weightedSumKernel emits attention's weighted sum of the value rows.
func weightedSumKernel(f16 bool) {
	e := elemOf(f16)
	fn := "avx2WeightedSum" + e.name
	TEXT(fn, NOSPLIT, fmt.Sprintf("func(out, w []float32, v %s, stride int)", e.goType))
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s computes exactly, with len(v) >= (len(w)-1)*stride + len(out) (not checked):", fn),
		"",
		"\tfor j := range w {",
		"\t\tfor d := range out {",
		fmt.Sprintf("\t\t\tout[d] = fma32(w[j], %s, out[d])", fmt.Sprintf(e.conv, "v", "j*stride+d")),
		"\t\t}",
		"\t}",
		"",
		"keeping 64, then 32, then 8, then 1 element(s) of out in registers across all j.",
	)
	op := Load(Param("out").Base(), GP64())
	no := Load(Param("out").Len(), GP64())
	wp := Load(Param("w").Base(), GP64())
	nw := Load(Param("w").Len(), GP64())
	vp := Load(Param("v").Base(), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(e.size/2), stride) // in bytes
	pfo := GP64()              // attnRowsAhead rows on (see scoresKernel)
	IMUL3Q(U8(attnRowsAhead), stride, pfo)
	done := fn + "_done"
	TESTQ(nw, nw)
	JZ(LabelRef(done))
	// tier emits the loop over chunks of lanes elements of out (regs
	// vectors of width lanes each), while at least lanes remain.
	tier := func(name string, regs, lanes int) {
		chunk, next, jloop := fn+"_"+name, fn+"_"+name+"_end", fn+"_"+name+"_j"
		Label(chunk)
		CMPQ(no, U32(regs*lanes))
		JL(LabelRef(next))
		acc := make([]reg.VecVirtual, regs)
		for i := range acc {
			if lanes == 8 {
				acc[i] = YMM()
				VMOVUPS(Mem{Base: op, Disp: 32 * i}, acc[i])
			} else {
				acc[i] = XMM()
				VMOVSS(Mem{Base: op}, acc[i])
			}
		}
		wj, vj, j := GP64(), GP64(), GP64()
		MOVQ(wp, wj)
		MOVQ(vp, vj)
		MOVQ(nw, j)
		Label(jloop)
		if lanes == 8 {
			for o := 0; o < regs*8*int(e.size); o += 64 {
				PREFETCHT0(Mem{Base: vj, Index: pfo, Scale: 1, Disp: o})
			}
		}
		a := YMM()
		VBROADCASTSS(Mem{Base: wj}, a)
		for i := range acc {
			var x reg.VecVirtual
			if lanes == 8 {
				x = e.load8(Mem{Base: vj, Disp: 8 * int(e.size) * i})
				VFMADD231PS(x, a, acc[i])
			} else {
				x = e.load1(Mem{Base: vj})
				VFMADD231PS(x, a.AsX(), acc[i])
			}
		}
		ADDQ(U8(4), wj)
		ADDQ(stride, vj)
		DECQ(j)
		JNZ(LabelRef(jloop))
		for i := range acc {
			if lanes == 8 {
				VMOVUPS(acc[i], Mem{Base: op, Disp: 32 * i})
			} else {
				VMOVSS(acc[i], Mem{Base: op})
			}
		}
		ADDQ(U32(4*regs*lanes), op)
		ADDQ(U32(int(e.size)*regs*lanes), vp)
		SUBQ(U32(regs*lanes), no)
		JMP(LabelRef(chunk))
		Label(next)
	}
	tier("x64", 8, 8) // eight independent chains cover an FMA's latency
	tier("x32", 4, 8)
	tier("x8", 1, 8)
	tier("x1", 1, 1)
	Label(done)
	VZEROUPPER()
	RET()
}
