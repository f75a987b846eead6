package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// splitShape is the (rows, tokens) of the F16 tile kernel that computes
// the two halves of the accumulators one after the other.
var splitShape = [2]int{4, 6}

// tileF16Split generates the F16 tile kernel of nr rows against nt tokens
// that runs over the row twice: first lanes acc[0..15] of every output
// (the first 16 of each 32 elements), then acc[16..31]. The lanes are
// independent chains, so this is the same computation as tileF16's, but
// with one ZMM accumulator per output at a time it holds twice the
// outputs, and each converted weight vector feeds twice the FMAs. Between
// the passes each output keeps acc[j]+acc[j+8] (j < 8) on the stack.
func tileF16Split(nr, nt int) {
	fn := fmt.Sprintf("avx512Tile%dx%dF16", nr, nt)
	TEXT(fn, 0, "func(dst []float32, ldd int, w []byte, rb int, x []float32, n int)")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s is the float rule of the package doc for %d rows of n F16", fn, nr),
		fmt.Sprintf("weights (row r at w[r*rb:]) against %d tokens (AVX-512F): token t's", nt),
		fmt.Sprintf("activation is x[n*t:n*(t+1)]. It computes exactly, with len(w) >= %d*rb+2*n,", nr-1),
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
		"It makes two passes over the first n32 elements: acc[0..15] of every",
		"output (elements i with i%32 < 16), one ZMM accumulator each, whose",
		"acc[j]+acc[j+8] it keeps on the stack, then acc[16..31]. Each group of",
		"16 weights of a row is converted once for every token. When",
		"n%32 != 0, dst first holds the heads, reduce32(&acc), then their sums",
		"with s.",
	)
	half := AllocLocal(32 * nr * nt)
	hm := func(r, t int) Mem { return half.Offset(32 * (r*nt + t)) }

	wp := Load(Param("w").Base(), GP64())
	rb := Load(Param("rb"), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("n"), GP64())
	xs := GP64()
	MOVQ(n, xs)
	SHLQ(U8(2), xs) // 4*n bytes a token
	wb := bases(wp, rb, nr)
	xb := bases(xp, xs, nt)
	wm := func(r, off int) Mem { return strided(wb, rb, r, off) }
	xm := func(t, off int) Mem { return strided(xb, xs, t, off) }
	advance := func(dw, dx int) {
		for _, b := range wb {
			ADDQ(U32(dw), b)
		}
		for _, b := range xb {
			ADDQ(U32(dx), b)
		}
	}

	done := fn + "_done"
	for h := range 2 {
		acc := make([][]reg.VecVirtual, nr)
		for r := range acc {
			acc[r] = make([]reg.VecVirtual, nt)
			for t := range acc[r] {
				acc[r][t] = ZMM()
				zero(acc[r][t])
			}
		}
		loop, end := fmt.Sprintf("%s_loop%d", fn, h), fmt.Sprintf("%s_end%d", fn, h)
		n32 := GP64()
		MOVQ(n, n32)
		SHRQ(U8(5), n32)
		JZ(LabelRef(end))
		loopLabel(loop)
		for t := range nt {
			PREFETCHT0(xm(t, tilePrefetch+64*h))
		}
		wv := make([]reg.VecVirtual, nr)
		for r := range wv {
			wv[r] = loadF16x16(wm(r, 32*h))
		}
		for t := range nt {
			xv := ZMM()
			VMOVUPS(xm(t, 64*h), xv)
			for r := range nr {
				VFMADD231PS(xv, wv[r], acc[r][t])
			}
		}
		advance(64, 128)
		DECQ(n32)
		JNZ(LabelRef(loop))
		Label(end)
		for t := range nt {
			for r := range nr {
				// y_j = acc[j] + acc[j+8] (pass 0) or acc[j+16] + acc[j+24].
				a := acc[r][t]
				y := YMM()
				VEXTRACTF64X4(U8(1), a, y)
				VADDPS(y, a.AsY(), y)
				if h == 0 {
					VMOVUPS(y, hm(r, t))
				} else {
					h0 := YMM()
					VMOVUPS(hm(r, t), h0)
					VADDPS(y, h0, h0) // r_j
					VMOVUPS(h0, hm(r, t))
				}
			}
		}
		if h == 0 {
			// Back to the start of the rows for the second pass.
			back := GP64()
			MOVQ(n, back)
			ANDQ(I32(-32), back) // n32 elements
			SHLQ(U8(1), back)
			for _, b := range wb {
				SUBQ(back, b)
			}
			SHLQ(U8(1), back)
			for _, b := range xb {
				SUBQ(back, b)
			}
		}
	}

	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	dp := GP64()
	MOVQ(dst, dp)
	for t := range nt {
		for r := range nr {
			y := YMM()
			VMOVUPS(hm(r, t), y)
			head := tree8(y)
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
	tailLoop := fn + "_tailloop"
	Label(tailLoop)
	for r := range nr {
		s := loadF16(wm(r, 0))
		for t := range nt {
			VFMADD231SS(xm(t, 0), s, tl[r][t])
		}
	}
	advance(2, 4)
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
