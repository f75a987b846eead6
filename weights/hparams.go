// Package weights opens models stored as GGUF: it decodes a model's
// hyper-parameters once into a validated HParams, builds its tokenizer, and
// computes its manifest and model id. The file format itself lives in
// weights/gguf, the tensor block formats in weights/quant and the
// tokenizers in weights/tokenizer.
package weights

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/stratanet/strata/weights/gguf"
)

// Errors of hyper-parameter decoding.
var (
	// ErrArch is returned for a model whose architecture Strata does not
	// support.
	ErrArch = errors.New("weights: unsupported architecture")
	// ErrHParams is returned when a hyper-parameter is missing, has the
	// wrong type, or is inconsistent with the others or with the tensors.
	ErrHParams = errors.New("weights: invalid hyper-parameters")
)

// RopeStyle says how rotary embeddings pair the dimensions of a head.
type RopeStyle int

const (
	// RopeNormal rotates adjacent pairs (x[2i], x[2i+1]), as llama does.
	RopeNormal RopeStyle = iota
	// RopeNeox rotates the halves (x[i], x[i+n/2]), as GPT-NeoX and qwen2 do.
	RopeNeox
)

func (r RopeStyle) String() string {
	if r == RopeNeox {
		return "neox"
	}
	return "normal"
}

// Family describes an architecture family: what differs between the
// families Strata runs.
type Family struct {
	Name string
	Rope RopeStyle
	// QKVBias is true when the attention projections have bias vectors.
	QKVBias bool
}

// families are the architectures Strata can run, keyed by
// general.architecture. Mistral, TinyLlama and SmolLM are stored as
// "llama".
var families = map[string]Family{
	"llama": {Name: "llama", Rope: RopeNormal},
	"qwen2": {Name: "qwen2", Rope: RopeNeox, QKVBias: true},
}

