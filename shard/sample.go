package shard

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SamplerConfig chooses the next token from logits. The stages run in
// llama.cpp's default order: repetition penalties, top-k, top-p, min-p,
// temperature, then a draw. Temperature 0 (or below) is greedy: the token
// with the highest penalized logit, the lowest id on ties.
type SamplerConfig struct {
	Temperature float32
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set whose probability reaches P (1: all).
	TopP float32
	// MinP drops tokens whose probability is below MinP times the most
	// likely one's (0: none).
	MinP float32
	// RepeatPenalty divides positive logits (multiplies negative ones) of
	// tokens seen in the last RepeatLastN tokens (1: off).
	RepeatPenalty float32
	// FrequencyPenalty is subtracted once per occurrence, PresencePenalty
	// once per token seen (0: off).
	FrequencyPenalty, PresencePenalty float32
	// RepeatLastN is the window of the penalties (0: off, -1: all seen).
	RepeatLastN int
	// Seed seeds the draw; the same seed gives the same tokens.
	Seed uint64
}

// DefaultSampler is llama.cpp's default sampling (temperature 0.8, top-k
// 40, top-p 0.95, min-p 0.05, no penalties).
func DefaultSampler() SamplerConfig {
	return SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1, RepeatLastN: 64}
}

// Greedy is argmax sampling.
func Greedy() SamplerConfig { return SamplerConfig{TopP: 1, RepeatPenalty: 1} }

// ErrSampler is returned for an invalid sampler configuration.
var ErrSampler = errors.New("shard: invalid sampler settings")

// Validate checks the ranges of the settings.
func (c *SamplerConfig) Validate() error {
	switch {
	case math.IsNaN(float64(c.Temperature)) || math.IsInf(float64(c.Temperature), 0):
		return fmt.Errorf("%w: temperature %v", ErrSampler, c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("%w: top-k %d", ErrSampler, c.TopK)
	case !(c.TopP > 0 && c.TopP <= 1):
		return fmt.Errorf("%w: top-p %v (want (0, 1])", ErrSampler, c.TopP)
	case !(c.MinP >= 0 && c.MinP < 1):
		return fmt.Errorf("%w: min-p %v (want [0, 1))", ErrSampler, c.MinP)
	case !(c.RepeatPenalty > 0) || math.IsInf(float64(c.RepeatPenalty), 0):
		return fmt.Errorf("%w: repeat penalty %v", ErrSampler, c.RepeatPenalty)
	case c.RepeatLastN < -1:
		return fmt.Errorf("%w: repeat window %d", ErrSampler, c.RepeatLastN)
	case math.IsNaN(float64(c.FrequencyPenalty)) || math.IsNaN(float64(c.PresencePenalty)):
		return fmt.Errorf("%w: NaN penalty", ErrSampler)
	}
	return nil
}

// Sampler draws tokens. It keeps the history the penalties need and its
// random state; it is not safe for concurrent use.
type Sampler struct {
	cfg     SamplerConfig
	rng     *rand.Rand
	history []int32
	cands   []candidate
	counts  map[int32]int
}

type candidate struct {
	id    int32
	logit float32
	p     float64
}

// NewSampler makes a sampler; history seeds the penalties (the prompt).
func NewSampler(cfg SamplerConfig, history []int32) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0x5354524154410000)),
		history: slices.Clone(history),
		counts:  map[int32]int{},
	}, nil
}

// Accept records a token as generated (or fed), for the penalties.
func (s *Sampler) Accept(id int32) { s.history = append(s.history, id) }

