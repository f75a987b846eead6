package main

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"

	"github.com/stratanet/strata/kernels/_asm/avx2"

	"github.com/stratanet/strata/kernels/_asm/avx512"
)

// kType is a K-quant weight type: how one super-block is unpacked.
type kType struct {
	name string // ggml's name, as in "Q4_K"
	size int    // bytes per super-block
	msum bool   // Q4_K's min term: lanes 8..15 of the reduction
	// consts loads the constants that unpack keeps in registers.
	consts func() *kConsts
	// unpack returns the four vectors of unsigned quants of the block at
	// wp (vector j: elements 64j..64j+63, each < 64) and the two vectors of
	// scale words for VPACKSSDW(D0, D1) and VPACKSSDW(D2, D3), where D_j is
	// the VPDPBUSD of vector j; it stores at mb the block's 16 words that
	// multiply its bsums (VPMADDWD) and at sb (a qword) its fp16 scales.
	unpack func(c *kConsts, wp reg.Register, mb, sb Mem) ([4]reg.VecVirtual, [2]reg.VecVirtual)
	body   string // the row rule for one block, as Go, for the doc comment
}

type kConsts struct {
	nib, shift, x30, x10 reg.VecVirtual
	s01, s23, mw         reg.VecVirtual
	k67                  reg.Register
}

var (
	q4k = kquant45(false)
	q5k = kquant45(true)
)

// kquant45 is Q4_K or (five) Q5_K: 4-bit quants (with a fifth bit from qh
// for Q5_K), 6-bit scales and mins.
func kquant45(five bool) *kType {
	name, size, qoff := "Q4_K", 144, 16
	lo, hi := "int32(qs[l]&15)", "int32(qs[l]>>4)"
	if five {
		name, size, qoff = "Q5_K", 176, 48
		lo, hi = "int32(qs[l]&15|wb[16+l]>>(2*j)&1<<4)", "int32(qs[l]>>4|wb[16+l]>>(2*j+1)&1<<4)"
	}
	return &kType{
		name: name,
		size: size,
		msum: true,
		consts: func() *kConsts {
			c := &kConsts{nib: ZMM(), shift: ZMM(), s01: ZMM(), s23: ZMM(), mw: YMM(), k67: K()}
			VMOVDQU64(cNib, c.nib)
			VMOVDQU64(cSh4, c.shift)
			VMOVDQU64(cK4S01, c.s01)
			VMOVDQU64(cK4S23, c.s23)
			VMOVDQU64(cK4MW, c.mw)
			if five {
				c.x10 = ZMM()
				VMOVDQU64(cX10, c.x10)
			}
			r := GP32()
			MOVL(U32(0xc0), r)
			KMOVW(r, c.k67)
			return c
		},
		unpack: func(c *kConsts, wp reg.Register, mb, sb Mem) ([4]reg.VecVirtual, [2]reg.VecVirtual) {
			// Vector j: the 32 bytes qs[32j:] broadcast to both halves, low
			// nibbles in the low half (elements 64j..64j+31), high nibbles
			// in the high half (64j+32..64j+63); for Q5_K, bits 2j (low
			// half) and 2j+1 (high half) of qh (broadcast) as bit 4.
			var qh reg.VecVirtual
			if five {
				qh = ZMM()
				VBROADCASTI64X4(Mem{Base: wp, Disp: 16}, qh)
			}
			var w [4]reg.VecVirtual
			for j := range w {
				w[j] = ZMM()
				VBROADCASTI64X4(Mem{Base: wp, Disp: qoff + 32*j}, w[j])
				VPSRLVQ(c.shift, w[j], w[j])
				if !five {
					VPANDD(c.nib, w[j], w[j])
					continue
				}
				h := ZMM()
				if j < 2 {
					VPSLLVQ(cQ5S[j], qh, h)
				} else {
					VPSRLVQ(cQ5S[j], qh, h)
				}
				VPANDD(c.x10, h, h)
				VPTERNLOGD(U8(0xf8), c.nib, w[j], h) // h | w&15
				w[j] = h
			}
			// A = {sc0..sc7, m0..m7} (bytes, each < 64), see cK4I1.
			x := XMM()
			VMOVDQU64(Mem{Base: wp, Disp: 4}, x)
			a := XMM()
			VPSHUFB(cK4I1, x, a)
			VPSRLW(U8(4), a, c.k67, a) // words 6, 7: m4..m7's low bits
			VPANDD(cK4M1, a, a)
			h := XMM()
			VPSHUFB(cK4I2, x, h)
			VPSRLW(U8(2), h, h)
			VPTERNLOGD(U8(0xf8), cX30, h, a) // a | h&0x30
			var sw [2]reg.VecVirtual
			sw[0], sw[1] = ZMM(), ZMM()
			VPERMB(a.AsZ(), c.s01, sw[0])
			VPERMB(a.AsZ(), c.s23, sw[1])
			m := YMM()
			VPERMB(a.AsY(), c.mw, m) // {m0, m0, m1, m1, ..., m7, m7}
			VMOVDQU64(m, mb)
			s := GP32()
			MOVL(Mem{Base: wp}, s) // d, dmin
			MOVL(s, sb)
			return w, sw
		},
		body: fmt.Sprintf(`	wb, qb, gb := w[r*rb+%d*b:], qt[256*b:], gt[16*b:]
	var isum, msum int32
	for j := range 4 {
		qs := wb[%d+32*j:]
		sc0, m0 := quant.ScaleMinK4(2*j, wb[4:16])
		sc1, m1 := quant.ScaleMinK4(2*j+1, wb[4:16])
		for l := range 32 {
			isum += int32(sc0) * %s * int32(qb[64*j+l])
			isum += int32(sc1) * %s * int32(qb[64*j+32+l])
		}
		msum += int32(m0)*(int32(gb[4*j])+int32(gb[4*j+1])) + int32(m1)*(int32(gb[4*j+2])+int32(gb[4*j+3]))
	}
	a := fma32(float32(fp16(wb[0:])*dt[b]), float32(isum), acc[b%%8])
	acc[b%%8] = fma32(-float32(fp16(wb[2:])*dt[b]), float32(msum), a)`, size, qoff, lo, hi),
	}
}

