package tokenizer_test

import (
	"strings"
	"testing"

	"github.com/stratanet/strata/internal/testenv"
)

// paragraph is about 1 KiB of English prose.
var paragraph = strings.Repeat("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog, Max. ", 9)

// BenchmarkEncode tokenizes a paragraph with the 32000-token llama-2 vocabulary.
func BenchmarkEncode(b *testing.B) {
	b.Run("spm32000/1KiB", func(b *testing.B) {
		tok := sharedModel(b, "llama-2-tiny-random.gguf")
		b.SetBytes(int64(len(paragraph)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tok.Encode(paragraph, true, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bpe128256/1KiB", func(b *testing.B) {
		tok := load(b, testenv.LlamaCppModel(b, "ggml-vocab-llama-bpe.gguf"))
		b.SetBytes(int64(len(paragraph)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tok.Encode(paragraph, true, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecode detokenizes the paragraph's tokens.
func BenchmarkDecode(b *testing.B) {
	tok := sharedModel(b, "llama-2-tiny-random.gguf")
	ids, err := tok.Encode(paragraph, true, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("spm32000/1KiB", func(b *testing.B) {
		b.SetBytes(int64(len(paragraph)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := tok.Decode(ids); err != nil {
				b.Fatal(err)
			}
		}
	})
}
