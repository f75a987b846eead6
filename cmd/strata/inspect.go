package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"

	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
)

type inspectTensor struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
}

type inspectTokenizer struct {
	Model  string `json:"model"`
	Pre    string `json:"pre,omitempty"`
	Tokens int    `json:"tokens"`
	BOS    *int64 `json:"bos,omitempty"`
	EOS    *int64 `json:"eos,omitempty"`
	UNK    *int64 `json:"unk,omitempty"`
	AddBOS *bool  `json:"add_bos,omitempty"`
	AddEOS *bool  `json:"add_eos,omitempty"`
}

type inspectReport struct {
	File         string            `json:"file"`
	Bytes        int64             `json:"bytes"`
	Version      uint32            `json:"gguf_version"`
	ModelID      weights.ModelID   `json:"model_id"`
	Architecture string            `json:"architecture"`
	Name         string            `json:"name,omitempty"`
	HParams      *hparamsJSON      `json:"hparams,omitempty"`
	HParamsError string            `json:"hparams_error,omitempty"`
	Tokenizer    *inspectTokenizer `json:"tokenizer,omitempty"`
	TypeCounts   map[string]int    `json:"tensor_types"`
	TensorCount  int               `json:"tensor_count"`
	TensorBytes  int64             `json:"tensor_bytes"`
	Tensors      []inspectTensor   `json:"tensors,omitempty"`
}

type hparamsJSON struct {
	Context       int     `json:"context_length"`
	Dim           int     `json:"embedding_length"`
	Layers        int     `json:"block_count"`
	FFN           int     `json:"feed_forward_length"`
	Heads         int     `json:"head_count"`
	KVHeads       int     `json:"head_count_kv"`
	HeadDim       int     `json:"head_dim"`
	RopeDim       int     `json:"rope_dimension_count"`
	RopeStyle     string  `json:"rope_style"`
	RopeFreqBase  float32 `json:"rope_freq_base"`
	RopeFreqScale float32 `json:"rope_freq_scale"`
	RMSNormEps    float32 `json:"rms_norm_eps"`
	Vocab         int     `json:"vocab_size"`
	QKVBias       bool    `json:"qkv_bias"`
	TiedOutput    bool    `json:"tied_output"`
	OutputTensor  string  `json:"output_tensor"`
}

func runInspect(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "inspect", "inspect MODEL [--json] [--tensors]",
		"Show a GGUF model's architecture, hyper-parameters, tokenizer, tensor types and model id.")
	asJSON := fs.Bool("json", false, "print JSON")
	tensors := fs.Bool("tensors", false, "list every tensor with its type, shape and size")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	rep, err := inspect(pos[0], *tensors)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printInspect(e.stdout, rep)
	return nil
}

func inspect(path string, withTensors bool) (*inspectReport, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	man, err := weights.ManifestOf(f, 0)
	if err != nil {
		return nil, err
	}
	md := &f.Metadata
	rep := &inspectReport{
		File: path, Bytes: f.Size(), Version: f.Version, ModelID: man.ID,
		Architecture: man.Arch,
		TypeCounts:   map[string]int{},
		TensorCount:  len(f.Tensors),
	}
	// A model Strata cannot run is still worth looking at: report why.
	if h, err := weights.DecodeHParams(f); err != nil {
		rep.HParamsError = err.Error()
	} else {
		rep.HParams = &hparamsJSON{
			Context: h.ContextLength, Dim: h.Dim, Layers: h.Layers, FFN: h.FFN, Heads: h.Heads, KVHeads: h.KVHeads,
			HeadDim: h.HeadDimK, RopeDim: h.RopeDim, RopeStyle: h.Family.Rope.String(), RopeFreqBase: h.RopeFreqBase,
			RopeFreqScale: h.RopeFreqScale, RMSNormEps: h.RMSNormEps, Vocab: h.Vocab, QKVBias: h.Family.QKVBias,
			TiedOutput: h.TiedOutput, OutputTensor: h.OutputTensor(),
		}
	}
	rep.Name, _ = md.String("general.name")
	if model, err := md.String("tokenizer.ggml.model"); err == nil {
		tk := &inspectTokenizer{Model: model}
		tk.Pre, _ = md.String("tokenizer.ggml.pre")
		if toks, err := md.Strings("tokenizer.ggml.tokens"); err == nil {
			tk.Tokens = len(toks)
		}
		optInt := func(key string) *int64 {
			if v, err := md.Int(key); err == nil && v >= 0 && v < int64(tk.Tokens) {
				return &v
			}
			return nil
		}
		optBool := func(key string) *bool {
			if v, err := md.Bool(key); err == nil {
				return &v
			}
			return nil
		}
		tk.BOS, tk.EOS, tk.UNK = optInt("tokenizer.ggml.bos_token_id"), optInt("tokenizer.ggml.eos_token_id"), optInt("tokenizer.ggml.unknown_token_id")
		tk.AddBOS, tk.AddEOS = optBool("tokenizer.ggml.add_bos_token"), optBool("tokenizer.ggml.add_eos_token")
		rep.Tokenizer = tk
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		rep.TypeCounts[ti.Type.String()]++
		rep.TensorBytes += ti.Size
		if withTensors {
			rep.Tensors = append(rep.Tensors, inspectTensor{Name: ti.Name, Type: ti.Type.String(), Shape: ti.Dims, Bytes: ti.Size})
		}
	}
	return rep, nil
}

