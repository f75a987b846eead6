package kernels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/stratanet/strata/weights/quant"
)

// Errors returned by matrix products.
var (
	// ErrShape is returned when operand lengths or a matrix's geometry do
	// not match.
	ErrShape = errors.New("kernels: operand shapes do not match")
	// ErrType is returned for a weight type that no row kernel and no
	// dequantizer handles (the IQ formats, integer types).
	ErrType = errors.New("kernels: weight type not supported")
)

// Matrix is a weight matrix in ggml's layout: Rows rows of Cols elements,
// row r at Data[r*RowBytes():(r+1)*RowBytes()], each row a whole number of
// Type's blocks. A Matrix shares Data with its creator (typically a mapped
// GGUF file); products only read it.
type Matrix struct {
	Type       quant.Type
	Rows, Cols int
	Data       []byte
}

// NewMatrix returns the rows×cols matrix of type t held in data, or an
// error (wrapping ErrShape or ErrType) when cols is not a whole number of
// t's blocks, len(data) is not rows times the row size, or no product
// supports t.
func NewMatrix(t quant.Type, rows, cols int, data []byte) (Matrix, error) {
	m := Matrix{Type: t, Rows: rows, Cols: cols, Data: data}
	if err := m.validate(); err != nil {
		return Matrix{}, err
	}
	return m, nil
}

// RowBytes is the size in bytes of one row (0 for an invalid geometry).
func (m Matrix) RowBytes() int {
	bs := m.Type.BlockSize()
	if bs == 0 || m.Cols < 0 || m.Cols%bs != 0 {
		return 0
	}
	return m.Cols / bs * m.Type.TypeSize()
}

// validate checks m's geometry and that its type has a product.
func (m Matrix) validate() error {
	if m.Type.BlockSize() == 0 {
		return fmt.Errorf("%w: type id %d", ErrType, uint32(m.Type))
	}
	if _, ok := rowRule(m.Type); !ok {
		return fmt.Errorf("%w: %s", ErrType, m.Type)
	}
	if m.Rows < 0 || m.Cols < 0 {
		return fmt.Errorf("%w: %s matrix of %d×%d", ErrShape, m.Type, m.Rows, m.Cols)
	}
	if bs := m.Type.BlockSize(); m.Cols%bs != 0 {
		return fmt.Errorf("%w: %s rows of %d elements, not a multiple of the block size %d", ErrShape, m.Type, m.Cols, bs)
	}
	rb := m.RowBytes()
	if rb != 0 && m.Rows > math.MaxInt/rb || len(m.Data) != m.Rows*rb {
		return fmt.Errorf("%w: %s matrix of %d×%d needs %d×%d bytes, have %d", ErrShape, m.Type, m.Rows, m.Cols, m.Rows, rb, len(m.Data))
	}
	return nil
}

// rule says which form of the package doc's row rule a weight type uses.
type rule uint8

const (
	ruleQ8      rule = iota // Q4_0, Q5_0, Q8_0 against Q8
	ruleQ8Sum               // Q4_1, Q5_1 against Q8 with block sums
	ruleQ8K                 // Q4_K, Q5_K against Q8K with group sums
	ruleQ6K                 // Q6_K against Q8K
	ruleFloat               // F32, F16, BF16 against float32
	ruleDequant             // other types: dequantize, then the F32 rule
)

// rowRule returns the rule for weight type t, and false when no product
// supports t.
func rowRule(t quant.Type) (rule, bool) {
	switch t {
	case quant.Q4_0, quant.Q5_0, quant.Q8_0:
		return ruleQ8, true
	case quant.Q4_1, quant.Q5_1:
		return ruleQ8Sum, true
	case quant.Q4_K, quant.Q5_K:
		return ruleQ8K, true
	case quant.Q6_K:
		return ruleQ6K, true
	case quant.F32, quant.F16, quant.BF16:
		return ruleFloat, true
	}
	if t.IsQuantized() && t.CanDequantize() {
		return ruleDequant, true
	}
	return 0, false
}

