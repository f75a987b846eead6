package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/quant"
)

// AttentionFunc is an implementation of kernels.Attention.Forward, with
// its scratch kept between calls (such as the method value
// new(kernels.Attention).Forward).
type AttentionFunc func(dst, q []float32, k, v kernels.KV, positions []int32, heads, kvHeads, headDim int, scale float32, pool *kernels.Pool)

// AttentionThreads are the thread counts whose results must all agree.
var AttentionThreads = []int{1, 2, 3, 7}

// attnCase is one shape of the attention suite.
type attnCase struct {
	heads, kvHeads, headDim int
	positions               []int32
	ctx                     int  // cache positions (> max position)
	stride                  int  // 0: packed
	f16                     bool // float16 cache
}

func (c attnCase) String() string {
	typ := "F32"
	if c.f16 {
		typ = "F16"
	}
	return fmt.Sprintf("Attention(%d tok at %v, heads=%d/%d, headDim=%d, %s cache of %d, stride=%d)",
		len(c.positions), short(c.positions), c.heads, c.kvHeads, c.headDim, typ, c.ctx, c.stride)
}

func short(p []int32) string {
	if len(p) <= 4 {
		return fmt.Sprint(p)
	}
	return fmt.Sprintf("[%d %d … %d]", p[0], p[1], p[len(p)-1])
}

func attnCases(r *rand.Rand) []attnCase {
	seq := func(start, n int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(start + i)
		}
		return p
	}
	var cs []attnCase
	for _, f16 := range []bool{false, true} {
		cs = append(cs,
			attnCase{heads: 4, kvHeads: 4, headDim: 64, positions: seq(0, 7), ctx: 7, f16: f16},                  // prefill, MHA
			attnCase{heads: 8, kvHeads: 2, headDim: 128, positions: seq(40, 1), ctx: 41, f16: f16},               // decode, GQA
			attnCase{heads: 6, kvHeads: 1, headDim: 17, positions: seq(5, 4), ctx: 12, stride: 20, f16: f16},     // MQA, odd head, padded rows
			attnCase{heads: 2, kvHeads: 2, headDim: 1, positions: []int32{3, 0, 9}, ctx: 10, f16: f16},           // any order
			attnCase{heads: 4, kvHeads: 2, headDim: 33, positions: seq(int(r.IntN(300)), 3), ctx: 400, f16: f16}, // chunked prefill
			attnCase{heads: 3, kvHeads: 3, headDim: 8, positions: nil, ctx: 1, f16: f16},                         // no tokens
		)
	}
	return cs
}

// attnData is a case's random inputs.
type attnData struct {
	q    []float32
	kf   []float32 // the cache values as float32 (exact for F16)
	vf   []float32
	k, v kernels.KV
}

func newAttnData(r *rand.Rand, c attnCase, off int) attnData {
	row := c.kvHeads * c.headDim
	stride := c.stride
	if stride == 0 {
		stride = row
	}
	n := (c.ctx-1)*stride + row
	d := attnData{q: RandVec(r, len(c.positions)*c.heads*c.headDim, 1)}
	d.kf, d.vf = RandVec(r, n, 1), RandVec(r, n, 2)
	if c.f16 {
		kh, vh := make([]uint16, off+n), make([]uint16, off+n)
		for i := range n {
			kh[off+i] = quant.FP32ToFP16(d.kf[i])
			vh[off+i] = quant.FP32ToFP16(d.vf[i])
			d.kf[i] = quant.FP16ToFP32(kh[off+i])
			d.vf[i] = quant.FP16ToFP32(vh[off+i])
		}
		d.k = kernels.KV{F16: kh[off:], Stride: c.stride}
		d.v = kernels.KV{F16: vh[off:], Stride: c.stride}
	} else {
		d.k = kernels.KV{F32: Unaligned(d.kf, off), Stride: c.stride}
		d.v = kernels.KV{F32: Unaligned(d.vf, (off+1)%4), Stride: c.stride}
	}
	return d
}

