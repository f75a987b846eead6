package tokenizer_test

import (
	"errors"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

func ptr[T any](x T) *T { return &x }

// byteLevelAlphabet returns GPT-2's 256 byte characters, in byte order.
func byteLevelAlphabet() []string {
	var out []string
	next := rune(256)
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = next
			next++
		}
		out = append(out, string(r))
	}
	return out
}

// tinyBPE is a byte-level BPE vocabulary: the 256 byte characters, a few
// merges, and "<|endoftext|>".
func tinyBPE(t testing.TB, pre string) *tokenizer.Tokenizer {
	t.Helper()
	toks := append(byteLevelAlphabet(), "he", "ll", "hell", "hello", "Ġw", "Ġwo", "<|endoftext|>")
	tok, err := tokenizer.New(tokenizer.Vocab{
		Model: tokenizer.ModelBPE, Pre: pre, Tokens: toks,
		Merges: []string{"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"},
		BOS:    int32(len(toks) - 1), EOS: int32(len(toks) - 1), EOT: -1, EOM: -1, UNK: -1, PAD: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tinySPM is a SentencePiece vocabulary without byte tokens.
func tinySPM(t testing.TB, unk int32, name string) *tokenizer.Tokenizer {
	t.Helper()
	v := tokenizer.Vocab{
		Model:  tokenizer.ModelSPM,
		Name:   name,
		Tokens: []string{"<unk>", "<s>", "</s>", "<|user|>", "▁", "h", "i", "▁h", "hi", "▁hi", "<mask>"},
		Scores: []float32{0, 0, 0, 0, -1, -2, -3, -4, -5, -1, 0},
		Types: []tokenizer.TokenType{
			tokenizer.TypeUnknown, tokenizer.TypeControl, tokenizer.TypeControl, tokenizer.TypeUserDefined,
			1, 1, 1, 1, 1, 1, tokenizer.TypeUserDefined,
		},
		BOS: 1, EOS: 2, EOT: -1, EOM: -1, UNK: unk, PAD: -1,
	}
	tok, err := tokenizer.New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestNewErrors(t *testing.T) {
	ok := func() tokenizer.Vocab {
		return tokenizer.Vocab{
			Model: tokenizer.ModelSPM, Tokens: []string{"<unk>", "<s>", "</s>", "a"},
			BOS: 1, EOS: 2, EOT: -1, EOM: -1, UNK: 0, PAD: -1,
		}
	}
	if _, err := tokenizer.New(ok()); err != nil {
		t.Fatalf("New(valid vocab): %v", err)
	}
	for _, c := range []struct {
		name   string
		modify func(v *tokenizer.Vocab)
		want   error
	}{
		{"model", func(v *tokenizer.Vocab) { v.Model = "bert" }, tokenizer.ErrUnsupported},
		{"pre", func(v *tokenizer.Vocab) { v.Model, v.Pre = tokenizer.ModelBPE, "deepseek-coder" }, tokenizer.ErrUnsupported},
		{"no tokens", func(v *tokenizer.Vocab) { v.Tokens, v.BOS, v.EOS, v.UNK = nil, -1, -1, -1 }, tokenizer.ErrInvalidVocab},
		{"scores", func(v *tokenizer.Vocab) { v.Scores = []float32{0} }, tokenizer.ErrInvalidVocab},
		{"types", func(v *tokenizer.Vocab) { v.Types = []tokenizer.TokenType{1, 1, 1, 1, 1} }, tokenizer.ErrInvalidVocab},
		{"bos range", func(v *tokenizer.Vocab) { v.BOS = 4 }, tokenizer.ErrInvalidVocab},
		{"eos negative", func(v *tokenizer.Vocab) { v.EOS = -2 }, tokenizer.ErrInvalidVocab},
		{"pad range", func(v *tokenizer.Vocab) { v.PAD = 100 }, tokenizer.ErrInvalidVocab},
		{"duplicate", func(v *tokenizer.Vocab) { v.Tokens[3] = "</s>" }, tokenizer.ErrInvalidVocab},
		{"add bos without bos", func(v *tokenizer.Vocab) { v.BOS = -1 }, tokenizer.ErrInvalidVocab},
		{"add eos without eos", func(v *tokenizer.Vocab) { v.EOS, v.AddEOS = -1, ptr(true) }, tokenizer.ErrInvalidVocab},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := ok()
			c.modify(&v)
			tok, err := tokenizer.New(v)
			if !errors.Is(err, c.want) {
				t.Errorf("New(%s) = %v, %v, want error %v", c.name, tok, err, c.want)
			}
		})
	}
}

func TestEmptyTokenRenamed(t *testing.T) {
	tok, err := tokenizer.New(tokenizer.Vocab{
		Model: tokenizer.ModelSPM, Tokens: []string{"<unk>", "", "b"},
		BOS: -1, EOS: -1, EOT: -1, EOM: -1, UNK: 0, PAD: -1, AddBOS: ptr(false),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Token(1); got != "[EMPTY_1]" {
		t.Errorf("Token(1) = %q, want %q", got, "[EMPTY_1]")
	}
}

func TestUnknownText(t *testing.T) {
	t.Run("tinystories-unk", func(t *testing.T) {
		// The 2048-token vocabulary has no byte tokens; its <unk> (id 0) stands in.
		tok := sharedModel(t, "TinyStories-656K.f16.gguf")
		for _, c := range []struct {
			text string
			want []int32
		}{
			{"日本", []int32{80, 0, 0}},
			{"a\tb", []int32{85, 0, 54}}, // ▁a, <unk>, b
		} {
			got, err := tok.Encode(c.text, false, false)
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v, %v, want %v", c.text, got, err, c.want)
			}
		}
	})
	t.Run("spm-no-unk", func(t *testing.T) {
		tok := tinySPM(t, -1, "")
		got, err := tok.Encode("hix", false, false)
		if !errors.Is(err, tokenizer.ErrUnknownText) {
			t.Errorf("Encode(%q) = %v, %v, want error %v", "hix", got, err, tokenizer.ErrUnknownText)
		}
	})
	t.Run("spm-unk", func(t *testing.T) {
		tok := tinySPM(t, 0, "")
		got, err := tok.Encode("hix", false, false)
		if want := []int32{9, 0}; err != nil || !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, %v, want %v", "hix", got, err, want)
		}
	})
	t.Run("bpe-no-byte-token", func(t *testing.T) {
		toks := slices.DeleteFunc(byteLevelAlphabet(), func(s string) bool { return s == "Ċ" }) // no "\n"
		tok, err := tokenizer.New(tokenizer.Vocab{
			Model: tokenizer.ModelBPE, Pre: "gpt-2", Tokens: toks, Merges: []string{},
			BOS: 0, EOS: 0, EOT: -1, EOM: -1, UNK: -1, PAD: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := tok.Encode("a\nb", false, false)
		if !errors.Is(err, tokenizer.ErrUnknownText) {
			t.Errorf("Encode(%q) = %v, %v, want error %v", "a\nb", got, err, tokenizer.ErrUnknownText)
		}
	})
}

func TestInvalidUTF8(t *testing.T) {
	t.Run("spm", func(t *testing.T) {
		// Byte fallback keeps any bytes.
		tok := sharedModel(t, "llama-2-tiny-random.gguf")
		for _, text := range []string{"\xff", "a\xe2b", "\xe2\x82", "x\xed\xa0\x80y", "\x80\x80 \xc3"} {
			ids, err := tok.Encode(text, false, false)
			if err != nil {
				t.Errorf("Encode(%q): %v", text, err)
				continue
			}
			if got, err := tok.Decode(ids); err != nil || got != text {
				t.Errorf("Decode(Encode(%q)) = %q, %v, want the input", text, got, err)
			}
		}
	})
	t.Run("bpe", func(t *testing.T) {
		tok := tinyBPE(t, "gpt-2")
		for _, c := range []struct{ text, want string }{
			{"\xff", "\uFFFD"},
			{"a\xe2b", "a\uFFFDb"},
			{"\xc0\x80", "\x00"}, // overlong NUL, read as llama.cpp reads it
		} {
			ids, err := tok.Encode(c.text, false, false)
			if err != nil {
				t.Errorf("Encode(%q): %v", c.text, err)
				continue
			}
			if got, err := tok.Decode(ids); err != nil || got != c.want {
				t.Errorf("Decode(Encode(%q)) = %q, %v, want %q", c.text, got, err, c.want)
			}
		}
		got, err := tok.Encode("a\xf5\x80\x80\x80", false, false)
		if !errors.Is(err, tokenizer.ErrInvalidUTF8) {
			t.Errorf("Encode(%q) = %v, %v, want error %v", "a\xf5\x80\x80\x80", got, err, tokenizer.ErrInvalidUTF8)
		}
	})
}

func TestBPEMerges(t *testing.T) {
	tok := tinyBPE(t, "gpt-2")
	id := func(s string) int32 {
		i, ok := tok.Lookup(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		return i
	}
	for _, c := range []struct {
		text string
		want []int32
	}{
		{"hello world", []int32{id("hello"), id("Ġwo"), id("r"), id("l"), id("d")}},
		{"hell", []int32{id("hell")}},
		{"<|endoftext|>hello", []int32{id("<"), id("|"), id("e"), id("n"), id("d"), id("o"), id("f"), id("t"), id("e"), id("x"), id("t"), id("|"), id(">"), id("hello")}},
	} {
		got, err := tok.Encode(c.text, false, false)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, %v, want %v", c.text, got, err, c.want)
		}
	}
	// The control token is cut out only with parseSpecial; BPE adds no BOS by default.
	got, err := tok.Encode("<|endoftext|>hello", true, true)
	if want := []int32{id("<|endoftext|>"), id("hello")}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Encode(%q, true, true) = %v, %v, want %v", "<|endoftext|>hello", got, err, want)
	}
}

func TestSpecialTokens(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	// From llama.cpp: a space prefix is added after every special token.
	for _, c := range []struct {
		text                     string
		addSpecial, parseSpecial bool
		want                     []int32
	}{
		{" <s>x</s> ", false, true, []int32{259, 1, 921, 2, 259}},
		{" <s>x</s> ", false, false, []int32{29871, 529, 29879, 29958, 29916, 829, 29879, 29958, 29871}},
		{"<s>Hello", true, true, []int32{1, 1, 15043}},
		{"", true, false, []int32{1}},
		{"", false, false, []int32{}},
	} {
		got, err := tok.Encode(c.text, c.addSpecial, c.parseSpecial)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v, %v) = %v, %v, want %v", c.text, c.addSpecial, c.parseSpecial, got, err, c.want)
		}
	}
}

func TestStripAttributes(t *testing.T) {
	// llama.cpp gives the special tokens of models named phi-3 the rstrip
	// attribute: white space after them is dropped.
	for _, c := range []struct {
		name string
		want []int32
	}{
		{"Phi3", []int32{3, 9}},        // <|user|> ▁hi
		{"other", []int32{3, 4, 4, 9}}, // <|user|> ▁ ▁ ▁hi
	} {
		tok := tinySPM(t, 0, c.name)
		got, err := tok.Encode("<|user|>  hi", false, false)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("[%s] Encode(%q) = %v, %v, want %v", c.name, "<|user|>  hi", got, err, c.want)
		}
	}
}