// Engine computes matrix products on one path, splitting output rows across
// a worker pool. It owns scratch memory (the quantized activations and
// dequantization buffers), so one Engine serves one goroutine at a time;
// several Engines may share a Pool. After the first calls with a given
// shape, products do not allocate.
type Engine struct {
	path  Path
	k     *RowKernels
	tiles *TileKernels // nil: the row kernels only
	vec   *VecKernels  // the activation quantizers
	pool  *Pool

	q8   Q8
	q8k  Q8K
	prep prepTask
	q8p  []int8 // q8's activation in a tile kernel's form (TileQ8.Pack)
	d8p  []float32
	s8p  []int32
	task matTask

	mu      sync.Mutex
	scratch []*dequantScratch // free dequantization buffers
}

// NewEngine returns an Engine that runs path p's kernels on pool's workers.
// A nil pool runs everything on the calling goroutine. It fails when this
// CPU or build does not support p.
func NewEngine(p Path, pool *Pool) (*Engine, error) {
	if !p.Supported() {
		return nil, fmt.Errorf("kernels: path %s is not supported by this CPU or build", p)
	}
	e := &Engine{path: p, k: p.Kernels(), tiles: p.tiles(), vec: p.Vec(), pool: pool}
	e.task.e = e
	return e, nil
}

// Path is the path the engine runs.
func (e *Engine) Path() Path { return e.path }

// MatMul computes dst = x·wᵀ: for every token t < nTok and row r < w.Rows,
//
//	dst[t*w.Rows + r] = row rule (package doc) of w's row r with x[t*w.Cols : (t+1)*w.Cols]
//
// x holds nTok rows of w.Cols float32s (token-major), dst nTok rows of
// w.Rows; nTok == 1 is the matrix-vector product. Each output is the row
// rule exactly, so a batch gives the same bits as one token at a time, on
// any path and any thread count. dst must not overlap x or w.Data.
//
// Against the 32-block quantized types each token is quantized to Q8 once
// per call, against Q4_K, Q5_K and Q6_K to Q8K; F32, F16 and BF16 weights
// use x as it is; other types with a dequantizer (Q2_K, Q3_K, ...) are
// dequantized a block of rows at a time and use the F32 rule.
//
// It returns an error wrapping ErrShape or ErrType, and writes nothing,
// when the lengths do not match w's geometry or w's type is unsupported.
func (e *Engine) MatMul(dst []float32, w Matrix, x []float32, nTok int) error {
	if err := w.validate(); err != nil {
		return err
	}
	if nTok < 0 || !isProduct(len(x), nTok, w.Cols) || !isProduct(len(dst), nTok, w.Rows) {
		return fmt.Errorf("%w: %d tokens against a %d×%d matrix: len(x) = %d, len(dst) = %d", ErrShape, nTok, w.Rows, w.Cols, len(x), len(dst))
	}
	if nTok == 0 || w.Rows == 0 {
		return nil
	}
	r, _ := rowRule(w.Type)
	t := &e.task
	*t = matTask{e: e, rule: r, dst: dst, w: w, rb: w.RowBytes(), x: x, nTok: nTok}
	t.pickKernels(e.k)
	t.pickTiles(e.tiles)
	switch r {
	case ruleQ8, ruleQ8Sum:
		if err := e.prepare(x, nTok, false); err != nil {
			return err
		}
		t.q, t.d, t.s = e.q8.Q, e.q8.D, e.q8.S
		if t.tq.Run != nil {
			t.q, t.d, t.s = e.tileActivation(t.tq, t.q, t.d, t.s, nTok)
		}
	case ruleQ8K, ruleQ6K:
		if err := e.prepare(x, nTok, true); err != nil {
			return err
		}
		t.q, t.d, t.bsums = e.q8k.Q, e.q8k.D, e.q8k.BSums
	}
	t.tile = tileRows(r, w)
	switch {
	case t.tq.Rows > 0:
		t.tile = t.tq.Rows
	case t.tk.Rows > 0:
		t.tile = t.tk.Rows
	}
	switch {
	case r == ruleDequant:
		e.prepareScratch(t.tile*w.Cols, 0)
	case t.tq.Scratch != nil:
		e.prepareScratch(0, t.tq.Scratch(w.Cols/Q8Block))
	case t.tk.Scratch != nil:
		e.prepareScratch(0, t.tk.Scratch(w.Cols/Q8KBlock))
	case t.tf.Scratch != nil:
		e.prepareScratch(0, t.tf.Scratch(w.Cols))
	}
	if e.pool == nil {
		t.Run(0, w.Rows)
	} else {
		e.pool.Parallel(w.Rows, parallelGrain(w.Rows, t.tile, nTok, e.pool.Threads()), t)
	}
	*t = matTask{e: e} // drop references to the caller's memory
	return nil
}

