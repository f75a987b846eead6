package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// legacyType describes a 32-element weight block type dotted with the Q8
// activation form.
type legacyType struct {
	name string // ggml's name, as in "Q8_0"
	size int    // bytes per block
	min  bool   // the _1 types: a second term m*d * float32(s)

	// setup loads the constants that isum needs into registers; it runs
	// once, before the loops.
	setup func() []reg.VecVirtual
	// isum returns sixteen int16 whose sum is the exact integer dot
	// product of the weight block at w+off with the 32 activations at
	// q+qoff. c holds setup's registers.
	isum func(c []reg.VecVirtual, w reg.Register, off int, q reg.Register, qoff int) reg.VecVirtual
	// narrow: every sum of four of isum's int16 fits in an int16, so that
	// two levels of the transposition can add in int16 (VPHADDW).
	narrow bool
	// quant is the Go expression of the weight quant i (0 <= i < 32) of
	// the block wb, as an int32, for the doc comment.
	quant string
}

// signedDot returns the sixteen int16 pair sums of the signed bytes x
// times the activation bytes q[qoff:qoff+32] (in [-127, 127]): |x| times q
// with x's sign, as ggml does. |x| <= 128 keeps them within ±32512.
func signedDot(x reg.VecVirtual, q reg.Register, qoff int) reg.VecVirtual {
	ax := YMM()
	VPABSB(x, ax)
	sq := YMM()
	VMOVDQU(Mem{Base: q, Disp: qoff}, sq)
	VPSIGNB(x, sq, sq)
	VPMADDUBSW(sq, ax, ax)
	return ax
}

// unsignedDot returns the sixteen int16 pair sums of the unsigned bytes x
// (< 128) times the activation bytes q[qoff:qoff+32].
func unsignedDot(x reg.VecVirtual, q reg.Register, qoff int) reg.VecVirtual {
	VPMADDUBSW(Mem{Base: q, Disp: qoff}, x, x)
	return x
}

// offsetDot returns the sixteen int16 pair sums of (x - off) times the
// activation bytes q[qoff:qoff+32], for unsigned bytes x (< 128) and a
// register offs of bytes off: x*q - off*q.
func offsetDot(x, offs reg.VecVirtual, q reg.Register, qoff int) reg.VecVirtual {
	qm := Mem{Base: q, Disp: qoff}
	VPMADDUBSW(qm, x, x)
	m := YMM()
	VPMADDUBSW(qm, offs, m)
	VPSUBW(m, x, x)
	return x
}

// nibbles returns the 32 nibbles of the 16 bytes at m: byte j's low nibble
// in lane j, its high nibble in lane 16+j (ggml's element order).
func nibbles(c []reg.VecVirtual, m Mem) reg.VecVirtual {
	nib, hishift := c[1], c[2]
	x := YMM()
	VBROADCASTI128(m, x)
	VPSRLVQ(hishift, x, x)
	VPAND(nib, x, x)
	return x
}

// fifthBits returns 32 bytes, 0xff in lane i where bit i of the
// little-endian uint32 at m is set and 0 elsewhere.
func fifthBits(c []reg.VecVirtual, m Mem) reg.VecVirtual {
	bitbyte, bitmask := c[3], c[4]
	h := YMM()
	VPBROADCASTD(m, h)
	VPSHUFB(bitbyte, h, h)
	VPAND(bitmask, h, h)
	VPCMPEQB(bitmask, h, h)
	return h
}

func legacySetup(extra ...Mem) func() []reg.VecVirtual {
	return func() []reg.VecVirtual {
		c := []reg.VecVirtual{load(cOnes16)}
		for _, m := range extra {
			c = append(c, load(m))
		}
		return c
	}
}

