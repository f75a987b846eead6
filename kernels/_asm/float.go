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
	name  string // as in "F16"
	size  int    // bytes per element
	conv  string // Go expression of element i of w as float32, for the doc
	load8 func(m Mem) reg.VecVirtual
	load1 func(m Mem) reg.VecVirtual
}

var (
	f32Weights = &floatType{
		name: "F32",
		size: 4,
		conv: "math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))",
		load8: func(m Mem) reg.VecVirtual {
			y := YMM()
			VMOVUPS(m, y)
			return y
		},
		load1: func(m Mem) reg.VecVirtual {
			x := XMM()
			VMOVSS(m, x)
			return x
		},
	}
	f16Weights = &floatType{
		name: "F16",
		size: 2,
		conv: "fp16(w[2*i:])",
		load8: func(m Mem) reg.VecVirtual {
			y := YMM()
			VCVTPH2PS(m, y)
			return y
		},
		load1: loadF16,
	}
	bf16Weights = &floatType{
		name: "BF16",
		size: 2,
		conv: "math.Float32frombits(uint32(binary.LittleEndian.Uint16(w[2*i:])) << 16)",
		load8: func(m Mem) reg.VecVirtual {
			y := YMM()
			VPMOVZXWD(m, y)
			VPSLLD(U8(16), y, y)
			return y
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

func floatDot(t *floatType) {
	fn := "avx2Dot" + t.name
	TEXT(fn, NOSPLIT, "func(w []byte, x []float32) float32")
	Pragma("noescape")
	Doc(
		fmt.Sprintf("%s is the float rule of the package doc for %s weights (AVX2, FMA,", fn, t.name),
		fmt.Sprintf("F16C). It computes exactly, with len(w) >= %d*len(x) (not checked):", t.size),
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
		"The 32 lanes are four YMM accumulators.",
	)

	wp := Load(Param("w").Base(), GP64())
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
	prefetch(wp, 32*t.size, floatPrefetch)
	for i := range acc {
		v := t.load8(Mem{Base: wp, Disp: 8 * t.size * i})
		VFMADD231PS(Mem{Base: xp, Disp: 32 * i}, v, acc[i])
	}
	ADDQ(U32(32*t.size), wp)
	ADDQ(U32(128), xp)
	DECQ(n32)
	JNZ(LabelRef(loop))

	Label(tail)
	tl := XMM()
	VXORPS(tl, tl, tl)
	ANDQ(U8(31), n)
	JZ(LabelRef(reduce))
	Label(tailLoop)
	v := t.load1(Mem{Base: wp})
	VFMADD231SS(Mem{Base: xp}, v, tl)
	ADDQ(U8(t.size), wp)
	ADDQ(U8(4), xp)
	DECQ(n)
	JNZ(LabelRef(tailLoop))

	Label(reduce)
	// r = (acc[j] + acc[j+8]) + (acc[j+16] + acc[j+24]), then the tree.
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	r := hsumF32(acc[0])
	VADDSS(tl, r, r)
	VZEROUPPER()
	Store(r, ReturnIndex(0))
	RET()
}
