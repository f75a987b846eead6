package shard

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/stratanet/strata/internal/anonmem"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// Errors of the shard executor.
var (
	// ErrTensor is returned when a tensor the span needs is missing or has
	// the wrong shape or an unsupported type.
	ErrTensor = errors.New("shard: missing or malformed tensor")
	// ErrContext is returned when a session would grow past its maximum
	// length.
	ErrContext = errors.New("shard: context length exceeded")
	// ErrKVBudget is returned when a new session's KV cache does not fit
	// in the shard's memory budget.
	ErrKVBudget = errors.New("shard: KV cache budget exhausted")
	// ErrNoEnd is returned when the embedding or the head is asked of a
	// shard that does not hold it.
	ErrNoEnd = errors.New("shard: this shard does not hold that end of the model")
	// ErrInput is returned for inputs of the wrong size, token ids out of
	// range, or a closed session.
	ErrInput = errors.New("shard: invalid input")
)

// KVType is the element type of KV caches.
type KVType int

const (
	// KVF32 stores keys and values as float32.
	KVF32 KVType = iota
	// KVF16 stores them as IEEE half precision (half the memory).
	KVF16
)

func (t KVType) String() string {
	if t == KVF16 {
		return "f16"
	}
	return "f32"
}

// bytes is the size of one element.
func (t KVType) bytes() int {
	if t == KVF16 {
		return 2
	}
	return 4
}

// Config says which part of a model a Shard runs and how.
type Config struct {
	// Span is the blocks to run; zero means all of them.
	Span Span
	// EndsOnly holds no blocks at all, only the ends asked for (a client
	// that embeds tokens and applies the head while a swarm runs the
	// blocks). Span is then ignored.
	EndsOnly bool
	// Embed holds the token embedding (the first stage of a chain).
	Embed bool
	// Head holds the final norm and output projection (the last stage).
	Head bool
	// Pool runs the kernels; required.
	Pool *kernels.Pool
	// Path is the kernel implementation (all paths give the same bits).
	Path kernels.Path
	// KVType is the element type of KV caches.
	KVType KVType
	// KVBudget caps the bytes of all sessions' KV caches together; 0 means
	// no cap.
	KVBudget int64
	// Mapped runs the weight matrices in place in the file's mapping.
	// By default Open copies them (only the shard's own) into memory of
	// its own and releases the mapping's pages, so the resident size is
	// the same: matrix-vector products stream anonymous memory about a
	// third faster than a file's pages in the page cache (decode of a
	// 1.1B Q4_0 model on one Sapphire Rapids core: 17.9 -> 23.8 tok/s).
	Mapped bool
}

// block is one transformer block's weights. Matrices are copies of the
// file's tensors (or views of its mapping, with Config.Mapped); vectors
// are small float32 copies.
type block struct {
	index               int
	attnNorm, ffnNorm   []float32
	q, k, v, o          kernels.Matrix
	qBias, kBias, vBias []float32
	gate, up, down      kernels.Matrix
}

// Shard runs blocks [Span.Start, Span.End) of a model for sessions. A
// Shard runs one forward pass at a time (the pool parallelizes inside it);
// its methods are safe for concurrent use.
type Shard struct {
	hp     *weights.HParams
	cfg    Config
	blocks []block

	embd    kernels.Matrix // token_embd.weight, when cfg.Embed
	outNorm []float32      // when cfg.Head
	out     kernels.Matrix // output projection, when cfg.Head

	mu     sync.Mutex // guards everything below and each forward pass
	eng    *kernels.Engine
	rope   *kernels.RoPE
	attn   kernels.Attention
	rows   rowsTask
	buf    scratch
	kvUsed int64
}

// rowsTask is a per-token operation over tokens [lo, hi) of a batch
// (RMSNormRows, or SwiGLU with swiglu), for the pool: tokens are
// independent, so splitting them changes no output. It lives in the Shard
// so that handing it to the pool does not allocate.
type rowsTask struct {
	path      kernels.Path
	swiglu    bool
	dst, x, y []float32 // SwiGLU: x is the gate, y the up projection
	w         []float32 // RMSNorm's weights
	n         int       // values per token
	eps       float32
}

