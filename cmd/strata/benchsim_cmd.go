package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/stratanet/strata/bench"
)

func runBenchSimulate(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "bench sim", "bench sim [--predict results.json] [--nodes 1000] [--blocks 22 | --model M] [--hours 1] [--policy petals|random|fixed]... [--churn 0.5] [--crash 0.5] [--requests 1] [--tokens 128] [--prompt 32] [--detect 30s] [--prefill-speedup 8] [--seed S] [--json]",
		"Simulate a large swarm (discrete events): servers of heterogeneous throughput on a 2-D latency plane join, place\n"+
			"their spans by --policy (petals: where the swarm is weakest, with the same code as serve --span auto), leave\n"+
			"or crash (--churn per server-hour, --crash of them crash) and are replaced; clients route chains with the\n"+
			"real client's router and generate. A crash stalls the requests through it for --detect, then the client routes\n"+
			"the crashed stage's blocks again and replays the --prompt and the tokens so far into the new stage (batched,\n"+
			"--prefill-speedup times faster per token than decode). Reports the least-served block's throughput, request\n"+
			"success, failovers and their replay time, tokens/s per request and per-token time, per policy.\n"+
			"--predict results.json checks the simulator's time model against a real layout benchmark.")
	nodes := fs.Int("nodes", 1000, "servers")
	blocks := fs.Int("blocks", 22, "blocks of the model")
	model := fs.String("model", "", "take the block count from this GGUF model")
	hours := fs.Float64("hours", 1, "simulated hours")
	var policies listFlag
	fs.Var(&policies, "policy", "span placement: petals, random or fixed (repeatable; default petals)")
	churn := fs.Float64("churn", 0.5, "departures per server-hour (a server joins for each)")
	crash := fs.Float64("crash", 0.5, "fraction of departures that are crashes")
	requests := fs.Float64("requests", 1, "client requests per simulated second")
	tokens := fs.Int("tokens", 128, "tokens per request")
	prompt := fs.Int("prompt", 32, "prompt tokens per request, replayed at a failover")
	detect := fs.Duration("detect", 30*time.Second, "how long a client takes to notice a crashed stage (the client's step timeout; 0: at once)")
	prefill := fs.Float64("prefill-speedup", 8, "how much faster a server computes a replayed (batched prefill) position than a decode step")
	minBlocks := fs.Int("min-blocks", 0, "fewest blocks a server holds (default: half of --max-blocks)")
	maxBlocks := fs.Int("max-blocks", 0, "most blocks a server holds (default: half the model)")
	tput := fs.Float64("throughput", 20, "median server throughput, tokens/s over the whole model")
	sigma := fs.Float64("throughput-sigma", 0.5, "log-normal spread of server throughputs")
	seed := fs.Uint64("seed", 1, "random seed")
	asJSON := fs.Bool("json", false, "print JSON")
	predict := fs.String("predict", "", "instead, predict the per-token time of every row of a `strata bench layout` results.json with the simulator's model, next to what was measured")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *predict != "" {
		return predictLayout(e, *predict, *asJSON)
	}
	if *model != "" {
		m, err := openModel(*model, 1)
		if err != nil {
			return err
		}
		*blocks = m.hp.Layers
		m.f.Close()
	}
	if len(policies) == 0 {
		policies = listFlag{"petals"}
	}
	if *detect <= 0 {
		*detect = -1 // SimConfig: negative is at once, zero the default
	}
	if !(*prefill > 0) || *prompt <= 0 {
		return fmt.Errorf("%w: --prompt and --prefill-speedup must be positive", errUsage)
	}
	var reps []*bench.SimReport
	for _, p := range policies {
		r, err := bench.RunSim(bench.SimConfig{Nodes: *nodes, Blocks: *blocks, MinBlocks: *minBlocks, MaxBlocks: *maxBlocks,
			ThroughputMedian: *tput, ThroughputSigma: *sigma, Policy: p, Hours: *hours, ChurnPerHour: *churn,
			CrashFraction: *crash, RequestsPerSecond: *requests, Tokens: *tokens, PromptTokens: *prompt,
			DetectDelay: *detect, PrefillSpeedup: *prefill, Seed: *seed, RebalanceEvery: 10 * time.Minute})
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		reps = append(reps, r)
	}
	if *asJSON {
		return writeJSON(e.stdout, reps)
	}
	fmt.Fprintf(e.stdout, "%-8s %8s %12s %12s %9s %9s %9s %9s %10s %8s\n", "policy", "requests", "min block", "lowest", "success", "failover",
		"replay s", "tok/s", "ms/token", "wall s")
	for _, r := range reps {
		fmt.Fprintf(e.stdout, "%-8s %8d %12.1f %12.1f %9.4f %9d %9.2f %9.2f %10.1f %8.2f\n", r.Policy, r.Requests, r.MinCoverageMean,
			r.MinCoverageLowest, r.SuccessRate, r.Failovers, r.MeanReplaySeconds, r.MeanTokS, r.MeanPerTokenMS, r.WallSeconds)
	}
	return nil
}

// predictLayout prints the simulator's prediction for each row of a
// layout benchmark's results next to the measured per-token time.
func predictLayout(e *env, path string, asJSON bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep bench.SwarmReport
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ps, err := bench.Predict(&rep)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e.stdout, ps)
	}
	fmt.Fprintf(e.stdout, "%-24s %-28s %12s %12s %8s\n", "layout", "link", "measured ms", "predicted ms", "ratio")
	for _, p := range ps {
		fmt.Fprintf(e.stdout, "%-24s %-28s %12.2f %12.2f %8.3f\n", p.Layout, p.Link, p.MeasuredMS, p.PredictedMS, p.Ratio)
	}
	return nil
}
