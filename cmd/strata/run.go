package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/shard"
)

// samplerFlags registers the sampling flags shared by run and generate.
func samplerFlags(fs *flag.FlagSet) func() (shard.SamplerConfig, error) {
	def := shard.DefaultSampler()
	temp := fs.Float64("temp", float64(def.Temperature), "temperature (0: greedy)")
	topK := fs.Int("top-k", def.TopK, "keep the K most likely tokens (0: all)")
	topP := fs.Float64("top-p", float64(def.TopP), "keep the smallest set of tokens whose probability reaches P")
	minP := fs.Float64("min-p", float64(def.MinP), "drop tokens below this fraction of the most likely one's probability")
	rep := fs.Float64("repeat-penalty", 1, "penalty for tokens in the last --repeat-last-n (1: off)")
	freq := fs.Float64("frequency-penalty", 0, "subtracted per occurrence in the window")
	pres := fs.Float64("presence-penalty", 0, "subtracted once for a token in the window")
	lastN := fs.Int("repeat-last-n", 64, "penalty window (0: off, -1: everything)")
	seed := fs.Uint64("seed", 0, "random seed (0: pick one and report it)")
	return func() (shard.SamplerConfig, error) {
		c := shard.SamplerConfig{Temperature: float32(*temp), TopK: *topK, TopP: float32(*topP), MinP: float32(*minP),
			RepeatPenalty: float32(*rep), FrequencyPenalty: float32(*freq), PresencePenalty: float32(*pres),
			RepeatLastN: *lastN, Seed: *seed}
		if c.Seed == 0 {
			c.Seed = rand.Uint64()
		}
		if err := c.Validate(); err != nil {
			return c, fmt.Errorf("%w: %v", errUsage, err)
		}
		return c, nil
	}
}

// engineFlags registers --threads and --kernels.
// mmapFlag is --mmap: shard.Config.Mapped.
func mmapFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("mmap", false, "run the weights in place in the model file's mapping instead of copying the span's into memory (decode is slower)")
}

func engineFlags(fs *flag.FlagSet) func() (*kernels.Pool, kernels.Path, error) {
	threads := fs.Int("threads", 0, "threads for the kernels (0: one per core)")
	path := fs.String("kernels", "", "kernel path: generic, avx2, avx512 or amx (default: $STRATA_KERNELS or the best this CPU has)")
	return func() (*kernels.Pool, kernels.Path, error) {
		var p kernels.Path
		var err error
		if *path != "" {
			if p, err = kernels.ParsePath(*path); err == nil && !p.Supported() {
				err = fmt.Errorf("kernel path %s is not supported on this CPU or build", p)
			}
		} else {
			p, err = kernels.PathFromEnv()
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", errUsage, err)
		}
		n := *threads
		if n <= 0 {
			n = defaultThreads()
		}
		return kernels.NewPool(n), p, nil
	}
}

type logitPos struct {
	Pos        int          `json:"pos"`
	InputToken int32        `json:"input_token"`
	Top        [][2]float64 `json:"top"`
}

type runReport struct {
	Prompt         string     `json:"prompt"`
	PromptTokens   []int32    `json:"prompt_tokens"`
	Tokens         []int32    `json:"tokens"`
	Text           string     `json:"text"`
	PrefillTokPerS float64    `json:"prefill_tok_s"`
	DecodeTokPerS  float64    `json:"decode_tok_s"`
	Seed           uint64     `json:"seed"`
	Threads        int        `json:"threads"`
	Kernels        string     `json:"kernels"`
	Logits         []logitPos `json:"logits,omitempty"`
}

