package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/stratanet/strata/bench"
)

var benchCommands = []command{
	{"run", "prefill and decode tok/s of the whole model on this machine", runBenchRun},
}

func runBench(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, "bench", benchCommands, args)
}

func runBenchRun(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench run", "bench run --model M [--threads N] [--prompt 128] [--gen 64] [--reps 3]",
		"Measure prefill (one batch of --prompt tokens) and decode (--gen steps) speed of the whole model on\n"+
			"this machine: the median of --reps runs after a warm-up, as JSON.")
	model := fs.String("model", "", "GGUF model (required)")
	prompt := fs.Int("prompt", 128, "prompt tokens, evaluated as one batch")
	gen := fs.Int("gen", 64, "decode steps")
	reps := fs.Int("reps", 3, "measured repetitions after one warm-up")
	kv := fs.String("kv", "f32", "KV cache type: f32 or f16")
	engine := engineFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	kvType, err := parseKV(*kv)
	if err != nil {
		return err
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	threads := pool.Threads()
	pool.Close()
	res, err := bench.RunLocal(ctx, bench.RunConfig{Model: *model, Threads: threads, Path: path, KVType: kvType,
		PromptTokens: *prompt, GenTokens: *gen, Reps: *reps})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