var q6k = &kType{
	name: "Q6_K",
	size: 210,
	consts: func() *kConsts {
		c := &kConsts{nib: ZMM(), x30: ZMM(), s01: ZMM(), s23: ZMM()}
		VMOVDQU64(cNib, c.nib)
		VMOVDQU64(cX30, c.x30)
		VMOVDQU64(cK6S01, c.s01)
		VMOVDQU64(cK6S23, c.s23)
		return c
	},
	unpack: func(c *kConsts, wp reg.Register, mb, sb Mem) ([4]reg.VecVirtual, [2]reg.VecVirtual) {
		// Vector 2h+e (half h, e = 0: chunks c = 0, 1; e = 1: c = 2, 3):
		// the low (e = 0) or high nibbles of ql[64h:64h+64], with bits 2c,
		// 2c+1 of qh[32h:32h+32] (broadcast) as bits 4, 5.
		var w [4]reg.VecVirtual
		for h := range 2 {
			l := ZMM()
			VMOVDQU64(Mem{Base: wp, Disp: 64 * h}, l)
			qh := ZMM()
			VBROADCASTI64X4(Mem{Base: wp, Disp: 128 + 32*h}, qh)
			lo := ZMM()
			VPSLLVQ(cQ6SL, qh, lo)
			VPANDD(c.x30, lo, lo)
			VPTERNLOGD(U8(0xf8), c.nib, l, lo) // lo | l&15
			VPSRLW(U8(4), l, l)
			VPSRLVQ(cQ6SR, qh, qh)
			VPANDD(c.x30, qh, qh)
			VPTERNLOGD(U8(0xf8), c.nib, l, qh) // qh | l>>4&15
			w[2*h], w[2*h+1] = lo, qh
		}
		sx := YMM()
		VPMOVSXBW(Mem{Base: wp, Disp: 192}, sx) // sc_g as int16
		var sw [2]reg.VecVirtual
		sw[0], sw[1] = ZMM(), ZMM()
		VPERMW(sx.AsZ(), c.s01, sw[0])
		VPERMW(sx.AsZ(), c.s23, sw[1])
		VPSLLW(U8(5), sx, sx) // 32*sc_g, |.| <= 4096
		VMOVDQU64(sx, mb)
		s := GP32()
		MOVWLZX(Mem{Base: wp, Disp: 208}, s)
		MOVL(s, sb)
		return w, sw
	},
	body: `	wb, qb := w[r*rb+210*b:], qt[256*b:]
	var isum int32
	for i := range 256 {
		h, c, l := i/128, i%128/32, i%32
		ql := wb[64*h+32*(c%2)+l] >> (4 * (c / 2)) & 15
		qh := wb[128+32*h+l] >> (2 * c) & 3
		isum += int32(int8(wb[192+i/16])) * (int32(ql|qh<<4) - 32) * int32(qb[i])
	}
	acc[b%8] = fma32(float32(fp16(wb[208:])*dt[b]), float32(isum), acc[b%8])`,
}