// Architectures lists the supported values of general.architecture.
func Architectures() []string {
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HParams are a model's hyper-parameters, decoded from GGUF metadata once
// and validated. Model code reads these fields, never metadata keys.
type HParams struct {
	Family Family
	// ContextLength is the context the model was trained for.
	ContextLength int
	// Dim is the width of the residual stream (n_embd).
	Dim int
	// Layers is the number of transformer blocks.
	Layers int
	// FFN is the hidden width of the feed-forward network.
	FFN int
	// Heads and KVHeads are the numbers of query and key/value heads.
	Heads, KVHeads int
	// HeadDimK and HeadDimV are the per-head widths of keys and values.
	HeadDimK, HeadDimV int
	// RopeDim is the number of dimensions of each head that rope rotates.
	RopeDim int
	// RopeFreqBase is rope's theta (default 10000, as in llama.cpp).
	RopeFreqBase float32
	// RopeFreqScale is 1/scaling factor for linear rope scaling (default 1).
	RopeFreqScale float32
	// RMSNormEps is the epsilon of RMS normalization.
	RMSNormEps float32
	// Vocab is the number of tokens (rows of the embedding and output).
	Vocab int
	// TiedOutput is true when the model has no output.weight and the
	// output projection is the token embedding.
	TiedOutput bool
}

// QDim is the total width of the query projection.
func (h *HParams) QDim() int { return h.Heads * h.HeadDimK }

// KVDim is the total width of the key (and value) projection.
func (h *HParams) KVDim() int { return h.KVHeads * h.HeadDimK }

// VDim is the total width of the value projection.
func (h *HParams) VDim() int { return h.KVHeads * h.HeadDimV }

// OutputTensor is the name of the tensor holding the output projection.
func (h *HParams) OutputTensor() string {
	if h.TiedOutput {
		return "token_embd.weight"
	}
	return "output.weight"
}

// DecodeHParams reads the hyper-parameters of the model in f and checks
// them against each other and against the shape of the token embedding.
func DecodeHParams(f *gguf.File) (*HParams, error) {
	md := &f.Metadata
	arch, err := md.String("general.architecture")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHParams, err)
	}
	fam, ok := families[arch]
	if !ok {
		return nil, fmt.Errorf("%w: %q (supported: %v)", ErrArch, arch, Architectures())
	}
	d := hpDecoder{md: md, prefix: arch + "."}
	h := &HParams{Family: fam}
	h.ContextLength = d.int("context_length", true, 0)
	h.Dim = d.int("embedding_length", true, 0)
	h.Layers = d.int("block_count", true, 0)
	h.FFN = d.perLayer("feed_forward_length", h.Layers, -1)
	h.Heads = d.perLayer("attention.head_count", h.Layers, -1)
	h.KVHeads = d.perLayer("attention.head_count_kv", h.Layers, h.Heads)
	if d.err == nil && h.Heads > 0 {
		h.HeadDimK = d.int("attention.key_length", false, h.Dim/h.Heads)
		h.HeadDimV = d.int("attention.value_length", false, h.Dim/h.Heads)
		h.RopeDim = d.int("rope.dimension_count", false, h.HeadDimK)
	}
	h.RopeFreqBase = d.float("rope.freq_base", 10000)
	scale := d.float("rope.scaling.factor", 0)
	if scale == 0 {
		scale = d.float("rope.scale_linear", 0)
	}
	h.RopeFreqScale = 1
	if scale != 0 {
		h.RopeFreqScale = 1 / scale
	}
	if d.err == nil && md.Has(d.prefix+"rope.scaling.type") {
		typ, err := md.String(d.prefix + "rope.scaling.type")
		if err == nil && typ != "linear" && typ != "none" {
			err = fmt.Errorf("rope scaling %q is not supported (only linear)", typ)
		}
		d.fail(err)
	}
	h.RMSNormEps = d.float("attention.layer_norm_rms_epsilon", -1)
	if d.err != nil {
		return nil, d.err
	}

	// The vocabulary size: the explicit key, else the tokenizer's list,
	// checked against the embedding.
	emb, err := f.Tensor("token_embd.weight")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHParams, err)
	}
	if len(emb.Dims) != 2 {
		return nil, fmt.Errorf("%w: token_embd.weight has shape %v, want [%d vocab]", ErrHParams, emb.Dims, h.Dim)
	}
	h.Vocab = int(emb.Dims[1])
	if n := d.int("vocab_size", false, -1); n >= 0 && n != h.Vocab {
		return nil, fmt.Errorf("%w: %svocab_size = %d but token_embd.weight has %d rows", ErrHParams, d.prefix, n, h.Vocab)
	}
	if toks, err := md.Strings("tokenizer.ggml.tokens"); err == nil && len(toks) != h.Vocab {
		return nil, fmt.Errorf("%w: tokenizer has %d tokens but token_embd.weight has %d rows", ErrHParams, len(toks), h.Vocab)
	}
	h.TiedOutput = !f.HasTensor("output.weight")
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if emb.Dims[0] != int64(h.Dim) {
		return nil, fmt.Errorf("%w: token_embd.weight has shape %v, want [%d %d]", ErrHParams, emb.Dims, h.Dim, h.Vocab)
	}
	if !h.TiedOutput {
		out, _ := f.Tensor("output.weight")
		if !slices.Equal(out.Dims, []int64{int64(h.Dim), int64(h.Vocab)}) {
			return nil, fmt.Errorf("%w: output.weight has shape %v, want [%d %d]", ErrHParams, out.Dims, h.Dim, h.Vocab)
		}
	}
	return h, nil
}

