package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// TokenToPiece returns the text of one token, as llama.cpp's
// common_token_to_piece: SPM tokens with U+2581 turned into spaces, BPE
// tokens mapped back from GPT-2's byte alphabet, byte tokens as their byte
// (so a piece can be part of a UTF-8 sequence), user-defined tokens as they
// are. Control and unknown tokens give their text with special, "" without.
func (t *Tokenizer) TokenToPiece(id int32, special bool) (string, error) {
	if err := t.check(id); err != nil {
		return "", err
	}
	return string(t.appendPiece(nil, id, special, false)), nil
}

func (t *Tokenizer) check(id int32) error {
	if id < 0 || int(id) >= len(t.tokens) {
		return fmt.Errorf("%w: %d not in [0, %d)", ErrTokenRange, id, len(t.tokens))
	}
	return nil
}

// appendPiece appends the piece of id (in range) to dst; with lstrip, one
// leading space of the piece is dropped.
func (t *Tokenizer) appendPiece(dst []byte, id int32, special, lstrip bool) []byte {
	a := t.attrs[id]
	if !special && a&(attrUnknown|attrControl) != 0 {
		return dst
	}
	text := t.tokens[id]
	start := len(dst)
	switch {
	case a&(attrUnknown|attrControl|attrUserDefined) != 0:
		dst = append(dst, text...)
	case a&attrNormal != 0:
		if t.bpe {
			dst = byteLevelDecode(dst, text)
		} else {
			dst = append(dst, strings.ReplaceAll(text, "▁", " ")...)
		}
	case a&attrByte != 0:
		dst = append(dst, byteTokenValue(text))
	}
	if lstrip && len(dst) > start && dst[start] == ' ' {
		dst = append(dst[:start], dst[start+1:]...)
	}
	return dst
}

// byteTokenValue reads the byte of a byte token "<0xNN>" as llama.cpp
// does (strtol on the two characters after "<0x"; 0 when they are not hex).
func byteTokenValue(text string) byte {
	if len(text) < 3 {
		return 0
	}
	digits := text[3:min(len(text), 5)]
	var v byte
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return v
		}
	}
	return v
}

// DecodeOptions are the switches of llama.cpp's llama_detokenize.
type DecodeOptions struct {
	// RemoveSpecial drops a leading BOS and a trailing EOS when the model
	// adds them (AddBOS, AddEOS).
	RemoveSpecial bool
	// SkipSpecial renders control and unknown tokens as "" (llama.cpp's
	// unparse_special = false).
	SkipSpecial bool
}

// Decode turns token ids into text as llama.cpp's common_detokenize(ids)
// (special tokens rendered, nothing removed). It is DecodeWith with zero
// options.
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	return t.DecodeWith(ids, DecodeOptions{})
}

// DecodeWith turns token ids into text as llama.cpp's llama_detokenize:
// the pieces of the tokens joined, without the space that SPM encoding puts
// in front of the text (when the first token is not a removed BOS), and for
// most BPE pre-tokenizers with the spaces before ? ! . , and some
// apostrophes cleaned up (clean_up_tokenization_spaces). An id out of range
// is an error wrapping ErrTokenRange.
func (t *Tokenizer) DecodeWith(ids []int32, o DecodeOptions) (string, error) {
	for _, id := range ids {
		if err := t.check(id); err != nil {
			return "", err
		}
	}
	removeSpace := t.addSpace
	if o.RemoveSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if o.RemoveSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var buf []byte
	for _, id := range ids {
		buf = t.appendPiece(buf, id, !o.SkipSpecial, removeSpace)
		removeSpace = false
	}
	if t.cleanSpaces {
		buf = cleanSpaces(buf)
	}
	return string(buf), nil
}

// cleanSpaces is llama.cpp's clean-up of tokenization spaces, three passes
// over the bytes in place: drop the space in " ?", " !", " .", " ,"; turn
// " ' " into "'"; drop the space in " 's", " 'm", " 're", " 've".
func cleanSpaces(text []byte) []byte {
	if len(text) == 0 {
		return text
	}
	// Pass 1.
	n := 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if text[i-1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',') {
			n--
		}
		text[n] = x
		n++
	}
	text = text[:n]

	// Pass 2. As in llama.cpp, the space after the apostrophe is
	// overwritten with NUL in place (and skipped), so it no longer counts
	// as a space before the next character.
	n = 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if x == '\'' && i+1 < len(text) && text[i-1] == ' ' && text[i+1] == ' ' {
			n--
			i++
			text[i] = 0
		}
		text[n] = x
		n++
	}
	text = text[:n]

	// Pass 3.
	n = 1
	for i := 1; i < len(text); i++ {
		x := text[i]
		if text[i-1] == ' ' && x == '\'' && i+1 < len(text) {
			x1 := text[i+1]
			switch {
			case x1 == 's' || x1 == 'm':
				n--
			case x1 == 't' || x1 == 'd':
			case i+2 < len(text):
				x2 := text[i+2]
				if x1 == 'r' && x2 == 'e' || x1 == 'v' && x2 == 'e' {
					n--
				}
			}
		}
		text[n] = x
		n++
	}
	return text[:n]
}

// StreamDecoder turns token ids, pushed one at a time, into text as soon
// as it is complete: the pieces of the tokens (TokenToPiece) joined, with
// the bytes of a UTF-8 sequence that a later token may complete held back.
// This is how llama.cpp streams generated text: no space is removed and no
// clean-up applies. All outputs of Push followed by Flush join to exactly
// the pieces of the tokens; when those are valid UTF-8, so is every output.
// A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       *Tokenizer
	special bool
	pending []byte
}

// NewStreamDecoder returns a stream decoder; special renders control and
// unknown tokens.
func (t *Tokenizer) NewStreamDecoder(special bool) *StreamDecoder {
	return &StreamDecoder{t: t, special: special}
}

// Push adds token id and returns the text completed by it (possibly "").
// An id out of range is an error wrapping ErrTokenRange and changes nothing.
func (d *StreamDecoder) Push(id int32) (string, error) {
	if err := d.t.check(id); err != nil {
		return "", err
	}
	d.pending = d.t.appendPiece(d.pending, id, d.special, false)
	keep := incompleteTail(d.pending)
	out := string(d.pending[:len(d.pending)-keep])
	d.pending = append(d.pending[:0], d.pending[len(d.pending)-keep:]...)
	return out, nil
}

// Flush returns the bytes held back (an unfinished UTF-8 sequence, not
// valid UTF-8) and resets the decoder.
func (d *StreamDecoder) Flush() string {
	out := string(d.pending)
	d.pending = d.pending[:0]
	return out
}

// incompleteTail returns the length of the UTF-8 sequence at the end of b
// that is unfinished but could still be completed by more bytes, or 0.
func incompleteTail(b []byte) int {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		if !utf8.FullRune(b[len(b)-k:]) {
			return k
		}
	}
	return 0
}
