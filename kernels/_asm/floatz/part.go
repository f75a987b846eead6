package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/gotypes"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The part kernels compute F16 matrix products of many tokens (prefill).
// The driver (tileF16Parts in kernels/floatz_amd64.go) first converts a
// tile's rows to float32 in the packed layout of packF16, then, for each
// group of up to partTokens tokens, for each part of the rows, runs one
// part kernel over every block of up to partRows rows: the group's
// activations of the part stay in L1 for all the blocks, and each
// output's 32 lane accumulators go to a state between the parts. Every
// output sees its elements in increasing order, so this is exactly the
// float rule.
const (
	partRows   = 4
	partTokens = 6
)

// packPrefetch is the part kernels' software prefetch distance, in bytes
// of packed weights ahead of the loop's position.
const packPrefetch = 512

// partTogether reports whether the part kernel of nr rows against nt
// tokens holds both halves of its outputs' accumulators at once: 2*nr*nt
// ZMMs, nr weight vectors and one activation vector in the 32 registers.
// Otherwise it runs over the part twice, first acc[0..15] of every output,
// then acc[16..31], with the first half in the state in between.
func partTogether(nr, nt int) bool { return 2*nr*nt+nr+1 <= 32 }

// packF16 generates the conversion of a part of nr F16 rows (row r at
// w[r*rb:], 32*steps weights each) to float32 in the layout of the part
// kernels: the 16 weights 32*s+16*h.. of row r at dst[16*((h*steps+s)*nr+r):]
// for each half h < 2 and step s < steps. A pass of a part kernel over one
// half reads them in order.
func packF16(nr int) {
	fn := fmt.Sprintf("avx512Pack%dF16", nr)
	TEXT(fn, NOSPLIT, "func(dst []float32, w []byte, rb int, steps int)")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s converts 32*steps F16 weights of each of %d rows (row r at", fn, nr),
		"w[r*rb:]) to float32, exactly, in the part kernels' layout (AVX-512F):",
		"",
		"\tfor h := range 2 {",
		"\t\tfor s := range steps {",
		fmt.Sprintf("\t\t\tfor r := range %d {", nr),
		"\t\t\t\tfor i := range 16 {",
		fmt.Sprintf("\t\t\t\t\tdst[16*((h*steps+s)*%d+r)+i] = fp16(w[r*rb+2*(32*s+16*h+i):])", nr),
		"\t\t\t\t}",
		"\t\t\t}",
		"\t\t}",
		"\t}",
		"",
		fmt.Sprintf("The operands are not checked: len(dst) >= %d*32*steps, len(w) >= %d*rb+64*steps.", nr, nr-1),
	)
	dp := Load(Param("dst").Base(), GP64())
	wp := Load(Param("w").Base(), GP64())
	var rb reg.Register
	if nr > 1 {
		rb = Load(Param("rb"), GP64())
	}
	steps := Load(Param("steps"), GP64())
	hs := GP64() // bytes of one half
	MOVQ(steps, hs)
	SHLQ(U8(6), hs)
	if nr > 1 {
		IMUL3Q(U32(nr), hs, hs)
	}
	wb := bases(wp, rb, nr)
	TESTQ(steps, steps)
	JZ(LabelRef(fn + "_done"))
	loopLabel(fn + "_loop")
	for r := range nr {
		z := ZMM()
		VMOVDQU64(strided(wb, rb, r, 0), z)
		lo := ZMM()
		VCVTPH2PS(z.AsY(), lo)
		VMOVUPS(lo, Mem{Base: dp, Disp: 64 * r})
		hi := YMM()
		VEXTRACTI64X4(U8(1), z, hi)
		hz := ZMM()
		VCVTPH2PS(hi, hz)
		VMOVUPS(hz, Mem{Base: dp, Index: hs, Scale: 1, Disp: 64 * r})
	}
	for _, b := range wb {
		ADDQ(U8(64), b)
	}
	ADDQ(U32(64*nr), dp)
	DECQ(steps)
	JNZ(LabelRef(fn + "_loop"))
	Label(fn + "_done")
	VZEROUPPER()
	RET()
}

