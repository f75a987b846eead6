package kernels

import (
	"fmt"
	"sync/atomic"

	"github.com/stratanet/strata/tensor"
)

// KV is a read-only view of one layer's key or value cache for one
// sequence, in float32 or float16: exactly one of F32 and F16 is set. The
// vector of KV head g at position j is the headDim elements starting at
// j*Stride + g*headDim. Views share memory with the cache.
type KV struct {
	F32 []float32
	F16 []uint16 // IEEE half bits, converted exactly to float32
	// Stride is the number of elements from one position to the next; 0
	// means packed, kvHeads*headDim.
	Stride int
}

// KVFromTensor views a contiguous F32 or F16 tensor whose outermost used
// dimension is the position, such as [headDim, kvHeads, ctx] or
// [kvHeads*headDim, ctx] (innermost first). The view shares memory with t.
func KVFromTensor(t *tensor.Tensor) (KV, error) {
	if !t.IsContiguous() {
		return KV{}, fmt.Errorf("%w: KV cache tensor %v is not contiguous", ErrShape, t)
	}
	sh := t.Shape()
	stride := 1
	for i := range sh.Dims() - 1 {
		stride *= sh[i]
	}
	switch t.DType() {
	case tensor.F32:
		return KV{F32: t.F32(), Stride: stride}, nil
	case tensor.F16:
		return KV{F16: t.U16(), Stride: stride}, nil
	}
	return KV{}, fmt.Errorf("%w: KV cache of %s (F32 or F16)", ErrType, t.DType())
}

// len is the number of elements in the view.
func (c KV) len() int { return max(len(c.F32), len(c.F16)) }

// Attention computes causal self-attention with grouped-query heads for
// one sequence over its KV cache. It keeps scratch buffers between calls:
// after the first call at a given context length and thread count (or a
// Reserve), Forward allocates nothing. The zero value is ready to use (on
// the Generic path); an Attention is not safe for concurrent use.
type Attention struct {
	// Path is the kernel path Forward runs (Path.Vec's kernels; a path
	// without vector kernels runs the generic ones). Every path gives the
	// same bits; the zero value is Generic.
	Path Path

	scores [][]float32 // per thread: one row of attention weights
	task   attnTask
}

// Reserve sizes the scratch for threads threads and contexts of up to n
// positions. The scratch at least doubles when it must grow, so that
// reserving one more position per decoded token costs amortized O(1).
func (a *Attention) Reserve(threads, n int) {
	for len(a.scores) < threads {
		a.scores = append(a.scores, nil)
	}
	for i, s := range a.scores[:threads] {
		if len(s) < n {
			a.scores[i] = make([]float32, max(n, 2*len(s)))
		}
	}
}

// Forward computes attention for len(positions) query tokens. q and dst
// are [headDim][heads][nTok] (innermost first: token t's head h at
// (t*heads+h)*headDim); dst may be q itself but must not otherwise overlap
// it. Token t sits at absolute position p = positions[t] and attends to
// cache positions 0..p, which must already hold its own key and value. Head
// h reads KV head g = h / (heads/kvHeads). For each (t, h):
//
//	s_j   = float32(dot(q_th, k_jg) * scale)   j = 0..p; dot is the float rule
//	w     = Softmax(s)                         (Softmax's canonical order)
//	out_d = fma(w_j, v_jg[d], out_d)           j = 0, 1, …, p in order; out_d starts at +0
//
// with float16 keys and values converted exactly to float32. Work is split
// across pool's threads by (token, head) only, so the result is the same
// bits for every thread count; pool nil runs on the calling goroutine. It
// panics on inconsistent shapes or a cache shorter than the largest
// position.
func (a *Attention) Forward(dst, q []float32, k, v KV, positions []int32, heads, kvHeads, headDim int, scale float32, pool *Pool) {
	nTok := len(positions)
	if heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0 || headDim <= 0 {
		panic(fmt.Sprintf("kernels: Attention: %d heads, %d KV heads of %d", heads, kvHeads, headDim))
	}
	if len(q) != nTok*heads*headDim || len(dst) != len(q) {
		panic(fmt.Sprintf("kernels: Attention: len(q), len(dst) = %d, %d for %d tokens × %d heads × %d", len(q), len(dst), nTok, heads, headDim))
	}
	if nTok == 0 {
		return
	}
	maxPos := int32(-1)
	for _, p := range positions {
		if p < 0 {
			panic(fmt.Sprintf("kernels: Attention: position %d", p))
		}
		maxPos = max(maxPos, p)
	}
	n := int(maxPos) + 1
	k.Stride = checkKV("k", k, n, kvHeads, headDim)
	v.Stride = checkKV("v", v, n, kvHeads, headDim)

	threads := 1
	if pool != nil {
		threads = pool.Threads()
	}
	a.Reserve(threads, n)
	t := &a.task
	*t = attnTask{
		a: a, vk: a.Path.Vec(), dst: dst, q: q, k: k, v: v, positions: positions,
		heads: heads, group: heads / kvHeads, headDim: headDim, scale: scale,
		items: nTok * heads,
	}
	if pool == nil || threads == 1 {
		t.Run(0, 1)
	} else {
		pool.Parallel(threads, 1, t)
	}
	*t = attnTask{} // drop the references to the caller's buffers
}

// checkKV validates a cache view for n positions and returns its stride.
func checkKV(name string, c KV, n, kvHeads, headDim int) int {
	if (c.F32 == nil) == (c.F16 == nil) {
		panic(fmt.Sprintf("kernels: Attention: %s cache must have exactly one of F32 and F16", name))
	}
	row := kvHeads * headDim
	stride := c.Stride
	if stride == 0 {
		stride = row
	}
	if stride < row || c.len() < (n-1)*stride+row {
		panic(fmt.Sprintf("kernels: Attention: %s cache of %d elements, stride %d, for %d positions × %d KV heads × %d", name, c.len(), stride, n, kvHeads, headDim))
	}
	return stride
}

// attnTask runs Attention.Forward's (token, head) items. Parallel hands it
// one index per thread, which names that thread's scratch row; the items
// themselves are claimed one at a time from next.
type attnTask struct {
	a                     *Attention
	vk                    *VecKernels
	dst, q                []float32
	k, v                  KV
	positions             []int32
	heads, group, headDim int
	scale                 float32
	items                 int
	next                  atomic.Int64
}

func (t *attnTask) Run(lo, hi int) {
	for slot := lo; slot < hi; slot++ {
		buf := t.a.scores[slot]
		for {
			i := int(t.next.Add(1) - 1)
			if i >= t.items {
				break
			}
			t.item(i/t.heads, i%t.heads, buf)
		}
	}
}

// item computes token tok's head h.
func (t *attnTask) item(tok, h int, buf []float32) {
	hd := t.headDim
	off := (tok*t.heads + h) * hd
	q := t.q[off : off+hd]
	out := t.dst[off : off+hd]
	g := h / t.group
	n := int(t.positions[tok]) + 1
	s := buf[:n]
	vk := t.vk
	if k := t.k; k.F32 != nil {
		vk.Scores(s, q, k.F32[g*hd:], k.Stride, t.scale)
	} else {
		vk.ScoresF16(s, q, k.F16[g*hd:], k.Stride, t.scale)
	}
	vk.softmax(s)
	clear(out) // q is no longer needed: out may be q
	if v := t.v; v.F32 != nil {
		vk.WeightedSum(out, s, v.F32[g*hd:], v.Stride)
	} else {
		vk.WeightedSumF16(out, s, v.F16[g*hd:], v.Stride)
	}
}
