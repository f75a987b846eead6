package main

import (
	"fmt"
	"strings"

	"github.com/stratanet/strata/kernels/_asm/avx2"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The K-quant tile kernels take one 256-element super-block per iteration,
// as the row kernels do: the block's scales are unpacked and its quants
// unpacked into the stash once, then for each token vector integer
// arithmetic gives the block's exact isum (and msum) and scalar float
// operations update lane b%8 of that token's [8]float32 accumulator on
// the stack, which the package doc's tree reduces at the end.

// kTile holds what a K-quant tile kernel's loop needs: the token
// pointers (token t's operands at base + t*stride, walked token by token),
// the accumulators and the lane index.
type kTile struct {
	fn     string
	nt     int
	wp     reg.Register
	nb     reg.Register
	qa, qs reg.Register // q: 256*nb bytes a token
	da, ds reg.Register // d: 4*nb bytes a token; bsums: 8*ds
	ga     reg.Register
	k      reg.Register // b%8
	acc    Mem          // nt × [8]float32
	stash  Mem
}

func kTileBegin(fn string, nt int, bsums bool, stash int) *kTile {
	k := &kTile{fn: fn, nt: nt}
	k.stash = AllocLocal(stash)
	k.acc = AllocLocal(32 * nt)
	k.nb = Load(Param("nb"), GP64())
	k.wp = Load(Param("w").Base(), GP64())
	k.qa = Load(Param("q").Base(), GP64())
	k.da = Load(Param("d").Base(), GP64())
	k.qs, k.ds = GP64(), GP64()
	MOVQ(k.nb, k.qs)
	SHLQ(U8(8), k.qs)
	MOVQ(k.nb, k.ds)
	SHLQ(U8(2), k.ds)
	if bsums {
		k.ga = Load(Param("bsums").Base(), GP64())
	}
	z := YMM()
	VXORPS(z, z, z)
	for t := range nt {
		VMOVUPS(z, k.acc.Offset(32*t))
	}
	k.k = GP64()
	XORQ(k.k, k.k)
	TESTQ(k.nb, k.nb)
	JZ(LabelRef(fn + "_done"))
	loopLabel(fn + "_loop")
	return k
}

// tokens calls body for each token with registers holding the token's q,
// d and (with bsums) bsums pointers for this block, and its accumulator
// slot for lane b%8.
func (k *kTile) tokens(body func(t int, qt, dt, gt reg.Register, slot Mem)) {
	qt, dt := GP64(), GP64()
	MOVQ(k.qa, qt)
	MOVQ(k.da, dt)
	var gt reg.Register
	if k.ga != nil {
		gt = GP64()
		MOVQ(k.ga, gt)
	}
	for t := range k.nt {
		if t > 0 {
			ADDQ(k.qs, qt)
			ADDQ(k.ds, dt)
			if gt != nil {
				LEAQ(Mem{Base: gt, Index: k.ds, Scale: 8}, gt)
			}
		}
		slot := k.acc.Offset(32 * t)
		slot.Index, slot.Scale = k.k, 4
		body(t, qt, dt, gt, slot)
	}
}

// end closes the loop over blocks (size bytes each) and stores the
// tokens' results.
func (k *kTile) end(size int) {
	ADDQ(U32(size), k.wp)
	ADDQ(U32(256), k.qa)
	ADDQ(U8(4), k.da)
	if k.ga != nil {
		ADDQ(U8(32), k.ga)
	}
	INCQ(k.k)
	ANDQ(U8(7), k.k)
	DECQ(k.nb)
	JNZ(LabelRef(k.fn + "_loop"))

	Label(k.fn + "_done")
	dst := Load(Param("dst").Base(), GP64())
	ldd := Load(Param("ldd"), GP64())
	SHLQ(U8(2), ldd)
	for t := range k.nt {
		a := YMM()
		VMOVUPS(k.acc.Offset(32*t), a)
		r := hsumF32(a)
		VMOVSS(r, Mem{Base: dst})
		if t+1 < k.nt {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// kTileDoc is the doc comment of a K-quant tile kernel: the row kernel's
// loop (body, with token t's operands qt, dt, gt) for each token.
func kTileDoc(fn, name string, nt, size int, body []string) []string {
	tokens := "tokens"
	if nt == 1 {
		tokens = "token"
	}
	doc := []string{
		fmt.Sprintf("%s is the %s row rule of the package doc for one row of nb", fn, name),
		fmt.Sprintf("super-blocks against %d %s (AVX2, FMA, F16C): token t's activation is", nt, tokens),
		"q[256*nb*t:], d[nb*t:], bsums[16*nb*t:] (the exact sums of q's",
		fmt.Sprintf("16-element groups). It computes exactly, with w at least %d*nb long, q,", size),
		fmt.Sprintf("d and bsums at least %d times 256*nb, nb and 16*nb long, dst at least", nt),
		fmt.Sprintf("%d*ldd+1 (none of it checked) and every q[i] in [-127, 127]:", nt-1),
		"",
		fmt.Sprintf("\tfor t := range %d {", nt),
		"\t\tqt, dt, gt := q[256*nb*t:], d[nb*t:], bsums[16*nb*t:]",
		"\t\tvar acc [8]float32",
		"\t\tfor b := range nb {",
	}
	for _, l := range body {
		doc = append(doc, "\t\t"+l)
	}
	return append(doc,
		"\t\t}",
		"\t\tdst[t*ldd] = tree8(&acc)",
		"\t}",
		"",
		"Each super-block's scales and quants are unpacked once for all the",
		"tokens.",
	)
}

func tileQ4K(nt int) {
	fn := fmt.Sprintf("avx2Tile%dQ4_K", nt)
	TEXT(fn, NOSPLIT, "func(dst []float32, ldd int, w []byte, q []int8, d []float32, bsums []int16, nb int)")
	Pragma("noescape")
	Doc(kTileDoc(fn, "Q4_K", nt, 144, strings.Split(`	wb, qb, gb := w[144*b:], qt[256*b:], gt[16*b:]
	var isum, msum int32
	for j := range 4 {
		qs := wb[16+32*j:]
		sc0, m0 := quant.ScaleMinK4(2*j, wb[4:16])
		sc1, m1 := quant.ScaleMinK4(2*j+1, wb[4:16])
		for l := range 32 {
			isum += int32(sc0) * int32(qs[l]&15) * int32(qb[64*j+l])
			isum += int32(sc1) * int32(qs[l]>>4) * int32(qb[64*j+32+l])
		}
		msum += int32(m0)*(int32(gb[4*j])+int32(gb[4*j+1])) + int32(m1)*(int32(gb[4*j+2])+int32(gb[4*j+3]))
	}
	a := fma32(float32(fp16(wb[0:])*dt[b]), float32(isum), acc[b%8])
	acc[b%8] = fma32(-float32(fp16(wb[2:])*dt[b]), float32(msum), a)`, "\n"))...)

	k := kTileBegin(fn, nt, true, 8*32)
	wp := k.wp
	prefetch(wp, 144, quantPrefetch)
	// The eight 6-bit scales and mins, as the row kernel unpacks them.
	u0, u1, u2 := GP32(), GP32(), GP32()
	MOVL(Mem{Base: wp, Disp: 4}, u0)
	MOVL(Mem{Base: wp, Disp: 8}, u1)
	MOVL(Mem{Base: wp, Disp: 12}, u2)
	sch, mnh, t := GP32(), GP32(), GP32()
	MOVL(u0, t)
	SHRL(U8(2), t)
	ANDL(U32(0x30303030), t)
	MOVL(u2, sch)
	ANDL(U32(0x0f0f0f0f), sch)
	ORL(t, sch)
	MOVL(u1, t)
	SHRL(U8(2), t)
	ANDL(U32(0x30303030), t)
	MOVL(u2, mnh)
	SHRL(U8(4), mnh)
	ANDL(U32(0x0f0f0f0f), mnh)
	ORL(t, mnh)
	ANDL(U32(0x3f3f3f3f), u0)
	ANDL(U32(0x3f3f3f3f), u1)
	SHLQ(U8(32), sch.As64())
	ORQ(u0.As64(), sch.As64()) // sc0..sc7
	SHLQ(U8(32), mnh.As64())
	ORQ(u1.As64(), mnh.As64()) // m0..m7
	sm := XMM()
	VMOVQ(sch.As64(), sm)
	VPINSRQ(U8(1), mnh.As64(), sm, sm)
	zero := XMM()
	VPXOR(zero, zero, zero)
	s16, m16 := XMM(), XMM()
	VPUNPCKLBW(zero, sm, s16) // int16 sc0..sc7
	VPUNPCKHBW(zero, sm, m16) // int16 m0..m7
	var tab [2]reg.VecVirtual
	for h := range tab {
		t := XMM()
		if h == 0 {
			VPUNPCKLWD(s16, s16, t) // sc0, sc0, ..., sc3, sc3
		} else {
			VPUNPCKHWD(s16, s16, t) // sc4, sc4, ..., sc7, sc7
		}
		tab[h] = YMM()
		VINSERTI128(U8(1), t, t.AsY(), tab[h])
	}
	minsLo, minsHi := XMM(), XMM()
	VPUNPCKLWD(m16, m16, minsLo) // m0, m0, ..., m3, m3
	VPUNPCKHWD(m16, m16, minsHi) // m4, m4, ..., m7, m7
	// The unsigned quants: stash+64j the low nibbles of qs[32j:], +32
	// the high ones.
	for j := range 4 {
		hi := YMM()
		VMOVDQU(Mem{Base: wp, Disp: 16 + 32*j}, hi)
		lo := YMM()
		VPAND(cNib, hi, lo)
		VPSRLW(U8(4), hi, hi)
		VPAND(cNib, hi, hi)
		VMOVDQU(lo, k.stash.Offset(64*j))
		VMOVDQU(hi, k.stash.Offset(64*j+32))
	}
	dd0 := XMM()
	VMOVD(Mem{Base: wp}, dd0)
	VCVTPH2PS(dd0, dd0) // {dw, dmin, 0, 0}

	k.tokens(func(_ int, qt, dt, gt reg.Register, slot Mem) {
		var sum reg.VecVirtual
		for j := range 4 {
			// Quants (< 16) times activations: int16 pair sums at most
			// 2*15*127; times the sub-block scales (< 64) into int32.
			lo, hi := YMM(), YMM()
			VMOVDQU(k.stash.Offset(64*j), lo)
			VPMADDUBSW(Mem{Base: qt, Disp: 64 * j}, lo, lo)
			VMOVDQU(k.stash.Offset(64*j+32), hi)
			VPMADDUBSW(Mem{Base: qt, Disp: 64*j + 32}, hi, hi)
			s := YMM()
			VPSHUFD(U8(0x55*((2*j)%4)), tab[j/2], s)
			VPMADDWD(s, lo, lo)
			VPSHUFD(U8(0x55*((2*j+1)%4)), tab[j/2], s)
			VPMADDWD(s, hi, hi)
			VPADDD(hi, lo, lo)
			if sum == nil {
				sum = lo
			} else {
				VPADDD(lo, sum, sum)
			}
		}
		// msum partial sums: m_j * (bsums[2j] + bsums[2j+1]).
		mins, mh := XMM(), XMM()
		VPMADDWD(Mem{Base: gt}, minsLo, mins)
		VPMADDWD(Mem{Base: gt, Disp: 16}, minsHi, mh)
		VPADDD(mh, mins, mins)

		xi := sum.AsX()
		xh := XMM()
		VEXTRACTI128(U8(1), sum, xh)
		VPADDD(xh, xi, xi)
		VPBLENDD(U8(0xa), mins, xi, xh) // {i0, m1, i2, m3}
		VPBLENDD(U8(0xa), xi, mins, xi) // {m0, i1, m2, i3}
		VPSHUFD(U8(0xb1), xi, xi)       // {i1, m0, i3, m2}
		VPADDD(xh, xi, xi)
		VPSHUFD(U8(0x4e), xi, xh)
		VPADDD(xh, xi, xi)
		VCVTDQ2PS(xi, xi) // {isum, msum, ...}

		dd := XMM()
		VBROADCASTSS(Mem{Base: dt}, dd)
		VMULPS(dd0, dd, dd)     // {dw*d, dmin*d, 0, 0}
		VXORPS(cNegLn1, dd, dd) // {dw*d, -(dmin*d), 0, 0}
		a := XMM()
		VMOVSS(slot, a)
		VFMADD231SS(xi, dd, a)
		VMOVSHDUP(xi, xi)
		VMOVSHDUP(dd, dd)
		VFMADD231SS(xi, dd, a)
		VMOVSS(a, slot)
	})
	k.end(144)
}

func tileQ6K(nt int) {
	fn := fmt.Sprintf("avx2Tile%dQ6_K", nt)
	// Not NOSPLIT: the 640-byte frame is over the nosplit limit.
	TEXT(fn, 0, "func(dst []float32, ldd int, w []byte, q []int8, d []float32, bsums []int16, nb int)")
	Pragma("noescape")
	Doc(kTileDoc(fn, "Q6_K", nt, 210, strings.Split(`	wb, qb := w[210*b:], qt[256*b:]
	var isum int32
	for i := range 256 {
		h, c, l := i/128, i%128/32, i%32
		ql := wb[64*h+32*(c%2)+l] >> (4 * (c / 2)) & 15
		qh := wb[128+32*h+l] >> (2 * c) & 3
		isum += int32(int8(wb[192+i/16])) * (int32(ql|qh<<4) - 32) * int32(qb[i])
	}
	acc[b%8] = fma32(float32(fp16(wb[208:])*dt[b]), float32(isum), acc[b%8])`, "\n"))...)
	Comment(
		"isum is computed as the sum of sc*quant*q less 32 times the sum of",
		"sc_g*bsums_g over the sixteen 16-element groups g (the exact same",
		"integer).",
	)

	k := kTileBegin(fn, nt, true, 16*32)
	wp := k.wp
	prefetch(wp, 210, quantPrefetch)
	// The sixteen int8 scales as int16 (for the bsums), and each half of
	// them in both 128-bit halves of a register: one in-lane VPSHUFB
	// then puts sc[2c] in the low and sc[2c+1] in the high half.
	sc := YMM()
	VPMOVSXBW(Mem{Base: wp, Disp: 192}, sc)
	for h := range 2 {
		scs := YMM()
		VPERMQ(U8([]uint8{0x44, 0xee}[h]), sc, scs)
		for c := range 4 {
			s16 := YMM()
			VPSHUFB(cQ6Shuf.Offset(32*c), scs, s16) // {sc[8h+2c] ×8 | sc[8h+2c+1] ×8}
			VMOVDQU(s16, k.stash.Offset(256+32*(4*h+c)))
		}
	}
	// The unsigned quants (< 64) of chunk 4h+c (quants 128h+32c..+31) at
	// stash+32(4h+c): a nibble of ql[c%2] and bits 2c, 2c+1 of qh.
	nib, x30 := YMM(), YMM()
	VMOVDQU(cNib, nib)
	VMOVDQU(cX30, x30)
	for h := range 2 {
		qh := YMM()
		VMOVDQU(Mem{Base: wp, Disp: 128 + 32*h}, qh)
		ql := [2]reg.VecVirtual{YMM(), YMM()}
		VMOVDQU(Mem{Base: wp, Disp: 64 * h}, ql[0])
		VMOVDQU(Mem{Base: wp, Disp: 64*h + 32}, ql[1])
		for c := range 4 {
			x := avx2.Q6KQuant(c, ql, qh, nib, x30)
			VMOVDQU(x, k.stash.Offset(32*(4*h+c)))
		}
	}
	hd := loadF16(Mem{Base: wp, Disp: 208})

	k.tokens(func(_ int, qt, dt, gt reg.Register, slot Mem) {
		// sc*quant*q: int16 pair sums at most 2*63*127, then int32.
		var sum reg.VecVirtual
		for ch := range 8 {
			x := YMM()
			VMOVDQU(k.stash.Offset(32*ch), x)
			VPMADDUBSW(Mem{Base: qt, Disp: 32 * ch}, x, x)
			VPMADDWD(k.stash.Offset(256+32*ch), x, x)
			if sum == nil {
				sum = x
			} else {
				VPADDD(x, sum, sum)
			}
		}
		// Less 32 * sc_g * bsums_g.
		m := YMM()
		VPMADDWD(Mem{Base: gt}, sc, m)
		VPSLLD(U8(5), m, m)
		VPSUBD(m, sum, sum)
		xi := hsumI32(sum)
		VCVTDQ2PS(xi, xi)
		s := XMM()
		VMULSS(Mem{Base: dt}, hd, s)
		a := XMM()
		VMOVSS(slot, a)
		VFMADD231SS(xi, s, a)
		VMOVSS(a, slot)
	})
	k.end(210)
}
