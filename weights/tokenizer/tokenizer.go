// Package tokenizer implements the tokenizers of GGUF models, matching
// llama.cpp token for token.
//
// Two tokenizer models are supported, chosen by `tokenizer.ggml.model`:
//
//   - "llama": SentencePiece-style BPE over scores (llama.cpp's SPM). Spaces
//     become U+2581, a space is put in front of the text
//     (`tokenizer.ggml.add_space_prefix`, default true), the highest-scoring
//     adjacent pair that is a token is merged until none is left, and
//     characters that form no token fall back to byte tokens `<0xNN>`.
//   - "gpt2": byte-level BPE over ranked merges. The text is split into
//     words by the pre-tokenizer named by `tokenizer.ggml.pre`, each byte is
//     shown as a printable code point (GPT-2's byte alphabet), and the
//     lowest-ranked adjacent pair of each word is merged until no merge
//     applies. Supported pre-tokenizers: default, the gpt2 family (gpt-2,
//     mpt, olmo, ...), the llama3 family (llama-bpe, dbrx, smaug-bpe, glm4,
//     ...), the qwen2 family (qwen2, stablelm2, hunyuan, grok-2, ...),
//     qwen35, laguna, the starcoder family (starcoder, refact, command-r,
//     smollm, ...) and falcon.
//
// Before either, special tokens are cut out of the text (llama.cpp's
// special-token partitioning): user-defined tokens always, control and
// unknown tokens when parseSpecial is set.
//
// Decoding follows llama.cpp's llama_token_to_piece and llama_detokenize,
// including the removal of the leading space of SPM text and BPE's
// clean-up of spaces before punctuation. A StreamDecoder turns a stream of
// token ids into text, holding back bytes of an incomplete UTF-8 sequence.
//
// Where llama.cpp has no defined result this package differs: text that
// the vocabulary cannot represent (a character with neither a token nor
// byte tokens) becomes the unknown token, or an ErrUnknownText error when
// there is none, where llama.cpp aborts (SPM) or silently drops the bytes
// (BPE, e.g. falcon has no token for byte 0x0B); special tokens of equal
// length are tried in id order and the first of several candidate
// end-of-turn or fill-in-the-middle tokens is the one with the lowest id,
// where llama.cpp's order is that of its hash map.
//
// A Tokenizer is immutable and safe for concurrent use.
package tokenizer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Errors. Every error of this package wraps one of these.
var (
	// ErrInvalidVocab: a vocabulary that cannot be used (lengths that
	// disagree, ids out of range, duplicate tokens, a BOS or EOS that the
	// model asks for but does not have, malformed metadata).
	ErrInvalidVocab = errors.New("tokenizer: invalid vocabulary")
	// ErrUnsupported: a tokenizer model or pre-tokenizer this package does
	// not implement.
	ErrUnsupported = errors.New("tokenizer: unsupported tokenizer")
	// ErrUnknownText: text that the vocabulary cannot represent (no token
	// and no byte token for some character) in a vocabulary without an
	// unknown token.
	ErrUnknownText = errors.New("tokenizer: text not representable in vocabulary")
	// ErrInvalidUTF8: byte-level BPE input holding a sequence that decodes
	// to a value above U+10FFFF (lead bytes F5..F7), on which llama.cpp
	// fails too. Other invalid UTF-8 is handled as llama.cpp does: SPM
	// falls back to byte tokens, BPE reads each bad byte as U+FFFD.
	ErrInvalidUTF8 = errors.New("tokenizer: invalid UTF-8")
	// ErrTokenRange: a token id outside the vocabulary.
	ErrTokenRange = errors.New("tokenizer: token id out of range")
	// ErrTooLong: text longer than MaxTextLen.
	ErrTooLong = errors.New("tokenizer: text too long")
)

// Tokenizer models, the values of `tokenizer.ggml.model`.
const (
	ModelSPM = "llama" // SentencePiece-style, llama.cpp's LLAMA_VOCAB_TYPE_SPM
	ModelBPE = "gpt2"  // byte-level BPE, llama.cpp's LLAMA_VOCAB_TYPE_BPE
)

// TokenType is a token's type, the values of `tokenizer.ggml.token_type`.
type TokenType int32