func TestDecode(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	// From llama.cpp's llama_detokenize.
	for _, c := range []struct {
		ids  []int32
		o    tokenizer.DecodeOptions
		want string
	}{
		{[]int32{1, 15043}, tokenizer.DecodeOptions{}, "<s> Hello"},
		{[]int32{1, 15043}, tokenizer.DecodeOptions{SkipSpecial: true}, " Hello"},
		{[]int32{1, 15043}, tokenizer.DecodeOptions{RemoveSpecial: true}, " Hello"},
		{[]int32{15043, 2}, tokenizer.DecodeOptions{}, "Hello</s>"},
		{[]int32{15043, 2}, tokenizer.DecodeOptions{RemoveSpecial: true}, "Hello</s>"}, // the model adds no EOS
		{[]int32{2, 15043}, tokenizer.DecodeOptions{SkipSpecial: true}, " Hello"},
		{[]int32{29871, 1, 29871}, tokenizer.DecodeOptions{}, "<s> "},
		{[]int32{0}, tokenizer.DecodeOptions{}, "<unk>"},
		{[]int32{0}, tokenizer.DecodeOptions{SkipSpecial: true}, ""},
		{nil, tokenizer.DecodeOptions{}, ""},
	} {
		got, err := tok.DecodeWith(c.ids, c.o)
		if err != nil || got != c.want {
			t.Errorf("DecodeWith(%v, %+v) = %q, %v, want %q", c.ids, c.o, got, err, c.want)
		}
	}
	for _, ids := range [][]int32{{-1}, {15043, 32000}} {
		if got, err := tok.Decode(ids); !errors.Is(err, tokenizer.ErrTokenRange) {
			t.Errorf("Decode(%v) = %q, %v, want error %v", ids, got, err, tokenizer.ErrTokenRange)
		}
	}
}

