package kerneltest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stratanet/strata/kernels"
)

// RoPEApplier applies a rotary embedding in place, as *kernels.RoPE does.
type RoPEApplier interface {
	Apply(x []float32, positions []int32, heads, headDim int)
}

// NewRoPEFunc makes the implementation under test for a configuration, as
// kernels.NewRoPE does; it returns an error wrapping kernels.ErrRoPEConfig
// for an invalid one.
type NewRoPEFunc func(cfg kernels.RoPEConfig) (RoPEApplier, error)

// ropeCase is one configuration and layout of the RoPE suite.
type ropeCase struct {
	cfg            kernels.RoPEConfig
	heads, headDim int
	positions      []int32
}

func (c ropeCase) String() string {
	ff := ""
	if c.cfg.FreqFactors != nil {
		ff = " ff"
	}
	return fmt.Sprintf("RoPE(%s dims=%d base=%g scale=%g%s, %d tok × %d heads × %d)",
		c.cfg.Mode, c.cfg.Dims, c.cfg.Base, c.cfg.Scale, ff, len(c.positions), c.heads, c.headDim)
}

// ropeCases are the suite's configurations: llama (normal, 10000),
// qwen2 (neox, 1e6), partial rotation with linear scaling, llama 3
// frequency factors, tiny heads, and positions from 0 up to 1e6.
func ropeCases(r *rand.Rand) []ropeCase {
	seq := func(start, n int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(start + i)
		}
		return p
	}
	random := func(n, max int) []int32 {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(r.IntN(max))
		}
		return p
	}
	ff := make([]float32, 32)
	for i := range ff {
		ff[i] = float32(1 + r.IntN(8))
	}
	var cs []ropeCase
	for _, mode := range []kernels.RoPEMode{kernels.RoPENormal, kernels.RoPENeox} {
		cs = append(cs,
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 64, Base: 10000}, 3, 64, seq(0, 9)},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 128, Base: 1e6}, 2, 128, seq(4093, 5)},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 32, Base: 10000, Scale: 0.25}, 4, 48, random(6, 70000)},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 64, Base: 500000, FreqFactors: ff}, 2, 64, random(4, 1000000)},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 2, Base: 10000}, 5, 2, seq(0, 3)},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 6, Base: 100}, 1, 7, []int32{1000000, 0, 7}},
			ropeCase{kernels.RoPEConfig{Mode: mode, Dims: 16, Base: 10000}, 1, 16, nil},
		)
	}
	return cs
}

// ropeRef applies c in float64: theta = p * scale * base^(-2i/dims) / ff.
func ropeRef(c ropeCase, x []float32) []float64 {
	y := f64s(x)
	d := c.cfg.Dims
	scale := float64(c.cfg.Scale)
	if scale == 0 {
		scale = 1
	}
	for t, p := range c.positions {
		for h := range c.heads {
			v := y[(t*c.heads+h)*c.headDim:]
			for i := range d / 2 {
				inv := scale * math.Pow(float64(c.cfg.Base), -2*float64(i)/float64(d))
				if c.cfg.FreqFactors != nil {
					inv /= float64(c.cfg.FreqFactors[i])
				}
				th := float64(p) * inv
				cs, sn := math.Cos(th), math.Sin(th)
				i0, i1 := 2*i, 2*i+1
				if c.cfg.Mode == kernels.RoPENeox {
					i0, i1 = i, i+d/2
				}
				x0, x1 := v[i0], v[i1]
				v[i0] = x0*cs - x1*sn
				v[i1] = x0*sn + x1*cs
			}
		}
	}
	return y
}

// RoPETol is the bound on |got - want| for an output of a rotation of the
// pair (x0, x1): cos and sin rounded to float32 (U each), the two products
// and the sum or difference (U each):
//
//	2 U (|x0| + |x1|) + MinSubnormal
func RoPETol(x0, x1 float32) float64 {
	return 2*U*(math.Abs(float64(x0))+math.Abs(float64(x1))) + MinSubnormal
}