// attnRef computes attention in float64 (gonum's Gemv for the scores and
// the weighted sum) and the tolerance of every output (see AttentionTol).
func attnRef(c attnCase, d attnData, scale float32) (want, tol []float64) {
	hd := c.headDim
	stride := c.stride
	if stride == 0 {
		stride = c.kvHeads * hd
	}
	k64, v64, q64 := f64s(d.kf), f64s(d.vf), f64s(d.q)
	want = make([]float64, len(d.q))
	tol = make([]float64, len(d.q))
	for t, p := range c.positions {
		n := int(p) + 1
		for h := range c.heads {
			g := h / (c.heads / c.kvHeads)
			q := q64[(t*c.heads+h)*hd : (t*c.heads+h+1)*hd]
			// K rows of this KV head: n×hd with row stride `stride`.
			km := blas64.General{Rows: n, Cols: hd, Stride: stride, Data: k64[g*hd:]}
			vm := blas64.General{Rows: n, Cols: hd, Stride: stride, Data: v64[g*hd:]}
			s := make([]float64, n)
			blas64.Gemv(blas.NoTrans, float64(scale), km, blas64.Vector{N: hd, Data: q, Inc: 1}, 0, blas64.Vector{N: n, Data: s, Inc: 1})
			var maxAbsDot, maxS, maxAbsS float64 = 0, math.Inf(-1), 0
			for j := range n {
				var a float64
				for i := range hd {
					a += math.Abs(q[i] * km.Data[j*stride+i])
				}
				maxAbsDot = math.Max(maxAbsDot, a)
				maxS = math.Max(maxS, s[j])
				maxAbsS = math.Max(maxAbsS, math.Abs(s[j]))
			}
			w := make([]float64, n)
			var sum, maxD float64
			for j := range n {
				w[j] = math.Exp(s[j] - maxS)
				sum += w[j]
				maxD = math.Max(maxD, maxS-s[j])
			}
			for j := range w {
				w[j] /= sum
			}
			out := want[(t*c.heads+h)*hd : (t*c.heads+h+1)*hd]
			blas64.Gemv(blas.Trans, 1, vm, blas64.Vector{N: n, Data: w, Inc: 1}, 0, blas64.Vector{N: hd, Data: out, Inc: 1})
			// Σ_j w_j |v_jd| per output.
			mag := make([]float64, hd)
			absV := blas64.General{Rows: n, Cols: hd, Stride: stride, Data: absAll(v64[g*hd:])}
			blas64.Gemv(blas.Trans, 1, absV, blas64.Vector{N: n, Data: w, Inc: 1}, 0, blas64.Vector{N: hd, Data: mag, Inc: 1})
			scoreErr := float64(scale)*(float64(hd)/32+40)*U*maxAbsDot + U*maxAbsS
			for i := range hd {
				tol[(t*c.heads+h)*hd+i] = AttentionTol(n, scoreErr, maxD, mag[i])
			}
		}
	}
	return want, tol
}

func absAll(x []float64) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = math.Abs(v)
	}
	return y
}

// AttentionTol is the bound on |got - want| for one output of attention
// over n positions, where scoreErr bounds the error of every score (the
// float rule's dot: scale (headDim/32 + 40) U Σ|q_i k_i|, plus U |s| for the
// scaling), maxD is the largest max(s) - s_j, and mag = Σ_j w_j |v_jd|. An
// error δ in the scores moves each weight by 2δ relative; the softmax's own
// rounding is (maxD + n/32 + 48) U relative (see SoftmaxTol); the fma
// accumulation over n positions adds n U:
//
//	(2 scoreErr/U + maxD + n/32 + 48 + n) U mag + 2^-140
func AttentionTol(n int, scoreErr, maxD, mag float64) float64 {
	return (2*scoreErr/U+maxD+float64(n)/32+48+float64(n))*U*mag + 0x1p-140
}