func TestTokenToPiece(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	for _, c := range []struct {
		id      int32
		special bool
		want    string
	}{
		{1, true, "<s>"},
		{1, false, ""},
		{0, true, "<unk>"},
		{29871, false, " "},
		{13, false, "\n"},         // <0x0A>
		{3 + 0xE2, false, "\xe2"}, // <0xE2>
		{15043, false, " Hello"},
	} {
		got, err := tok.TokenToPiece(c.id, c.special)
		if err != nil || got != c.want {
			t.Errorf("TokenToPiece(%d, %v) = %q, %v, want %q", c.id, c.special, got, err, c.want)
		}
	}
	for _, id := range []int32{-1, 32000} {
		if got, err := tok.TokenToPiece(id, true); !errors.Is(err, tokenizer.ErrTokenRange) {
			t.Errorf("TokenToPiece(%d) = %q, %v, want error %v", id, got, err, tokenizer.ErrTokenRange)
		}
	}
}

func TestStreamDecoder(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	// "€ and 🦙": the llama is four byte tokens; its first three complete nothing.
	ids := []int32{25540, 322, 29871, 243, 162, 169, 156}
	want := []string{" €", " and", " ", "", "", "", "🦙"}
	d := tok.NewStreamDecoder(false)
	for i, id := range ids {
		got, err := d.Push(id)
		if err != nil || got != want[i] {
			t.Errorf("Push(%d) = %q, %v, want %q", id, got, err, want[i])
		}
	}
	if got := d.Flush(); got != "" {
		t.Errorf("Flush() = %q, want %q", got, "")
	}

	// An unfinished sequence comes out at Flush; an id out of range changes nothing.
	d = tok.NewStreamDecoder(true)
	for _, id := range []int32{1, 243, 162} {
		if _, err := d.Push(id); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := d.Push(32000); !errors.Is(err, tokenizer.ErrTokenRange) {
		t.Errorf("Push(32000) = %q, %v, want error %v", got, err, tokenizer.ErrTokenRange)
	}
	if got := d.Flush(); got != "\xf0\x9f" {
		t.Errorf("Flush() = %q, want %q", got, "\xf0\x9f")
	}
	// Bytes that cannot start or continue a sequence are not held back.
	got, _ := d.Push(3 + 0x80)
	if got != "\x80" {
		t.Errorf("Push(<0x80>) = %q, want %q", got, "\x80")
	}
}

func TestAccessors(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	if tok.Len() != 32000 || tok.Model() != tokenizer.ModelSPM || tok.BOS() != 1 || tok.EOS() != 2 || tok.UNK() != 0 || tok.PAD() != -1 {
		t.Errorf("Len, Model, BOS, EOS, UNK, PAD = %d, %q, %d, %d, %d, %d, want 32000, %q, 1, 2, 0, -1",
			tok.Len(), tok.Model(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD(), tokenizer.ModelSPM)
	}
	if !tok.AddBOS() || tok.AddEOS() || !tok.AddSpacePrefix() {
		t.Errorf("AddBOS, AddEOS, AddSpacePrefix = %v, %v, %v, want true, false, true", tok.AddBOS(), tok.AddEOS(), tok.AddSpacePrefix())
	}
	if !tok.IsEOG(2) || tok.IsEOG(1) || !tok.IsControl(1) || tok.IsControl(15043) {
		t.Errorf("IsEOG(2), IsEOG(1), IsControl(1), IsControl(15043) = %v, %v, %v, %v, want true, false, true, false",
			tok.IsEOG(2), tok.IsEOG(1), tok.IsControl(1), tok.IsControl(15043))
	}
	if id, ok := tok.Lookup("▁Hello"); !ok || id != 15043 {
		t.Errorf("Lookup(▁Hello) = %d, %v, want 15043, true", id, ok)
	}
	if got := tok.Token(-1); got != "" {
		t.Errorf("Token(-1) = %q, want \"\"", got)
	}
}

// metadata builds GGUF metadata from key/value pairs.
func metadata(kvs ...any) *gguf.Metadata {
	md := &gguf.Metadata{}
	for i := 0; i < len(kvs); i += 2 {
		md.Set(kvs[i].(string), gguf.MustValue(kvs[i+1]))
	}
	return md
}

func TestFromGGUF(t *testing.T) {
	spmTokens := []string{"<unk>", "<s>", "</s>", "▁a", "a"}
	type want struct {
		bos, eos, unk, pad int32
		addBOS             bool
	}
	for _, c := range []struct {
		name string
		md   *gguf.Metadata
		want want
	}{
		{"spm defaults", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens),
			want{1, 2, 0, -1, true}},
		{"spm out of range ids keep defaults", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens,
			tokenizer.KeyBOS, uint32(0xFFFFFFFF), tokenizer.KeyPAD, int32(-1), tokenizer.KeyEOS, uint32(4)),
			want{1, 4, 0, -1, true}},
		{"spm keys", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens,
			tokenizer.KeyBOS, uint32(3), tokenizer.KeyAddBOS, false, tokenizer.KeyScores, []int32{1, 2, 3, 4, 5}),
			want{3, 2, 0, -1, false}},
		{"bpe defaults", metadata(tokenizer.KeyModel, "gpt2", tokenizer.KeyTokens, byteLevelAlphabet(), tokenizer.KeyMerges, []string{"a b"}),
			want{11, 11, -1, -1, false}},
		{"bpe llama3 adds bos", metadata(tokenizer.KeyModel, "gpt2", tokenizer.KeyPre, "llama-bpe", tokenizer.KeyTokens, byteLevelAlphabet(), tokenizer.KeyMerges, []string{}),
			want{11, 11, -1, -1, true}},
		{"bpe glm4 has no bos", metadata(tokenizer.KeyModel, "gpt2", tokenizer.KeyPre, "glm4", tokenizer.KeyTokens, byteLevelAlphabet(), tokenizer.KeyMerges, []string{}),
			want{-1, 11, -1, -1, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok, err := tokenizer.FromGGUF(c.md)
			if err != nil {
				t.Fatalf("FromGGUF: %v", err)
			}
			got := want{tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD(), tok.AddBOS()}
			if got != c.want {
				t.Errorf("FromGGUF(%s) = %+v, want %+v", c.name, got, c.want)
			}
		})
	}

	for _, c := range []struct {
		name string
		md   *gguf.Metadata
		want error
	}{
		{"no model", metadata(tokenizer.KeyTokens, spmTokens), tokenizer.ErrInvalidVocab},
		{"no tokens", metadata(tokenizer.KeyModel, "llama"), tokenizer.ErrInvalidVocab},
		{"unknown model", metadata(tokenizer.KeyModel, "t5", tokenizer.KeyTokens, spmTokens), tokenizer.ErrUnsupported},
		{"unknown pre", metadata(tokenizer.KeyModel, "gpt2", tokenizer.KeyPre, "nonsense", tokenizer.KeyTokens, spmTokens, tokenizer.KeyMerges, []string{}), tokenizer.ErrUnsupported},
		{"no merges", metadata(tokenizer.KeyModel, "gpt2", tokenizer.KeyTokens, spmTokens), tokenizer.ErrInvalidVocab},
		{"short scores", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens, tokenizer.KeyScores, []float32{0}), tokenizer.ErrInvalidVocab},
		{"short types", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens, tokenizer.KeyTokenType, []int32{1}), tokenizer.ErrInvalidVocab},
		{"tokens type", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, []int32{1}), tokenizer.ErrInvalidVocab},
		{"bos type", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens, tokenizer.KeyBOS, "1"), tokenizer.ErrInvalidVocab},
		{"add_bos type", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, spmTokens, tokenizer.KeyAddBOS, uint8(1)), tokenizer.ErrInvalidVocab},
		{"duplicate", metadata(tokenizer.KeyModel, "llama", tokenizer.KeyTokens, []string{"a", "b", "a"}), tokenizer.ErrInvalidVocab},
	} {
		t.Run(c.name, func(t *testing.T) {
			if tok, err := tokenizer.FromGGUF(c.md); !errors.Is(err, c.want) {
				t.Errorf("FromGGUF(%s) = %v, %v, want error %v", c.name, tok, err, c.want)
			}
		})
	}
}