func legacyQ4_0() {
	legacyDot(&legacyType{
		name:  "Q4_0",
		size:  18,
		setup: legacySetup(cNib, cHiShift, cEight),
		isum: func(c []reg.VecVirtual, w reg.Register, off int, q reg.Register, qoff int) reg.VecVirtual {
			x := nibbles(c, Mem{Base: w, Disp: off + 2})
			return offsetDot(x, c[3], q, qoff) // pair sums up to 2*8*127
		},
		narrow: true,
		quant:  "int32(wb[2+i%16]>>(4*(i/16))&15) - 8",
	})
}

func legacyQ5_0() {
	legacyDot(&legacyType{
		name:  "Q5_0",
		size:  22,
		setup: legacySetup(cNib, cHiShift, cBitByte, cBitMask, cXF0),
		isum: func(c []reg.VecVirtual, w reg.Register, off int, q reg.Register, qoff int) reg.VecVirtual {
			h := fifthBits(c, Mem{Base: w, Disp: off + 2})
			x := nibbles(c, Mem{Base: w, Disp: off + 6})
			// nibble - 16 + 16*bit: a clear bit sets the high nibble
			// (0xf0 | n is n-16 as int8).
			VPANDN(c[5], h, h)
			VPOR(h, x, x)
			return signedDot(x, q, qoff) // pair sums up to 2*16*127
		},
		narrow: true,
		quant:  "int32(wb[6+i%16]>>(4*(i/16))&15|byte(binary.LittleEndian.Uint32(wb[2:])>>i&1)<<4) - 16",
	})
}

func legacyQ4_1() {
	legacyDot(&legacyType{
		name:  "Q4_1",
		size:  20,
		min:   true,
		setup: legacySetup(cNib, cHiShift),
		isum: func(c []reg.VecVirtual, w reg.Register, off int, q reg.Register, qoff int) reg.VecVirtual {
			x := nibbles(c, Mem{Base: w, Disp: off + 4})
			return unsignedDot(x, q, qoff) // pair sums up to 2*15*127
		},
		narrow: true,
		quant:  "int32(wb[4+i%16]>>(4*(i/16))&15)",
	})
}

func legacyQ5_1() {
	legacyDot(&legacyType{
		name:  "Q5_1",
		size:  24,
		min:   true,
		setup: legacySetup(cNib, cHiShift, cBitByte, cBitMask, cX10),
		isum: func(c []reg.VecVirtual, w reg.Register, off int, q reg.Register, qoff int) reg.VecVirtual {
			h := fifthBits(c, Mem{Base: w, Disp: off + 4})
			x := nibbles(c, Mem{Base: w, Disp: off + 8})
			VPAND(c[5], h, h)
			VPOR(h, x, x)
			return unsignedDot(x, q, qoff) // pair sums up to 2*31*127
		},
		narrow: true,
		quant:  "int32(wb[8+i%16]>>(4*(i/16))&15|byte(binary.LittleEndian.Uint32(wb[4:])>>i&1)<<4)",
	})
}

// legacyDoc is the Go statement of what the generated function computes.
func legacyDoc(fn string, t *legacyType) []string {
	doc := []string{
		fmt.Sprintf("%s is the %s row rule of the package doc with len(d) blocks", fn, t.name),
		fmt.Sprintf("(AVX2, FMA, F16C). It computes exactly, with w and q at least %d*len(d)", t.size),
		"and 32*len(d) long (not checked) and every q[i] in [-127, 127]:",
		"",
		"\tvar acc [8]float32",
		"\tfor b := range d {",
		fmt.Sprintf("\t\twb := w[%d*b:]", t.size),
		"\t\tvar isum int32",
		"\t\tfor i := range 32 {",
		fmt.Sprintf("\t\t\tisum += (%s) * int32(q[32*b+i])", t.quant),
		"\t\t}",
	}
	if t.min {
		doc = append(doc,
			"\t\ta := fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b%8])",
			"\t\tacc[b%8] = fma32(float32(fp16(wb[2:])*d[b]), float32(s[b]), a)",
		)
	} else {
		doc = append(doc, "\t\tacc[b%8] = fma32(float32(fp16(wb[0:])*d[b]), float32(isum), acc[b%8])")
	}
	return append(doc,
		"\t}",
		"\treturn tree8(&acc)",
		"",
		"Eight blocks at a time: the blocks' int32 partial sums are transposed",
		"into one vector of eight block sums, so that block b is lane b%8 of a",
		"vector accumulator; the last len(d)%8 blocks use scalar operations on",
		"lanes 0..len(d)%8-1.",
	)
}