// prepare quantizes the nTok tokens of x to the Q8 form (or with k to
// Q8K) in e's scratch, splitting the tokens across the pool when there
// are several: blocks are independent, so the result is the same.
func (e *Engine) prepare(x []float32, nTok int, k bool) error {
	vec := e.vec
	if e.pool == nil || nTok < 2 {
		if k {
			return e.q8k.quantize(x, vec.QuantizeQ8K)
		}
		return e.q8.quantize(x, vec.QuantizeQ8)
	}
	// Size the scratch (and check the length) with an empty quantization.
	none := func(q []int8, d []float32, s []int32, x []float32) {}
	noneK := func(q []int8, d []float32, bsums []int16, x []float32) {}
	var err error
	if k {
		err = e.q8k.quantize(x, noneK)
	} else {
		err = e.q8.quantize(x, none)
	}
	if err != nil {
		return err
	}
	e.prep = prepTask{e: e, x: x, n: len(x) / nTok, k: k}
	e.pool.Parallel(nTok, (nTok+e.pool.Threads()-1)/e.pool.Threads(), &e.prep)
	e.prep = prepTask{}
	return nil
}

// prepTask quantizes tokens [lo, hi) of an Engine's activation (see
// prepare); it lives in the Engine so that handing it to the pool does
// not allocate.
type prepTask struct {
	e *Engine
	x []float32
	n int // values per token
	k bool

	// Packing instead (tileActivation): chunks [lo, hi) of packChunk
	// tokens of the nt tokens' q, d and s into the Engine's q8p, d8p, s8p.
	pack func(pq []int8, pd []float32, ps []int32, q []int8, d []float32, s []int32, nt int)
	qs   int // TileQ8.PackScale
	q    []int8
	d    []float32
	s    []int32
	nt   int
}

func (p *prepTask) Run(lo, hi int) {
	if p.pack != nil {
		n, nb := len(p.q)/p.nt, len(p.d)/p.nt
		t0, t1 := lo*packChunk, min(hi*packChunk, p.nt)
		e := p.e
		p.pack(e.q8p[p.qs*t0*n:p.qs*t1*n], e.d8p[t0*nb:t1*nb], e.s8p[t0*nb:t1*nb], p.q[t0*n:t1*n], p.d[t0*nb:t1*nb], p.s[t0*nb:t1*nb], t1-t0)
		return
	}
	x := p.x[lo*p.n : hi*p.n]
	vec := p.e.vec
	if p.k {
		a, b := lo*p.n/Q8KBlock, hi*p.n/Q8KBlock
		vec.QuantizeQ8K(p.e.q8k.Q[lo*p.n:hi*p.n], p.e.q8k.D[a:b], p.e.q8k.BSums[16*a:16*b], x)
		return
	}
	a, b := lo*p.n/Q8Block, hi*p.n/Q8Block
	vec.QuantizeQ8(p.e.q8.Q[lo*p.n:hi*p.n], p.e.q8.D[a:b], p.e.q8.S[a:b], x)
}

// isProduct reports whether n == a*b for a >= 0, b >= 0, without overflow.
func isProduct(n, a, b int) bool {
	if a == 0 || b == 0 {
		return n == 0
	}
	return n%b == 0 && n/b == a
}

// tileRows is how many rows a worker takes at a time: for many tokens, it
// runs every token over a tile before the next one, so the tile (about
// 16 KiB of quantized weights, 64 KiB of dequantized ones, or 512 KiB of
// float ones) stays in cache. Float rows are long: a smaller budget would
// leave a few rows of a 5632-column F16 matrix per tile, and every
// token's activation (as long again, twice over) read once per tile from
// L3 (a tile of 5 rows ran that matrix at a third of the speed of 32).
func tileRows(r rule, w Matrix) int {
	per, budget := w.RowBytes(), 16<<10
	switch r {
	case ruleDequant:
		per, budget = 4*w.Cols, 64<<10
	case ruleFloat:
		budget = 512 << 10
	}
	return max(1, min(32, budget/max(per, 1)))
}