// partF16 generates the part kernel of nr rows against nt tokens: blocks
// blocks of nr rows, one after the other, each as in the kernel's doc.
func partF16(nr, nt int) {
	fn := fmt.Sprintf("avx512Part%dx%dF16", nr, nt)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []float32, x []float32, n int, st []float32, steps int, flags int, wt []byte, rb int, blocks int)")
	Pragma("noescape")
	together := partTogether(nr, nt)
	how := []string{"It holds both halves of its outputs' accumulators in registers at once."}
	if !together {
		how = []string{
			"It makes two passes over the part: acc[0..15] of every output, which",
			"go to st, then acc[16..31].",
		}
	}
	Doc(append([]string{
		fmt.Sprintf("%s fuses a part of 32*steps elements of the rows of blocks", fn),
		fmt.Sprintf("blocks of %d rows into the float rule's lane accumulators of their", nr),
		fmt.Sprintf("outputs against %d tokens (AVX-512F). Block b's rows are at w[b*%d*n32:]", nt, nr),
		"in packF16's layout (n32 = n &^ 31); token t's activations, from the",
		fmt.Sprintf("part's first element, at x[t*n:]. Output (r, t) of block b, the dot of row %d*b+r", nr),
		fmt.Sprintf("with token t, keeps its acc[0..31] at st[32*((%d*b+r)*%d+t):] between the", nr, nt),
		"parts:",
		"",
		fmt.Sprintf("	acc := st[32*((%d*b+r)*%d+t):][:32] // zeros unless flags&1", nr, nt),
		"	for i := range 32 * steps {",
		"		acc[i%32] = fma32(wr[i], x[t*n+i], acc[i%32]) // wr: the row's weights",
		"	}",
		"",
		"With flags&2 the part is the rows' last, ending at n32: instead of",
		"writing acc back to st, it writes the output's dot, reduce32(&acc) + s",
		"with s the sequential fused tail of the last n%32 elements (x[t*n+32*steps:]",
		fmt.Sprintf("against the F16 weights at wt[(%d*b+r)*rb:]), to dst[t*ldd+%d*b+r] (first", nr, nr),
		"the head, then its sum with s). The operands are not checked.",
		"",
	}, how...)...)

	halves := [][]int{{0, 1}}
	if !together {
		halves = [][]int{{0}, {1}}
	}
	blk := fn + "_block"
	Label(blk)
	wp := Load(Param("w").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("n"), GP64())
	sp := Load(Param("st").Base(), GP64())
	xs := GP64()
	MOVQ(n, xs)
	SHLQ(U8(2), xs) // 4*n bytes a token
	xb := bases(xp, xs, nt)
	xm := func(t, off int) Mem { return strided(xb, xs, t, off) }
	sm := func(r, t, h int) Mem { return Mem{Base: sp, Disp: 128*(r*nt+t) + 64*h} }
	// In the together form, half 1 of a step is one half (hoff bytes) on.
	var hoff reg.Register
	if together {
		hoff = Load(Param("steps"), GP64())
		SHLQ(U8(6), hoff)
		if nr > 1 {
			IMUL3Q(U32(nr), hoff, hoff)
		}
	}
	wm := func(r, h int) Mem {
		m := Mem{Base: wp, Disp: 64 * r}
		if h == 1 && together {
			m.Index, m.Scale = hoff, 1
		}
		return m
	}

	var acc [][][2]reg.VecVirtual
	for pi, hs := range halves {
		lbl := fmt.Sprintf("%s_p%d", fn, pi)
		acc = make([][][2]reg.VecVirtual, nr)
		for r := range nr {
			acc[r] = make([][2]reg.VecVirtual, nt)
			for t := range nt {
				for _, h := range hs {
					acc[r][t][h] = ZMM()
				}
			}
		}
		// The accumulators from st (flags&1) or zero.
		flags := Load(Param("flags"), GP64())
		TESTQ(U32(1), flags)
		JZ(LabelRef(lbl + "_zero"))
		for r := range nr {
			for t := range nt {
				for _, h := range hs {
					VMOVUPS(sm(r, t, h), acc[r][t][h])
				}
			}
		}
		JMP(LabelRef(lbl + "_start"))
		Label(lbl + "_zero")
		for r := range nr {
			for t := range nt {
				for _, h := range hs {
					zero(acc[r][t][h])
				}
			}
		}
		Label(lbl + "_start")
		cnt := Load(Param("steps"), GP64())
		TESTQ(cnt, cnt)
		JZ(LabelRef(lbl + "_end"))
		loopLabel(lbl + "_loop")
		for _, h := range hs {
			for r := range nr {
				m := wm(r, h)
				m.Disp += packPrefetch
				if packPrefetch > 0 {
					PREFETCHT0(m)
				}
			}
		}
		for _, h := range hs {
			wv := make([]reg.VecVirtual, nr)
			for r := range nr {
				wv[r] = ZMM()
				VMOVUPS(wm(r, h), wv[r])
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
		ADDQ(U32(64*nr), wp)
		for _, b := range xb {
			ADDQ(U32(128), b)
		}
		DECQ(cnt)
		JNZ(LabelRef(lbl + "_loop"))
		Label(lbl + "_end")
		if pi+1 < len(halves) {
			// The first half to st; back to the part's activations (the
			// weights of the second half follow those of the first).
			for r := range nr {
				for t := range nt {
					VMOVUPS(acc[r][t][0], sm(r, t, 0))
				}
			}
			back := Load(Param("steps"), GP64())
			SHLQ(U8(7), back)
			for _, b := range xb {
				SUBQ(back, b)
			}
		}
	}

	next, last := fn+"_next", fn+"_last"
	flags := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags)
	JNZ(LabelRef(last))
	// Not the last part: the accumulators to st.
	for r := range nr {
		for t := range nt {
			for _, h := range halves[len(halves)-1] {
				VMOVUPS(acc[r][t][h], sm(r, t, h))
			}
		}
	}
	JMP(LabelRef(next))

	Label(last)
	// The heads, eight outputs at a time, in the order (t, r).
	type out struct{ r, t int }
	var outs []out
	for t := range nt {
		for r := range nr {
			outs = append(outs, out{r, t})
		}
	}
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	db := bases(dst, ldd, nt)
	dm := func(o out) Mem { return strided(db, ldd, o.t, 4*o.r) }
	for g := 0; g < len(outs); g += 8 {
		grp := outs[g:min(g+8, len(outs))]
		rs := make([]reg.VecVirtual, len(grp))
		for k, o := range grp {
			a0 := acc[o.r][o.t][0]
			if !together {
				a0 = ZMM()
				VMOVUPS(sm(o.r, o.t, 0), a0)
			}
			rs[k] = rvec(a0, acc[o.r][o.t][1])
		}
		heads := tree8x8(rs)
		storeLanes(heads, len(grp), func(k int) Mem { return dm(grp[k]) }, func(k int) bool {
			// Lanes k..k+3 are four consecutive rows of one token.
			return k+3 < len(grp) && grp[k].r == 0 && nr == 4
		})
	}
	n = Load(Param("n"), GP64())
	ANDQ(U8(31), n)
	JZ(LabelRef(next))
	wtp := Load(Param("wt").Base(), GP64())
	var rb reg.Register
	if nr > 1 {
		rb = Load(Param("rb"), GP64())
	}
	wb := bases(wtp, rb, nr)
	tl := make([][]reg.VecVirtual, nr)
	for r := range tl {
		tl[r] = make([]reg.VecVirtual, nt)
		for t := range tl[r] {
			tl[r][t] = XMM()
			zero(tl[r][t])
		}
	}
	Label(fn + "_tailloop")
	for r := range nr {
		s := loadF16(strided(wb, rb, r, 0))
		for t := range nt {
			VFMADD231SS(xm(t, 0), s, tl[r][t])
		}
	}
	for _, b := range wb {
		ADDQ(U8(2), b)
	}
	for _, b := range xb {
		ADDQ(U8(4), b)
	}
	DECQ(n)
	JNZ(LabelRef(fn + "_tailloop"))
	// dot = head + t, with the head as the first operand.
	for _, o := range outs {
		h := XMM()
		VMOVSS(dm(o), h)
		VADDSS(tl[o.r][o.t], h, h)
		VMOVSS(h, dm(o))
	}

	// The next block: its weights, state, outputs and tail weights.
	Label(next)
	step := func(p gotypes.Component, by reg.Register) {
		v := Load(p, GP64())
		ADDQ(by, v)
		Store(v, p)
	}
	bw := Load(Param("n"), GP64())
	ANDQ(I32(-32), bw)
	SHLQ(U8(2), bw) // 4*n32 bytes a row
	if nr > 1 {
		IMUL3Q(U32(nr), bw, bw)
	}
	step(Param("w").Base(), bw)
	bs := GP64()
	MOVQ(U32(128*nr*nt), bs)
	step(Param("st").Base(), bs)
	bd := GP64()
	MOVQ(U32(4*nr), bd)
	step(Param("dst").Base(), bd)
	bt := Load(Param("rb"), GP64())
	if nr > 1 {
		IMUL3Q(U32(nr), bt, bt)
	}
	step(Param("wt").Base(), bt)

	nb := Load(Param("blocks"), GP64())
	DECQ(nb)
	Store(nb, Param("blocks"))
	JNZ(LabelRef(blk))
	VZEROUPPER()
	RET()
}

