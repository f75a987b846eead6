package weights

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

// SynthConfig describes a synthetic model: random weights of a given shape,
// for tests and benchmarks where the values do not matter but the shape,
// the types and llama.cpp compatibility do.
type SynthConfig struct {
	Arch    string // "llama" or "qwen2"
	Dim     int
	FFN     int
	Layers  int
	Heads   int
	KVHeads int
	Vocab   int
	Context int // default 2048
	// Type is the type of the 2-D weight matrices; norms are F32. A matrix
	// whose rows are not a whole number of Type's blocks falls back to
	// Q8_0, then F16, as llama-quantize does.
	Type quant.Type
	Seed uint64
	// Std is the standard deviation of the weights (default 0.02).
	Std float64
	// Tied leaves out output.weight (the head uses the embedding).
	Tied bool
	// Workers is the number of goroutines generating and quantizing
	// (0 means GOMAXPROCS). The output does not depend on it.
	Workers int
}

func (c *SynthConfig) defaults() {
	if c.Arch == "" {
		c.Arch = "llama"
	}
	if c.Context == 0 {
		c.Context = 2048
	}
	if c.Std == 0 {
		c.Std = 0.02
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
}

// minSynthVocab is the control tokens plus the 256 byte tokens plus a few
// pieces: the smallest vocabulary that can spell any text.
const minSynthVocab = 3 + 256 + 1

// SynthTensor is one tensor of a synthetic model.
type SynthTensor struct {
	Info gguf.TensorInfo
	// Norm tensors are filled with values near 1, matrices with N(0, Std).
	Norm bool
}

// Plan validates the configuration and returns the metadata and tensors
// of the synthetic model.
func (c SynthConfig) Plan() (*gguf.Metadata, []SynthTensor, error) {
	c.defaults()
	fam, ok := families[c.Arch]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrArch, c.Arch)
	}
	if c.Vocab < minSynthVocab {
		return nil, nil, fmt.Errorf("%w: vocab %d is below %d (control + byte tokens)", ErrHParams, c.Vocab, minSynthVocab)
	}
	if c.Heads <= 0 || c.KVHeads <= 0 || c.Dim%max(c.Heads, 1) != 0 {
		return nil, nil, fmt.Errorf("%w: dim %d is not a multiple of %d heads", ErrHParams, c.Dim, c.Heads)
	}
	if !c.Type.CanQuantize() {
		return nil, nil, fmt.Errorf("%w: cannot write weights of type %s", quant.ErrUnsupported, c.Type)
	}
	headDim := c.Dim / c.Heads
	h := HParams{Family: fam, ContextLength: c.Context, Dim: c.Dim, Layers: c.Layers, FFN: c.FFN,
		Heads: c.Heads, KVHeads: c.KVHeads, HeadDimK: headDim, HeadDimV: headDim, RopeDim: headDim,
		RopeFreqBase: 10000, RopeFreqScale: 1, RMSNormEps: 1e-5, Vocab: c.Vocab}
	if err := h.Validate(); err != nil {
		return nil, nil, err
	}

	p := c.Arch + "."
	md := &gguf.Metadata{}
	set := func(k string, v any) { md.Set(k, gguf.MustValue(v)) }
	set("general.architecture", c.Arch)
	set("general.name", fmt.Sprintf("strata-synth-%s-%dx%d-%s", c.Arch, c.Layers, c.Dim, strings.ToLower(c.Type.String())))
	set("general.file_type", fileType(c.Type))
	set("general.quantization_version", uint32(2))
	set(p+"context_length", uint32(c.Context))
	set(p+"embedding_length", uint32(c.Dim))
	set(p+"block_count", uint32(c.Layers))
	set(p+"feed_forward_length", uint32(c.FFN))
	set(p+"attention.head_count", uint32(c.Heads))
	set(p+"attention.head_count_kv", uint32(c.KVHeads))
	set(p+"rope.dimension_count", uint32(headDim))
	set(p+"rope.freq_base", float32(10000))
	set(p+"attention.layer_norm_rms_epsilon", float32(1e-5))
	set(p+"vocab_size", uint32(c.Vocab))
	tokens, scores, types := synthVocab(c.Vocab)
	set("tokenizer.ggml.model", "llama")
	set("tokenizer.ggml.pre", "default")
	set("tokenizer.ggml.tokens", tokens)
	set("tokenizer.ggml.scores", scores)
	set("tokenizer.ggml.token_type", types)
	set("tokenizer.ggml.unknown_token_id", uint32(0))
	set("tokenizer.ggml.bos_token_id", uint32(1))
	set("tokenizer.ggml.eos_token_id", uint32(2))
	set("tokenizer.ggml.add_bos_token", true)
	set("tokenizer.ggml.add_eos_token", false)

	kv := c.KVHeads * headDim
	var ts []SynthTensor
	mat := func(name string, cols, rows int) {
		t := c.Type
		for _, alt := range []quant.Type{t, quant.Q8_0, quant.F16} {
			if cols%alt.BlockSize() == 0 {
				t = alt
				break
			}
		}
		ts = append(ts, SynthTensor{Info: gguf.TensorInfo{Name: name, Type: t, Dims: []int64{int64(cols), int64(rows)}}})
	}
	vec := func(name string, n int) {
		ts = append(ts, SynthTensor{Info: gguf.TensorInfo{Name: name, Type: quant.F32, Dims: []int64{int64(n)}}, Norm: true})
	}
	bias := func(name string, n int) {
		ts = append(ts, SynthTensor{Info: gguf.TensorInfo{Name: name, Type: quant.F32, Dims: []int64{int64(n)}}})
	}
	mat("token_embd.weight", c.Dim, c.Vocab)
	for i := range c.Layers {
		b := fmt.Sprintf("blk.%d.", i)
		vec(b+"attn_norm.weight", c.Dim)
		mat(b+"attn_q.weight", c.Dim, c.Dim)
		mat(b+"attn_k.weight", c.Dim, kv)
		mat(b+"attn_v.weight", c.Dim, kv)
		if fam.QKVBias {
			bias(b+"attn_q.bias", c.Dim)
			bias(b+"attn_k.bias", kv)
			bias(b+"attn_v.bias", kv)
		}
		mat(b+"attn_output.weight", c.Dim, c.Dim)
		vec(b+"ffn_norm.weight", c.Dim)
		mat(b+"ffn_gate.weight", c.Dim, c.FFN)
		mat(b+"ffn_up.weight", c.Dim, c.FFN)
		mat(b+"ffn_down.weight", c.FFN, c.Dim)
	}
	vec("output_norm.weight", c.Dim)
	if !c.Tied {
		mat("output.weight", c.Dim, c.Vocab)
	}
	return md, ts, nil
}