// TestAttention is the conformance suite of causal grouped-query
// attention. For MHA, GQA and MQA shapes, prefill, decode, chunked and
// unordered positions, float32 and float16 caches, packed and padded cache
// rows, at unaligned offsets, it checks:
//
//	(a) the result against a float64 reference within AttentionTol;
//	(b) the same bits for every thread count in AttentionThreads;
//	(c) the same bits for each token computed alone (prefill = decode);
//	(d) the same bits with dst = q (in place);
//	(e) nothing written outside dst, and q and the cache unchanged;
//	(f) no allocation once warm.
func TestAttention(t *testing.T, f AttentionFunc) {
	r := rand.New(rand.NewPCG(13, 0xa7))
	pools := make([]*kernels.Pool, len(AttentionThreads))
	for i, n := range AttentionThreads {
		pools[i] = kernels.NewPool(n)
		defer pools[i].Close()
	}
	for ci, c := range attnCases(r) {
		off := ci % 4
		d := newAttnData(r, c, off)
		scale := float32(1 / math.Sqrt(float64(c.headDim)))
		kBefore, vBefore := snapshotKV(d.k), snapshotKV(d.v)
		q := Unaligned(d.q, (off+2)%4)
		var first []float32
		for pi, pool := range append([]*kernels.Pool{nil}, pools...) {
			g := NewGuarded(len(d.q), (off+3)%4)
			f(g.Slice(), q, d.k, d.v, c.positions, c.heads, c.kvHeads, c.headDim, scale, pool)
			threads := 1
			if pool != nil {
				threads = pool.Threads()
			}
			label := fmt.Sprintf("%v threads=%d", c, threads)
			g.Check(t, label)
			if pi == 0 {
				first = g.Slice()
				want, tol := attnRef(c, d, scale)
				WithinTol(t, label, first, want, func(i int) float64 { return tol[i] })
				continue
			}
			EqualBits(t, label+" against no pool", g.Slice(), first)
		}
		EqualBits(t, c.String()+" q after the call", q, d.q)
		EqualBits(t, c.String()+" k after the call", snapshotKV(d.k), kBefore)
		EqualBits(t, c.String()+" v after the call", snapshotKV(d.v), vBefore)

		// Each token alone, last first.
		row := c.heads * c.headDim
		one := make([]float32, len(d.q))
		for tk := len(c.positions) - 1; tk >= 0; tk-- {
			f(one[tk*row:(tk+1)*row], q[tk*row:(tk+1)*row], d.k, d.v, c.positions[tk:tk+1], c.heads, c.kvHeads, c.headDim, scale, pools[1])
		}
		EqualBits(t, c.String()+" one token at a time", one, first)

		// In place.
		in := Unaligned(d.q, off)
		f(in, in, d.k, d.v, c.positions, c.heads, c.kvHeads, c.headDim, scale, pools[2])
		EqualBits(t, c.String()+" in place", in, first)

		out := make([]float32, len(d.q))
		if a := testing.AllocsPerRun(5, func() {
			f(out, q, d.k, d.v, c.positions, c.heads, c.kvHeads, c.headDim, scale, pools[2])
		}); a != 0 {
			t.Errorf("%v: allocates %v times per call once warm, want 0", c, a)
		}
	}
}

func snapshotKV(c kernels.KV) []float32 {
	if c.F32 != nil {
		return append([]float32(nil), c.F32...)
	}
	s := make([]float32, len(c.F16))
	for i, h := range c.F16 {
		s[i] = math.Float32frombits(uint32(h)) // the bits, to compare exactly
	}
	return s
}

// CompareAttention checks that got computes the same bits as want for
// every case of the suite, at 1 and 3 threads.
func CompareAttention(t *testing.T, got, want AttentionFunc) {
	r := rand.New(rand.NewPCG(14, 0xa7))
	p3 := kernels.NewPool(3)
	defer p3.Close()
	for ci, c := range attnCases(r) {
		d := newAttnData(r, c, ci%4)
		scale := float32(1 / math.Sqrt(float64(c.headDim)))
		w := make([]float32, len(d.q))
		want(w, d.q, d.k, d.v, c.positions, c.heads, c.kvHeads, c.headDim, scale, nil)
		for _, pool := range []*kernels.Pool{nil, p3} {
			g := NewGuarded(len(d.q), ci%4)
			got(g.Slice(), d.q, d.k, d.v, c.positions, c.heads, c.kvHeads, c.headDim, scale, pool)
			g.Check(t, c.String())
			EqualBits(t, c.String(), g.Slice(), w)
		}
	}
}
