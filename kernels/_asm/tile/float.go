package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// floatTokens is the most tokens an F16 tile kernel computes per call:
// four YMM accumulators a token.
const floatTokens = 3

// floatPrefetch is the row kernels' prefetch distance for float weights.
const floatPrefetch = 1024

// tileF16 generates the F16 tile kernel of nt tokens: each group of 32
// weights is converted to float32 once and fused into every token's 32
// lane accumulators.
func tileF16(nt int) {
	fn := fmt.Sprintf("avx2Tile%dF16", nt)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, x []float32, n int)")
	Pragma("noescape")
	tokens := "tokens"
	if nt == 1 {
		tokens = "token"
	}
	Doc(
		fmt.Sprintf("%s is the float rule of the package doc for one row of n F16", fn),
		fmt.Sprintf("weights against %d %s (AVX2, FMA, F16C): token t's activation is", nt, tokens),
		fmt.Sprintf("x[n*t:n*(t+1)]. It computes exactly, with len(w) >= 2*n, len(x) >= %d*n", nt),
		fmt.Sprintf("and len(dst) > %d*ldd (not checked):", nt-1),
		"",
		fmt.Sprintf("\tfor t := range %d {", nt),
		"\t\txt := x[n*t : n*(t+1)]",
		"\t\tvar acc [32]float32",
		"\t\tn32 := n &^ 31",
		"\t\tfor i := range n32 {",
		"\t\t\tacc[i%32] = fma32(fp16(w[2*i:]), xt[i], acc[i%32])",
		"\t\t}",
		"\t\tvar s float32",
		"\t\tfor i := n32; i < n; i++ {",
		"\t\t\ts = fma32(fp16(w[2*i:]), xt[i], s)",
		"\t\t}",
		"\t\tdst[t*ldd] = reduce32(&acc) + s",
		"\t}",
		"",
		"The 32 lanes of a token are four YMM accumulators.",
	)

	wp := Load(Param("w").Base(), GP64())
	xa := Load(Param("x").Base(), GP64())
	n := Load(Param("n"), GP64())
	xs := GP64()
	MOVQ(n, xs)
	SHLQ(U8(2), xs) // 4*n bytes a token
	xm := func(t, off int) Mem {
		m := Mem{Base: xa, Disp: off}
		if t > 0 {
			m.Index, m.Scale = xs, uint8(t) // t < 3
		}
		return m
	}
	acc := make([][4]reg.VecVirtual, nt)
	for t := range acc {
		for i := range acc[t] {
			acc[t][i] = YMM()
			VXORPS(acc[t][i], acc[t][i], acc[t][i])
		}
	}
	loop, tail, tailLoop, done := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_done"
	n32 := GP64()
	MOVQ(n, n32)
	SHRQ(U8(5), n32)
	JZ(LabelRef(tail))

	loopLabel(loop)
	prefetch(wp, 64, floatPrefetch)
	for i := range 4 {
		v := YMM()
		VCVTPH2PS(Mem{Base: wp, Disp: 16 * i}, v)
		for t := range nt {
			VFMADD231PS(xm(t, 32*i), v, acc[t][i])
		}
	}
	ADDQ(U32(64), wp)
	ADDQ(U32(128), xa)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	// r = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24]), then the tree,
	// for each token.
	head := make([]reg.Register, nt)
	for t := range nt {
		a := acc[t]
		VADDPS(a[1], a[0], a[0])
		VADDPS(a[3], a[2], a[2])
		VADDPS(a[2], a[0], a[0])
		head[t] = hsumF32(a[0])
	}
	tl := make([]reg.VecVirtual, nt)
	for t := range tl {
		tl[t] = XMM()
		VXORPS(tl[t], tl[t], tl[t])
	}
	ANDQ(U8(31), n)
	JZ(LabelRef(done))
	Label(tailLoop)
	v := loadF16(Mem{Base: wp})
	for t := range nt {
		VFMADD231SS(xm(t, 0), v, tl[t])
	}
	ADDQ(U8(2), wp)
	ADDQ(U8(4), xa)
	DECQ(n)
	JNZ(LabelRef(tailLoop))

	Label(done)
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for t := range nt {
		VADDSS(tl[t], head[t], head[t])
		VMOVSS(head[t], Mem{Base: dst})
		if t+1 < nt {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}