// fileType is llama.cpp's general.file_type for a model of mostly type t.
func fileType(t quant.Type) uint32 {
	switch t {
	case quant.F32:
		return 0
	case quant.F16:
		return 1
	case quant.Q4_0:
		return 2
	case quant.Q4_1:
		return 3
	case quant.Q8_0:
		return 7
	case quant.Q5_0:
		return 8
	case quant.Q5_1:
		return 9
	case quant.Q2_K:
		return 10
	case quant.Q3_K:
		return 12 // Q3_K_M
	case quant.Q4_K:
		return 15 // Q4_K_M
	case quant.Q5_K:
		return 17 // Q5_K_M
	case quant.Q6_K:
		return 18
	case quant.BF16:
		return 32
	}
	return 0
}

// synthVocab builds a SentencePiece vocabulary that can spell any text:
// <unk>, <s>, </s>, the 256 byte tokens, then pieces (letters, digits and
// punctuation with and without the U+2581 word prefix, then letter pairs
// and triples) with scores that prefer longer pieces.
func synthVocab(n int) ([]string, []float32, []int32) {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{2, 3, 3} // unknown, control, control
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6) // byte
	}
	seen := map[string]bool{}
	add := func(s string) bool {
		if len(tokens) >= n {
			return false
		}
		if !seen[s] {
			seen[s] = true
			tokens = append(tokens, s)
			types = append(types, 1) // normal
		}
		return true
	}
	const sp = "\u2581"
	chars := "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'\"-:;()"
	add(sp)
	for _, ch := range chars {
		add(string(ch))
		add(sp + string(ch))
	}
	lower := "etaoinshrdlucmfwypvbgkjqxz"
	for _, a := range lower {
		for _, b := range lower {
			add(string(a) + string(b))
			add(sp + string(a) + string(b))
		}
	}
	for _, a := range lower {
		for _, b := range lower {
			for _, c := range lower {
				if !add(sp+string(a)+string(b)+string(c)) || !add(string(a)+string(b)+string(c)) {
					break
				}
			}
		}
	}
	for i := 0; len(tokens) < n; i++ {
		add(fmt.Sprintf("%s%d", sp, i))
	}
	scores := make([]float32, len(tokens))
	for i := range tokens {
		if types[i] == 1 {
			// Longer pieces score higher so that merges prefer them; among
			// equals, earlier ones win.
			scores[i] = float32(len(tokens[i])) - float32(i)/float32(n)
		}
	}
	return tokens, scores, types
}