func tileDoc(fn string, nt int, t *kType) []string {
	tokens := "tokens"
	if nt == 1 {
		tokens = "token"
	}
	doc := []string{
		fmt.Sprintf("%s is the %s row rule of the package doc for nr rows of nb", fn, t.name),
		fmt.Sprintf("super-blocks (row r at w[r*rb:]) against %d %s (AVX-512 F, BW, VL, VNNI,", nt, tokens),
		"VBMI): token t's activation is q[256*nb*t:], d[nb*t:], bsums[16*nb*t:] (the",
		"exact sums of q's 16-element groups). It computes exactly, with w at least",
		fmt.Sprintf("(nr-1)*rb+%d*nb long, q, d and bsums at least %d times 256*nb, nb and", t.size, nt),
		fmt.Sprintf("16*nb long, dst at least %d*ldd+nr (none of it checked) and every q[i] in", nt-1),
		"[-127, 127]:",
		"",
		"\tfor r := range nr {",
		fmt.Sprintf("\t\tfor t := range %d {", nt),
		"\t\t\tqt, dt, gt := q[256*nb*t:], d[nb*t:], bsums[16*nb*t:]",
		"\t\t\tvar acc [8]float32",
		"\t\t\tfor b := range nb {",
	}
	for _, l := range strings.Split(t.body, "\n") {
		doc = append(doc, "\t\t\t"+l)
	}
	doc = append(doc,
		"\t\t\t}",
		"\t\t\tdst[t*ldd+r] = tree8(&acc)",
		"\t\t}",
		"\t}",
		"",
		"Each super-block is unpacked once for all the tokens; eight blocks at a",
		"time, the blocks' exact integer sums are moved into lanes 0..7 and the",
		"float steps run on eight lanes at once.",
	)
	if t.name == "Q6_K" {
		doc = append(doc,
			"isum is computed as the sum of sc*quant*q less 32 times the sum of",
			"sc_g*bsums_g over the sixteen 16-element groups g (the same integer).")
	}
	return doc
}