func legacyDot(t *legacyType) {
	fn := "avx2Dot" + t.name
	sig := "func(w []byte, q []int8, d []float32) float32"
	if t.min {
		sig = "func(w []byte, q []int8, d []float32, s []int32) float32"
	}
	TEXT(fn, NOSPLIT, sig)
	Pragma("noescape")
	Doc(legacyDoc(fn, t)...)

	wp := Load(Param("w").Base(), GP64())
	qp := Load(Param("q").Base(), GP64())
	dp := Load(Param("d").Base(), GP64())
	nb := Load(Param("d").Len(), GP64())
	var sp reg.Register
	if t.min {
		sp = Load(Param("s").Base(), GP64())
	}
	c := t.setup()
	acc := YMM()
	VXORPS(acc, acc, acc)

	loop, tail, tailLoop, done := fn+"_loop8", fn+"_tail", fn+"_tailloop", fn+"_done"
	n8 := GP64()
	MOVQ(nb, n8)
	SHRQ(U8(3), n8)
	JZ(LabelRef(tail))

	loopLabel(loop)
	prefetch(wp, 8*t.size, quantPrefetch)
	isum := transpose8(c[0], t.narrow, func(k int) reg.VecVirtual {
		return t.isum(c, wp, k*t.size, qp, 32*k)
	})
	VCVTDQ2PS(isum, isum)
	dw := gatherF16(wp, 0, t.size)
	VMULPS(Mem{Base: dp}, dw, dw)
	VFMADD231PS(isum, dw, acc)
	if t.min {
		mw := gatherF16(wp, 2, t.size)
		VMULPS(Mem{Base: dp}, mw, mw)
		sf := YMM()
		VCVTDQ2PS(Mem{Base: sp}, sf)
		VFMADD231PS(sf, mw, acc)
		ADDQ(U32(32), sp)
	}
	ADDQ(U32(8*t.size), wp)
	ADDQ(U32(8*32), qp)
	ADDQ(U32(8*4), dp)
	DECQ(n8)
	JNZ(LabelRef(loop))

	Label(tail)
	ANDQ(U32(7), nb)
	JZ(LabelRef(done))
	local := AllocLocal(32)
	VMOVUPS(acc, local)
	ap := GP64()
	LEAQ(local, ap)

	Label(tailLoop)
	p := t.isum(c, wp, 0, qp, 0)
	VPMADDWD(c[0], p, p)
	x := hsumI32(p)
	VCVTDQ2PS(x, x)
	h := loadF16(Mem{Base: wp})
	VMULSS(Mem{Base: dp}, h, h)
	a := XMM()
	VMOVSS(Mem{Base: ap}, a)
	VFMADD231SS(x, h, a)
	if t.min {
		m := loadF16(Mem{Base: wp, Disp: 2})
		VMULSS(Mem{Base: dp}, m, m)
		sf := XMM()
		VMOVD(Mem{Base: sp}, sf)
		VCVTDQ2PS(sf, sf)
		VFMADD231SS(sf, m, a)
		ADDQ(U8(4), sp)
	}
	VMOVSS(a, Mem{Base: ap})
	ADDQ(U32(t.size), wp)
	ADDQ(U8(32), qp)
	ADDQ(U8(4), dp)
	ADDQ(U8(4), ap)
	DECQ(nb)
	JNZ(LabelRef(tailLoop))
	VMOVUPS(local, acc)

	Label(done)
	r := hsumF32(acc)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}
