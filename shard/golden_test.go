package shard

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/quant"
)

// golden is ../shared/golden/MODEL.pN.json: llama.cpp's tokens, greedy
// continuation and top-10 logits at every position.
type golden struct {
	Model struct {
		Path string `json:"path"`
	} `json:"model"`
	Prompt struct {
		Text string `json:"text"`
	} `json:"prompt"`
	InputTokens []int32 `json:"input_tokens"`
	Greedy      struct {
		Tokens []int32 `json:"tokens"`
	} `json:"greedy"`
	Logits struct {
		Positions []struct {
			Pos        int          `json:"pos"`
			InputToken int32        `json:"input_token"`
			Top        [][2]float64 `json:"top"`
		} `json:"positions"`
	} `json:"logits"`
}

func loadGolden(t *testing.T, path string) *golden {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &g
}

// goldenModel maps a golden file to its model file in ../shared/models.
func goldenModel(t *testing.T, goldenPath string) string {
	base := filepath.Base(goldenPath)
	name := base[:strings.Index(base, ".p")]
	for _, m := range []string{name + ".gguf", name} {
		p := filepath.Join(filepath.Dir(goldenPath), "..", "models", m)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("no model for %s", base)
	return ""
}

// tolerance is the bound on top-10 logit differences by weight type, the
// issue's: 2e-3 for F32 weights, 1e-2 for F16; and 1e-6 for Q8_0, whose dot
// products follow the order of llama.cpp's AMX kernels, which made the
// golden files (kernels/doc.go), and so reproduce its logits exactly: any
// drift there is a regression.
func tolerance(l *Local) float64 {
	switch l.Shard.blocks[0].q.Type {
	case quant.F32:
		return 2e-3
	case quant.Q8_0:
		return 1e-6
	}
	return 1e-2
}

func openLocal(t *testing.T, path string, threads int, path2 kernels.Path) *Local {
	t.Helper()
	pool := kernels.NewPool(threads)
	t.Cleanup(pool.Close)
	l, err := OpenLocal(path, Config{Pool: pool, Path: path2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestGolden compares Strata with llama.cpp on every golden file: prompt
// tokens equal, top-10 logits within tolerance at every position, and the
// greedy continuation equal until llama.cpp's own top-2 margin falls under
// 0.02.
func TestGolden(t *testing.T) {
	for _, gp := range testenv.SharedGlob(t, "golden/*.p[0-9].json") {
		t.Run(filepath.Base(gp), func(t *testing.T) {
			g := loadGolden(t, gp)
			l := openLocal(t, goldenModel(t, gp), 2, kernels.Best())
			prompt, err := l.Tok.Encode(g.Prompt.Text, true, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(prompt, g.InputTokens) {
				t.Fatalf("Encode(%q) = %v, want %v", g.Prompt.Text, prompt, g.InputTokens)
			}
			tol := tolerance(l)
			sess, err := l.Shard.NewSession(len(prompt) + len(g.Greedy.Tokens))
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			// ours[pos] are the logits after evaluating position pos.
			var ours [][]float32
			keep := func(_ int, logits []float32) { ours = append(ours, slices.Clone(logits)) }
			smp, _ := NewSampler(Greedy(), nil)
			var gen []int32
			_, err = l.Generate(t.Context(), sess, prompt, len(g.Greedy.Tokens), smp, keep, func(s Step) error {
				if len(gen) > 0 {
					ours = append(ours, slices.Clone(s.Logits))
				}
				gen = append(gen, s.Token)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			seq := append(slices.Clone(prompt), gen...)
			worst := 0.0
			compared := 0
			for _, p := range g.Logits.Positions {
				// Past the prompt, compare only while our tokens are llama.cpp's.
				if p.Pos >= len(ours) || seq[p.Pos] != p.InputToken {
					break
				}
				compared++
				for _, top := range p.Top {
					id, want := int(top[0]), top[1]
					got := float64(ours[p.Pos][id])
					d := math.Abs(got - want)
					worst = max(worst, d)
					if d > tol {
						t.Errorf("pos %d token %d: logit %.5f, llama.cpp %.5f (|diff| %.2g > %.0e)", p.Pos, id, got, want, d, tol)
					}
				}
			}
			if compared < len(prompt) {
				t.Errorf("compared %d positions, fewer than the prompt's %d", compared, len(prompt))
			}
			t.Logf("%d positions: worst top-10 logit difference %.2g (bound %.0e)", compared, worst, tol)
			for i, want := range g.Greedy.Tokens {
				if gen[i] != want {
					if m := margin(g, len(prompt)-1+i); m < 0.02 {
						t.Logf("greedy parts from llama.cpp at step %d, where its top-2 margin is %.4f < 0.02", i, m)
						break
					}
					t.Fatalf("greedy token %d = %d, llama.cpp %d (its top-2 margin %.4f)", i, gen[i], want, margin(g, len(prompt)-1+i))
				}
			}
		})
	}
}

// margin is llama.cpp's top-2 logit gap at position pos.
func margin(g *golden, pos int) float64 {
	for _, p := range g.Logits.Positions {
		if p.Pos == pos && len(p.Top) >= 2 {
			return p.Top[0][1] - p.Top[1][1]
		}
	}
	return math.Inf(1)
}