// Validate checks that the hyper-parameters are positive and consistent.
func (h *HParams) Validate() error {
	const maxDim = 1 << 20
	for _, c := range []struct {
		name string
		v    int
		max  int
	}{
		{"context_length", h.ContextLength, 1 << 24},
		{"embedding_length", h.Dim, maxDim},
		{"block_count", h.Layers, 4096},
		{"feed_forward_length", h.FFN, maxDim},
		{"attention.head_count", h.Heads, 4096},
		{"attention.head_count_kv", h.KVHeads, 4096},
		{"attention.key_length", h.HeadDimK, 4096},
		{"attention.value_length", h.HeadDimV, 4096},
		{"vocab", h.Vocab, 1 << 24},
	} {
		if c.v <= 0 || c.v > c.max {
			return fmt.Errorf("%w: %s = %d (want 1..%d)", ErrHParams, c.name, c.v, c.max)
		}
	}
	if h.Heads%h.KVHeads != 0 {
		return fmt.Errorf("%w: %d heads is not a multiple of %d key/value heads", ErrHParams, h.Heads, h.KVHeads)
	}
	if h.RopeDim <= 0 || h.RopeDim > h.HeadDimK || h.RopeDim%2 != 0 {
		return fmt.Errorf("%w: rope.dimension_count = %d (want an even number in 2..%d)", ErrHParams, h.RopeDim, h.HeadDimK)
	}
	if h.Family.Name == "llama" && h.RopeDim != h.HeadDimK {
		return fmt.Errorf("%w: llama rotates whole heads: rope.dimension_count = %d, head width %d", ErrHParams, h.RopeDim, h.HeadDimK)
	}
	if !(h.RMSNormEps > 0 && h.RMSNormEps < 1) {
		return fmt.Errorf("%w: layer_norm_rms_epsilon = %g", ErrHParams, h.RMSNormEps)
	}
	if !(h.RopeFreqBase > 0) || !(h.RopeFreqScale > 0) {
		return fmt.Errorf("%w: rope freq base %g, scale %g", ErrHParams, h.RopeFreqBase, h.RopeFreqScale)
	}
	return nil
}

// hpDecoder reads "<arch>.<key>" values, keeping the first error.
type hpDecoder struct {
	md     *gguf.Metadata
	prefix string
	err    error
}

func (d *hpDecoder) fail(err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%w: %w", ErrHParams, err)
	}
}

// int reads an integer key; a missing key is an error when required, else
// def.
func (d *hpDecoder) int(key string, required bool, def int) int {
	if d.err != nil {
		return 0
	}
	v, err := d.md.Uint(d.prefix + key)
	if errors.Is(err, gguf.ErrMissingKey) && !required {
		return def
	}
	if err == nil && v > 1<<31 {
		err = fmt.Errorf("%s%s = %d is out of range", d.prefix, key, v)
	}
	d.fail(err)
	return int(v)
}

// perLayer reads a key that may be one integer or one per layer; Strata
// needs all layers equal. A missing key is an error when def < 0.
func (d *hpDecoder) perLayer(key string, layers, def int) int {
	if d.err != nil {
		return 0
	}
	v, ok := d.md.Lookup(d.prefix + key)
	if !ok {
		if def < 0 {
			d.fail(fmt.Errorf("%w: %s%s", gguf.ErrMissingKey, d.prefix, key))
		}
		return def
	}
	if _, isArr := v.Data.(gguf.Array); !isArr {
		return d.int(key, true, 0)
	}
	vals, err := d.md.Int32s(d.prefix + key)
	if err != nil {
		d.fail(err)
		return 0
	}
	if len(vals) != layers {
		d.fail(fmt.Errorf("%s%s has %d entries for %d layers", d.prefix, key, len(vals), layers))
		return 0
	}
	for _, x := range vals[1:] {
		if x != vals[0] {
			d.fail(fmt.Errorf("%s%s differs between layers (%v); not supported", d.prefix, key, vals))
			return 0
		}
	}
	if len(vals) == 0 {
		return def
	}
	return int(vals[0])
}

// float reads a float key; def < 0 makes it required.
func (d *hpDecoder) float(key string, def float32) float32 {
	if d.err != nil {
		return 0
	}
	v, err := d.md.Float(d.prefix + key)
	if errors.Is(err, gguf.ErrMissingKey) && def >= 0 {
		return def
	}
	d.fail(err)
	return float32(v)
}
