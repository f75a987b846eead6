package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/stratanet/strata/bench"
	"github.com/stratanet/strata/relay"
)

var benchCommands = []command{
	{"run", "prefill and decode tok/s of the whole model on this machine", runBenchRun},
	{"swarm", "decode tok/s through 1, 2 and 4 stages on loopback, with emulated links, against run", runBenchSwarm},
}

func runBenchSwarm(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench swarm", "bench swarm --model M [--stages 1,2,4] [--redundancy 1,3] [--link none --link rtt=20ms ...] [--threads N] [--stage-threads N] [--encoding f16] [--prompt 32] [--gen 32] [--reps 3]",
		"Measure decode speed through a swarm on 127.0.0.1: for each chain length in --stages (the blocks cut\n"+
			"into near-equal spans, one server each) and each emulated --link, the median of --reps generations,\n"+
			"with per-token time split into compute and network, against the whole model in one process (JSON).\n"+
			"Each stage gets --stage-threads threads (default: --threads, as if each stage had a machine like this\n"+
			"one; a single sequence computes on one stage at a time, so the stages never run at once).\n"+
			"--redundancy 1,3 also measures verified generation with 3 replicas of every stage (sharing this\n"+
			"machine's cores) and the share of the servers' step time spent hashing receipts.")
	model := fs.String("model", "", "GGUF model (required)")
	var stages, redundancy listFlag
	var links repeatFlag
	fs.Var(&stages, "stages", "chain lengths, comma-separated (default 1,2,4)")
	fs.Var(&redundancy, "redundancy", "replicas of every stage, comma-separated (default 1)")
	fs.Var(&links, "link", `emulated link per hop, e.g. "rtt=20ms,bw=100Mbit" (repeatable; default: none, latency=10ms, latency=50ms)`)
	stageThreads := fs.Int("stage-threads", 0, "threads of each stage (0: --threads)")
	encName := fs.String("encoding", "f16", "activations on the wire: f16, f32 or q8_0")
	prompt := fs.Int("prompt", 32, "prompt tokens, evaluated as one batch")
	gen := fs.Int("gen", 32, "decode steps")
	reps := fs.Int("reps", 3, "measured runs per configuration (median reported)")
	kv := fs.String("kv", "f32", "KV cache type: f32 or f16")
	engine := engineFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	enc, err := parseEncoding(*encName)
	if err != nil {
		return err
	}
	kvType, err := parseKV(*kv)
	if err != nil {
		return err
	}
	c := bench.SwarmConfig{ModelPath: *model, Encoding: enc, KVType: kvType, PromptTokens: *prompt, GenTokens: *gen, Runs: *reps}
	for _, s := range stages {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("%w: --stages %q", errUsage, s)
		}
		c.Stages = append(c.Stages, n)
	}
	for _, s := range redundancy {
		r, err := strconv.Atoi(s)
		if err != nil || r < 1 {
			return fmt.Errorf("%w: --redundancy %q", errUsage, s)
		}
		c.Redundancy = append(c.Redundancy, r)
	}
	for _, l := range links {
		link, err := relay.ParseLink(l)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		c.Links = append(c.Links, link)
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	c.Threads, c.Path = pool.Threads(), path
	pool.Close()
	c.StageThreads = *stageThreads
	if c.StageThreads <= 0 {
		c.StageThreads = c.Threads
	}
	rep, err := bench.RunSwarm(ctx, c)
	if err != nil {
		return err
	}
	j := json.NewEncoder(e.stdout)
	j.SetIndent("", "  ")
	if err := j.Encode(rep); err != nil {
		return err
	}
	for _, m := range rep.Misses() {
		fmt.Fprintln(e.stderr, "target missed:", m)
	}
	return nil
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