// Token types, as llama.cpp's llama_token_type. Any other value is treated
// as TypeUndefined.
const (
	TypeUndefined   TokenType = 0
	TypeNormal      TokenType = 1
	TypeUnknown     TokenType = 2
	TypeControl     TokenType = 3
	TypeUserDefined TokenType = 4
	TypeUnused      TokenType = 5
	TypeByte        TokenType = 6
)

// Vocab is a vocabulary as a GGUF file stores it. Token ids are indexes
// into Tokens.
type Vocab struct {
	// Model is ModelSPM or ModelBPE.
	Model string
	// Pre names the BPE pre-tokenizer (`tokenizer.ggml.pre`); "" is
	// "default". Ignored for SPM.
	Pre string
	// Name is the model's `general.name`: llama.cpp strips spaces around
	// the special tokens of models named phi-3 and around the mask token
	// of modern-bert, keyed on it.
	Name string

	Tokens []string
	// Scores are the SPM merge scores, one per token; nil means all 0.
	Scores []float32
	// Types are the token types, one per token; nil means all normal.
	Types []TokenType
	// Merges are the BPE merges, "left right", best first. Required for BPE.
	Merges []string

	// Special token ids, -1 when the model has none. EOT and EOM set to -1
	// are looked up by their usual text ("<|eot_id|>", "<|eom_id|>", ...)
	// as llama.cpp does.
	BOS, EOS, EOT, EOM, UNK, PAD int32

	// AddBOS, AddEOS: whether Encode with addSpecial adds BOS / EOS. nil
	// means llama.cpp's default: BOS for SPM and for the llama3 family of
	// BPE pre-tokenizers, no EOS.
	AddBOS, AddEOS *bool
	// AddSpacePrefix: whether SPM puts a space before the text (and Decode
	// removes it again). nil means true for SPM, false for BPE.
	AddSpacePrefix *bool
}

// Token attributes, as llama.cpp's llama_token_attr.
type attr uint16

const (
	attrUnknown attr = 1 << iota
	attrUnused
	attrNormal
	attrControl
	attrUserDefined
	attrByte
	attrNormalized
	attrLStrip
	attrRStrip
)

// Tokenizer encodes text to token ids and decodes them back.
type Tokenizer struct {
	bpe    bool
	pre    string
	tokens []string
	scores []float32
	attrs  []attr
	ids    map[string]int32

	bos, eos, eot, eom, unk, pad int32
	addBOS, addEOS, addSpace     bool

	// BPE
	merges       map[mergePair]int32
	steps        []splitStep
	ignoreMerges bool
	cleanSpaces  bool

	// byteTokens[b] is the token of byte b for SPM byte fallback, or -1.
	byteTokens [256]int32
	// special lists the tokens cut out of text before tokenizing (control,
	// user-defined and unknown), longest first.
	special []int32
	trie    specialTrie
	eog     map[int32]bool
}

type mergePair struct{ left, right string }

// preKind is the split behaviour of a pre-tokenizer.
type preKind int

const (
	preDefault preKind = iota
	preGPT2
	preLlama3
	preQwen2
	preQwen35
	preLaguna
	preStarCoder
	preFalcon
)

// preConfig is what llama.cpp sets for a `tokenizer.ggml.pre` name.
type preConfig struct {
	kind         preKind
	noClean      bool // clean_spaces = false
	ignoreMerges bool
	addBOS       bool
	noBOS        bool // the BOS token id is reset to none
}

