package bench

import (
	"context"
	"fmt"
	"slices"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/shard"
)

// RunConfig is a local generation benchmark: prefill of PromptTokens
// tokens in one batch, then GenTokens greedy decode steps, repeated Reps
// times after one warm-up.
type RunConfig struct {
	Model        string
	Threads      int
	Path         kernels.Path
	KVType       shard.KVType
	PromptTokens int
	GenTokens    int
	Reps         int
	Mapped       bool // shard.Config.Mapped
}

// RunResult is the median of the repetitions, with every repetition kept.
type RunResult struct {
	Model        string    `json:"model"`
	Threads      int       `json:"threads"`
	Kernels      string    `json:"kernels"`
	KV           string    `json:"kv_type"`
	PromptTokens int       `json:"prompt_tokens"`
	GenTokens    int       `json:"gen_tokens"`
	PrefillTokS  float64   `json:"prefill_tok_s"`
	DecodeTokS   float64   `json:"decode_tok_s"`
	PrefillRuns  []float64 `json:"prefill_runs_tok_s"`
	DecodeRuns   []float64 `json:"decode_runs_tok_s"`
}

// RunLocal runs the benchmark on the whole model on this machine. The
// prompt is a fixed sequence of token ids (the model's content does not
// change its speed).
func RunLocal(ctx context.Context, c RunConfig) (*RunResult, error) {
	if c.PromptTokens <= 0 || c.GenTokens <= 0 || c.Reps <= 0 || c.Threads <= 0 {
		return nil, fmt.Errorf("bench: prompt, gen, reps and threads must be positive: %+v", c)
	}
	pool := kernels.NewPool(c.Threads)
	defer pool.Close()
	l, err := shard.OpenLocal(c.Model, shard.Config{Pool: pool, Path: c.Path, KVType: c.KVType, Mapped: c.Mapped})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	h := l.Shard.HParams()
	if c.PromptTokens+c.GenTokens+1 > h.ContextLength {
		return nil, fmt.Errorf("bench: %d + %d tokens exceed the model's context of %d", c.PromptTokens, c.GenTokens, h.ContextLength)
	}
	prompt := make([]int32, c.PromptTokens)
	for i := range prompt {
		prompt[i] = int32((i*7919 + 3) % h.Vocab)
	}
	res := &RunResult{Model: c.Model, Threads: c.Threads, Kernels: c.Path.String(), KV: c.KVType.String(),
		PromptTokens: c.PromptTokens, GenTokens: c.GenTokens}
	for rep := -1; rep < c.Reps; rep++ { // rep -1 is the warm-up
		sess, err := l.Shard.NewSession(c.PromptTokens + c.GenTokens + 1)
		if err != nil {
			return nil, err
		}
		smp, _ := shard.NewSampler(shard.Greedy(), nil)
		st, err := l.Generate(ctx, sess, prompt, c.GenTokens+1, smp, nil, nil)
		sess.Close()
		if err != nil {
			return nil, err
		}
		if rep >= 0 {
			res.PrefillRuns = append(res.PrefillRuns, st.PrefillTokensPerSec())
			res.DecodeRuns = append(res.DecodeRuns, st.DecodeTokensPerSec())
		}
	}
	res.PrefillTokS, res.DecodeTokS = median(res.PrefillRuns), median(res.DecodeRuns)
	return res, nil
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
