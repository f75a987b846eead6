package tokenizer

import (
	"fmt"
	"unicode"
)

// Code point classes, as llama.cpp's unicode tables define them (one
// general category per code point, plus the white-space property).
type cpFlags uint16

const (
	cpUndefined   cpFlags = 1 << iota // Cn, and anything beyond U+10FFFF
	cpNumber                          // \p{N}
	cpLetter                          // \p{L}
	cpSeparator                       // \p{Z}
	cpMark                            // \p{M}
	cpPunctuation                     // \p{P}
	cpSymbol                          // \p{S}
	cpControl                         // Cc, Cf, Co, Cs
	cpWhitespace                      // \s: the Unicode White_Space property
)

// maxCodePoint is the largest Unicode code point.
const maxCodePoint = 0x10FFFF

// asciiFlags holds the classes of the ASCII code points.
var asciiFlags = func() (t [0x80]cpFlags) {
	for r := range rune(0x80) {
		t[r] = classify(r)
	}
	return t
}()

// flagsOf returns the classes of r. Out-of-range positions use flags 0,
// which is distinct from every code point's flags (each has a category).
func flagsOf(r rune) cpFlags {
	if r >= 0 && r < 0x80 {
		return asciiFlags[r]
	}
	return classify(r)
}

func classify(r rune) cpFlags {
	if r < 0 || r > maxCodePoint {
		return cpUndefined
	}
	var f cpFlags
	switch {
	case unicode.IsLetter(r) || isLetter15_1(r):
		f = cpLetter
	case unicode.IsNumber(r):
		f = cpNumber
	case unicode.IsPunct(r):
		f = cpPunctuation
	case unicode.IsSymbol(r) || isSymbol15_1(r):
		f = cpSymbol
	case unicode.IsMark(r):
		f = cpMark
	case unicode.Is(unicode.Z, r):
		f = cpSeparator
	case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs):
		f = cpControl
	default:
		f = cpUndefined
	}
	if unicode.Is(unicode.White_Space, r) {
		f |= cpWhitespace
	}
	return f
}

// Go's unicode package implements Unicode 15.0; llama.cpp's tables are
// generated from Unicode 15.1, which assigned these code points (all other
// categories agree, checked code point by code point).
func isLetter15_1(r rune) bool { return r >= 0x2EBF0 && r <= 0x2EE5D }              // CJK Extension I (Lo)
func isSymbol15_1(r rune) bool { return r >= 0x2FFC && r <= 0x2FFF || r == 0x31EF } // ideographic description characters (So)

// utf8SeqLen is the length of the UTF-8 sequence that starts with lead byte
// b, judged by its high nibble alone, as llama.cpp's unicode_len_utf8: a
// stray continuation byte counts as 1.
func utf8SeqLen(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

// decodeCodePoints decodes s permissively, as llama.cpp's
// unicode_cpts_from_utf8: the structure of each sequence is checked but not
// overlong forms or surrogates, and each byte that does not start a
// well-formed sequence becomes U+FFFD. Lead bytes F5..F7 can decode to
// values above U+10FFFF; callers must check.
func decodeCodePoints(s string, dst []rune) []rune {
	cont := func(i int) bool { return i < len(s) && s[i]&0xC0 == 0x80 }
	for i := 0; i < len(s); {
		b := s[i]
		switch {
		case b < 0x80:
			dst = append(dst, rune(b))
			i++
		case b&0x40 == 0: // continuation byte
			dst = append(dst, unicode.ReplacementChar)
			i++
		case b&0x20 == 0:
			if !cont(i + 1) {
				dst = append(dst, unicode.ReplacementChar)
				i++
				continue
			}
			dst = append(dst, rune(b&0x1F)<<6|rune(s[i+1]&0x3F))
			i += 2
		case b&0x10 == 0:
			if !cont(i+1) || !cont(i+2) {
				dst = append(dst, unicode.ReplacementChar)
				i++
				continue
			}
			dst = append(dst, rune(b&0x0F)<<12|rune(s[i+1]&0x3F)<<6|rune(s[i+2]&0x3F))
			i += 3
		case b&0x08 == 0:
			if !cont(i+1) || !cont(i+2) || !cont(i+3) {
				dst = append(dst, unicode.ReplacementChar)
				i++
				continue
			}
			dst = append(dst, rune(b&0x07)<<18|rune(s[i+1]&0x3F)<<12|rune(s[i+2]&0x3F)<<6|rune(s[i+3]&0x3F))
			i += 4
		default:
			dst = append(dst, unicode.ReplacementChar)
			i++
		}
	}
	return dst
}

// appendCodePoint appends the UTF-8 encoding of r, surrogates included (as
// llama.cpp's unicode_cpt_to_utf8 does). r must be at most U+10FFFF.
func appendCodePoint(dst []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(dst, byte(r))
	case r < 0x800:
		return append(dst, 0xC0|byte(r>>6), 0x80|byte(r)&0x3F)
	case r < 0x10000:
		return append(dst, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	default:
		return append(dst, 0xF0|byte(r>>18), 0x80|byte(r>>12)&0x3F, 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
}

// GPT-2's byte-level alphabet: every byte is shown as a printable code
// point. Printable Latin-1 bytes map to themselves; the others (controls,
// space, DEL, NBSP, soft hyphen) map to U+0100 upwards in byte order.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	printable := func(b int) bool {
		return b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF
	}
	next := rune(256)
	for b := range 256 {
		r := rune(b)
		if !printable(b) {
			r = next
			next++
		}
		byteToRune[b] = r
		runeToByte[r] = byte(b)
	}
}

// byteLevelDecode maps the text of a byte-level BPE token back to bytes, as
// llama.cpp's llama_decode_text: a code point outside the alphabet is shown
// as "[UNK_BYTE_0x<hex of its UTF-8><token text>]".
func byteLevelDecode(dst []byte, text string) []byte {
	var cps [64]rune
	for _, r := range decodeCodePoints(text, cps[:0]) {
		if b, ok := runeToByte[r]; ok {
			dst = append(dst, b)
			continue
		}
		dst = append(dst, "[UNK_BYTE_0x"...)
		var enc []byte
		if r <= maxCodePoint {
			enc = appendCodePoint(nil, r)
		}
		for _, c := range enc {
			dst = fmt.Appendf(dst, "%02x", c)
		}
		dst = append(dst, text...)
		dst = append(dst, ']')
	}
	return dst
}
