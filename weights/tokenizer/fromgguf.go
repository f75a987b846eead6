package tokenizer

import (
	"errors"
	"fmt"

	"github.com/stratanet/strata/weights/gguf"
)

// GGUF metadata keys read by FromGGUF.
const (
	KeyModel          = "tokenizer.ggml.model"
	KeyPre            = "tokenizer.ggml.pre"
	KeyTokens         = "tokenizer.ggml.tokens"
	KeyScores         = "tokenizer.ggml.scores"
	KeyTokenType      = "tokenizer.ggml.token_type"
	KeyMerges         = "tokenizer.ggml.merges"
	KeyBOS            = "tokenizer.ggml.bos_token_id"
	KeyEOS            = "tokenizer.ggml.eos_token_id"
	KeyEOT            = "tokenizer.ggml.eot_token_id"
	KeyEOM            = "tokenizer.ggml.eom_token_id"
	KeyUNK            = "tokenizer.ggml.unknown_token_id"
	KeyPAD            = "tokenizer.ggml.padding_token_id"
	KeyAddBOS         = "tokenizer.ggml.add_bos_token"
	KeyAddEOS         = "tokenizer.ggml.add_eos_token"
	KeyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	KeyName           = "general.name"
)

// FromGGUF builds the tokenizer described by a model's `tokenizer.ggml.*`
// metadata, with llama.cpp's defaults for absent keys: special ids BOS 1,
// EOS 2, UNK 0 for SPM and BOS = EOS = 11 for BPE (each only if in range);
// a special id key that is out of range keeps the default, as llama.cpp
// does; add_bos_token true for SPM and the llama3 pre-tokenizers; scores
// and token types longer than the token list are cut to it.
func FromGGUF(md *gguf.Metadata) (*Tokenizer, error) {
	model, err := md.String(KeyModel)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
	}
	v := Vocab{Model: model, BOS: -1, EOS: -1, EOT: -1, EOM: -1, UNK: -1, PAD: -1}
	if v.Pre, err = optional(md.String(KeyPre)); err != nil {
		return nil, err
	}
	if v.Name, err = optional(md.String(KeyName)); err != nil {
		return nil, err
	}
	if v.Tokens, err = md.Strings(KeyTokens); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
	}
	n := len(v.Tokens)

	v.Scores, err = md.Float32s(KeyScores)
	if errors.Is(err, gguf.ErrValueType) {
		// llama.cpp also accepts integer scores.
		var is []int32
		if is, err = md.Int32s(KeyScores); err == nil {
			v.Scores = make([]float32, len(is))
			for i, x := range is {
				v.Scores[i] = float32(x)
			}
		}
	}
	if v.Scores, err = optional(v.Scores, err); err != nil {
		return nil, err
	}
	if v.Scores != nil {
		if len(v.Scores) < n {
			return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
		}
		v.Scores = v.Scores[:n]
	}

	types, err := optional(md.Int32s(KeyTokenType))
	if err != nil {
		return nil, err
	}
	if types != nil {
		if len(types) < n {
			return nil, fmt.Errorf("%w: %d token types for %d tokens", ErrInvalidVocab, len(types), n)
		}
		v.Types = make([]TokenType, n)
		for i := range v.Types {
			v.Types[i] = TokenType(types[i])
		}
	}

	switch model {
	case ModelSPM:
		v.BOS, v.EOS, v.UNK = 1, 2, 0
	case ModelBPE:
		if v.Merges, err = md.Strings(KeyMerges); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		}
		v.BOS, v.EOS = 11, 11
		if pc := preConfigs[v.Pre]; pc.noBOS {
			v.BOS = -1
		}
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q", ErrUnsupported, model)
	}
	for _, s := range []struct {
		key string
		id  *int32
	}{{KeyBOS, &v.BOS}, {KeyEOS, &v.EOS}, {KeyEOT, &v.EOT}, {KeyEOM, &v.EOM}, {KeyUNK, &v.UNK}, {KeyPAD, &v.PAD}} {
		if int(*s.id) >= n {
			*s.id = -1
		}
		x, err := md.Int(s.key)
		switch {
		case errors.Is(err, gguf.ErrMissingKey):
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		case x >= 0 && x < int64(n):
			*s.id = int32(x)
		}
	}

	for _, b := range []struct {
		key string
		dst **bool
	}{{KeyAddBOS, &v.AddBOS}, {KeyAddEOS, &v.AddEOS}, {KeyAddSpacePrefix, &v.AddSpacePrefix}} {
		x, err := md.Bool(b.key)
		switch {
		case errors.Is(err, gguf.ErrMissingKey):
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
		default:
			*b.dst = &x
		}
	}
	return New(v)
}

// optional returns the zero value for a missing key and wraps other errors.
func optional[T any](x T, err error) (T, error) {
	var zero T
	switch {
	case errors.Is(err, gguf.ErrMissingKey):
		return zero, nil
	case err != nil:
		return zero, fmt.Errorf("%w: %w", ErrInvalidVocab, err)
	}
	return x, nil
}
