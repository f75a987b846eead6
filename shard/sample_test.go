package shard

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func randomLogits(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	l := make([]float32, n)
	for i := range l {
		l[i] = float32(r.NormFloat64() * 3)
	}
	return l
}

func TestGreedy(t *testing.T) {
	l := []float32{0.1, 2, -1, 2, 1.5}
	s, err := NewSampler(Greedy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Sample(l); got != 1 {
		t.Errorf("Sample(%v) = %d, want 1 (highest, lowest id on ties)", l, got)
	}
	// Top-k 1 at any temperature is greedy too.
	cfg := SamplerConfig{Temperature: 5, TopK: 1, TopP: 1, RepeatPenalty: 1, Seed: 3}
	s, _ = NewSampler(cfg, nil)
	for range 20 {
		if got, _ := s.Sample(l); got != 1 {
			t.Fatalf("top-k 1 sampled %d, want 1", got)
		}
	}
}

func TestSeedDeterminism(t *testing.T) {
	l := randomLogits(500, 1)
	draw := func(seed uint64) []int32 {
		cfg := DefaultSampler()
		cfg.Seed = seed
		s, err := NewSampler(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []int32
		for range 50 {
			id, err := s.Sample(l)
			if err != nil {
				t.Fatal(err)
			}
			s.Accept(id)
			out = append(out, id)
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	if !slices.Equal(a, b) {
		t.Errorf("same seed gave %v and %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same 50 tokens")
	}
}

// TestTemperatureDistribution draws many tokens at temperature 1 with no
// truncation and compares frequencies with the softmax.
func TestTemperatureDistribution(t *testing.T) {
	l := []float32{1, 2, 0, -1, 0.5}
	cfg := SamplerConfig{Temperature: 1, TopP: 1, RepeatPenalty: 1, Seed: 11}
	s, _ := NewSampler(cfg, nil)
	const n = 100000
	counts := make([]int, len(l))
	for range n {
		id, _ := s.Sample(l)
		counts[id]++
	}
	var z float64
	for _, x := range l {
		z += math.Exp(float64(x))
	}
	for i, x := range l {
		p := math.Exp(float64(x)) / z
		got := float64(counts[i]) / n
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*sd {
			t.Errorf("token %d: frequency %.4f, want %.4f ± %.4f", i, got, p, 5*sd)
		}
	}
}

func TestTruncation(t *testing.T) {
	l := []float32{5, 4.9, 0, -3, -10}
	for _, tc := range []struct {
		name    string
		cfg     SamplerConfig
		allowed map[int32]bool
	}{
		{"top-k 2", SamplerConfig{Temperature: 1, TopK: 2, TopP: 1, RepeatPenalty: 1}, map[int32]bool{0: true, 1: true}},
		{"top-p 0.5", SamplerConfig{Temperature: 1, TopP: 0.5, RepeatPenalty: 1}, map[int32]bool{0: true}},
		{"min-p 0.5", SamplerConfig{Temperature: 1, TopP: 1, MinP: 0.5, RepeatPenalty: 1}, map[int32]bool{0: true, 1: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSampler(tc.cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for range 2000 {
				id, _ := s.Sample(l)
				if !tc.allowed[id] {
					t.Fatalf("sampled %d, allowed %v", id, tc.allowed)
				}
			}
		})
	}
}

func TestPenalties(t *testing.T) {
	l := []float32{2, 1.9, 1}
	cfg := Greedy()
	cfg.RepeatPenalty = 1.5
	cfg.RepeatLastN = 64
	s, _ := NewSampler(cfg, []int32{0})
	if got, _ := s.Sample(l); got != 1 {
		t.Errorf("repeat penalty: sampled %d, want 1 (token 0 penalized to 1.33)", got)
	}
	cfg = Greedy()
	cfg.RepeatLastN = -1
	cfg.FrequencyPenalty = 0.6
	s, _ = NewSampler(cfg, []int32{0, 0, 1, 1})
	if got, _ := s.Sample(l); got != 2 {
		t.Errorf("frequency penalty: sampled %d, want 2", got)
	}
	if l[0] != 2 {
		t.Error("Sample modified the caller's logits")
	}
}

func TestSamplerValidate(t *testing.T) {
	for _, cfg := range []SamplerConfig{
		{Temperature: float32(math.NaN()), TopP: 1, RepeatPenalty: 1},
		{TopK: -1, TopP: 1, RepeatPenalty: 1},
		{TopP: 0, RepeatPenalty: 1},
		{TopP: 1.5, RepeatPenalty: 1},
		{TopP: 1, MinP: 1, RepeatPenalty: 1},
		{TopP: 1, RepeatPenalty: 0},
		{TopP: 1, RepeatPenalty: 1, RepeatLastN: -2},
	} {
		if _, err := NewSampler(cfg, nil); !errors.Is(err, ErrSampler) {
			t.Errorf("NewSampler(%+v) = %v, want ErrSampler", cfg, err)
		}
	}
	s, _ := NewSampler(Greedy(), nil)
	if _, err := s.Sample(nil); !errors.Is(err, ErrSampler) {
		t.Errorf("Sample(nil) = %v, want ErrSampler", err)
	}
}

// TestTopKMatchesSort: the heap selection of the TopK candidates gives
// exactly the first k of the stable sort by logit, ties (many here) in id
// order, for every k.
func TestTopKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	for _, n := range []int{2, 3, 17, 100, 2048} {
		for range 20 {
			cs := make([]candidate, n)
			for i := range cs {
				cs[i] = candidate{id: int32(i), logit: float32(r.IntN(n/2+1)) / 4}
				if r.IntN(10) == 0 {
					cs[i].logit = float32(math.Inf(1 - 2*r.IntN(2)))
				}
			}
			k := 1 + r.IntN(n-1)
			want := slices.Clone(cs)
			slices.SortStableFunc(want, byLogit)
			got := topK(slices.Clone(cs), k)
			if !slices.Equal(got, want[:k]) {
				t.Fatalf("n=%d k=%d: topK = %v, want %v", n, k, got, want[:k])
			}
		}
	}
}

// BenchmarkSample is one sampling step over a 32000-token vocabulary with
// the default settings (top-k 40) and with top-k off (a full sort).
func BenchmarkSample(b *testing.B) {
	logits := randomLogits(32000, 3)
	for _, k := range []int{40, 0} {
		b.Run(fmt.Sprintf("vocab=32000/top-k=%d", k), func(b *testing.B) {
			cfg := DefaultSampler()
			cfg.TopK = k
			s, err := NewSampler(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Sample(logits); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
