package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// floatType is a float weight element type, dotted with float32
// activations by the package doc's float rule.
type floatType struct {
	name   string // as in "F16"
	isa    string // the instruction sets of its kernels, for the doc
	size   int    // bytes per element
	conv   string // Go expression of element i of w as float32, for the doc
	load16 func(m Mem) reg.VecVirtual
	load1  func(m Mem) reg.VecVirtual
	// widen, for the 2-byte types, converts the sixteen elements in y
	// (a YMM, or the low half of a ZMM) to the float32 lanes of a new ZMM.
	widen func(y reg.Register) reg.VecVirtual
}

var (
	f32Weights = &floatType{
		name: "F32",
		isa:  "AVX-512F",
		size: 4,
		conv: "math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))",
		load16: func(m Mem) reg.VecVirtual {
			z := ZMM()
			VMOVUPS(m, z)
			return z
		},
		load1: func(m Mem) reg.VecVirtual {
			x := XMM()
			VMOVSS(m, x)
			return x
		},
	}
	f16Weights = &floatType{
		name:   "F16",
		isa:    "AVX-512F",
		size:   2,
		conv:   "fp16(w[2*i:])",
		load16: loadF16x16,
		load1:  loadF16,
		widen: func(y reg.Register) reg.VecVirtual {
			z := ZMM()
			VCVTPH2PS(y, z)
			return z
		},
	}
	bf16Weights = &floatType{
		name: "BF16",
		isa:  "AVX-512F, BW",
		size: 2,
		conv: "math.Float32frombits(uint32(binary.LittleEndian.Uint16(w[2*i:])) << 16)",
		load16: func(m Mem) reg.VecVirtual {
			z := ZMM()
			VPMOVZXWD(m, z)
			VPSLLD(U8(16), z, z)
			return z
		},
		widen: func(y reg.Register) reg.VecVirtual {
			z := ZMM()
			VPMOVZXWD(y, z)
			VPSLLD(U8(16), z, z)
			return z
		},
		load1: func(m Mem) reg.VecVirtual {
			r := GP32()
			MOVWLZX(m, r)
			SHLL(U8(16), r)
			x := XMM()
			VMOVD(r, x)
			return x
		},
	}
)

// loadF16x16 converts the sixteen fp16 values at m to the float32 lanes
// of a new ZMM (exactly: every half is a float32).
func loadF16x16(m Mem) reg.VecVirtual {
	z := ZMM()
	VCVTPH2PS(m, z)
	return z
}

// rowDot generates the row kernel of t: a loop of 32 elements, two ZMM
// accumulators, then a sequential scalar tail.
func rowDot(t *floatType) {
	fn := "avx512Dot" + t.name
	TEXT(fn, NOSPLIT, "func(w []byte, x []float32) float32")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s is the float rule of the package doc for %s weights", fn, t.name),
		fmt.Sprintf("(%s). It computes exactly, with len(w) >= %d*len(x) (not checked):", t.isa, t.size),
		"",
		"\tvar acc [32]float32",
		"\tn32 := len(x) &^ 31",
		"\tfor i := range n32 {",
		fmt.Sprintf("\t\tacc[i%%32] = fma32(%s, x[i], acc[i%%32])", t.conv),
		"\t}",
		"\tvar t float32",
		"\tfor i := n32; i < len(x); i++ {",
		fmt.Sprintf("\t\tt = fma32(%s, x[i], t)", t.conv),
		"\t}",
		"\treturn reduce32(&acc) + t",
		"",
		"The 32 lanes are two ZMM accumulators, acc[0..15] and acc[16..31].",
	)

	wp := Load(Param("w").Base(), GP64())
	xp := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	a0, a1 := ZMM(), ZMM()
	zero(a0)
	zero(a1)
	loop, tail, tailLoop, reduce := fn+"_loop", fn+"_tail", fn+"_tailloop", fn+"_reduce"
	n32 := GP64()
	MOVQ(n, n32)
	SHRQ(U8(5), n32)
	JZ(LabelRef(tail))

	loopLabel(loop)
	rowPrefetchLoop(wp, 32*t.size)
	var v0, v1 reg.VecVirtual
	if t.widen != nil {
		// One 64-byte load of the 32 weights (a cache line when w is
		// aligned), widened half by half: faster from memory than two
		// 32-byte loads.
		z := ZMM()
		VMOVDQU64(Mem{Base: wp}, z)
		v0 = t.widen(z.AsY())
		hi := YMM()
		VEXTRACTI64X4(U8(1), z, hi)
		v1 = t.widen(hi)
	} else {
		v0 = t.load16(Mem{Base: wp})
		v1 = t.load16(Mem{Base: wp, Disp: 16 * t.size})
	}
	VFMADD231PS(Mem{Base: xp}, v0, a0)
	VFMADD231PS(Mem{Base: xp, Disp: 64}, v1, a1)
	ADDQ(U32(32*t.size), wp)
	ADDQ(U32(128), xp)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	tl := XMM()
	zero(tl)
	ANDQ(U8(31), n)
	JZ(LabelRef(reduce))
	Label(tailLoop)
	s := t.load1(Mem{Base: wp})
	VFMADD231SS(Mem{Base: xp}, s, tl)
	ADDQ(U8(t.size), wp)
	ADDQ(U8(4), xp)
	DECQ(n)
	JNZ(LabelRef(tailLoop))

	Label(reduce)
	r := reduce32(a0, a1)
	VADDSS(tl, r, r)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}