// TestTokenRoundTrip is llama.cpp's test-tokenizer-1-spm on the 32000-token
// vocabulary: every token's text tokenizes (special tokens parsed) to
// tokens that detokenize to the same text; and every code point (except
// surrogates, the unassigned planes 4 to 13 and U+2581) survives
// tokenize + detokenize.
func TestTokenRoundTrip(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	for id := range int32(tok.Len()) {
		s, err := tok.Decode([]int32{id})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := tok.Encode(s, false, true)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		if got, err := tok.Decode(ids); err != nil || got != s {
			t.Errorf("token %d: Decode(Encode(%q)) = %q, %v", id, s, got, err)
		}
	}
	step := rune(1)
	if testing.Short() {
		step = 97
	}
	for r := rune(0); r <= utf8.MaxRune; r += step {
		if r >= 0xD800 && r <= 0xDFFF || r >= 0x40000 && r <= 0xE0000 || r == 0x2581 {
			continue
		}
		s := string(r)
		ids, err := tok.Encode(s, false, true)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		if got, err := tok.Decode(ids); err != nil || got != s {
			t.Errorf("Decode(Encode(%U)) = %q, %v, want %q", r, got, err, s)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	tok := sharedModel(t, "llama-2-tiny-random.gguf")
	want, err := tok.Encode(paragraph, true, false)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []int32)
	for range 4 {
		go func() {
			got, _ := tok.Encode(paragraph, true, false)
			done <- got
		}()
	}
	for range 4 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("concurrent Encode = %v, want %v", got, want)
		}
	}
}