// preConfigs maps the pre-tokenizer names that llama.cpp accepts and that
// this package implements.
var preConfigs = map[string]preConfig{
	"default": {kind: preDefault},

	"llama3":       {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"llama-v3":     {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"llama-bpe":    {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"falcon3":      {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"falcon-h1":    {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"pixtral":      {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"midm-2.0":     {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"lfm2":         {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"jina-v5-nano": {kind: preLlama3, ignoreMerges: true, addBOS: true},
	"dbrx":         {kind: preLlama3},
	"smaug-bpe":    {kind: preLlama3},
	"glm4":         {kind: preLlama3, noBOS: true},
	"chatglm-bpe":  {kind: preLlama3, noBOS: true},

	"gpt-2":           {kind: preGPT2},
	"phi-2":           {kind: preGPT2},
	"jina-es":         {kind: preGPT2},
	"jina-de":         {kind: preGPT2},
	"gigachat":        {kind: preGPT2},
	"jina-v2-es":      {kind: preGPT2},
	"jina-v2-de":      {kind: preGPT2},
	"a.x-4.0":         {kind: preGPT2},
	"mellum":          {kind: preGPT2},
	"modern-bert":     {kind: preGPT2},
	"jina-v1-en":      {kind: preGPT2},
	"jina-v2-code":    {kind: preGPT2},
	"roberta-bpe":     {kind: preGPT2},
	"mpt":             {kind: preGPT2},
	"olmo":            {kind: preGPT2},
	"jais":            {kind: preGPT2},
	"exaone4":         {kind: preGPT2},
	"trillion":        {kind: preGPT2, noClean: true},
	"granite-docling": {kind: preGPT2, noClean: true},

	"qwen2":            {kind: preQwen2, noClean: true},
	"deepseek-r1-qwen": {kind: preQwen2, noClean: true},
	"kormo":            {kind: preQwen2, noClean: true},
	"f2llmv2":          {kind: preQwen2, noClean: true},
	"hunyuan":          {kind: preQwen2, noClean: true},
	"grok-2":           {kind: preQwen2, noClean: true},
	"solar-open":       {kind: preQwen2, noClean: true},
	"stablelm2":        {kind: preQwen2},
	"megrez":           {kind: preQwen2},
	"qwen35":           {kind: preQwen35, noClean: true},
	"laguna":           {kind: preLaguna, noClean: true},

	"starcoder":  {kind: preStarCoder},
	"refact":     {kind: preStarCoder},
	"codeshell":  {kind: preStarCoder},
	"exaone":     {kind: preStarCoder},
	"minerva-7b": {kind: preStarCoder},
	"mellum2":    {kind: preStarCoder},
	"command-r":  {kind: preStarCoder, noClean: true},
	"smollm":     {kind: preStarCoder, noClean: true},

	"falcon": {kind: preFalcon},
}

// Texts by which llama.cpp recognises tokens that end generation; they are
// made control tokens if the vocabulary did not mark them so.
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
	"<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
	"<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<｜end▁of▁sentence｜>", "[e~[",
}

// Texts of the end-of-turn token, looked for when EOT is not given.
var eotTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
	"<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
}

// Texts of the fill-in-the-middle tokens (prefix, suffix, middle, pad,
// repo, file separator). llama.cpp makes the first token found of each
// kind a control token; pad, repo and separator also end generation.
var fimTexts = [][]string{
	{"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"},
	{"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"},
	{"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"},
	{"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
	{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
	{"<|file_sep|>"},
}

// New builds a tokenizer from a vocabulary, validating it.
func New(v Vocab) (*Tokenizer, error) {
	t := &Tokenizer{
		bos: v.BOS, eos: v.EOS, eot: v.EOT, eom: v.EOM, unk: v.UNK, pad: v.PAD,
	}
	n := len(v.Tokens)
	switch v.Model {
	case ModelSPM:
		t.addBOS, t.addSpace = true, true
	case ModelBPE:
		t.bpe = true
		t.pre = v.Pre
		if t.pre == "" {
			t.pre = "default"
		}
		pc, ok := preConfigs[t.pre]
		if !ok {
			return nil, fmt.Errorf("%w: pre-tokenizer %q", ErrUnsupported, v.Pre)
		}
		t.steps = preSteps(pc.kind)
		t.cleanSpaces = !pc.noClean
		t.ignoreMerges = pc.ignoreMerges
		t.addBOS = pc.addBOS
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q", ErrUnsupported, v.Model)
	}
	if v.AddBOS != nil {
		t.addBOS = *v.AddBOS
	}
	if v.AddEOS != nil {
		t.addEOS = *v.AddEOS
	}
	if v.AddSpacePrefix != nil {
		t.addSpace = *v.AddSpacePrefix
	}

	if n == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrInvalidVocab)
	}
	if n > 1<<31-1 {
		return nil, fmt.Errorf("%w: %d tokens", ErrInvalidVocab, n)
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("%w: %d token types for %d tokens", ErrInvalidVocab, len(v.Types), n)
	}
	for _, s := range []struct {
		name string
		id   int32
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"EOT", v.EOT}, {"EOM", v.EOM}, {"UNK", v.UNK}, {"PAD", v.PAD}} {
		if s.id < -1 || s.id >= int32(n) {
			return nil, fmt.Errorf("%w: %s token id %d out of range [0, %d) (-1 for none)", ErrInvalidVocab, s.name, s.id, n)
		}
	}
	if t.addBOS && t.bos < 0 {
		return nil, fmt.Errorf("%w: the model adds a BOS token but has none", ErrInvalidVocab)
	}
	if t.addEOS && t.eos < 0 {
		return nil, fmt.Errorf("%w: the model adds an EOS token but has none", ErrInvalidVocab)
	}

	// Tokens, as llama.cpp loads them: an empty token is renamed, and
	// every text must be unique (llama.cpp aborts otherwise).
	t.tokens = make([]string, n)
	t.ids = make(map[string]int32, n)
	t.scores = make([]float32, n)
	t.attrs = make([]attr, n)
	for i, s := range v.Tokens {
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if j, dup := t.ids[s]; dup {
			return nil, fmt.Errorf("%w: token %q appears twice (ids %d and %d)", ErrInvalidVocab, s, j, i)
		}
		t.ids[s] = int32(i)
		t.tokens[i] = s
		if v.Scores != nil {
			t.scores[i] = v.Scores[i]
		}
		t.attrs[i] = attrNormal
		if v.Types != nil {
			t.attrs[i] = typeAttr(v.Types[i])
		}
	}

	if t.bpe {
		t.merges = make(map[mergePair]int32, len(v.Merges))
		for i, m := range v.Merges {
			// As llama.cpp: split at the first space after the first byte;
			// a merge without one is the pair ("", ""); the first rank of a
			// repeated pair wins.
			var p mergePair
			if len(m) > 1 {
				if k := strings.IndexByte(m[1:], ' '); k >= 0 {
					p = mergePair{m[:k+1], m[k+2:]}
				}
			}
			if _, ok := t.merges[p]; !ok {
				t.merges[p] = int32(i)
			}
		}
	}

	for b := range 256 {
		t.byteTokens[b] = t.findByteToken(byte(b))
	}
	t.fixAttributes(v.Name)
	return t, nil
}

func typeAttr(ty TokenType) attr {
	switch ty {
	case TypeNormal:
		return attrNormal
	case TypeUnknown:
		return attrUnknown
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeUnused:
		return attrUnused
	case TypeByte:
		return attrByte
	}
	return 0
}

// findByteToken returns the token of byte b, or -1: for SPM `<0xNN>`, or
// else the byte itself as a one-byte token (llama.cpp's byte_to_token).
func (t *Tokenizer) findByteToken(b byte) int32 {
	const hex = "0123456789ABCDEF"
	if id, ok := t.ids[string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})]; ok {
		return id
	}
	if id, ok := t.ids[string([]byte{b})]; ok {
		return id
	}
	return -1
}

// fixAttributes applies llama.cpp's load-time adjustments of token
// attributes and special ids that depend on token texts and the model name.
func (t *Tokenizer) fixAttributes(name string) {
	id := func(text string) int32 {
		if i, ok := t.ids[text]; ok {
			return i
		}
		return -1
	}
	markControl := func(i int32) { t.attrs[i] |= attrControl }

	// EOT and EOM found by their text become control tokens.
	if t.eot < 0 {
		if t.eot = firstOf(eotTexts, id); t.eot >= 0 {
			markControl(t.eot)
		}
	}
	if t.eom < 0 {
		if t.eom = id("<|eom_id|>"); t.eom >= 0 {
			markControl(t.eom)
		}
	}
	t.eog = map[int32]bool{}
	for k, texts := range fimTexts {
		if i := firstOf(texts, id); i >= 0 {
			markControl(i)
			if k >= 3 {
				t.eog[i] = true
			}
		}
	}
	// Control tokens named "unused" are unused.
	for i, s := range t.tokens {
		if t.attrs[i]&attrControl != 0 && strings.Contains(s, "unused") {
			t.attrs[i] |= attrUnused
		}
	}
	for _, s := range eogTexts {
		if i := id(s); i >= 0 {
			t.eog[i] = true
			markControl(i)
		}
	}
	// gpt-oss: always render these.
	for _, s := range []string{"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"} {
		if i := id(s); i >= 0 {
			t.attrs[i] = attrUserDefined
		}
	}
	for _, i := range []int32{t.eos, t.eot, t.eom} {
		if i >= 0 {
			t.eog[i] = true
		}
	}
	// o200k_harmony and solar-open: "<|end|>" does not end generation.
	eogText := func(s string) bool { i := id(s); return i >= 0 && t.eog[i] }
	if end := id("<|end|>"); end >= 0 && t.eog[end] &&
		(eogText("<|return|>") && (eogText("<|call|>") || eogText("<|calls|>")) ||
			(eogText("<|call|>") || eogText("<|calls|>")) && eogText("<|flush|>")) {
		delete(t.eog, end)
		t.attrs[end] = attrUserDefined
	}
	// gemma4 and paddleocr: "</s>" does not end generation.
	if s := id("</s>"); s >= 0 && t.eog[s] && eogText("<|tool_response>") {
		delete(t.eog, s)
		t.attrs[s] = attrNormal
	}

	for i, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.special = append(t.special, int32(i))
		}
	}
	// Longest first; llama.cpp's sort is not stable, ties go by id here.
	slices.SortFunc(t.special, func(a, b int32) int {
		return cmp.Or(cmp.Compare(len(t.tokens[b]), len(t.tokens[a])), cmp.Compare(a, b))
	})

	t.buildTrie()

	// Per-model strip attributes, keyed on the model name and pre-tokenizer.
	lname := strings.ToLower(name)
	switch {
	case t.bpe && (strings.Contains(t.pre, "jina-v2-de") || strings.Contains(t.pre, "jina-v2-es") || strings.Contains(t.pre, "jina-v2-code")):
		if i := id("<mask>"); i >= 0 {
			t.attrs[i] |= attrLStrip
		}
	case strings.Contains(lname, "phi-3") || strings.Contains(lname, "phi3"):
		for _, i := range t.special {
			t.attrs[i] |= attrRStrip
		}
		if i := id("</s>"); i >= 0 {
			t.attrs[i] |= attrRStrip
		}
		for _, s := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			if i := id(s); i >= 0 {
				t.attrs[i] &^= attrRStrip
			}
		}
	case strings.Contains(lname, "modern-bert"):
		if i := id("[MASK]"); i >= 0 {
			t.attrs[i] |= attrLStrip
		}
	}
}

