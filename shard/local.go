package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

// Local is a whole model on one machine: its tokenizer and one shard with
// every block and both ends. It is what `strata run` drives.
type Local struct {
	File  *gguf.File
	Tok   *tokenizer.Tokenizer
	Shard *Shard
}

// OpenLocal opens the model at path with every block on this machine.
// cfg.Span, Embed and Head are set by OpenLocal.
func OpenLocal(path string, cfg Config) (*Local, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(&f.Metadata)
	if err != nil {
		f.Close()
		return nil, err
	}
	cfg.Span, cfg.Embed, cfg.Head = Span{}, true, true
	s, err := Open(f, cfg)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Local{File: f, Tok: tok, Shard: s}, nil
}

// Close releases the model file.
func (l *Local) Close() error { return l.File.Close() }

// Step is one generated token, reported as it is produced.
type Step struct {
	Token int32
	// Logits are the logits the token was sampled from; valid only during
	// the callback.
	Logits []float32
}

// GenStats are timings of a generation.
type GenStats struct {
	PromptTokens, GenTokens int
	Prefill, Decode         time.Duration
}

// PrefillTokensPerSec is the prompt throughput.
func (s GenStats) PrefillTokensPerSec() float64 {
	return float64(s.PromptTokens) / s.Prefill.Seconds()
}

// DecodeTokensPerSec is the generation throughput, counting the tokens
// after the first (which prefill produced).
func (s GenStats) DecodeTokensPerSec() float64 {
	if s.GenTokens <= 1 || s.Decode <= 0 {
		return 0
	}
	return float64(s.GenTokens-1) / s.Decode.Seconds()
}

// Body runs a model's transformer blocks on new positions of one
// sequence: a local [Session] holding all blocks, or a chain of remote
// stages. Forward updates the hidden states x ([Dim][nTok], token-major)
// in place; Len and MaxLen are the positions held and allowed.
type Body interface {
	Len() int
	MaxLen() int
	Forward(ctx context.Context, x []float32) error
}

// Generate runs the prompt through the model as one batch, then samples n
// tokens, feeding each back one at a time. promptLogits, when not nil, is
// called with the logits after every prompt position (for comparison with
// a reference); onStep is called for every generated token and may stop
// the generation by returning an error. The session must be fresh.
func (l *Local) Generate(ctx context.Context, sess *Session, prompt []int32, n int, smp *Sampler,
	promptLogits func(pos int, logits []float32), onStep func(Step) error) (GenStats, error) {
	return Generate(ctx, l.Shard, sess, prompt, n, smp, promptLogits, onStep)
}

// Generate is [Local.Generate] with the blocks run by body and the token
// embedding and output head by ends (a shard opened with Embed and Head,
// possibly of no blocks). As long as body computes the same bits, the
// tokens and logits are the same whether the blocks run here or across a
// swarm.
func Generate(ctx context.Context, ends *Shard, body Body, prompt []int32, n int, smp *Sampler,
	promptLogits func(pos int, logits []float32), onStep func(Step) error) (GenStats, error) {
	st := GenStats{PromptTokens: len(prompt)}
	h := ends.HParams()
	if len(prompt) == 0 {
		return st, fmt.Errorf("%w: empty prompt", ErrInput)
	}
	if body.Len() != 0 {
		return st, fmt.Errorf("%w: session already holds %d positions", ErrInput, body.Len())
	}
	if len(prompt)+n > body.MaxLen() {
		return st, fmt.Errorf("%w: %d prompt + %d new tokens > context %d", ErrContext, len(prompt), n, body.MaxLen())
	}
	start := time.Now()
	x := make([]float32, len(prompt)*h.Dim)
	if err := ends.Embed(x, prompt); err != nil {
		return st, err
	}
	if err := body.Forward(ctx, x); err != nil {
		return st, err
	}
	nLogits := 1
	if promptLogits != nil {
		nLogits = len(prompt)
	}
	logits := make([]float32, nLogits*h.Vocab)
	if err := ends.Logits(logits, x[(len(prompt)-nLogits)*h.Dim:], nLogits); err != nil {
		return st, err
	}
	if promptLogits != nil {
		for p := range len(prompt) {
			promptLogits(p, logits[p*h.Vocab:(p+1)*h.Vocab])
		}
	}
	last := logits[(nLogits-1)*h.Vocab:]
	st.Prefill = time.Since(start)
	start = time.Now()
	for _, t := range prompt {
		smp.Accept(t)
	}
	xt := x[:h.Dim]
	for i := range n {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		tok, err := smp.Sample(last)
		if err != nil {
			return st, err
		}
		smp.Accept(tok)
		st.GenTokens++
		if onStep != nil {
			if err := onStep(Step{Token: tok, Logits: last}); err != nil {
				return st, err
			}
		}
		if i == n-1 {
			break
		}
		if err := ends.Embed(xt, []int32{tok}); err != nil {
			return st, err
		}
		if err := body.Forward(ctx, xt); err != nil {
			return st, err
		}
		last = logits[:h.Vocab]
		if err := ends.Logits(last, xt, 1); err != nil {
			return st, err
		}
	}
	st.Decode = time.Since(start)
	return st, nil
}
