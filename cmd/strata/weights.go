package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/quant"
)

var weightsCommands = []command{
	{"synth", "write a model with random weights of a given shape", runSynth},
	{"convert", "rewrite a model with its weight matrices in another type", runConvert},
	{"manifest", "print a model's manifest: BLAKE3 of every tensor and the model id", runManifest},
}

func runWeights(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, "weights", weightsCommands, args)
}

// runGroup dispatches "strata GROUP COMMAND ...".
func runGroup(ctx context.Context, e *env, group string, cmds []command, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(e.stdout, "Usage: strata %s COMMAND [flags]\n\nCommands:\n", group)
		for _, c := range cmds {
			fmt.Fprintf(e.stdout, "  %-10s %s\n", c.name, c.summary)
		}
		if len(args) == 0 {
			return fmt.Errorf("%w: missing command", errUsage)
		}
		return nil
	}
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
		if c.name == args[0] {
			if err := c.run(ctx, e, args[1:]); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: unknown command %q (%s)", errUsage, args[0], strings.Join(names, ", "))
}

func quantTypeFlag(s string) (quant.Type, error) {
	t, err := quant.ParseType(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errUsage, err)
	}
	if !t.CanQuantize() {
		var ok []string
		for id := quant.Type(0); id < 64; id++ {
			if id.CanQuantize() {
				ok = append(ok, strings.ToLower(id.String()))
			}
		}
		return 0, fmt.Errorf("%w: cannot write type %s (writable: %s)", errUsage, t, strings.Join(ok, ", "))
	}
	return t, nil
}

func runSynth(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "weights synth",
		"weights synth --out F --arch llama --dim N --ffn N --layers N --heads N --kv-heads N --vocab N --type q4_0 [--seed S]",
		"Write a GGUF model with random weights (normal, small std; norms near 1) and a SentencePiece\n"+
			"vocabulary with byte tokens, deterministic for a seed, streaming so that a multi-GB model needs\n"+
			"little memory. llama.cpp loads the result.")
	out := fs.String("out", "", "output file (required)")
	arch := fs.String("arch", "llama", "architecture: llama or qwen2")
	dim := fs.Int("dim", 256, "embedding length")
	ffn := fs.Int("ffn", 768, "feed-forward length")
	layers := fs.Int("layers", 4, "number of blocks")
	heads := fs.Int("heads", 8, "attention heads")
	kvHeads := fs.Int("kv-heads", 4, "key/value heads")
	vocab := fs.Int("vocab", 1024, "vocabulary size (at least 260)")
	ctxLen := fs.Int("ctx", 2048, "context length")
	typ := fs.String("type", "q8_0", "type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, ...")
	seed := fs.Uint64("seed", 1, "random seed")
	std := fs.Float64("std", 0.02, "standard deviation of the weights")
	tied := fs.Bool("tied", false, "no output.weight: the head uses the token embedding")
	force := fs.Bool("force", false, "overwrite an existing output file")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	t, err := quantTypeFlag(*typ)
	if err != nil {
		return err
	}
	cfg := weights.SynthConfig{Arch: *arch, Dim: *dim, FFN: *ffn, Layers: *layers, Heads: *heads, KVHeads: *kvHeads,
		Vocab: *vocab, Context: *ctxLen, Type: t, Seed: *seed, Std: *std, Tied: *tied}
	if _, _, err := cfg.Plan(); err != nil {
		return err
	}
	start := time.Now()
	if err := writeModelFile(*out, *force, func(f *os.File) error { return weights.WriteSynth(f, cfg) }); err != nil {
		return err
	}
	st, err := os.Stat(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s (%s) in %.1fs\n", *out, humanBytes(st.Size()), time.Since(start).Seconds())
	return nil
}

// writeModelFile creates path, lets write fill it, and removes it again if
// writing fails, so no half-written model is left behind.
func writeModelFile(path string, force bool, write func(*os.File) error) error {
	f, err := createOutput(path, force)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

func runConvert(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "weights convert", "weights convert --type T IN OUT",
		"Rewrite a model with its 2-D weight matrices dequantized and quantized again as type T with\n"+
			"ggml's reference quantizer (norms and biases keep their type).")
	typ := fs.String("type", "f32", "target type of the weight matrices")
	force := fs.Bool("force", false, "overwrite an existing output file")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	t, err := quantTypeFlag(*typ)
	if err != nil {
		return err
	}
	src, err := gguf.Open(pos[0])
	if err != nil {
		return err
	}
	defer src.Close()
	if err := writeModelFile(pos[1], *force, func(f *os.File) error { return weights.Convert(f, src, t) }); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", pos[1])
	return nil
}

func runManifest(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "weights manifest", "weights manifest MODEL [--json] [--workers N]",
		"Hash every tensor and the computation-relevant metadata with BLAKE3 and print the manifest\n"+
			"and the model id (the BLAKE3 of the canonical manifest).")
	asJSON := fs.Bool("json", false, "print JSON")
	workers := fs.Int("workers", 0, "hashing goroutines (0: one per core)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := weights.ComputeManifest(pos[0], *workers)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if *asJSON {
		type tensorJSON struct {
			weights.TensorDigest
			Type string `json:"type"`
		}
		out := struct {
			*weights.Manifest
			Tensors []tensorJSON `json:"tensors"`
		}{Manifest: m}
		for _, t := range m.Tensors {
			out.Tensors = append(out.Tensors, tensorJSON{t, t.Type.String()})
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	e.stdout.Write(m.Canonical())
	var total int64
	for _, t := range m.Tensors {
		total += t.Size
	}
	fmt.Fprintf(e.stdout, "model id %s\n", m.ID)
	fmt.Fprintf(e.stderr, "hashed %s in %.2fs (%.2f GB/s)\n", humanBytes(total), elapsed.Seconds(), float64(total)/elapsed.Seconds()/1e9)
	return nil
}