// rvec returns the YMM r of the package doc's reduction of an output's
// accumulators a0 (acc[0..15]) and a1 (acc[16..31]):
// r_j = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24]). a0 and a1 are
// clobbered.
func rvec(a0, a1 reg.VecVirtual) reg.VecVirtual {
	h0, h1 := YMM(), YMM()
	VEXTRACTF64X4(U8(1), a0, h0)
	VADDPS(h0, a0.AsY(), h0) // acc[j] + acc[j+8]
	VEXTRACTF64X4(U8(1), a1, h1)
	VADDPS(h1, a1.AsY(), h1) // acc[j+16] + acc[j+24]
	VADDPS(h1, h0, h0)       // r_j
	return h0
}

// tree8x8 returns a YMM whose lane k holds the fixed tree
// ((r0+r4) + (r2+r6)) + ((r1+r5) + (r3+r7)) of the YMM rs[k], for up to
// eight rs (the lanes past len(rs) are garbage): the same operations, on
// the same operands, as tree8's, eight outputs at a time.
func tree8x8(rs []reg.VecVirtual) reg.VecVirtual {
	// Output k goes in at o[perm[k]], so that it comes out in lane k.
	perm := [8]int{0, 2, 4, 6, 1, 3, 5, 7}
	var o [8]reg.VecVirtual
	for k := range 8 {
		o[perm[k]] = rs[min(k, len(rs)-1)]
	}
	// s(A, B) = [A's r_j + r_{j+4} | B's], j < 4.
	var s [4]reg.VecVirtual
	for i := range 4 {
		a, b := o[2*i], o[2*i+1]
		lo, hi := YMM(), YMM()
		VSHUFF32X4(U8(0b00), b, a, lo)
		VSHUFF32X4(U8(0b11), b, a, hi)
		VADDPS(hi, lo, lo)
		s[i] = lo
	}
	// t(P, Q): per 128-bit lane, [P's s0+s2, s1+s3, Q's s0+s2, s1+s3].
	var t [2]reg.VecVirtual
	for i := range 2 {
		p, q := s[2*i], s[2*i+1]
		e, f := YMM(), YMM()
		VSHUFPS(U8(0x44), q, p, e) // p0 p1 q0 q1
		VSHUFPS(U8(0xEE), q, p, f) // p2 p3 q2 q3
		VADDPS(f, e, e)
		t[i] = e
	}
	u, v := YMM(), YMM()
	VSHUFPS(U8(0x88), t[1], t[0], u) // c0 of each
	VSHUFPS(U8(0xDD), t[1], t[0], v) // c1 of each
	VADDPS(v, u, u)
	return u
}

// storeLanes stores lanes k < m of the YMM h at at(k); where quad(k), the
// four lanes k..k+3 (k%4 == 0) go with one store.
func storeLanes(h reg.VecVirtual, m int, at func(k int) Mem, quad func(k int) bool) {
	var hi reg.VecVirtual
	for k := 0; k < m; {
		x := h.AsX()
		if k >= 4 {
			if hi == nil {
				hi = XMM()
				VEXTRACTF32X4(U8(1), h, hi)
			}
			x = hi
		}
		if k%4 == 0 && quad(k) {
			VMOVUPS(x, at(k))
			k += 4
			continue
		}
		if k%4 == 0 {
			VMOVSS(x, at(k))
		} else {
			VEXTRACTPS(U8(k%4), x, at(k))
		}
		k++
	}
}