// synthChunk is the number of elements generated and quantized at once.
const synthChunk = 1 << 18

// WriteSynth writes the synthetic model to w, streaming: memory use is a
// few chunks per worker whatever the model size. The values depend only on
// the configuration (seed included), not on Workers.
func WriteSynth(w io.Writer, c SynthConfig) error {
	c.defaults()
	md, ts, err := c.Plan()
	if err != nil {
		return err
	}
	infos := make([]gguf.TensorInfo, len(ts))
	for i := range ts {
		infos[i] = ts[i].Info
	}
	gw, err := gguf.NewWriter(w, md, infos)
	if err != nil {
		return err
	}
	for ti, t := range ts {
		if err := c.writeTensor(gw, uint64(ti), t); err != nil {
			return fmt.Errorf("tensor %s: %w", t.Info.Name, err)
		}
	}
	return gw.Close()
}

// SynthValues returns the float32 values of chunk k (of synthChunk
// elements, or fewer at the end) of tensor number ti of the model: the
// values before quantization.
func (c SynthConfig) SynthValues(ti uint64, t SynthTensor, k int, dst []float32) {
	c.defaults()
	rng := rand.New(rand.NewPCG(c.Seed, ti<<32|uint64(k)))
	if t.Norm {
		for i := range dst {
			dst[i] = float32(1 + 0.1*rng.NormFloat64())
		}
		return
	}
	for i := range dst {
		dst[i] = float32(c.Std * rng.NormFloat64())
	}
}

func (c SynthConfig) writeTensor(w io.Writer, ti uint64, t SynthTensor) error {
	n := int(t.Info.Elements())
	chunks := (n + synthChunk - 1) / synthChunk
	type result struct {
		buf []byte
		err error
	}
	// Chunks are produced by c.Workers goroutines and written in order;
	// at most 2*Workers are in flight.
	results := make([]chan result, chunks)
	for k := range results {
		results[k] = make(chan result, 1)
	}
	sem := make(chan struct{}, 2*c.Workers)
	go func() {
		for k := range chunks {
			sem <- struct{}{}
			go func() {
				lo, hi := k*synthChunk, min((k+1)*synthChunk, n)
				vals := make([]float32, hi-lo)
				c.SynthValues(ti, t, k, vals)
				size, _ := t.Info.Type.RowSize(int64(len(vals)))
				buf := make([]byte, size)
				results[k] <- result{buf, quant.Quantize(t.Info.Type, buf, vals)}
			}()
		}
	}()
	var firstErr error
	for k := range chunks {
		r := <-results[k]
		<-sem
		if firstErr != nil {
			continue
		}
		if r.err != nil {
			firstErr = r.err
			continue
		}
		if _, err := w.Write(r.buf); err != nil {
			firstErr = err
		}
	}
	return firstErr
}
