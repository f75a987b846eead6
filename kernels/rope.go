package kernels

import (
	"errors"
	"fmt"
	"math"
)

// RoPEMode says which elements of a head rotary embedding pairs up.
type RoPEMode uint8

const (
	// RoPENormal rotates adjacent pairs (x[2i], x[2i+1]), as llama does
	// (ggml's GGML_ROPE_TYPE_NORMAL).
	RoPENormal RoPEMode = iota
	// RoPENeox rotates the halves (x[i], x[i+Dims/2]), as qwen2 and gpt-neox
	// do (GGML_ROPE_TYPE_NEOX).
	RoPENeox
)

func (m RoPEMode) String() string {
	switch m {
	case RoPENormal:
		return "normal"
	case RoPENeox:
		return "neox"
	}
	return fmt.Sprintf("RoPEMode(%d)", uint8(m))
}

// RoPEConfig describes a model's rotary position embedding.
type RoPEConfig struct {
	Mode RoPEMode
	// Dims is the number of rotated elements at the start of each head
	// (ggml's n_dims, often the head size); even. Elements past it are
	// left as they are.
	Dims int
	// Base is the frequency base (GGUF rope.freq_base, 10000 for llama).
	Base float32
	// Scale multiplies every angle (ggml's freq_scale, 1/factor of linear
	// scaling); 0 means 1.
	Scale float32
	// FreqFactors, when not nil, divides the angle of pair i by
	// FreqFactors[i] (ggml's rope_freqs tensor, llama 3's long-context
	// scaling); it has Dims/2 entries.
	FreqFactors []float32
}

// ErrRoPEConfig is returned by NewRoPE for an invalid configuration.
var ErrRoPEConfig = errors.New("kernels: invalid rotary embedding configuration")

// RoPE applies a rotary position embedding. It caches cos and sin of every
// angle for positions [0, n): Reserve(n) fills the cache up front, and
// Apply grows it on demand (doubling) up to AutoReserve positions; angles
// of larger uncached positions are computed per call, with the same bits
// and no allocation. A RoPE is not safe for concurrent use while its cache
// may grow: after Reserve(n), Apply for positions below n (or at least
// AutoReserve) may run concurrently.
//
// Angles and their cos and sin are computed in float64 with Strata's own
// deterministic functions (exp64, log64, sin64, cos64) and rounded to
// float32 once:
//
//	inv_i   = float64(Scale) * exp64(float64(-2i)/float64(Dims) * log64(float64(Base))) / float64(FreqFactors[i])
//	theta   = float64(p) * inv_i
//	c, s    = float32(cos64(theta)), float32(sin64(theta))
//
// (every float64 operation rounded, in this order; the division only with
// FreqFactors). This is ggml's theta = p * freq_scale * base^(-2i/n_dims) /
// freq_factor, which ggml evaluates in float32 by repeated multiplication.
type RoPE struct {
	cfg      RoPEConfig
	invFreq  []float64 // per pair
	cos, sin []float32 // [Dims/2][n], innermost first: position p at p*Dims/2
	n        int       // positions cached
}

// AutoReserve is the number of positions up to which Apply grows a RoPE's
// cache by itself.
const AutoReserve = 1 << 14

// maxPairs bounds the pairs of one head computed on the stack for an
// uncached position.
const maxPairs = 256

// NewRoPE returns a RoPE for cfg, with an empty cache.
func NewRoPE(cfg RoPEConfig) (*RoPE, error) {
	if cfg.Mode != RoPENormal && cfg.Mode != RoPENeox {
		return nil, fmt.Errorf("%w: mode %d", ErrRoPEConfig, cfg.Mode)
	}
	if cfg.Dims <= 0 || cfg.Dims%2 != 0 {
		return nil, fmt.Errorf("%w: %d rotated dimensions (positive and even)", ErrRoPEConfig, cfg.Dims)
	}
	if !(cfg.Base > 0) || math.IsInf(float64(cfg.Base), 0) {
		return nil, fmt.Errorf("%w: frequency base %v", ErrRoPEConfig, cfg.Base)
	}
	if cfg.Scale == 0 {
		cfg.Scale = 1
	}
	if !(cfg.Scale > 0) || math.IsInf(float64(cfg.Scale), 0) {
		return nil, fmt.Errorf("%w: frequency scale %v", ErrRoPEConfig, cfg.Scale)
	}
	half := cfg.Dims / 2
	if cfg.FreqFactors != nil && len(cfg.FreqFactors) != half {
		return nil, fmt.Errorf("%w: %d frequency factors for %d pairs", ErrRoPEConfig, len(cfg.FreqFactors), half)
	}
	r := &RoPE{cfg: cfg, invFreq: make([]float64, half)}
	if cfg.FreqFactors != nil {
		r.cfg.FreqFactors = append([]float32(nil), cfg.FreqFactors...)
	}
	lb := log64(float64(cfg.Base))
	for i := range half {
		e := float64(-2*i) / float64(cfg.Dims)
		f := float64(cfg.Scale) * exp64(float64(e*lb))
		if cfg.FreqFactors != nil {
			ff := float64(cfg.FreqFactors[i])
			if !(ff > 0) || math.IsInf(ff, 0) {
				return nil, fmt.Errorf("%w: frequency factor %d is %v", ErrRoPEConfig, i, ff)
			}
			f /= ff
		}
		r.invFreq[i] = f
	}
	return r, nil
}

// Config returns the configuration (with Scale 0 replaced by 1).
func (r *RoPE) Config() RoPEConfig { return r.cfg }