// firstOf returns the lowest id among the tokens with the given texts, or
// -1. (llama.cpp takes the first one its hash map yields.)
func firstOf(texts []string, id func(string) int32) int32 {
	best := int32(-1)
	for _, s := range texts {
		if i := id(s); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// Len returns the number of tokens.
func (t *Tokenizer) Len() int { return len(t.tokens) }

// Model returns ModelSPM or ModelBPE.
func (t *Tokenizer) Model() string {
	if t.bpe {
		return ModelBPE
	}
	return ModelSPM
}

// Pre returns the BPE pre-tokenizer name ("" for SPM).
func (t *Tokenizer) Pre() string { return t.pre }

// BOS returns the beginning-of-sequence token id, or -1.
func (t *Tokenizer) BOS() int32 { return t.bos }

// EOS returns the end-of-sequence token id, or -1.
func (t *Tokenizer) EOS() int32 { return t.eos }

// EOT returns the end-of-turn token id, or -1.
func (t *Tokenizer) EOT() int32 { return t.eot }

// UNK returns the unknown token id, or -1.
func (t *Tokenizer) UNK() int32 { return t.unk }

// PAD returns the padding token id, or -1.
func (t *Tokenizer) PAD() int32 { return t.pad }

// AddBOS reports whether Encode with addSpecial puts BOS first.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// AddEOS reports whether Encode with addSpecial puts EOS last.
func (t *Tokenizer) AddEOS() bool { return t.addEOS }

// AddSpacePrefix reports whether SPM encoding puts a space before the text.
func (t *Tokenizer) AddSpacePrefix() bool { return t.addSpace }

// IsEOG reports whether id ends generation (EOS, EOT, EOM and the tokens
// llama.cpp recognises by their text).
func (t *Tokenizer) IsEOG(id int32) bool { return t.eog[id] }

// IsControl reports whether id is a control token (rendered only when
// special tokens are asked for).
func (t *Tokenizer) IsControl(id int32) bool {
	return id >= 0 && int(id) < len(t.attrs) && t.attrs[id]&attrControl != 0
}

// Token returns the text of token id as the vocabulary stores it (with
// U+2581 for spaces in SPM, GPT-2's byte alphabet in BPE), or "" for an id
// out of range.
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Lookup returns the id of the token with text s.
func (t *Tokenizer) Lookup(s string) (int32, bool) {
	id, ok := t.ids[s]
	return id, ok
}
