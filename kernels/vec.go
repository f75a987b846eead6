package kernels

import (
	"fmt"
	"math"

	"github.com/stratanet/strata/weights/quant"
)

// VecKernels is the table of one path's vector kernels: the inner loops of
// Attention, Softmax, the activations and RMSNorm. Every entry computes
// exactly what its generic implementation (below) computes, so the result
// is the same bits on every path. Lengths are checked by the callers (the
// Path methods and Attention); an entry may assume them.
type VecKernels struct {
	// Dot is the float rule's dot product of a and b[:len(a)] (dotVec).
	Dot func(a, b []float32) float32
	// DotF16 is Dot with a as IEEE half bits (dotVecF16).
	DotF16 func(a []uint16, b []float32) float32
	// MeanSquare is RMSNorm's mean of the squares (meanSquare); len(x)
	// > 0.
	MeanSquare func(x []float32) float32
	// Sum is the float rule's sum (sumVec, = Dot with a vector of ones).
	Sum func(x []float32) float32
	// QuantizeQ8 writes the Q8 form of x (len(x) = 32*len(d), q and s as
	// long as x and d) into q, d and s (quantizeQ8).
	QuantizeQ8 func(q []int8, d []float32, s []int32, x []float32)
	// QuantizeQ8K writes the Q8K form of x (len(x) = 256*len(d), q as
	// long as x, bsums 16*len(d)) into q, d and bsums (quantizeQ8K).
	QuantizeQ8K func(q []int8, d []float32, bsums []int16, x []float32)
	// Max returns the largest element of x (-Inf if x is empty); with no
	// NaN in x it is the value of a sequential v > m scan, except that a
	// zero result may have either sign.
	Max func(x []float32) float32
	// Axpy sets dst_i = fma(a, x_i, dst_i) for i < len(dst).
	Axpy func(dst, x []float32, a float32)
	// AxpyF16 is Axpy with x as IEEE half bits, converted exactly.
	AxpyF16 func(dst []float32, x []uint16, a float32)
	// Exp sets dst_i = Exp(x_i) for i < len(dst).
	Exp func(dst, x []float32)
	// ExpSub sets dst_i = Exp(x_i - m) (the difference rounded, then Exp).
	ExpSub func(dst, x []float32, m float32)
	// Scale sets dst_i = x_i * s.
	Scale func(dst, x []float32, s float32)
	// ScaleMul sets dst_i = (x_i * s) * w_i (two roundings).
	ScaleMul func(dst, x, w []float32, s float32)
	// SiLU sets dst_i = silu(x_i).
	SiLU func(dst, x []float32)
	// SwiGLU sets dst_i = silu(g_i) * up_i.
	SwiGLU func(dst, g, up []float32)

	// Scores sets s_j = float32(Dot(q, k_j) * scale) for j < len(s), where
	// k_j = k[j*stride : j*stride+len(q)] (attention's scores).
	Scores func(s, q, k []float32, stride int, scale float32)
	// ScoresF16 is Scores with k as IEEE half bits (DotF16).
	ScoresF16 func(s, q []float32, k []uint16, stride int, scale float32)
	// WeightedSum does Axpy(out, v_j, w_j) for j = 0, 1, …, len(w)-1 in
	// order, where v_j = v[j*stride : j*stride+len(out)] (attention's
	// weighted sum of the values).
	WeightedSum func(out, w, v []float32, stride int)
	// WeightedSumF16 is WeightedSum with v as IEEE half bits (AxpyF16).
	WeightedSumF16 func(out, w []float32, v []uint16, stride int)
}

// genericVec is the reference table.
var genericVec = VecKernels{
	Scores: func(s, q, k []float32, stride int, scale float32) {
		hd := len(q)
		for j := range s {
			s[j] = float32(dotVec(q, k[j*stride:j*stride+hd]) * scale)
		}
	},
	ScoresF16: func(s, q []float32, k []uint16, stride int, scale float32) {
		hd := len(q)
		for j := range s {
			s[j] = float32(dotVecF16(k[j*stride:j*stride+hd], q) * scale)
		}
	},
	WeightedSum: func(out, w, v []float32, stride int) {
		hd := len(out)
		for j, wj := range w {
			vj := v[j*stride : j*stride+hd]
			for d := range out {
				out[d] = fma32(wj, vj[d], out[d])
			}
		}
	},
	WeightedSumF16: func(out, w []float32, v []uint16, stride int) {
		hd := len(out)
		for j, wj := range w {
			vj := v[j*stride : j*stride+hd]
			for d := range out {
				out[d] = fma32(wj, quant.FP16ToFP32(vj[d]), out[d])
			}
		}
	},
	Dot:        dotVec,
	MeanSquare: meanSquare,
	DotF16:     dotVecF16,
	Sum:        sumVec,

	QuantizeQ8:  quantizeQ8,
	QuantizeQ8K: quantizeQ8K,
	Max: func(x []float32) float32 {
		m := float32(math.Inf(-1))
		for _, v := range x {
			if v > m {
				m = v
			}
		}
		return m
	},
	Axpy: func(dst, x []float32, a float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = fma32(a, x[i], dst[i])
		}
	},
	AxpyF16: func(dst []float32, x []uint16, a float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = fma32(a, quant.FP16ToFP32(x[i]), dst[i])
		}
	},
	Exp: func(dst, x []float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = Exp(x[i])
		}
	},
	ExpSub: func(dst, x []float32, m float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = Exp(x[i] - m)
		}
	},
	Scale: func(dst, x []float32, s float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = x[i] * s
		}
	},
	ScaleMul: func(dst, x, w []float32, s float32) {
		x = x[:len(dst)]
		w = w[:len(dst)]
		for i := range dst {
			dst[i] = float32(x[i]*s) * w[i]
		}
	},
	SiLU: func(dst, x []float32) {
		x = x[:len(dst)]
		for i := range dst {
			dst[i] = silu(x[i])
		}
	},
	SwiGLU: func(dst, g, up []float32) {
		g = g[:len(dst)]
		up = up[:len(dst)]
		for i := range dst {
			dst[i] = silu(g[i]) * up[i]
		}
	},
}