// Reserve fills the cache for positions [0, n) if it does not cover them.
// The cache's capacity at least doubles when it must grow, so that
// reserving one more position per decoded token costs amortized O(1).
func (r *RoPE) Reserve(n int) {
	if n <= r.n {
		return
	}
	half := r.cfg.Dims / 2
	if n*half > cap(r.cos) {
		c := max(n, 2*r.n) * half
		cos := make([]float32, r.n*half, c)
		sin := make([]float32, r.n*half, c)
		copy(cos, r.cos)
		copy(sin, r.sin)
		r.cos, r.sin = cos, sin
	}
	cos, sin := r.cos[:n*half], r.sin[:n*half]
	for p := r.n; p < n; p++ {
		r.angles(p, cos[p*half:(p+1)*half], sin[p*half:(p+1)*half])
	}
	r.cos, r.sin, r.n = cos, sin, n
}

// angles computes the cos and sin of position p's angles.
func (r *RoPE) angles(p int, cos, sin []float32) {
	cos = cos[:len(r.invFreq)]
	sin = sin[:len(r.invFreq)]
	for i, f := range r.invFreq {
		theta := float64(p) * f
		cos[i] = float32(cos64(theta))
		sin[i] = float32(sin64(theta))
	}
}

// CosSin writes the float32 cos and sin of the Dims/2 angles of position p
// into cos and sin (from the cache when it holds p).
func (r *RoPE) CosSin(p int, cos, sin []float32) {
	half := r.cfg.Dims / 2
	if p < 0 || len(cos) < half || len(sin) < half {
		panic(fmt.Sprintf("kernels: RoPE.CosSin(%d) into %d, %d values (want %d)", p, len(cos), len(sin), half))
	}
	if p < r.n {
		copy(cos, r.cos[p*half:(p+1)*half])
		copy(sin, r.sin[p*half:(p+1)*half])
		return
	}
	r.angles(p, cos, sin)
}

// Apply rotates x in place: x is [headDim][heads][len(positions)]
// (innermost first: token t's head h starts at (t*heads+h)*headDim), and
// token t is at position positions[t]. In each head the pairs (x0, x1)
// chosen by the mode, with the angle's c and s, become
//
//	y0 = x0*c - x1*s     (each product rounded, then the difference)
//	y1 = x0*s + x1*c
//
// and the elements from Dims to headDim are left alone. It panics if
// headDim < Dims, len(x) != len(positions)*heads*headDim, or a position is
// negative.
func (r *RoPE) Apply(x []float32, positions []int32, heads, headDim int) {
	d := r.cfg.Dims
	if headDim < d || heads < 0 || len(x) != len(positions)*heads*headDim {
		panic(fmt.Sprintf("kernels: RoPE.Apply: len(x) = %d for %d tokens × %d heads × %d (rotating %d)", len(x), len(positions), heads, headDim, d))
	}
	need := 0 // cache positions worth growing to
	for _, p := range positions {
		if p < 0 {
			panic(fmt.Sprintf("kernels: RoPE.Apply: position %d", p))
		}
		if int(p) < AutoReserve {
			need = max(need, int(p)+1)
		}
	}
	if need > r.n {
		r.Reserve(need)
	}
	half := d / 2
	var cbuf, sbuf [maxPairs]float32
	for t, p := range positions {
		var c, s []float32
		if int(p) < r.n {
			c = r.cos[int(p)*half : int(p)*half+half]
			s = r.sin[int(p)*half : int(p)*half+half]
		}
		row := x[t*heads*headDim : (t+1)*heads*headDim]
		for h := range heads {
			v := row[h*headDim : h*headDim+d]
			if c != nil {
				r.rotate(v, c, s)
				continue
			}
			// An uncached position: its angles in chunks on the stack.
			for i := 0; i < half; i += maxPairs {
				m := min(maxPairs, half-i)
				for j := range m {
					theta := float64(p) * r.invFreq[i+j]
					cbuf[j] = float32(cos64(theta))
					sbuf[j] = float32(sin64(theta))
				}
				r.rotatePart(v, i, cbuf[:m], sbuf[:m])
			}
		}
	}
}

// rotate rotates the Dims elements of v with the angles' c and s.
func (r *RoPE) rotate(v, c, s []float32) {
	if r.cfg.Mode == RoPENormal {
		rotateNormal(v, c, s)
	} else {
		rotateNeox(v, c, s)
	}
}

// rotatePart rotates pairs i0 .. i0+len(c)-1 of v (v holds all Dims
// elements).
func (r *RoPE) rotatePart(v []float32, i0 int, c, s []float32) {
	if r.cfg.Mode == RoPENormal {
		rotateNormal(v[2*i0:], c, s)
		return
	}
	half := r.cfg.Dims / 2
	rotateHalves(v[i0:half], v[half+i0:], c, s)
}

// rotateNormal rotates the adjacent pairs (v[2i], v[2i+1]) for i <
// len(c).
func rotateNormal(v, c, s []float32) {
	v = v[:2*len(c)]
	s = s[:len(c)]
	for i, ci := range c {
		si := s[i]
		x0, x1 := v[2*i], v[2*i+1]
		v[2*i] = float32(x0*ci) - float32(x1*si)
		v[2*i+1] = float32(x0*si) + float32(x1*ci)
	}
}

// rotateNeox rotates the pairs (v[i], v[i+len(c)]).
func rotateNeox(v, c, s []float32) {
	n := len(c)
	rotateHalves(v[:n], v[n:2*n], c, s)
}

// rotateHalves rotates the pairs (lo[i], hi[i]) for i < len(c).
func rotateHalves(lo, hi, c, s []float32) {
	n := len(c)
	lo, hi, s = lo[:n], hi[:n], s[:n]
	for i, ci := range c {
		si := s[i]
		x0, x1 := lo[i], hi[i]
		lo[i] = float32(x0*ci) - float32(x1*si)
		hi[i] = float32(x0*si) + float32(x1*ci)
	}
}