// Sample picks the next token from logits (one per vocabulary entry). It
// does not modify logits and does not record the token (call Accept).
func (s *Sampler) Sample(logits []float32) (int32, error) {
	if len(logits) == 0 {
		return 0, fmt.Errorf("%w: empty logits", ErrSampler)
	}
	c := &s.cfg
	if c.Temperature <= 0 && !c.penalizes() {
		// Greedy with nothing to penalize: the first highest logit.
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		return int32(best), nil
	}
	s.cands = s.cands[:0]
	for i, l := range logits {
		s.cands = append(s.cands, candidate{id: int32(i), logit: l})
	}
	s.penalize()
	if c.Temperature <= 0 {
		best := 0
		for i := range s.cands {
			if s.cands[i].logit > s.cands[best].logit {
				best = i
			}
		}
		return s.cands[best].id, nil
	}
	// Sort by logit, highest first (ties: lower id first), keeping the
	// TopK best.
	if c.TopK > 0 && c.TopK < len(s.cands) && !hasNaN(s.cands) {
		s.cands = topK(s.cands, c.TopK)
	} else {
		slices.SortStableFunc(s.cands, byLogit)
		if c.TopK > 0 && c.TopK < len(s.cands) {
			s.cands = s.cands[:c.TopK]
		}
	}
	s.softmax(1)
	if c.TopP < 1 {
		cum := 0.0
		for i := range s.cands {
			cum += s.cands[i].p
			if cum >= float64(c.TopP) {
				s.cands = s.cands[:i+1]
				break
			}
		}
	}
	if c.MinP > 0 {
		floor := s.cands[0].p * float64(c.MinP)
		n := 1
		for n < len(s.cands) && s.cands[n].p >= floor {
			n++
		}
		s.cands = s.cands[:n]
	}
	s.softmax(c.Temperature)
	r := s.rng.Float64()
	cum := 0.0
	for _, cand := range s.cands {
		cum += cand.p
		if r < cum {
			return cand.id, nil
		}
	}
	return s.cands[len(s.cands)-1].id, nil
}

// softmax sets p of the candidates from logit/temp (candidates sorted,
// highest first).
func (s *Sampler) softmax(temp float32) {
	m := float64(s.cands[0].logit) / float64(temp)
	sum := 0.0
	for i := range s.cands {
		p := math.Exp(float64(s.cands[i].logit)/float64(temp) - m)
		s.cands[i].p = p
		sum += p
	}
	for i := range s.cands {
		s.cands[i].p /= sum
	}
}

// penalizes reports whether c's penalties change any logit.
func (c *SamplerConfig) penalizes() bool {
	return c.RepeatLastN != 0 && (c.RepeatPenalty != 1 || c.FrequencyPenalty != 0 || c.PresencePenalty != 0)
}

func (s *Sampler) penalize() {
	c := &s.cfg
	if !c.penalizes() {
		return
	}
	window := s.history
	if c.RepeatLastN > 0 && len(window) > c.RepeatLastN {
		window = window[len(window)-c.RepeatLastN:]
	}
	clear(s.counts)
	for _, id := range window {
		s.counts[id]++
	}
	for id, n := range s.counts {
		if id < 0 || int(id) >= len(s.cands) {
			continue
		}
		l := &s.cands[id].logit
		if *l > 0 {
			*l /= c.RepeatPenalty
		} else {
			*l *= c.RepeatPenalty
		}
		*l -= float32(n)*c.FrequencyPenalty + c.PresencePenalty
	}
}

// byLogit orders candidates highest logit first; a stable sort with it
// puts ties in id order (the candidates start in id order).
func byLogit(a, b candidate) int {
	switch {
	case a.logit > b.logit:
		return -1
	case a.logit < b.logit:
		return 1
	}
	return 0
}

// before reports whether a comes before b in the stable sort by byLogit
// of candidates in id order: a higher logit, or an equal one and a lower
// id. It is a strict order when no logit is NaN.
func before(a, b candidate) bool {
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
}

func hasNaN(cs []candidate) bool {
	for _, c := range cs {
		if c.logit != c.logit {
			return true
		}
	}
	return false
}

// topK returns the first k of the stable sort of cs by byLogit (0 < k <
// len(cs), no NaN logits), in that order, in cs[:k], selecting them with
// a heap of k (n log k comparisons, not a sort of the whole vocabulary).
func topK(cs []candidate, k int) []candidate {
	h := cs[:k] // a heap whose root is the candidate that comes last
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			m := l
			if r := l + 1; r < k && before(h[l], h[r]) {
				m = r
			}
			if !before(h[i], h[m]) {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for _, c := range cs[k:] {
		if before(c, h[0]) {
			h[0] = c
			down(0)
		}
	}
	slices.SortFunc(h, func(a, b candidate) int {
		switch {
		case a.id == b.id:
			return 0
		case before(a, b):
			return -1
		}
		return 1
	})
	return h
}