func (t *rowsTask) Run(lo, hi int) {
	d, x := t.dst[lo*t.n:hi*t.n], t.x[lo*t.n:hi*t.n]
	if t.swiglu {
		t.path.SwiGLU(d, x, t.y[lo*t.n:hi*t.n])
		return
	}
	t.path.RMSNormRows(d, x, t.w, t.eps)
}

// perToken runs t over nTok tokens, split across the pool's threads when
// there are several tokens.
func (s *Shard) perToken(t rowsTask, nTok int) {
	p := s.cfg.Pool
	if nTok < 2 || p == nil || p.Threads() < 2 {
		t.Run(0, nTok)
		return
	}
	s.rows = t
	p.Parallel(nTok, (nTok+p.Threads()-1)/p.Threads(), &s.rows)
	s.rows = rowsTask{}
}

// normRows is RMSNormRows of the nTok tokens of x with weights w into dst.
func (s *Shard) normRows(dst, x, w []float32, nTok int) {
	s.perToken(rowsTask{path: s.cfg.Path, dst: dst, x: x, w: w, n: len(w), eps: s.hp.RMSNormEps}, nTok)
}

// scratch holds the per-pass buffers, grown as needed and reused.
type scratch struct {
	xn, q, k, v, att, o, gate, up []float32
	pos                           []int32
	row                           []float32
}

func grow(b *[]float32, n int) []float32 {
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	*b = (*b)[:n]
	return *b
}