// parallelGrain is the number of rows a thread claims at a time. A
// matrix-vector product streams weights from memory: each thread takes
// one contiguous share so that it reads one long sequential stream, which
// the hardware prefetchers follow (chunks of a few rows interleaved
// between threads halve the bandwidth two threads get). Many tokens are
// compute-bound; there small chunks balance the load. Run tiles within a
// chunk either way, so the split does not change any output.
func parallelGrain(rows, tile, nTok, threads int) int {
	if nTok > 1 || threads <= 1 {
		return tile
	}
	return max(tile, (rows+threads-1)/threads)
}

// matTask is one MatMul call's work, split by rows. It lives in the Engine
// so that handing it to the pool does not allocate.
type matTask struct {
	e    *Engine
	rule rule
	dst  []float32
	w    Matrix
	rb   int // w's row size in bytes
	x    []float32
	nTok int
	tile int

	// The row kernel for w's type: one of these is set, by rule.
	kq func(w []byte, q []int8, d []float32) float32             // ruleQ8, ruleQ6K
	ks func(w []byte, q []int8, d []float32, s []int32) float32  // ruleQ8Sum
	kk func(w []byte, q []int8, d []float32, bs []int16) float32 // ruleQ8K
	kf func(w []byte, x []float32) float32                       // ruleFloat, ruleDequant
	tq TileQ8                                                    // ruleQ8: a tile kernel, or none
	tk TileQ8K                                                   // ruleQ8K, ruleQ6K: a tile kernel, or none
	tf TileFloat                                                 // ruleFloat: a tile kernel, or none

	// The quantized activations of all tokens, laid end to end.
	q     []int8
	d     []float32
	s     []int32
	bsums []int16
}

// pickKernels sets t's row kernel for its weight type from table k.
func (t *matTask) pickKernels(k *RowKernels) {
	switch t.w.Type {
	case quant.Q4_0:
		t.kq = k.Q4_0
	case quant.Q5_0:
		t.kq = k.Q5_0
	case quant.Q8_0:
		t.kq = k.Q8_0
	case quant.Q6_K:
		t.kq = k.Q6_K
	case quant.Q4_1:
		t.ks = k.Q4_1
	case quant.Q5_1:
		t.ks = k.Q5_1
	case quant.Q4_K:
		t.kk = k.Q4_K
	case quant.Q5_K:
		t.kk = k.Q5_K
	case quant.F16:
		t.kf = k.F16
	case quant.BF16:
		t.kf = k.BF16
	default: // F32 and the dequantized types
		t.kf = k.F32
	}
}

