package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

func runTokenize(_ context.Context, e *env, args []string) error {
	fs := newFlags(e, "tokenize", "tokenize --model M --text T [--json] [--bos] [--special]",
		"Turn text into token ids with the tokenizer stored in a GGUF model, exactly as llama.cpp does.")
	model := fs.String("model", "", "GGUF model whose tokenizer to use (required)")
	text := fs.String("text", "", "text to tokenize")
	asJSON := fs.Bool("json", false, "print JSON: ids, pieces and the decoded text")
	bos := fs.Bool("bos", false, "add the special tokens the model asks for (BOS, and EOS if add_eos_token)")
	special := fs.Bool("special", false, "parse special-token text such as <s> in the input")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("%w: --model is required", errUsage)
	}
	tok, err := openTokenizer(*model)
	if err != nil {
		return err
	}
	ids, err := tok.Encode(*text, *bos, *special)
	if err != nil {
		return err
	}
	pieces := make([]string, len(ids))
	for i, id := range ids {
		pieces[i] = tok.Token(id)
	}
	decoded, err := tok.Decode(ids)
	if err != nil {
		return err
	}
	if *asJSON {
		out := struct {
			Text    string   `json:"text"`
			Tokens  []int32  `json:"tokens"`
			Pieces  []string `json:"pieces"`
			Decoded string   `json:"decoded"`
		}{*text, ids, pieces, decoded}
		if out.Tokens == nil {
			out.Tokens, out.Pieces = []int32{}, []string{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = fmt.Sprint(id)
	}
	fmt.Fprintln(e.stdout, strings.Join(strs, " "))
	for i, id := range ids {
		fmt.Fprintf(e.stdout, "%6d  %q\n", id, pieces[i])
	}
	return nil
}

// openTokenizer reads the tokenizer of a GGUF model.
func openTokenizer(path string) (*tokenizer.Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return tokenizer.FromGGUF(&f.Metadata)
}