func tile(nt int, t *kType) {
	fn := fmt.Sprintf("avx512Tile%d%s", nt, t.name)
	// Not NOSPLIT: the frame is over the nosplit limit.
	TEXT(fn, 0, "func(dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nb int)")
	Pragma("noescape")
	Doc(tileDoc(fn, nt, t)...)

	// The stack buffer (64-byte aligned): each token's eight block vectors
	// (VB), the blocks' bsums multipliers (MB, 32 bytes a block) and fp16
	// scales (SB, a qword a block).
	vbOff, mbOff := 0, 512*nt
	sbOff := mbOff + 256
	buf := AllocLocal(sbOff + 64 + 64)
	roww, rowdst, rown := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	left, grpD, grpG, grpN := AllocLocal(8), AllocLocal(8), AllocLocal(8), AllocLocal(8)
	rows, rowDone, end := fn+"_rows", fn+"_rowdone", fn+"_end"
	grp, blk := fn+"_grp", fn+"_blk"

	bp := GP64()
	LEAQ(buf, bp)
	ADDQ(U8(63), bp)
	ANDQ(I8(-64), bp)
	{
		r := Load(Param("w").Base(), GP64())
		MOVQ(r, roww)
		r = Load(Param("dst").Base(), GP64())
		MOVQ(r, rowdst)
		r = Load(Param("nr"), GP64())
		MOVQ(r, rown)
		TESTQ(r, r)
		JZ(LabelRef(end))
	}
	c := t.consts()
	perm := ZMM()
	VMOVDQU64(cPermH, perm)
	acc := make([]reg.VecVirtual, nt)
	for i := range acc {
		acc[i] = YMM()
	}

	Label(rows)
	for i := range acc {
		VPXORD(acc[i], acc[i], acc[i])
	}
	wp := GP64()
	MOVQ(roww, wp)
	qa := Load(Param("q").Base(), GP64())
	qs := Load(Param("nb"), GP64())
	SHLQ(U8(8), qs) // 256*nb bytes a token
	var q3, qb reg.Register
	if nt >= 4 {
		q3 = GP64()
		LEAQ(Mem{Base: qs, Index: qs, Scale: 2}, q3)
	}
	if nt >= 6 {
		qb = GP64()
		LEAQ(Mem{Base: qa, Index: qs, Scale: 4}, qb)
		ADDQ(qs, qb) // qa + 5*qs
	}
	// tokQ addresses token t's quants at offset off of the current block.
	tokQ := func(tok, off int) Mem {
		switch tok {
		case 0:
			return Mem{Base: qa, Disp: off}
		case 1:
			return Mem{Base: qa, Index: qs, Scale: 1, Disp: off}
		case 2:
			return Mem{Base: qa, Index: qs, Scale: 2, Disp: off}
		case 3:
			return Mem{Base: qa, Index: q3, Scale: 1, Disp: off}
		case 4:
			return Mem{Base: qa, Index: qs, Scale: 4, Disp: off}
		case 5:
			return Mem{Base: qb, Disp: off}
		case 6:
			return Mem{Base: qa, Index: q3, Scale: 2, Disp: off}
		default:
			return Mem{Base: qb, Index: qs, Scale: 2, Disp: off}
		}
	}
	{
		r := Load(Param("d").Base(), GP64())
		MOVQ(r, grpD)
		r = Load(Param("bsums").Base(), GP64())
		MOVQ(r, grpG)
		r = Load(Param("nb"), GP64())
		MOVQ(r, left)
		TESTQ(r, r)
		JZ(LabelRef(rowDone))
	}

	Label(grp)
	cnt := GP64()
	MOVQ(left, cnt)
	eight := GP64()
	MOVQ(U32(8), eight)
	CMPQ(cnt, eight)
	CMOVQGT(eight, cnt)
	SUBQ(cnt, left)
	MOVQ(cnt, grpN)
	x := GP64() // 8 * the block's index in the group
	XORQ(x, x)

	avx2.LoopLabel(blk)
	for o := 0; o < t.size; o += 64 {
		PREFETCHT0(Mem{Base: wp, Disp: prefetchL1 + o})
		PREFETCHT1(Mem{Base: wp, Disp: prefetchDist + o})
	}
	w, sw := t.unpack(c, wp, Mem{Base: bp, Index: x, Scale: 4, Disp: mbOff}, Mem{Base: bp, Index: x, Scale: 1, Disp: sbOff})
	for tok := range nt {
		// D_j: sixteen sums of four products quant*q, |.| <= 4*15*127 =
		// 7620 (Q4_K), 4*31*127 = 15748 (Q5_K) or 4*63*127 = 32004 (Q6_K), so the packs to int16
		// are exact; each dword of v then sums four scale*D products,
		// |.| <= 4*63*7620, 4*63*15748 or 4*128*32004 < 2^31.
		var dd [4]reg.VecVirtual
		for j := range dd {
			dd[j] = ZMM()
			VPSUBD(dd[j], dd[j], dd[j])
			VPDPBUSD(tokQ(tok, 64*j), w[j], dd[j])
		}
		VPACKSSDW(dd[1], dd[0], dd[0])
		VPACKSSDW(dd[3], dd[2], dd[2])
		v := ZMM()
		VPMADDWD(sw[0], dd[0], v)
		VPDPWSSD(sw[1], dd[2], v)
		VMOVDQU64(v, Mem{Base: bp, Index: x, Scale: 8, Disp: vbOff + 512*tok})
	}
	ADDQ(U32(t.size), wp)
	ADDQ(U32(256), qa)
	if qb != nil {
		ADDQ(U32(256), qb)
	}
	ADDQ(U8(8), x)
	DECQ(cnt)
	JNZ(LabelRef(blk))

	// The group's end: masks for its r valid blocks (r < 8 only for the
	// last group; lanes r..7 hold stale values, never stored).
	mt := GP64()
	LEAQ(cMasks, mt)
	ri := GP64()
	MOVQ(grpN, ri)
	SHLQ(U8(4), ri)
	var kb [4]reg.Register
	for p := range kb {
		kb[p] = K()
		KMOVW(Mem{Base: mt, Index: ri, Scale: 1, Disp: 2 * p}, kb[p])
	}
	kl := K()
	KMOVB(Mem{Base: mt, Index: ri, Scale: 1, Disp: 8}, kl)
	// The blocks' fp16 scales as float32: lanes 0..7 d, (Q4_K) 8..15 dmin.
	var fs reg.VecVirtual
	{
		sv := ZMM()
		VMOVDQU64(Mem{Base: bp, Disp: sbOff}, sv)
		lo := XMM()
		VPMOVQW(sv, lo)
		if t.msum {
			VPSRLQ(U8(16), sv, sv)
			hi := XMM()
			VPMOVQW(sv, hi)
			y := YMM()
			VINSERTI32X4(U8(1), hi, lo.AsY(), y)
			fs = ZMM()
			VCVTPH2PS(y, fs)
		} else {
			fs = YMM()
			VCVTPH2PS(lo, fs)
		}
	}
	nbr := Load(Param("nb"), GP64())
	ds, gs := GP64(), GP64()
	MOVQ(nbr, ds)
	SHLQ(U8(2), ds) // 4*nb bytes of d a token
	MOVQ(nbr, gs)
	SHLQ(U8(5), gs) // 32*nb bytes of bsums a token
	dtp, gtp := GP64(), GP64()
	MOVQ(grpD, dtp)
	MOVQ(grpG, gtp)
	for tok := range nt {
		if tok > 0 {
			ADDQ(ds, dtp)
			ADDQ(gs, gtp)
		}
		vb := func(k int) Mem { return Mem{Base: bp, Disp: vbOff + 512*tok + 64*k} }
		// C_p: lanes 0..7 sum block 2p's vector's halves, 8..15 block
		// 2p+1's.
		var cc [4]reg.VecVirtual
		for p := range cc {
			a, y := ZMM(), ZMM()
			VMOVDQU64(vb(2*p), a)
			VSHUFI64X2(U8(0x44), vb(2*p+1), a, y) // {a.lo, b.lo}
			VSHUFI64X2(U8(0xee), vb(2*p+1), a, a) // {a.hi, b.hi}
			VPADDD(y, a, a)
			cc[p] = a
		}
		// W_p: the bsums of blocks 2p, 2p+1 times their multipliers, in
		// the same lanes: m_j*(bsums_2j+bsums_2j+1) (Q4_K, |.| <=
		// 2*63*2032) or 32*sc_g*bsums_g pairs (Q6_K, |.| <= 2*4096*2032).
		var ww [4]reg.VecVirtual
		for p := range ww {
			g := ZMM()
			VMOVDQU32_Z(Mem{Base: gtp, Disp: 64 * p}, kb[p], g)
			VPMADDWD(Mem{Base: bp, Disp: mbOff + 64*p}, g, g)
			if !t.msum {
				VPSUBD(g, cc[p], cc[p])
			}
			ww[p] = g
		}
		// pair128(x, y) = {x.q0+x.q1, x.q2+x.q3, y.q0+y.q1, y.q2+y.q3}.
		pair128 := func(x, y reg.VecVirtual) reg.VecVirtual {
			t := ZMM()
			VSHUFI64X2(U8(0x88), y, x, t)
			VSHUFI64X2(U8(0xdd), y, x, x)
			VPADDD(t, x, x)
			return x
		}
		// pair64(x, y), per 128-bit lane: {x.d0+x.d2, x.d1+x.d3, y.d0+y.d2, y.d1+y.d3}.
		pair64 := func(x, y reg.VecVirtual) reg.VecVirtual {
			t := ZMM()
			VPUNPCKLQDQ(y, x, t)
			VPUNPCKHQDQ(y, x, x)
			VPADDD(t, x, x)
			return x
		}
		e0 := pair128(cc[0], cc[1]) // 128-bit lane i: block i
		e1 := pair128(cc[2], cc[3]) // block 4+i
		g0 := pair64(e0, e1)        // lane i: {block i ×2, block 4+i ×2}
		g1 := g0
		if t.msum {
			f0 := pair128(ww[0], ww[1])
			f1 := pair128(ww[2], ww[3])
			g1 = pair64(f0, f1)
		}
		hv, ht := ZMM(), ZMM()
		VSHUFPS(U8(0x88), g1, g0, hv)
		VSHUFPS(U8(0xdd), g1, g0, ht)
		VPADDD(ht, hv, hv)   // lane i: {isum_i, isum_4+i, msum_i, msum_4+i}
		VPERMD(hv, perm, hv) // {isum_0..7, msum_0..7}
		VCVTDQ2PS(hv, hv)

		dv := YMM()
		VMOVUPS_Z(Mem{Base: dtp}, kl, dv)
		if t.msum {
			// {dw_b*d_b, -(dmin_b*d_b)}, then the two fmas of lane b.
			s := ZMM()
			VINSERTF64X4(U8(1), dv, dv.AsZ(), s)
			VMULPS(fs, s, s)
			VPXORD(cSignH, s, s)
			VFMADD231PS(hv.AsY(), s.AsY(), kl, acc[tok])
			hh, sh := YMM(), YMM()
			VEXTRACTF64X4(U8(1), hv, hh)
			VEXTRACTF64X4(U8(1), s, sh)
			VFMADD231PS(hh, sh, kl, acc[tok])
		} else {
			VMULPS(fs, dv, dv)
			VFMADD231PS(hv.AsY(), dv, kl, acc[tok])
		}
	}
	ADDQ(U8(32), grpD)
	ADDQ(U32(256), grpG)
	CMPQ(left, U8(0))
	JNZ(LabelRef(grp))

	Label(rowDone)
	{
		dst := GP64()
		MOVQ(rowdst, dst)
		ldd := Load(Param("ldd"), GP64())
		SHLQ(U8(2), ldd)
		for tok := range nt {
			r := hsumF32(acc[tok])
			VMOVSS(r, Mem{Base: dst})
			if tok+1 < nt {
				ADDQ(ldd, dst)
			}
		}
		ADDQ(U8(4), rowdst)
		rb := Load(Param("rb"), GP64())
		ADDQ(rb, roww)
		DECQ(rown)
		JNZ(LabelRef(rows))
	}

	Label(end)
	VZEROUPPER()
	RET()
}

// hsumF32 is the fixed-order horizontal sum of an accumulator that may
// be Y16..Y31 (avx512.HSumF32).
func hsumF32(acc reg.VecVirtual) reg.Register { return avx512.HSumF32(acc) }