func printInspect(w io.Writer, r *inspectReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	h := r.HParams
	fmt.Fprintf(tw, "file\t%s (%s, GGUF v%d)\n", filepath.Base(r.File), humanBytes(r.Bytes), r.Version)
	if r.Name != "" {
		fmt.Fprintf(tw, "name\t%s\n", r.Name)
	}
	fmt.Fprintf(tw, "model id\t%s\n", r.ModelID)
	fmt.Fprintf(tw, "architecture\t%s\n", r.Architecture)
	if h == nil {
		fmt.Fprintf(tw, "cannot run\t%s\n", r.HParamsError)
	} else {
		printHParams(tw, h)
	}
	printTokenizer(tw, r.Tokenizer)
	printTensorSummary(tw, r)
	tw.Flush()
	if len(r.Tensors) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "name\ttype\tshape\tbytes\t")
		for _, t := range r.Tensors {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t\n", t.Name, t.Type, t.Shape, t.Bytes)
		}
		tw.Flush()
	}
}

func printHParams(tw io.Writer, h *hparamsJSON) {
	fmt.Fprintf(tw, "context length\t%d\n", h.Context)
	fmt.Fprintf(tw, "embedding length\t%d\n", h.Dim)
	fmt.Fprintf(tw, "blocks\t%d\n", h.Layers)
	fmt.Fprintf(tw, "feed-forward length\t%d\n", h.FFN)
	fmt.Fprintf(tw, "heads\t%d (key/value heads %d, head dim %d)\n", h.Heads, h.KVHeads, h.HeadDim)
	fmt.Fprintf(tw, "rope\t%s, %d dims, freq base %g, freq scale %g\n", h.RopeStyle, h.RopeDim, h.RopeFreqBase, h.RopeFreqScale)
	fmt.Fprintf(tw, "rms norm eps\t%g\n", h.RMSNormEps)
	fmt.Fprintf(tw, "vocab size\t%d\n", h.Vocab)
	if h.TiedOutput {
		fmt.Fprintf(tw, "output\ttied to token_embd.weight\n")
	} else {
		fmt.Fprintf(tw, "output\toutput.weight\n")
	}
}

func printTokenizer(tw io.Writer, tk *inspectTokenizer) {
	if tk != nil {
		s := fmt.Sprintf("%s, %d tokens", tk.Model, tk.Tokens)
		if tk.Pre != "" {
			s += ", pre " + tk.Pre
		}
		for _, id := range []struct {
			name string
			v    *int64
		}{{"bos", tk.BOS}, {"eos", tk.EOS}, {"unk", tk.UNK}} {
			if id.v != nil {
				s += fmt.Sprintf(", %s %d", id.name, *id.v)
			}
		}
		if tk.AddBOS != nil {
			s += fmt.Sprintf(", add bos %v", *tk.AddBOS)
		}
		fmt.Fprintf(tw, "tokenizer\t%s\n", s)
	}
}

func printTensorSummary(tw io.Writer, r *inspectReport) {
	types := make([]string, 0, len(r.TypeCounts))
	for t := range r.TypeCounts {
		types = append(types, t)
	}
	sort.Strings(types)
	ts := ""
	for i, t := range types {
		if i > 0 {
			ts += ", "
		}
		ts += fmt.Sprintf("%s×%d", t, r.TypeCounts[t])
	}
	fmt.Fprintf(tw, "tensors\t%d (%s), %s\n", r.TensorCount, ts, humanBytes(r.TensorBytes))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// createOutput opens path for writing a new model, refusing to overwrite
// unless force is set.
func createOutput(path string, force bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !force {
		flags |= os.O_EXCL
	}
	return os.OpenFile(path, flags, 0o644)
}
