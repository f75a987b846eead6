package tokenizer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/weights/tokenizer"
)

// fuzzSeeds returns the texts of the golden files plus a few awkward ones.
func fuzzSeeds(t testing.TB) []string {
	seeds := []string{
		"", " ", "Hello, world!", "<s> not special </s>", "\xe2\x96\x81", "▁▁x", "\xff\xfe", "a\xe2b",
		"don't I'LL", "1234567 3.14", "日本語のテキスト 🦙", "e\u0301", "\t\n\r\n \u00a0\u3000",
		"<|endoftext|><|im_start|>user", " ' ' 's ?", "A\xcb 000000",
	}
	dir := testenv.SharedDir(t)
	paths, _ := filepath.Glob(filepath.Join(dir, "golden", "*.json"))
	for _, p := range paths {
		var g struct {
			Prompt struct{ Text string }
			Cases  []struct{ Text string }
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if json.Unmarshal(b, &g) != nil {
			continue
		}
		if g.Prompt.Text != "" {
			seeds = append(seeds, g.Prompt.Text)
		}
		for _, c := range g.Cases {
			seeds = append(seeds, c.Text)
		}
	}
	return seeds
}

// FuzzEncode encodes random text with the 32000-token SPM vocabulary (and,
// when $STRATA_LLAMACPP_MODELS is set, qwen2's byte-level BPE): it must
// never panic, and decoding valid UTF-8 gives the text back (for SPM with
// U+2581 read back as a space).
func FuzzEncode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	spm := sharedModel(f, "llama-2-tiny-random.gguf")
	var bpe *tokenizer.Tokenizer
	if dir := os.Getenv(testenv.EnvLlamaCppModels); dir != "" {
		bpe = load(f, testenv.LlamaCppModel(f, "ggml-vocab-qwen2.gguf"))
	}
	f.Fuzz(func(t *testing.T, text string, parseSpecial bool) {
		ids, err := spm.Encode(text, false, parseSpecial)
		if err != nil {
			t.Fatalf("SPM Encode(%q): %v", text, err)
		}
		got, err := spm.Decode(ids)
		if err != nil {
			t.Fatalf("SPM Decode: %v", err)
		}
		// Invalid UTF-8 need not come back: a broken lead byte can swallow
		// part of an escaped space, whose bytes then stay U+2581 (as in
		// llama.cpp).
		if want := strings.ReplaceAll(text, "▁", " "); !parseSpecial && utf8.ValidString(text) && got != want {
			t.Errorf("SPM Decode(Encode(%q)) = %q, want %q (ids %v)", text, got, want, ids)
		}
		if bpe == nil {
			return
		}
		ids, err = bpe.Encode(text, false, parseSpecial)
		if err != nil {
			if utf8.ValidString(text) {
				t.Fatalf("BPE Encode(%q): %v", text, err)
			}
			return
		}
		got, err = bpe.Decode(ids)
		if err != nil {
			t.Fatalf("BPE Decode: %v", err)
		}
		if utf8.ValidString(text) && got != text {
			t.Errorf("BPE Decode(Encode(%q)) = %q (ids %v)", text, got, ids)
		}
	})
}

// FuzzStreamDecode pushes random token ids (two bytes each, some out of
// range) through a StreamDecoder: the outputs and Flush join to the pieces
// of the valid ids, and when those are valid UTF-8 so is every output.
func FuzzStreamDecode(f *testing.F) {
	f.Add([]byte{0, 1, 0, 243, 0, 162, 0, 169, 0, 156}, true)
	f.Add([]byte{0x61, 0xF0, 0, 0xE5, 0, 0x85, 0, 0xA5}, false)
	f.Add([]byte{0xFF, 0xFF, 0, 13}, true)
	tok := sharedModel(f, "llama-2-tiny-random.gguf")
	f.Fuzz(func(t *testing.T, data []byte, special bool) {
		d := tok.NewStreamDecoder(special)
		var out, want strings.Builder
		var chunks []string
		for i := 0; i+1 < len(data); i += 2 {
			id := int32(data[i])<<8 | int32(data[i+1])
			id -= 256 // some ids are negative
			if data[i] >= 0xF0 {
				id += int32(tok.Len()) // some are beyond the vocabulary
			}
			s, err := d.Push(id)
			piece, perr := tok.TokenToPiece(id, special)
			if (err != nil) != (perr != nil) {
				t.Fatalf("Push(%d) error %v, TokenToPiece error %v", id, err, perr)
			}
			if err != nil {
				continue
			}
			want.WriteString(piece)
			out.WriteString(s)
			chunks = append(chunks, s)
		}
		out.WriteString(d.Flush())
		if out.String() != want.String() {
			t.Fatalf("stream = %q, want %q", out.String(), want.String())
		}
		if utf8.ValidString(want.String()) {
			for _, c := range chunks {
				if !utf8.ValidString(c) {
					t.Fatalf("chunk %q is not valid UTF-8 though the whole text is", c)
				}
			}
		}
	})
}