// pathVec holds the assembly paths' vector kernels, filled by init
// functions (vec_amd64.go) and never changed afterwards.
var pathVec = map[Path]*VecKernels{}

// registerVec installs a path's vector kernels, filling its nil entries
// from the generic ones. Called only from init functions.
func registerVec(p Path, k VecKernels) {
	g := &genericVec
	fill := func(dst *func(dst, x []float32), src func(dst, x []float32)) {
		if *dst == nil {
			*dst = src
		}
	}
	fill(&k.Exp, g.Exp)
	fill(&k.SiLU, g.SiLU)
	if k.Dot == nil {
		k.Dot = g.Dot
	}
	if k.DotF16 == nil {
		k.DotF16 = g.DotF16
	}
	if k.Sum == nil {
		k.Sum = g.Sum
	}
	if k.MeanSquare == nil {
		k.MeanSquare = g.MeanSquare
	}
	if k.QuantizeQ8 == nil {
		k.QuantizeQ8 = g.QuantizeQ8
	}
	if k.QuantizeQ8K == nil {
		k.QuantizeQ8K = g.QuantizeQ8K
	}
	if k.Max == nil {
		k.Max = g.Max
	}
	if k.Axpy == nil {
		k.Axpy = g.Axpy
	}
	if k.AxpyF16 == nil {
		k.AxpyF16 = g.AxpyF16
	}
	if k.ExpSub == nil {
		k.ExpSub = g.ExpSub
	}
	if k.Scale == nil {
		k.Scale = g.Scale
	}
	if k.ScaleMul == nil {
		k.ScaleMul = g.ScaleMul
	}
	if k.SwiGLU == nil {
		k.SwiGLU = g.SwiGLU
	}
	if k.Scores == nil {
		k.Scores = g.Scores
	}
	if k.ScoresF16 == nil {
		k.ScoresF16 = g.ScoresF16
	}
	if k.WeightedSum == nil {
		k.WeightedSum = g.WeightedSum
	}
	if k.WeightedSumF16 == nil {
		k.WeightedSumF16 = g.WeightedSumF16
	}
	pathVec[p] = &k
}

// without the assembly paths registerVec has no caller.
var _ = registerVec

// Vec returns path p's vector kernels: the generic ones for Generic and
// for any path this build or CPU has no vector kernels for (they compute
// the same bits, only slower).
func (p Path) Vec() *VecKernels {
	if k, ok := pathVec[p]; ok {
		return k
	}
	return &genericVec
}

// The path-aware forms of the package's elementwise kernels: p.Softmax,
// p.SiLU, p.SwiGLU, p.RMSNorm and p.RMSNormRows compute exactly the bits
// of Softmax, SiLU, SwiGLU, RMSNorm and RMSNormRows (which are the Generic
// path's), with path p's vector kernels (see Path.Vec).

// Softmax is Softmax on path p.
func (p Path) Softmax(x []float32) { p.Vec().softmax(x) }

func (k *VecKernels) softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := k.Max(x)
	k.ExpSub(x, x, m)
	k.Scale(x, x, 1/k.Sum(x))
}

// SiLU is SiLU on path p.
func (p Path) SiLU(dst, x []float32) {
	if len(dst) != len(x) {
		panic(fmt.Sprintf("kernels: SiLU: len(dst), len(x) = %d, %d", len(dst), len(x)))
	}
	p.Vec().SiLU(dst, x)
}

// SwiGLU is SwiGLU on path p.
func (p Path) SwiGLU(dst, gate, up []float32) {
	checkLen3("SwiGLU", dst, gate, up)
	p.Vec().SwiGLU(dst, gate, up)
}

// RMSNorm is RMSNorm on path p.
func (p Path) RMSNorm(dst, x, w []float32, eps float32) {
	if len(dst) != len(x) || len(w) != len(x) {
		panic(fmt.Sprintf("kernels: RMSNorm: len(dst), len(x), len(w) = %d, %d, %d", len(dst), len(x), len(w)))
	}
	p.Vec().rmsNorm(dst, x, w, eps)
}

// RMSNormRows is RMSNormRows on path p.
func (p Path) RMSNormRows(dst, x, w []float32, eps float32) {
	n := len(w)
	if len(dst) != len(x) || (n == 0 && len(x) != 0) || (n != 0 && len(x)%n != 0) {
		panic(fmt.Sprintf("kernels: RMSNormRows: len(dst), len(x), len(w) = %d, %d, %d", len(dst), len(x), len(w)))
	}
	k := p.Vec()
	for r := 0; r < len(x); r += n {
		k.rmsNorm(dst[r:r+n], x[r:r+n], w, eps)
	}
}

// rmsNorm is rmsNorm (norm.go) with k's kernels.
func (k *VecKernels) rmsNorm(dst, x, w []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	mean := k.MeanSquare(x)
	scale := 1 / sqrt32(mean+eps)
	k.ScaleMul(dst[:n], x, w[:n], scale)
}
