package main

import (
	"fmt"

	"github.com/stratanet/strata/kernels/_asm/avx2"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The K-quant kernels handle one 256-element super-block per iteration:
// vector integer arithmetic gives the block's exact isum (and msum), then
// scalar float operations update lane b%8 of an [8]float32 accumulator on
// the stack, which the package doc's tree reduces at the end.

func kquantQ4K() { kquant45("Q4_K", 144, false) }
func kquantQ5K() { kquant45("Q5_K", 176, true) }

func kquant45Doc(fn, name string, size int, five bool) []string {
	qs, quant := "16", "int32(qs[l]&15)"
	hiquant := "int32(qs[l]>>4)"
	if five {
		qs = "48"
		quant = "int32(qs[l]&15 | wb[16+l]>>(2*j)&1<<4)"
		hiquant = "int32(qs[l]>>4 | wb[16+l]>>(2*j+1)&1<<4)"
	}
	return []string{
		fmt.Sprintf("%s is the %s row rule of the package doc with len(d) super-blocks", fn, name),
		fmt.Sprintf("(AVX2, FMA, F16C). It computes exactly, with w, q and bsums at least %d*len(d),", size),
		"256*len(d) and 16*len(d) long (not checked) and every q[i] in [-127, 127]:",
		"",
		"\tvar acc [8]float32",
		"\tfor b := range d {",
		fmt.Sprintf("\t\twb, qb, gb := w[%d*b:], q[256*b:], bsums[16*b:]", size),
		"\t\tvar isum, msum int32",
		"\t\tfor j := range 4 {",
		fmt.Sprintf("\t\t\tqs := wb[%s+32*j:]", qs),
		"\t\t\tsc0, m0 := quant.ScaleMinK4(2*j, wb[4:16])",
		"\t\t\tsc1, m1 := quant.ScaleMinK4(2*j+1, wb[4:16])",
		"\t\t\tfor l := range 32 {",
		fmt.Sprintf("\t\t\t\tisum += int32(sc0) * %s * int32(qb[64*j+l])", quant),
		fmt.Sprintf("\t\t\t\tisum += int32(sc1) * %s * int32(qb[64*j+32+l])", hiquant),
		"\t\t\t}",
		"\t\t\tmsum += int32(m0)*(int32(gb[4*j])+int32(gb[4*j+1])) + int32(m1)*(int32(gb[4*j+2])+int32(gb[4*j+3]))",
		"\t\t}",
		"\t\ta := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b%8])",
		"\t\tacc[b%8] = fma32(-float32(fp16(wb[2:])*d[b]), float32(msum), a)",
		"\t}",
		"\treturn tree8(&acc)",
	}
}

// kquantAcc sets up the stack accumulator [8]float32 (zeroed) and returns
// its address and the lane index register (0).
func kquantAcc() (local Mem, ap, k reg.GPVirtual) {
	local = AllocLocal(32)
	z := YMM()
	VXORPS(z, z, z)
	VMOVUPS(z, local)
	ap = GP64()
	LEAQ(local, ap)
	k = GP64()
	XORQ(k, k)
	return local, ap, k
}

// kquantEnd reduces the stack accumulator and returns.
func kquantEnd(local Mem) {
	acc := YMM()
	VMOVUPS(local, acc)
	r := hsumF32(acc)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}

func kquant45(name string, size int, five bool) {
	fn := "avx2Dot" + name
	TEXT(fn, NOSPLIT, "func(w []byte, q []int8, d []float32, bsums []int16) float32")
	Pragma("noescape")
	Doc(kquant45Doc(fn, name, size, five)...)

	wp := Load(Param("w").Base(), GP64())
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	bp := Load(Param("bsums").Base(), GP64())
	nib := load(cNib)
	var x10 reg.VecVirtual
	if five {
		x10 = load(cX10)
	}
	local, ap, k := kquantAcc()
	zero := XMM()
	VPXOR(zero, zero, zero)
	loop, done := fn+"_loop", fn+"_done"
	TESTQ(nb, nb)
	JZ(LabelRef(done))

	loopLabel(loop)
	prefetch(wp, size, quantPrefetch)
	// Unpack the eight 6-bit scales and mins (ggml's utmp trick):
	// sc0..3 = u0 & 0x3f.., sc4..7 = u2&0x0f.. | (u0>>2)&0x30..,
	// m0..3 = u1 & 0x3f.., m4..7 = (u2>>4)&0x0f.. | (u1>>2)&0x30..
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
	ORQ(u0.As64(), sch.As64()) // sc0..sc7 (MOVL and ANDL cleared the high halves)
	SHLQ(U8(32), mnh.As64())
	ORQ(u1.As64(), mnh.As64()) // m0..m7
	sm := XMM()
	VMOVQ(sch.As64(), sm)
	VPINSRQ(U8(1), mnh.As64(), sm, sm)
	// Each scale twice as int16 in a dword: sc0..3 in both halves of
	// tab[0], sc4..7 in tab[1], so that one in-lane VPSHUFD (which issues
	// beside the multiplies) broadcasts a scale; the mins likewise pair
	// with bsums.
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

	// msum partial sums: m_j * (bsums[2j] + bsums[2j+1]).
	mins := XMM()
	VPUNPCKLWD(m16, m16, mins)
	VPMADDWD(Mem{Base: bp}, mins, mins)
	VPUNPCKHWD(m16, m16, m16)
	VPMADDWD(Mem{Base: bp, Disp: 16}, m16, m16)
	VPADDD(m16, mins, mins)

	qoff := 16
	var qh reg.VecVirtual
	if five {
		qh = YMM()
		VMOVDQU(Mem{Base: wp, Disp: 16}, qh)
		qoff = 48
	}
	// fifth moves bit s of each byte of qh to bit 4 and ORs it into x.
	fifth := func(s int, x reg.VecVirtual) {
		h := YMM()
		switch {
		case s < 4:
			VPSLLW(U8(4-s), qh, h)
			VPAND(x10, h, h)
		case s > 4:
			VPSRLW(U8(s-4), qh, h)
			VPAND(x10, h, h)
		default:
			VPAND(x10, qh, h)
		}
		VPOR(h, x, x)
	}
	var sum reg.VecVirtual
	for j := range 4 {
		hi := YMM()
		VMOVDQU(Mem{Base: wp, Disp: qoff + 32*j}, hi)
		lo := YMM()
		VPAND(nib, hi, lo)
		VPSRLW(U8(4), hi, hi)
		VPAND(nib, hi, hi)
		if five {
			fifth(2*j, lo)
			fifth(2*j+1, hi)
		}
		// Unsigned quants (< 32) times activations: int16 pair sums at
		// most 2*31*127.
		VPMADDUBSW(Mem{Base: qp, Disp: 64 * j}, lo, lo)
		VPMADDUBSW(Mem{Base: qp, Disp: 64*j + 32}, hi, hi)
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
	xi := sum.AsX()
	xh := XMM()
	VEXTRACTI128(U8(1), sum, xh)
	VPADDD(xh, xi, xi)
	// {isum, msum, isum, msum} from xi and mins, with blends and in-lane
	// shuffles (VPHADDD is slow on Zen 3).
	VPBLENDD(U8(0xa), mins, xi, xh) // {i0, m1, i2, m3}
	VPBLENDD(U8(0xa), xi, mins, xi) // {m0, i1, m2, i3}
	VPSHUFD(U8(0xb1), xi, xi)       // {i1, m0, i3, m2}
	VPADDD(xh, xi, xi)
	VPSHUFD(U8(0x4e), xi, xh)
	VPADDD(xh, xi, xi)
	VCVTDQ2PS(xi, xi)

	dd := XMM()
	VMOVD(Mem{Base: wp}, dd)
	VCVTPH2PS(dd, dd) // {dw, dmin, 0, 0}
	db := XMM()
	VBROADCASTSS(Mem{Base: dp}, db)
	VMULPS(db, dd, dd)
	VXORPS(cNegLn1, dd, dd) // {dw*d, -(dmin*d), 0, 0}
	a := XMM()
	slot := Mem{Base: ap, Index: k, Scale: 4}
	VMOVSS(slot, a)
	VFMADD231SS(xi, dd, a)
	VMOVSHDUP(xi, xi)
	VMOVSHDUP(dd, dd)
	VFMADD231SS(xi, dd, a)
	VMOVSS(a, slot)

	ADDQ(U32(size), wp)
	ADDQ(U32(256), qp)
	ADDQ(U8(32), bp)
	ADDQ(U8(4), dp)
	INCQ(k)
	ANDQ(U8(7), k)
	DECQ(nb)
	JNZ(LabelRef(loop))

	Label(done)
	kquantEnd(local)
}

func kquantQ6K() {
	fn := "avx2DotQ6_K"
	TEXT(fn, NOSPLIT, "func(w []byte, q []int8, d []float32) float32")
	Pragma("noescape")
	Doc(
		fn+" is the Q6_K row rule of the package doc with len(d) super-blocks",
		"(AVX2, FMA, F16C). It computes exactly, with w and q at least 210*len(d)",
		"and 256*len(d) long (not checked) and every q[i] in [-127, 127]:",
		"",
		"\tvar acc [8]float32",
		"\tfor b := range d {",
		"\t\twb, qb := w[210*b:], q[256*b:]",
		"\t\tvar isum int32",
		"\t\tfor i := range 256 {",
		"\t\t\th, c, l := i/128, i%128/32, i%32",
		"\t\t\tql := wb[64*h+32*(c%2)+l] >> (4 * (c / 2)) & 15",
		"\t\t\tqh := wb[128+32*h+l] >> (2 * c) & 3",
		"\t\t\tisum += int32(int8(wb[192+i/16])) * (int32(ql|qh<<4) - 32) * int32(qb[i])",
		"\t\t}",
		"\t\tacc[b%8] = fma32(float32(fp16(wb[208:])*d[b]), float32(isum), acc[b%8])",
		"\t}",
		"\treturn tree8(&acc)",
	)

	wp := Load(Param("w").Base(), GP64())
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	nib, x30, x20 := load(cNib), load(cX30), load(cX20)
	local, ap, k := kquantAcc()
	loop, done := fn+"_loop", fn+"_done"
	TESTQ(nb, nb)
	JZ(LabelRef(done))

	loopLabel(loop)
	prefetch(wp, 210, quantPrefetch)
	// The sixteen int8 scales as int16, each half of the block's scales
	// in both 128-bit halves of a register: one in-lane VPSHUFB then puts
	// sc[2c] in the low and sc[2c+1] in the high half.
	sc := YMM()
	VPMOVSXBW(Mem{Base: wp, Disp: 192}, sc)
	var scs [2]reg.VecVirtual
	for h := range scs {
		scs[h] = YMM()
		VPERMQ(U8([]uint8{0x44, 0xee}[h]), sc, scs[h])
	}
	var sum reg.VecVirtual
	for h := range 2 {
		qh := YMM()
		VMOVDQU(Mem{Base: wp, Disp: 128 + 32*h}, qh)
		ql := [2]reg.VecVirtual{YMM(), YMM()}
		VMOVDQU(Mem{Base: wp, Disp: 64 * h}, ql[0])
		VMOVDQU(Mem{Base: wp, Disp: 64*h + 32}, ql[1])
		for c := range 4 {
			// Quants 32c..32c+31 of this half: a nibble of ql[c%2] and
			// bits 2c, 2c+1 of qh, in [0, 63].
			x := avx2.Q6KQuant(c, ql, qh, nib, x30)
			// (quant - 32) * q as quant*q - 32*q: int16 pair sums at most
			// 2*63*127 and 2*32*127, their difference in [-8128, 7874].
			qv := YMM()
			VMOVDQU(Mem{Base: qp, Disp: 128*h + 32*c}, qv)
			VPMADDUBSW(qv, x, x)
			m := YMM()
			VPMADDUBSW(qv, x20, m)
			VPSUBW(m, x, x)
			s16 := YMM()
			VPSHUFB(cQ6Shuf.Offset(32*c), scs[h], s16) // {sc[8h+2c] ×8 | sc[8h+2c+1] ×8}
			VPMADDWD(s16, x, x)
			if sum == nil {
				sum = x
			} else {
				VPADDD(x, sum, sum)
			}
		}
	}
	xi := hsumI32(sum)
	VCVTDQ2PS(xi, xi)
	hd := loadF16(Mem{Base: wp, Disp: 208})
	VMULSS(Mem{Base: dp}, hd, hd)
	a := XMM()
	slot := Mem{Base: ap, Index: k, Scale: 4}
	VMOVSS(slot, a)
	VFMADD231SS(xi, hd, a)
	VMOVSS(a, slot)

	ADDQ(U32(210), wp)
	ADDQ(U32(256), qp)
	ADDQ(U8(4), dp)
	INCQ(k)
	ANDQ(U8(7), k)
	DECQ(nb)
	JNZ(LabelRef(loop))

	Label(done)
	kquantEnd(local)
}