// Open prepares a shard of the model in f. It reads only the tensors of
// its blocks (and ends), copying the weight matrices out of the file's
// mapping, or, with Config.Mapped, using them in place: f must then stay
// open while the shard is used.
func Open(f *gguf.File, cfg Config) (*Shard, error) {
	hp, err := weights.DecodeHParams(f)
	if err != nil {
		return nil, err
	}
	arch, err := lookupArch(hp.Family.Name)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.EndsOnly:
		cfg.Span = Span{0, 0}
	case cfg.Span == (Span{}):
		cfg.Span = Span{0, hp.Layers}
		fallthrough
	default:
		if err := cfg.Span.Check(hp.Layers); err != nil {
			return nil, err
		}
	}
	if cfg.Pool == nil {
		return nil, fmt.Errorf("%w: Config.Pool is required", ErrInput)
	}
	eng, err := kernels.NewEngine(cfg.Path, cfg.Pool)
	if err != nil {
		return nil, err
	}
	rope, err := kernels.NewRoPE(kernels.RoPEConfig{Mode: ropeMode(hp.Family.Rope), Dims: hp.RopeDim, Base: hp.RopeFreqBase, Scale: hp.RopeFreqScale})
	if err != nil {
		return nil, err
	}
	s := &Shard{hp: hp, cfg: cfg, eng: eng, rope: rope}
	for i := cfg.Span.Start; i < cfg.Span.End; i++ {
		b, err := loadBlock(f, hp, arch, i)
		if err != nil {
			return nil, err
		}
		s.blocks = append(s.blocks, b)
	}
	if cfg.Embed {
		if s.embd, err = matrix(f, "token_embd.weight", []int64{int64(hp.Dim), int64(hp.Vocab)}); err != nil {
			return nil, err
		}
		if !s.embd.Type.CanDequantize() {
			return nil, fmt.Errorf("%w: token_embd.weight of type %s cannot be read", ErrTensor, s.embd.Type)
		}
	}
	if cfg.Head {
		if s.outNorm, err = vector(f, "output_norm.weight", int64(hp.Dim)); err != nil {
			return nil, err
		}
		if s.out, err = matrix(f, hp.OutputTensor(), []int64{int64(hp.Dim), int64(hp.Vocab)}); err != nil {
			return nil, err
		}
	}
	if !cfg.Mapped {
		if err := s.copyWeights(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// copyWeights moves every weight matrix that products stream (the
// blocks' and the head's) into one allocation of its own outside the Go
// heap (anonmem; freed when s is garbage), each at a 64-byte boundary,
// and releases the file mapping's pages that held them. The embedding
// stays in the mapping (a token reads one row of it), unless it is the
// head's tied matrix, which it then shares.
func (s *Shard) copyWeights(f *gguf.File) error {
	var ms []*kernels.Matrix
	for i := range s.blocks {
		b := &s.blocks[i]
		ms = append(ms, &b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down)
	}
	ms = append(ms, &s.out)
	tied := len(s.embd.Data) > 0 && unsafe.SliceData(s.embd.Data) == unsafe.SliceData(s.out.Data)
	const align = 64
	total := 0
	for _, m := range ms {
		total += (len(m.Data) + align - 1) &^ (align - 1)
	}
	arena, free, err := anonmem.Alloc(total + align)
	if err != nil {
		return fmt.Errorf("shard: memory for the weights: %w", err)
	}
	// Only unexported fields of s refer to the arena, so it is freed once
	// s is unreachable.
	runtime.AddCleanup(s, func(free func()) { free() }, free)
	off := int(-uintptr(unsafe.Pointer(unsafe.SliceData(arena)))) & (align - 1)
	ms = slices.DeleteFunc(ms, func(m *kernels.Matrix) bool { return len(m.Data) == 0 })
	copies := make([][2][]byte, len(ms))
	for i, m := range ms {
		c := arena[off : off+len(m.Data) : off+len(m.Data)]
		copies[i] = [2][]byte{c, m.Data}
		off += (len(c) + align - 1) &^ (align - 1)
	}
	if err := copyParallel(f, copies, s.cfg.Pool.Threads()); err != nil {
		return fmt.Errorf("shard: copying the weights: %w", err)
	}
	for i, m := range ms {
		f.Release(m.Data)
		m.Data = copies[i][0]
	}
	if tied {
		s.embd.Data = s.out.Data
	}
	return nil
}

// copyParallel copies every copies[i][1] of f's data into copies[i][0]
// (File.CopyTo) in pieces of copyPiece bytes shared by up to threads
// goroutines: the time goes to the kernel's zeroing of new pages and its
// copy out of the page cache, which threads do side by side. It returns
// the first error.
func copyParallel(f *gguf.File, copies [][2][]byte, threads int) error {
	var pieces [][2][]byte
	for _, c := range copies {
		for lo := 0; lo < len(c[0]); lo += copyPiece {
			hi := min(lo+copyPiece, len(c[0]))
			pieces = append(pieces, [2][]byte{c[0][lo:hi], c[1][lo:hi]})
		}
	}
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs error
		wg   sync.WaitGroup
	)
	for range max(1, min(threads, len(pieces))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(pieces) {
					return
				}
				if err := f.CopyTo(pieces[i][0], pieces[i][1]); err != nil {
					mu.Lock()
					if errs == nil {
						errs = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// copyPiece is the unit of work of copyParallel.
const copyPiece = 8 << 20

func ropeMode(r weights.RopeStyle) kernels.RoPEMode {
	if r == weights.RopeNeox {
		return kernels.RoPENeox
	}
	return kernels.RoPENormal
}

func loadBlock(f *gguf.File, hp *weights.HParams, arch *Arch, i int) (block, error) {
	b := block{index: i}
	for _, spec := range arch.Tensors {
		name := fmt.Sprintf("blk.%d.%s", i, spec.Name)
		if spec.Optional && !f.HasTensor(name) {
			continue
		}
		shape := spec.Shape(hp)
		var err error
		if len(shape) == 1 {
			var v []float32
			v, err = vector(f, name, shape[0])
			switch spec.Role {
			case AttnNorm:
				b.attnNorm = v
			case FFNNorm:
				b.ffnNorm = v
			case AttnQBias:
				b.qBias = v
			case AttnKBias:
				b.kBias = v
			case AttnVBias:
				b.vBias = v
			}
		} else {
			var m kernels.Matrix
			m, err = matrix(f, name, shape)
			switch spec.Role {
			case AttnQ:
				b.q = m
			case AttnK:
				b.k = m
			case AttnV:
				b.v = m
			case AttnOut:
				b.o = m
			case FFNGate:
				b.gate = m
			case FFNUp:
				b.up = m
			case FFNDown:
				b.down = m
			}
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// tensorOf finds a tensor and checks its shape.
func tensorOf(f *gguf.File, name string, shape []int64) (*gguf.TensorInfo, error) {
	ti, err := f.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTensor, err)
	}
	if !slices.Equal(ti.Dims, shape) {
		return nil, fmt.Errorf("%w: %s has shape %v, want %v", ErrTensor, name, ti.Dims, shape)
	}
	return ti, nil
}

// vector reads a 1-D tensor as float32 (a copy: norms and biases are small).
func vector(f *gguf.File, name string, n int64) ([]float32, error) {
	ti, err := tensorOf(f, name, []int64{n})
	if err != nil {
		return nil, err
	}
	v := make([]float32, n)
	if err := quant.Dequantize(ti.Type, v, f.TensorData(ti)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTensor, name, err)
	}
	return v, nil
}

// matrix views a 2-D weight tensor [cols, rows] in place.
func matrix(f *gguf.File, name string, shape []int64) (kernels.Matrix, error) {
	ti, err := tensorOf(f, name, shape)
	if err != nil {
		return kernels.Matrix{}, err
	}
	m, err := kernels.NewMatrix(ti.Type, int(shape[1]), int(shape[0]), f.TensorData(ti))
	if err != nil {
		return kernels.Matrix{}, fmt.Errorf("%w: %s: %w", ErrTensor, name, err)
	}
	return m, nil
}

// HParams returns the model's hyper-parameters.
func (s *Shard) HParams() *weights.HParams { return s.hp }

// Span returns the blocks this shard runs.
func (s *Shard) Span() Span { return s.cfg.Span }

// KVType is the element type of the shard's KV caches.
func (s *Shard) KVType() KVType { return s.cfg.KVType }

// HasEmbed and HasHead report which ends the shard holds.
func (s *Shard) HasEmbed() bool { return s.cfg.Embed }

// HasHead reports whether the shard holds the final norm and head.
func (s *Shard) HasHead() bool { return s.cfg.Head }

// Embed writes the embeddings of tokens into dst ([Dim][len(tokens)],
// token-major).
func (s *Shard) Embed(dst []float32, tokens []int32) error {
	if !s.cfg.Embed {
		return fmt.Errorf("%w: no token embedding", ErrNoEnd)
	}
	d := s.hp.Dim
	if len(dst) != len(tokens)*d {
		return fmt.Errorf("%w: %d floats for %d tokens of %d", ErrInput, len(dst), len(tokens), d)
	}
	rb := s.embd.RowBytes()
	for i, t := range tokens {
		if t < 0 || int(t) >= s.hp.Vocab {
			return fmt.Errorf("%w: token %d out of range [0, %d)", ErrInput, t, s.hp.Vocab)
		}
		if err := quant.Dequantize(s.embd.Type, dst[i*d:(i+1)*d], s.embd.Data[int(t)*rb:(int(t)+1)*rb]); err != nil {
			return err
		}
	}
	return nil
}

// Logits applies the final norm and the output projection to nTok hidden
// states x ([Dim][nTok]) and writes dst ([Vocab][nTok]). x is not changed.
func (s *Shard) Logits(dst, x []float32, nTok int) error {
	if !s.cfg.Head {
		return fmt.Errorf("%w: no output head", ErrNoEnd)
	}
	d := s.hp.Dim
	if len(x) != nTok*d || len(dst) != nTok*s.hp.Vocab {
		return fmt.Errorf("%w: %d hidden and %d logit floats for %d tokens", ErrInput, len(x), len(dst), nTok)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	xn := grow(&s.buf.row, len(x))
	s.normRows(xn, x, s.outNorm, nTok)
	return s.eng.MatMul(dst, s.out, xn, nTok)
}

// Forward runs the shard's blocks on nTok = len(x)/Dim new tokens of the
// session, at positions sess.Len().., updating the hidden states x
// ([Dim][nTok], token-major) in place and appending to the session's KV
// cache. A batch gives the same bits as the same tokens one at a time.
func (s *Shard) Forward(sess *Session, x []float32) error {
	d := s.hp.Dim
	if len(x) == 0 || len(x)%d != 0 {
		return fmt.Errorf("%w: %d hidden floats is not a positive multiple of %d", ErrInput, len(x), d)
	}
	nTok := len(x) / d
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.shard != s || sess.closed {
		return fmt.Errorf("%w: session is closed or belongs to another shard", ErrInput)
	}
	p0 := sess.n
	if p0+nTok > sess.maxLen {
		return fmt.Errorf("%w: %d + %d tokens > %d", ErrContext, p0, nTok, sess.maxLen)
	}
	h := s.hp
	pos := s.buf.pos[:0]
	for t := range nTok {
		pos = append(pos, int32(p0+t))
	}
	s.buf.pos = pos
	s.rope.Reserve(p0 + nTok)
	s.attn.Path = s.cfg.Path
	s.attn.Reserve(s.cfg.Pool.Threads(), p0+nTok)
	xn := grow(&s.buf.xn, nTok*d)
	q := grow(&s.buf.q, nTok*h.QDim())
	k := grow(&s.buf.k, nTok*h.KVDim())
	v := grow(&s.buf.v, nTok*h.VDim())
	att := grow(&s.buf.att, nTok*h.QDim())
	o := grow(&s.buf.o, nTok*d)
	gate := grow(&s.buf.gate, nTok*h.FFN)
	up := grow(&s.buf.up, nTok*h.FFN)
	scale := 1 / float32(math.Sqrt(float64(h.HeadDimK)))

	for li := range sess.hi - sess.lo {
		b := &s.blocks[sess.lo+li]
		s.normRows(xn, x, b.attnNorm, nTok)
		if err := s.matmul(q, b.q, xn, nTok, b.qBias); err != nil {
			return err
		}
		if err := s.matmul(k, b.k, xn, nTok, b.kBias); err != nil {
			return err
		}
		if err := s.matmul(v, b.v, xn, nTok, b.vBias); err != nil {
			return err
		}
		s.rope.Apply(q, pos, h.Heads, h.HeadDimK)
		s.rope.Apply(k, pos, h.KVHeads, h.HeadDimK)
		sess.store(li, p0, k, v)
		kc, vc := sess.views(li, p0+nTok)
		s.attn.Forward(att, q, kc, vc, pos, h.Heads, h.KVHeads, h.HeadDimK, scale, s.cfg.Pool)
		if err := s.eng.MatMul(o, b.o, att, nTok); err != nil {
			return err
		}
		kernels.Add(x, x, o)
		s.normRows(xn, x, b.ffnNorm, nTok)
		if err := s.eng.MatMul(gate, b.gate, xn, nTok); err != nil {
			return err
		}
		if err := s.eng.MatMul(up, b.up, xn, nTok); err != nil {
			return err
		}
		s.perToken(rowsTask{path: s.cfg.Path, swiglu: true, dst: gate, x: gate, y: up, n: h.FFN}, nTok)
		if err := s.eng.MatMul(o, b.down, gate, nTok); err != nil {
			return err
		}
		kernels.Add(x, x, o)
	}
	sess.n += nTok
	return nil
}

// matmul is MatMul plus an optional bias per token.
func (s *Shard) matmul(dst []float32, w kernels.Matrix, x []float32, nTok int, bias []float32) error {
	if err := s.eng.MatMul(dst, w, x, nTok); err != nil {
		return err
	}
	if bias != nil {
		for t := range nTok {
			row := dst[t*w.Rows : (t+1)*w.Rows]
			kernels.Add(row, row, bias)
		}
	}
	return nil
}
