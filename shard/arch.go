package shard

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/stratanet/strata/weights"
)

// Span is a range of transformer blocks [Start, End).
type Span struct{ Start, End int }

// Len is the number of blocks in the span.
func (s Span) Len() int { return s.End - s.Start }

// String formats the span as "start:end".
func (s Span) String() string { return fmt.Sprintf("%d:%d", s.Start, s.End) }

// Contains reports whether block i is in the span.
func (s Span) Contains(i int) bool { return s.Start <= i && i < s.End }

// ErrSpan is returned for a span that is empty or beyond the model.
var ErrSpan = errors.New("shard: invalid span")

// ParseSpan parses "start:end".
func ParseSpan(str string) (Span, error) {
	a, b, ok := strings.Cut(str, ":")
	if !ok {
		return Span{}, fmt.Errorf("%w: %q is not start:end", ErrSpan, str)
	}
	start, err1 := strconv.Atoi(a)
	end, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil {
		return Span{}, fmt.Errorf("%w: %q is not start:end", ErrSpan, str)
	}
	s := Span{start, end}
	if start < 0 || end <= start {
		return Span{}, fmt.Errorf("%w: %s is empty or negative", ErrSpan, s)
	}
	return s, nil
}

// Check verifies the span lies within a model of n blocks.
func (s Span) Check(n int) error {
	if s.Start < 0 || s.End <= s.Start || s.End > n {
		return fmt.Errorf("%w: %s in a model of %d blocks", ErrSpan, s, n)
	}
	return nil
}

// Arch declares an architecture family once: the tensors of a block by
// role. Architectures are registered by name (general.architecture).
type Arch struct {
	Name string
	// Tensors lists the tensors of block i, "blk.%d." prefixed.
	Tensors []TensorSpec
}

// TensorSpec is one tensor of a block: its name after "blk.N.", and its
// shape innermost first in terms of the hyper-parameters.
type TensorSpec struct {
	Role     Role
	Name     string
	Shape    func(h *weights.HParams) []int64
	Optional bool
}

// Role is what a block tensor does.
type Role int

// Block tensor roles.
const (
	AttnNorm Role = iota
	AttnQ
	AttnK
	AttnV
	AttnQBias
	AttnKBias
	AttnVBias
	AttnOut
	FFNNorm
	FFNGate
	FFNUp
	FFNDown
	numRoles
)

var archs = map[string]*Arch{}

// Register adds an architecture. It is called from init functions only and
// panics on a duplicate name (a programmer error).
func Register(a *Arch) {
	if _, dup := archs[a.Name]; dup {
		panic("shard: architecture registered twice: " + a.Name)
	}
	archs[a.Name] = a
}

// Architectures lists the registered names.
func Architectures() []string {
	var names []string
	for n := range archs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// lookupArch returns the registered architecture name.
func lookupArch(name string) (*Arch, error) {
	a, ok := archs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (registered: %v)", weights.ErrArch, name, Architectures())
	}
	return a, nil
}

func vec(f func(h *weights.HParams) int) func(h *weights.HParams) []int64 {
	return func(h *weights.HParams) []int64 { return []int64{int64(f(h))} }
}

func mat(cols, rows func(h *weights.HParams) int) func(h *weights.HParams) []int64 {
	return func(h *weights.HParams) []int64 { return []int64{int64(cols(h)), int64(rows(h))} }
}

func dim(h *weights.HParams) int   { return h.Dim }
func qDim(h *weights.HParams) int  { return h.QDim() }
func kvDim(h *weights.HParams) int { return h.KVDim() }
func vDim(h *weights.HParams) int  { return h.VDim() }
func ffn(h *weights.HParams) int   { return h.FFN }

// llamaTensors are the block tensors of the llama family.
var llamaTensors = []TensorSpec{
	{AttnNorm, "attn_norm.weight", vec(dim), false},
	{AttnQ, "attn_q.weight", mat(dim, qDim), false},
	{AttnK, "attn_k.weight", mat(dim, kvDim), false},
	{AttnV, "attn_v.weight", mat(dim, vDim), false},
	{AttnOut, "attn_output.weight", mat(qDim, dim), false},
	{FFNNorm, "ffn_norm.weight", vec(dim), false},
	{FFNGate, "ffn_gate.weight", mat(dim, ffn), false},
	{FFNUp, "ffn_up.weight", mat(dim, ffn), false},
	{FFNDown, "ffn_down.weight", mat(ffn, dim), false},
}

func init() {
	Register(&Arch{Name: "llama", Tensors: llamaTensors})
	Register(&Arch{Name: "qwen2", Tensors: append(append([]TensorSpec(nil), llamaTensors...),
		TensorSpec{AttnQBias, "attn_q.bias", vec(qDim), false},
		TensorSpec{AttnKBias, "attn_k.bias", vec(kvDim), false},
		TensorSpec{AttnVBias, "attn_v.bias", vec(vDim), false},
	)})
}
