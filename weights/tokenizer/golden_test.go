package tokenizer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

// loaded caches tokenizers by file path: the large vocabularies take a
// while to parse and several tests share them.
var loaded sync.Map // path -> *loadResult

type loadResult struct {
	once sync.Once
	tok  *tokenizer.Tokenizer
	err  error
}

func load(t testing.TB, path string) *tokenizer.Tokenizer {
	t.Helper()
	v, _ := loaded.LoadOrStore(path, &loadResult{})
	r := v.(*loadResult)
	r.once.Do(func() {
		f, err := gguf.Open(path)
		if err != nil {
			r.err = err
			return
		}
		defer f.Close()
		r.tok, r.err = tokenizer.FromGGUF(&f.Metadata)
	})
	if r.err != nil {
		t.Fatalf("FromGGUF(%s): %v", filepath.Base(path), r.err)
	}
	return r.tok
}

func sharedModel(t testing.TB, name string) *tokenizer.Tokenizer {
	t.Helper()
	return load(t, testenv.Shared(t, "models/"+name))
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestGoldenTokenize checks golden/tokenize.*.json: llama.cpp's
// common_tokenize(add_special=false, parse_special=false) and the
// detokenized text.
func TestGoldenTokenize(t *testing.T) {
	for _, path := range testenv.SharedGlob(t, "golden/tokenize.*.json") {
		var g struct {
			Model string
			Cases []struct {
				Text   string
				Tokens []int32
				Detok  string
			}
		}
		readJSON(t, path, &g)
		t.Run(g.Model, func(t *testing.T) {
			tok := sharedModel(t, g.Model)
			for _, c := range g.Cases {
				got, err := tok.Encode(c.Text, false, false)
				if err != nil {
					t.Errorf("Encode(%q): %v", c.Text, err)
					continue
				}
				if !slices.Equal(got, c.Tokens) {
					t.Errorf("Encode(%q) = %v, want %v", c.Text, got, c.Tokens)
				}
				detok, err := tok.Decode(c.Tokens)
				if err != nil || detok != c.Detok {
					t.Errorf("Decode(%v) = %q, %v, want %q", c.Tokens, detok, err, c.Detok)
				}
			}
			t.Logf("%d cases", len(g.Cases))
		})
	}
}

// TestGoldenPrompts checks the prompts of golden/*.pN.json: input_tokens
// (BOS + prompt, as llama.cpp tokenized it), the tokenization with special
// tokens parsed, the pieces, and the generated text.
func TestGoldenPrompts(t *testing.T) {
	for _, path := range testenv.SharedGlob(t, "golden/*.p[0-9].json") {
		var g struct {
			Model struct {
				Path string
				BOS  int32
				EOS  int32
			}
			Prompt struct {
				Text                    string
				TokensNoBOSParseSpecial []int32  `json:"tokens_no_bos_parse_special"`
				TokensNoBOS             []int32  `json:"tokens_no_bos"`
				PiecesNoBOS             []string `json:"pieces_no_bos"`
				ModelAddsBOS            bool     `json:"model_adds_bos"`
			}
			InputTokens []int32 `json:"input_tokens"`
			Greedy      struct {
				Tokens []int32
				Text   string
				Pieces []string
			}
		}
		readJSON(t, path, &g)
		t.Run(strings.TrimSuffix(filepath.Base(path), ".json"), func(t *testing.T) {
			tok := sharedModel(t, g.Model.Path)
			if tok.BOS() != g.Model.BOS || tok.EOS() != g.Model.EOS || tok.AddBOS() != g.Prompt.ModelAddsBOS {
				t.Errorf("BOS, EOS, AddBOS = %d, %d, %v, want %d, %d, %v", tok.BOS(), tok.EOS(), tok.AddBOS(), g.Model.BOS, g.Model.EOS, g.Prompt.ModelAddsBOS)
			}
			text := g.Prompt.Text
			check := func(name string, addSpecial, parseSpecial bool, want []int32) {
				t.Helper()
				got, err := tok.Encode(text, addSpecial, parseSpecial)
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("Encode(%q, %v, %v) [%s] = %v, %v, want %v", text, addSpecial, parseSpecial, name, got, err, want)
				}
			}
			check("input_tokens", true, false, g.InputTokens)
			check("tokens_no_bos", false, false, g.Prompt.TokensNoBOS)
			check("tokens_no_bos_parse_special", false, true, g.Prompt.TokensNoBOSParseSpecial)
			for i, id := range g.Prompt.TokensNoBOS {
				if got := tok.Token(id); got != g.Prompt.PiecesNoBOS[i] {
					t.Errorf("Token(%d) = %q, want %q", id, got, g.Prompt.PiecesNoBOS[i])
				}
			}
			for i, id := range g.Greedy.Tokens {
				if got := tok.Token(id); got != g.Greedy.Pieces[i] {
					t.Errorf("Token(%d) = %q, want %q", id, got, g.Greedy.Pieces[i])
				}
			}
			got, err := tok.DecodeWith(g.Greedy.Tokens, tokenizer.DecodeOptions{SkipSpecial: true})
			if err != nil || got != g.Greedy.Text {
				t.Errorf("DecodeWith(greedy tokens) = %q, %v, want %q", got, err, g.Greedy.Text)
			}
		})
	}
}

