package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/stratanet/strata/bench"
	"github.com/stratanet/strata/relay"
)

var benchCommands = []command{
	{"run", "prefill and decode tok/s of the whole model on this machine", runBenchRun},
	{"swarm", "decode tok/s through 1, 2 and 4 stages on loopback, with emulated links, against run", runBenchSwarm},
	{"layout", "shard layouts as real swarms on emulated links: results.json, results.csv and charts", runBenchLayout},
	{"sim", "simulate large swarms with churn to compare span placement policies", runBenchSimulate},
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
	fs := newFlags(e, "bench run", "bench run --model M [--threads N] [--prompt 128] [--gen 64] [--reps 3] [--mmap] [--cpuprofile F]",
		"Measure prefill (one batch of --prompt tokens) and decode (--gen steps) speed of the whole model on\n"+
			"this machine: the median of --reps runs after a warm-up, as JSON.")
	model := fs.String("model", "", "GGUF model (required)")
	prompt := fs.Int("prompt", 128, "prompt tokens, evaluated as one batch")
	gen := fs.Int("gen", 64, "decode steps")
	reps := fs.Int("reps", 3, "measured repetitions after one warm-up")
	kv := fs.String("kv", "f32", "KV cache type: f32 or f16")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the runs (go tool pprof) to this file")
	mapped := mmapFlag(fs)
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
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	res, err := bench.RunLocal(ctx, bench.RunConfig{Model: *model, Threads: threads, Path: path, KVType: kvType,
		PromptTokens: *prompt, GenTokens: *gen, Reps: *reps, Mapped: *mapped})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func runBenchLayout(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench layout", "bench layout --model M --layout 0:6,6:12,12:22 [--layout ...] [--link SPEC]... [--redundancy 1] [--encoding f16] [--tokens 32] [--prompt 32] [--reps 3] [--threads N] [--stage-threads N] [--procs] --out DIR",
		"Run every --layout (spans covering all blocks, in order) as a real swarm in this process on 127.0.0.1, on every\n"+
			"emulated --link (rtt=20ms,bw=100Mbit,jitter=2ms,loss=0.1%; default: none), and write DIR/results.json,\n"+
			"DIR/results.csv and charts (SVG and PNG) of decode tok/s, time to first token, per-token compute\n"+
			"against network time, and bytes on the wire per token. With --procs every server is a separate\n"+
			"\"strata serve\" process (this binary, on 127.0.0.1 only), its compute time read from its info protocol.")
	model := fs.String("model", "", "GGUF model (required)")
	out := fs.String("out", "", "directory for the results (required)")
	var layouts, links repeatFlag
	fs.Var(&layouts, "layout", "a layout, e.g. 0:6,6:12,12:22 (repeatable; required)")
	fs.Var(&links, "link", "emulated link per hop (repeatable; default none)")
	redundancy := fs.Int("redundancy", 1, "replicas of every stage (verified generation when > 1)")
	encName := fs.String("encoding", "f16", "activations on the wire: f16, f32 or q8_0")
	tokens := fs.Int("tokens", 32, "decode steps timed")
	prompt := fs.Int("prompt", 32, "prompt tokens, evaluated as one batch")
	reps := fs.Int("reps", 3, "measured runs per configuration (median reported)")
	stageThreads := fs.Int("stage-threads", 0, "threads of each stage (0: --threads)")
	procs := fs.Bool("procs", false, "run every server as a strata serve process of this binary instead of in this process")
	engine := engineFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" || *out == "" || len(layouts) == 0 {
		return fmt.Errorf("%w: --model, --layout and --out are required", errUsage)
	}
	if *redundancy < 1 || *tokens < 1 || *prompt < 1 || *reps < 1 {
		return fmt.Errorf("%w: --redundancy, --tokens, --prompt and --reps must be at least 1", errUsage)
	}
	enc, err := parseEncoding(*encName)
	if err != nil {
		return err
	}
	m, err := openModel(*model, 1)
	if err != nil {
		return err
	}
	blocks := m.hp.Layers
	m.f.Close()
	c := bench.LayoutConfig{Swarm: bench.SwarmConfig{ModelPath: *model, Encoding: enc, PromptTokens: *prompt, GenTokens: *tokens,
		Runs: *reps, Redundancy: []int{*redundancy}}}
	if *procs {
		if c.Procs, err = os.Executable(); err != nil {
			return fmt.Errorf("--procs: this binary's path: %w", err)
		}
	}
	for _, l := range layouts {
		spans, err := bench.ParseLayout(l, blocks)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		c.Layouts = append(c.Layouts, spans)
	}
	for _, l := range links {
		link, err := relay.ParseLink(l)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		c.Swarm.Links = append(c.Swarm.Links, link)
	}
	if len(c.Swarm.Links) == 0 {
		c.Swarm.Links = []relay.Link{{}}
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	c.Swarm.Threads, c.Swarm.Path = pool.Threads(), path
	pool.Close()
	c.Swarm.StageThreads = *stageThreads
	if c.Swarm.StageThreads <= 0 {
		c.Swarm.StageThreads = c.Swarm.Threads
	}
	rep, err := bench.RunLayouts(ctx, c)
	if err != nil {
		return err
	}
	files, err := bench.WriteResults(rep, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%-28s %9s %9s %9s %9s %9s %9s %10s\n", "layout", "tok/s", "ttft ms", "ms/token", "compute", "network", "vs bound", "bytes/tok")
	for _, r := range rep.Rows {
		label := r.Spans + " " + r.Link
		fmt.Fprintf(e.stdout, "%-28s %9.2f %9.1f %9.2f %9.2f %9.2f %9.3f %10.0f\n", label, r.DecodeTokS, r.TTFTMS, r.PerTokenMS,
			r.ComputeMS, r.NetworkMS, r.VsBound, r.WireBytesPerToken)
	}
	fmt.Fprintf(e.stdout, "one process: %.2f tok/s\nwrote %s\n", rep.Local.DecodeTokS, strings.Join(files, ", "))
	return nil
}