// Run computes the outputs of rows [lo, hi) for every token, a tile of rows
// at a time. It is the one place that picks how a tile is computed.
func (t *matTask) Run(lo, hi int) {
	var sc *dequantScratch
	var tsc []byte
	if t.rule == ruleDequant || t.tq.Scratch != nil || t.tk.Scratch != nil || t.tf.Scratch != nil {
		sc = t.e.getScratch()
		defer t.e.putScratch(sc)
		tsc = sc.t
	}
	ldd := t.w.Rows
	for r0 := lo; r0 < hi; r0 += t.tile {
		nr := min(t.tile, hi-r0)
		dst := t.dst[r0:]
		w := t.w.Data[r0*t.rb : (r0+nr)*t.rb]
		if t.runTile(dst, ldd, w, nr, tsc) {
			continue
		}
		switch t.rule {
		case ruleQ8, ruleQ6K:
			tileQ8(t.kq, dst, ldd, w, t.rb, nr, t.q, t.d, t.nTok)
		case ruleQ8Sum:
			tileQ8Sum(t.ks, dst, ldd, w, t.rb, nr, t.q, t.d, t.s, t.nTok)
		case ruleQ8K:
			tileQ8K(t.kk, dst, ldd, w, t.rb, nr, t.q, t.d, t.bsums, t.nTok)
		case ruleFloat:
			tileFloat(t.kf, dst, ldd, w, t.rb, nr, t.x, t.nTok)
		case ruleDequant:
			n := nr * t.w.Cols
			if err := quant.Dequantize(t.w.Type, sc.f[:n], w); err != nil {
				panic(err) // the geometry was validated by MatMul
			}
			b := sc.b[:4*n]
			for i, v := range sc.f[:n] {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
			tileFloat(t.kf, dst, ldd, b, 4*t.w.Cols, nr, t.x, t.nTok)
		}
	}
}

// The tile loops below are the seam for multi-token kernels: each computes
// dst[t*ldd + r] for the nr rows of w (row r at w[r*rb:]) and the nt tokens
// of the activation (token t's part of q, d, s or bsums, or x, at t times
// its per-token length), calling the row kernel once per output. A path
// with a faster tile kernel of the same shape can replace one of them.

func tileQ8(f func(w []byte, q []int8, d []float32) float32, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, nt int) {
	n, nb := len(q)/nt, len(d)/nt
	for t := range nt {
		qt, dt := q[t*n:(t+1)*n], d[t*nb:(t+1)*nb]
		out := dst[t*ldd : t*ldd+nr]
		for r := range out {
			out[r] = f(w[r*rb:(r+1)*rb], qt, dt)
		}
	}
}

func tileQ8Sum(f func(w []byte, q []int8, d []float32, s []int32) float32, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, s []int32, nt int) {
	n, nb := len(q)/nt, len(d)/nt
	for t := range nt {
		qt, dt, st := q[t*n:(t+1)*n], d[t*nb:(t+1)*nb], s[t*nb:(t+1)*nb]
		out := dst[t*ldd : t*ldd+nr]
		for r := range out {
			out[r] = f(w[r*rb:(r+1)*rb], qt, dt, st)
		}
	}
}

func tileQ8K(f func(w []byte, q []int8, d []float32, bsums []int16) float32, dst []float32, ldd int, w []byte, rb, nr int, q []int8, d []float32, bsums []int16, nt int) {
	n, nb, ng := len(q)/nt, len(d)/nt, len(bsums)/nt
	for t := range nt {
		qt, dt, gt := q[t*n:(t+1)*n], d[t*nb:(t+1)*nb], bsums[t*ng:(t+1)*ng]
		out := dst[t*ldd : t*ldd+nr]
		for r := range out {
			out[r] = f(w[r*rb:(r+1)*rb], qt, dt, gt)
		}
	}
}

func tileFloat(f func(w []byte, x []float32) float32, dst []float32, ldd int, w []byte, rb, nr int, x []float32, nt int) {
	n := len(x) / nt
	for t := range nt {
		xt := x[t*n : (t+1)*n]
		out := dst[t*ldd : t*ldd+nr]
		for r := range out {
			out[r] = f(w[r*rb:(r+1)*rb], xt)
		}
	}
}

// dequantScratch is one thread's scratch memory: one tile of dequantized
// rows, as float32s and as the little-endian bytes that the F32 row
// kernel reads, and a tile kernel's own (TileQ8.Scratch).
type dequantScratch struct {
	f []float32
	b []byte
	t []byte
}

// prepareScratch makes every free scratch buffer (one per thread) hold n
// dequantized values and tb bytes of tile kernel scratch. It runs before
// the workers start, so that they never allocate; it allocates only when
// n or tb grows.
func (e *Engine) prepareScratch(n, tb int) {
	threads := 1
	if e.pool != nil {
		threads = e.pool.Threads()
	}
	for len(e.scratch) < threads {
		e.scratch = append(e.scratch, new(dequantScratch))
	}
	for _, sc := range e.scratch {
		sc.f = grow(sc.f, n)
		sc.b = grow(sc.b, 4*n)
		sc.t = grow(sc.t, tb)
	}
}

// getScratch takes a free dequantization buffer. There is one per thread,
// and a thread holds at most one at a time.
func (e *Engine) getScratch() *dequantScratch {
	e.mu.Lock()
	k := len(e.scratch) - 1
	sc := e.scratch[k]
	e.scratch = e.scratch[:k]
	e.mu.Unlock()
	return sc
}

// putScratch returns a buffer taken by getScratch.
func (e *Engine) putScratch(sc *dequantScratch) {
	e.mu.Lock()
	e.scratch = append(e.scratch, sc)
	e.mu.Unlock()
}