func runRun(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "run", "run --model M --prompt T [-n 128] [--temp 0] [--seed S] [--threads N] [--ctx N] [--json] [--logits K]",
		"Generate text from a prompt with the whole model on this machine, streaming it to stdout.")
	model := fs.String("model", "", "GGUF model (required)")
	prompt := fs.String("prompt", "", "prompt text")
	n := fs.Int("n", 128, "tokens to generate")
	ctxLen := fs.Int("ctx", 0, "context length of the session (0: prompt + n)")
	asJSON := fs.Bool("json", false, "print one JSON report instead of streaming text")
	topLogits := fs.Int("logits", 0, "with --json, add the top K logits at every position")
	kv := fs.String("kv", "f32", "KV cache type: f32 or f16")
	sampler := samplerFlags(fs)
	mapped := mmapFlag(fs)
	engine := engineFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	if *n < 0 || *topLogits < 0 {
		return fmt.Errorf("%w: -n and --logits must not be negative", errUsage)
	}
	kvType, err := parseKV(*kv)
	if err != nil {
		return err
	}
	scfg, err := sampler()
	if err != nil {
		return err
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	defer pool.Close()
	l, err := shard.OpenLocal(*model, shard.Config{Pool: pool, Path: path, KVType: kvType, Mapped: *mapped})
	if err != nil {
		return err
	}
	defer l.Close()
	toks, err := l.Tok.Encode(*prompt, true, false)
	if err != nil {
		return err
	}
	if len(toks) == 0 {
		return fmt.Errorf("%w: the prompt has no tokens (give --prompt)", errUsage)
	}
	maxLen := *ctxLen
	if maxLen == 0 {
		maxLen = len(toks) + *n
	}
	if len(toks)+*n > maxLen || maxLen > l.Shard.HParams().ContextLength {
		return fmt.Errorf("prompt of %d tokens + %d to generate does not fit a context of %d (the model's is %d)",
			len(toks), *n, maxLen, l.Shard.HParams().ContextLength)
	}
	sess, err := l.Shard.NewSession(maxLen)
	if err != nil {
		return err
	}
	defer sess.Close()
	smp, err := shard.NewSampler(scfg, nil)
	if err != nil {
		return err
	}
	rep := runReport{Prompt: *prompt, PromptTokens: toks, Tokens: []int32{}, Seed: scfg.Seed, Threads: pool.Threads(), Kernels: path.String()}
	var onPrompt func(int, []float32)
	if *asJSON && *topLogits > 0 {
		onPrompt = func(pos int, logits []float32) {
			rep.Logits = append(rep.Logits, logitPos{pos, toks[pos], topK(logits, *topLogits)})
		}
	}
	dec := l.Tok.NewStreamDecoder(false)
	stats, err := l.Generate(ctx, sess, toks, *n, smp, onPrompt, func(s shard.Step) error {
		if len(rep.Tokens) > 0 && onPrompt != nil {
			pos := len(toks) + len(rep.Tokens) - 1
			rep.Logits = append(rep.Logits, logitPos{pos, rep.Tokens[len(rep.Tokens)-1], topK(s.Logits, *topLogits)})
		}
		rep.Tokens = append(rep.Tokens, s.Token)
		piece, err := dec.Push(s.Token)
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprint(e.stdout, piece)
		}
		return nil
	})
	if err != nil {
		return err
	}
	tail := dec.Flush()
	if !*asJSON {
		fmt.Fprintln(e.stdout, tail)
		fmt.Fprintf(e.stderr, "prompt %d tokens at %.1f tok/s, generated %d at %.1f tok/s (%d threads, %s kernels, seed %d)\n",
			len(toks), stats.PrefillTokensPerSec(), stats.GenTokens, stats.DecodeTokensPerSec(), pool.Threads(), path, scfg.Seed)
		return nil
	}
	if rep.Text, err = l.Tok.Decode(rep.Tokens); err != nil {
		return err
	}
	rep.PrefillTokPerS, rep.DecodeTokPerS = stats.PrefillTokensPerSec(), stats.DecodeTokensPerSec()
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func parseKV(s string) (shard.KVType, error) {
	switch s {
	case "f32":
		return shard.KVF32, nil
	case "f16":
		return shard.KVF16, nil
	}
	return 0, fmt.Errorf("%w: --kv %q (f32 or f16)", errUsage, s)
}

// topK returns the k largest logits as (id, logit) pairs, highest first
// (lower id first on ties).
func topK(logits []float32, k int) [][2]float64 {
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	k = min(k, len(idx))
	out := make([][2]float64, k)
	for i := range k {
		out[i] = [2]float64{float64(idx[i]), float64(logits[idx[i]])}
	}
	return out
}
