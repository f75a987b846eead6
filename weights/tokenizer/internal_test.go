package tokenizer

import (
	"slices"
	"testing"
)

func TestCleanSpaces(t *testing.T) {
	// Expectations from a transliteration of llama.cpp's three passes
	// (llama_vocab::impl::detokenize, clean_spaces), quirks included.
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{" ", " "},
		{"a", "a"},
		{" ?", "?"},
		{"a ?", "a?"},
		{"a ,b .c !d", "a,b.c!d"},
		{"  .", " ."},
		{"a ' b", "a'b"},
		{"a ' ' b", "a'' b"},
		{" ' '", "''"},
		{"x 's y 'm z 're w 've", "x's y'm z're w've"},
		{"x 't 'd 'll", "x 't 'd 'll"},
		{" 'r", " 'r"},
		{" 're", "'re"},
		{"a ''", "a ''"},
		{"a .. ,", "a..,"},
		{"' ", "' "},
		{" '", " '"},
		{"a  ' ", "a '"},
		{"a ' 's", "a''s"},
	} {
		t.Run(c.in, func(t *testing.T) {
			if got := string(cleanSpaces([]byte(c.in))); got != c.want {
				t.Errorf("cleanSpaces(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// split runs the split steps of a pre-tokenizer kind on s.
func split(k preKind, s string) []string {
	cps := decodeCodePoints(s, nil)
	tx := cpText{cps: cps, flags: make([]cpFlags, len(cps))}
	for i, r := range cps {
		tx.flags[i] = flagsOf(r)
	}
	words := []int{len(cps)}
	for _, step := range preSteps(k) {
		words = step(&tx, words)
	}
	var out []string
	start := 0
	for _, n := range words {
		out = append(out, string(cps[start:start+n]))
		start += n
	}
	return out
}

func TestPreTokenizers(t *testing.T) {
	for _, c := range []struct {
		name string
		kind preKind
		in   string
		want []string
	}{
		{"gpt2/words", preGPT2, "Hello world", []string{"Hello", " world"}},
		{"gpt2/contraction", preGPT2, "don't I'LL", []string{"don", "'t", " I", "'", "LL"}},
		{"gpt2/spaces", preGPT2, "a   b  ", []string{"a", "  ", " b", "  "}},
		{"gpt2/numbers", preGPT2, "x 12345 3.14", []string{"x", " 12345", " 3", ".", "14"}},
		{"gpt2/punct", preGPT2, "a ... !?", []string{"a", " ...", " !?"}},
		{"gpt2/newlines", preGPT2, "a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"llama3/contraction", preLlama3, "I'LL don't", []string{"I", "'LL", " don", "'t"}},
		{"llama3/digits", preLlama3, "1234567", []string{"123", "456", "7"}},
		{"llama3/space-digits", preLlama3, " 12345", []string{" ", "123", "45"}},
		{"llama3/newlines", preLlama3, "a \n\n b", []string{"a", " \n\n", " b"}},
		{"llama3/punct-newline", preLlama3, "x.\n\ny", []string{"x", ".\n\n", "y"}},
		{"llama3/trailing-space", preLlama3, "a ", []string{"a", " "}},
		{"llama3/prefix", preLlama3, "\tword", []string{"\tword"}},
		{"qwen2/digits", preQwen2, "x123", []string{"x", "1", "2", "3"}},
		{"qwen35/marks", preQwen35, "e\u0301a", []string{"e\u0301a"}},
		{"qwen2/marks", preQwen2, "e\u0301a", []string{"e", "\u0301a"}},
		{"starcoder/digits", preStarCoder, "ab 123", []string{"ab", " ", "1", "2", "3"}},
		{"default/punct-digits", preDefault, "x=1234, y", []string{"x", "=", "123", "4", ",", " y"}},
		{"falcon/backtick", preFalcon, "a``b 123456", []string{"a", "``", "b", " ", "123", "456"}},
		{"laguna/newlines", preLaguna, "a\n\nb c", []string{"a", "\n\n", "b", " c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := split(c.kind, c.in); !slices.Equal(got, c.want) {
				t.Errorf("split(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	// llama.cpp's tables (Unicode 15.1) against Go's (15.0): the few code
	// points assigned in 15.1, the white-space set, and a sample.
	for _, c := range []struct {
		r    rune
		want cpFlags
	}{
		{'a', cpLetter},
		{'7', cpNumber},
		{' ', cpSeparator | cpWhitespace},
		{'\n', cpControl | cpWhitespace},
		{'\u0085', cpControl | cpWhitespace},
		{'\u00a0', cpSeparator | cpWhitespace},
		{'\u200b', cpControl}, // Cf, not white space
		{'\u3000', cpSeparator | cpWhitespace},
		{'$', cpSymbol},
		{'_', cpPunctuation},
		{'\u0301', cpMark},
		{'\u00b2', cpNumber},
		{'\ue000', cpControl}, // Co
		{'\U000e0000', cpUndefined},
		{0x2EBF0, cpLetter}, // CJK Extension I, Unicode 15.1
		{0x2FFC, cpSymbol},  // Unicode 15.1
		{0x31EF, cpSymbol},  // Unicode 15.1
		{0xD800, cpControl}, // surrogate (Cs)
		{0x110000, cpUndefined},
	} {
		if got := flagsOf(c.r); got != c.want {
			t.Errorf("flagsOf(%U) = %#x, want %#x", c.r, got, c.want)
		}
	}
}

func TestDecodeCodePoints(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []rune
	}{
		{"a€", []rune{'a', '€'}},
		{"\x80", []rune{0xFFFD}},
		{"\xe2\x82", []rune{0xFFFD, 0xFFFD}},
		{"\xe2a", []rune{0xFFFD, 'a'}},
		{"\xc0\x80", []rune{0}},                // overlong, accepted as llama.cpp does
		{"\xed\xa0\x80", []rune{0xD800}},       // surrogate, accepted
		{"\xf7\xbf\xbf\xbf", []rune{0x1FFFFF}}, // beyond U+10FFFF: the caller rejects it
		{"\xf8\x88\x80\x80\x80", []rune{0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD, 0xFFFD}},
	} {
		if got := decodeCodePoints(c.in, nil); !slices.Equal(got, c.want) {
			t.Errorf("decodeCodePoints(%q) = %U, want %U", c.in, got, c.want)
		}
	}
}

func TestQueue(t *testing.T) {
	var q queue
	var want []uint64
	for i := range 3000 {
		k := uint64(i*7919) % 1237
		q.push(bigram{key: k})
		want = append(want, k)
	}
	slices.Sort(want)
	for i, w := range want {
		if got := q.pop().key; got != w {
			t.Fatalf("pop %d = %d, want %d", i, got, w)
		}
	}
	if len(q) != 0 {
		t.Fatalf("len = %d after popping everything", len(q))
	}
}

func TestSPMKeyOrder(t *testing.T) {
	// Higher score first; equal scores (including -0 and +0) leftmost first.
	keys := []uint64{
		spmKey(5, 9), spmKey(0, 1), spmKey(float32(negZero()), 2), spmKey(-1, 0), spmKey(-1000, 0), spmKey(-1000, 3),
	}
	if !slices.IsSorted(keys) {
		t.Errorf("spmKey order wrong: %x", keys)
	}
}

func negZero() float64 { z := 0.0; return -z }