// vocabTests reads llama.cpp's test-tokenizer-0 cases for a vocabulary:
// inputs separated by "\n__ggml_vocab_test__\n" in NAME.inp, one line of
// token ids per input in NAME.out.
func vocabTests(t testing.TB, name string) (texts []string, want [][]int32) {
	t.Helper()
	inp, err := os.ReadFile(testenv.LlamaCppModel(t, name+".inp"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(testenv.LlamaCppModel(t, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	for s := string(inp); s != ""; {
		i := strings.Index(s, sep)
		if i < 0 {
			texts = append(texts, s)
			break
		}
		texts = append(texts, s[:i])
		s = s[i+len(sep):]
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d inputs, %d outputs", name, len(texts), len(lines))
	}
	for _, line := range lines {
		var ids []int32
		for _, f := range strings.Fields(line) {
			id, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				t.Fatalf("%s.out: %v", name, err)
			}
			ids = append(ids, int32(id))
		}
		want = append(want, ids)
	}
	return texts, want
}

// TestLlamaCppVocabs runs llama.cpp's test-tokenizer-0 data
// ($STRATA_LLAMACPP_MODELS/ggml-vocab-*.gguf with .inp/.out) for every
// vocabulary this package supports.
func TestLlamaCppVocabs(t *testing.T) {
	for _, name := range []string{
		"ggml-vocab-llama-spm.gguf",
		"ggml-vocab-phi-3.gguf",
		"ggml-vocab-gpt-2.gguf",
		"ggml-vocab-llama-bpe.gguf",
		"ggml-vocab-qwen2.gguf",
		"ggml-vocab-qwen35.gguf",
		"ggml-vocab-mpt.gguf",
		"ggml-vocab-starcoder.gguf",
		"ggml-vocab-refact.gguf",
		"ggml-vocab-command-r.gguf",
		"ggml-vocab-falcon.gguf",
	} {
		t.Run(strings.TrimSuffix(strings.TrimPrefix(name, "ggml-vocab-"), ".gguf"), func(t *testing.T) {
			texts, want := vocabTests(t, name)
			tok := load(t, testenv.LlamaCppModel(t, name))
			pass := 0
			for i, text := range texts {
				got, err := tok.Encode(text, false, false)
				if err != nil {
					t.Errorf("Encode(%q): %v", text, err)
					continue
				}
				if !slices.Equal(got, want[i]) {
					t.Errorf("Encode(%q) = %v, want %v", text, got, want[i])
					continue
				}
				pass++
			}
			t.Logf("%d/%d cases", pass, len(texts))
		})
	}
}
