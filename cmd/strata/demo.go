package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/quant"
)

// demoConfig is the built-in default model of the demo: small enough to
// make in a second, shaped like a real llama.
var demoConfig = weights.SynthConfig{Arch: "llama", Dim: 256, FFN: 768, Layers: 4, Heads: 8, KVHeads: 4,
	Vocab: 2048, Context: 512, Type: quant.Q8_0, Seed: 1}

const demoText = "Once upon a time, a small swarm of machines ran one model together."

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "demo", "demo [--model M] [--keep DIR]",
		"Run Strata's main job on a built-in default: with no --model, synthesize a small llama-shaped\n"+
			"model, then inspect it, compute its model id, and tokenize and detokenize a sentence with it.")
	model := fs.String("model", "", "use this GGUF model instead of a synthetic one")
	keep := fs.String("keep", "", "write the synthetic model into DIR and keep it")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	path := *model
	if path == "" {
		dir := *keep
		if dir == "" {
			tmp, err := os.MkdirTemp("", "strata-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		path = filepath.Join(dir, "demo-llama-q8_0.gguf")
		c := demoConfig
		fmt.Fprintf(e.stdout, "== synthesizing a %d-block llama (dim %d, vocab %d, %s) at %s\n", c.Layers, c.Dim, c.Vocab, c.Type, path)
		start := time.Now()
		if err := writeModelFile(path, true, func(f *os.File) error { return weights.WriteSynth(f, c) }); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "   done in %.2fs\n", time.Since(start).Seconds())
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fmt.Fprintf(e.stdout, "\n== inspect %s\n", filepath.Base(path))
	rep, err := inspect(path, false)
	if err != nil {
		return err
	}
	printInspect(e.stdout, rep)

	fmt.Fprintf(e.stdout, "\n== tokenize %q\n", demoText)
	tok, err := openTokenizer(path)
	if err != nil {
		return err
	}
	ids, err := tok.Encode(demoText, true, false)
	if err != nil {
		return err
	}
	pieces := make([]string, len(ids))
	for i, id := range ids {
		pieces[i] = tok.Token(id)
	}
	fmt.Fprintf(e.stdout, "   %d tokens: %v\n", len(ids), ids)
	fmt.Fprintf(e.stdout, "   pieces: %s\n", strings.Join(pieces, " "))
	// As llama.cpp, decoding the text's tokens (BOS left out) drops the
	// space that SentencePiece put in front.
	text := ids
	if len(text) > 0 && text[0] == tok.BOS() {
		text = text[1:]
	}
	decoded, err := tok.Decode(text)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "   decoded: %q\n", decoded)
	if decoded != demoText {
		return fmt.Errorf("round trip changed the text: %q", decoded)
	}
	fmt.Fprintln(e.stdout, "\nThe swarm that runs this model across machines (serve, generate) is being built; see README.md.")
	return nil
}