// TestRoPE is the conformance suite of a rotary embedding. For each case
// of normal and neox modes, full and partial rotation, linear scaling,
// frequency factors and positions up to 1e6, it checks the result against
// a float64 reference within RoPETol, that elements past Dims keep their
// bits, that nothing outside x is written, that a batch gives the same
// bits as its tokens one at a time (in any order), and that Apply
// allocates nothing once the positions are cached. It also checks that
// invalid configurations are refused.
func TestRoPE(t *testing.T, newRoPE NewRoPEFunc) {
	r := rand.New(rand.NewPCG(11, 0x10))
	for _, c := range ropeCases(r) {
		rope, err := newRoPE(c.cfg)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		n := len(c.positions) * c.heads * c.headDim
		x := RandVec(r, n, 3)
		off := r.IntN(4)
		g := GuardedCopy(x, off)
		rope.Apply(g.Slice(), c.positions, c.heads, c.headDim)
		g.Check(t, c.String())
		got := g.Slice()
		want := ropeRef(c, x)
		d := c.cfg.Dims
		WithinTol(t, c.String(), got, want, func(i int) float64 {
			j := i % c.headDim
			if j >= d {
				return 0
			}
			pair := j ^ 1 // normal: the neighbour
			if c.cfg.Mode == kernels.RoPENeox {
				pair = (j + d/2) % d
			}
			base := i - j
			return RoPETol(x[base+j], x[base+pair])
		})
		for i := range got {
			if i%c.headDim >= d && math.Float32bits(got[i]) != math.Float32bits(x[i]) {
				t.Errorf("%v: element %d (past the %d rotated ones) changed from %v to %v", c, i, d, x[i], got[i])
				break
			}
		}
		// One token at a time, last first, in a fresh RoPE: same bits.
		fresh, err := newRoPE(c.cfg)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		row := c.heads * c.headDim
		one := make([]float32, n)
		copy(one, x)
		for tk := len(c.positions) - 1; tk >= 0; tk-- {
			fresh.Apply(one[tk*row:(tk+1)*row], c.positions[tk:tk+1], c.heads, c.headDim)
		}
		EqualBits(t, c.String()+" one token at a time", one, got)
		if a := testing.AllocsPerRun(5, func() { rope.Apply(one, c.positions, c.heads, c.headDim) }); a != 0 {
			t.Errorf("%v: Apply allocates %v times per call at cached positions, want 0", c, a)
		}
	}
	bad := []kernels.RoPEConfig{
		{Mode: kernels.RoPENormal, Dims: 0, Base: 10000},
		{Mode: kernels.RoPENormal, Dims: 7, Base: 10000},
		{Mode: kernels.RoPENeox, Dims: 8, Base: 0},
		{Mode: kernels.RoPENeox, Dims: 8, Base: float32(math.NaN())},
		{Mode: kernels.RoPENeox, Dims: 8, Base: 10000, Scale: -1},
		{Mode: kernels.RoPENormal, Dims: 8, Base: 10000, FreqFactors: []float32{1, 2}},
		{Mode: kernels.RoPENormal, Dims: 4, Base: 10000, FreqFactors: []float32{1, 0}},
		{Mode: 9, Dims: 8, Base: 10000},
	}
	for _, cfg := range bad {
		if _, err := newRoPE(cfg); !errors.Is(err, kernels.ErrRoPEConfig) {
			t.Errorf("NewRoPE(%+v) error = %v, want ErrRoPEConfig", cfg, err)
		}
	}
}

// CompareRoPE checks that got applies the same bits as want for every
// case of the suite.
func CompareRoPE(t *testing.T, got, want NewRoPEFunc) {
	r := rand.New(rand.NewPCG(12, 0x10))
	for _, c := range ropeCases(r) {
		rg, err := got(c.cfg)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		rw, err := want(c.cfg)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		x := RandVec(r, len(c.positions)*c.heads*c.headDim, 3)
		g := GuardedCopy(x, 1)
		rg.Apply(g.Slice(), c.positions, c.heads, c.headDim)
		g.Check(t, c.String())
		w := Unaligned(x, 0)
		rw.Apply(w, c.positions, c.heads, c.headDim)
		EqualBits(t, c.String(), g.Slice(), w)
	}
}
