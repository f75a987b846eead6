package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// tilePrefetch is the tile kernels' software prefetch distance, in bytes
// of every token's activations ahead of the loop's position (the weights
// of a tile are in cache by then, read once for every token).
const tilePrefetch = 1024

// maxTileRows is the most weight rows an F16 tile kernel computes per
// call.
const maxTileRows = 4

// tileTokens returns the most tokens a tile kernel of nr rows takes: its
// 2*nr*nt accumulators, nr converted weight vectors and one activation
// vector (none for one row, which fuses the activations from memory)
// must fit in the 32 ZMM registers. One row stops at 12 tokens.
func tileTokens(nr int) int {
	if nr == 1 {
		return 12
	}
	return (32 - nr - 1) / (2 * nr)
}

// tileShapes lists the (rows, tokens) of the generated tile kernels.
func tileShapes() [][2]int {
	var s [][2]int
	for nr := 1; nr <= maxTileRows; nr++ {
		for nt := 1; nt <= tileTokens(nr); nt++ {
			s = append(s, [2]int{nr, nt})
		}
	}
	return s
}

// tileF16 generates the F16 tile kernel of nr rows against nt tokens: each
// group of 16 weights of every row is converted to float32 once and fused
// into every token's accumulators of that row (and each group of 16
// activations, once loaded, into every row's).
func tileF16(nr, nt int) {
	wt := f16Weights
	fn := fmt.Sprintf("avx512Tile%dx%dF16", nr, nt)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, rb int, x []float32, n int)")
	Pragma("noescape")
	rows, tokens, wlen := "rows", "tokens", fmt.Sprintf("%d*rb+2*n", nr-1)
	if nr == 1 {
		rows, wlen = "row", "2*n"
	}
	if nt == 1 {
		tokens = "token"
	}
	Doc(
		fmt.Sprintf("%s is the float rule of the package doc for %d %s of n F16", fn, nr, rows),
		fmt.Sprintf("weights (row r at w[r*rb:]) against %d %s (AVX-512F): token t's", nt, tokens),
		fmt.Sprintf("activation is x[n*t:n*(t+1)]. It computes exactly, with len(w) >= %s,", wlen),
		fmt.Sprintf("len(x) >= %d*n and len(dst) > %d*ldd+%d (not checked):", nt, nt-1, nr-1),
		"",
		fmt.Sprintf("\tfor r := range %d {", nr),
		fmt.Sprintf("\t\tfor t := range %d {", nt),
		"\t\t\twr, xt := w[r*rb:], x[n*t:n*(t+1)]",
		"\t\t\tvar acc [32]float32",
		"\t\t\tn32 := n &^ 31",
		"\t\t\tfor i := range n32 {",
		"\t\t\t\tacc[i%32] = fma32(fp16(wr[2*i:]), xt[i], acc[i%32])",
		"\t\t\t}",
		"\t\t\tvar s float32",
		"\t\t\tfor i := n32; i < n; i++ {",
		"\t\t\t\ts = fma32(fp16(wr[2*i:]), xt[i], s)",
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r] = reduce32(&acc) + s",
		"\t\t}",
		"\t}",
		"",
		"Each group of 16 weights of a row is converted once for every token;",
		"the 32 lanes of an output are two ZMM accumulators, acc[0..15] and",
		"acc[16..31]. When n%32 != 0, dst first holds the heads, reduce32(&acc),",
		"then their sums with s.",
	)

	wp := Load(Param("w").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("n"), GP64())
	xs := GP64()
	MOVQ(n, xs)
	SHLQ(U8(2), xs) // 4*n bytes a token
	var rb reg.Register
	if nr > 1 {
		rb = Load(Param("rb"), GP64())
	}
	wb := bases(wp, rb, nr)
	xb := bases(xp, xs, nt)
	wm := func(r, off int) Mem { return strided(wb, rb, r, off) }
	xm := func(t, off int) Mem { return strided(xb, xs, t, off) }
	advance := func(dx int) {
		dw := dx / 4 * wt.size
		for _, b := range wb {
			ADDQ(U32(dw), b)
		}
		for _, b := range xb {
			ADDQ(U32(dx), b)
		}
	}

	acc := make([][][2]reg.VecVirtual, nr)
	for r := range acc {
		acc[r] = make([][2]reg.VecVirtual, nt)
		for t := range acc[r] {
			for h := range 2 {
				acc[r][t][h] = ZMM()
				zero(acc[r][t][h])
			}
		}
	}
	loop, tail, tailLoop, done := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_done"
	n32 := GP64()
	MOVQ(n, n32)
	SHRQ(U8(5), n32)
	JZ(LabelRef(tail))

	loopLabel(loop)
	for t := range nt {
		PREFETCHT0(xm(t, tilePrefetch))
		PREFETCHT0(xm(t, tilePrefetch+64))
	}
	for h := range 2 {
		wv := make([]reg.VecVirtual, nr)
		for r := range wv {
			wv[r] = wt.load16(wm(r, 16*wt.size*h))
		}
		for t := range nt {
			if nr == 1 {
				VFMADD231PS(xm(t, 64*h), wv[0], acc[0][t][h])
				continue
			}
			xv := ZMM()
			VMOVUPS(xm(t, 64*h), xv)
			for r := range nr {
				VFMADD231PS(xv, wv[r], acc[r][t][h])
			}
		}
	}
	advance(128)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	dp := GP64()
	MOVQ(dst, dp)
	for t := range nt {
		for r := range nr {
			head := reduce32(acc[r][t][0], acc[r][t][1])
			VMOVSS(head, Mem{Base: dp, Disp: 4 * r})
		}
		if t+1 < nt {
			ADDQ(ldd, dp)
		}
	}
	ANDQ(U8(31), n)
	JZ(LabelRef(done))
	tl := make([][]reg.VecVirtual, nr)
	for r := range tl {
		tl[r] = make([]reg.VecVirtual, nt)
		for t := range tl[r] {
			tl[r][t] = XMM()
			zero(tl[r][t])
		}
	}
	Label(tailLoop)
	for r := range nr {
		s := wt.load1(wm(r, 0))
		for t := range nt {
			VFMADD231SS(xm(t, 0), s, tl[r][t])
		}
	}
	advance(4)
	DECQ(n)
	JNZ(LabelRef(tailLoop))
	// dot = head + t, with the head as the first operand.
	MOVQ(dst, dp)
	for t := range nt {
		for r := range nr {
			h := XMM()
			VMOVSS(Mem{Base: dp, Disp: 4 * r}, h)
			VADDSS(tl[r][t], h, h)
			VMOVSS(h, Mem{Base: dp, Disp: 4 * r})
		}
		if t+1 < nt {
			ADDQ(ldd, dp)
		}
	}

	Label(done)
	VZEROUPPER()
	RET()
}
