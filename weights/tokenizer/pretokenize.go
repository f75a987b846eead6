package tokenizer

import "unicode"

// A pre-tokenizer splits text into words before BPE merges run on each word
// separately. It works on code points: a split step receives the current
// words as lengths (in code points) and returns finer ones. The steps below
// are hand-written equivalents of the regular expressions llama.cpp uses for
// each `tokenizer.ggml.pre` (Go's regexp has no look-ahead, and llama.cpp
// itself uses hand-written splitters for the common expressions); each one
// reproduces llama.cpp's matching, including its quirks.

// cpText is the input of a split: code points and their classes.
type cpText struct {
	cps   []rune
	flags []cpFlags
}

type splitStep func(t *cpText, words []int) []int

// span is one word being split: positions [start, end) of t. at and flagsAt
// return an out-of-range marker (-1, flags 0) outside it, as llama.cpp's
// splitters see the end of a word.
type span struct {
	t          *cpText
	start, end int
	prev       int // end of the last emitted piece
	out        []int
}

func (s *span) at(i int) rune {
	if i >= s.start && i < s.end {
		return s.t.cps[i]
	}
	return -1
}

func (s *span) flagsAt(i int) cpFlags {
	if i >= s.start && i < s.end {
		return s.t.flags[i]
	}
	return 0
}

// emit closes the piece that ends at end and returns its length.
func (s *span) emit(end int) int {
	n := end - s.prev
	if n > 0 {
		s.out = append(s.out, n)
	}
	s.prev = end
	return n
}

// eachSpan runs split on every word and collects the pieces.
func eachSpan(t *cpText, words []int, split func(s *span)) []int {
	s := span{t: t, out: make([]int, 0, len(words)*2)}
	start := 0
	for _, n := range words {
		s.start, s.end, s.prev = start, start+n, start
		split(&s)
		start += n
	}
	return s.out
}

// contraction reports the length (2 or 3) of an English contraction
// ('s 't 'm 'd 're 've 'll) at pos, or 0. With fold, letters match in either
// case.
func (s *span) contraction(pos int, fold bool) int {
	if s.at(pos) != '\'' || pos+1 >= s.end {
		return 0
	}
	lower := func(r rune) rune {
		if fold && r >= 0 {
			return unicode.ToLower(r)
		}
		return r
	}
	c1 := lower(s.at(pos + 1))
	switch c1 {
	case 's', 't', 'm', 'd':
		return 2
	}
	if pos+2 >= s.end {
		return 0
	}
	c2 := lower(s.at(pos + 2))
	if c1 == 'r' && c2 == 'e' || c1 == 'v' && c2 == 'e' || c1 == 'l' && c2 == 'l' {
		return 3
	}
	return 0
}

// whitespace handles the tail alternatives shared by the splitters,
// `\s+(?!\S)|\s+` (with crlf, `\s*[\r\n]+` first), at pos. It returns the
// new position, or pos when no white space starts there.
func (s *span) whitespace(pos int, crlf bool) int {
	n, lastNL := 0, 0
	for s.flagsAt(pos+n)&cpWhitespace != 0 {
		if c := s.at(pos + n); crlf && (c == '\r' || c == '\n') {
			lastNL = pos + n + 1
		}
		n++
	}
	switch {
	case lastNL > 0: // \s*[\r\n]+
		pos = lastNL
	case n > 1 && s.at(pos+n) != -1: // \s+(?!\S): leave the last space for the next word
		pos += n - 1
	case n > 0: // \s+
		pos += n
	default:
		return pos
	}
	s.emit(pos)
	return pos
}

// splitGPT2 is `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
func splitGPT2(t *cpText, words []int) []int {
	return eachSpan(t, words, func(s *span) {
		for pos := s.start; pos < s.end; {
			if n := s.contraction(pos, false); n > 0 {
				pos += s.emit(pos + n)
				continue
			}
			c := s.at(pos)
			f := s.flagsAt(pos)
			if c == ' ' {
				f = s.flagsAt(pos + 1)
			}
			run := func(class func(cpFlags) bool) bool {
				if !class(f) {
					return false
				}
				if c == ' ' {
					pos++
				}
				for class(s.flagsAt(pos)) {
					pos++
				}
				s.emit(pos)
				return true
			}
			if run(func(f cpFlags) bool { return f&cpLetter != 0 }) ||
				run(func(f cpFlags) bool { return f&cpNumber != 0 }) ||
				run(func(f cpFlags) bool { return f != 0 && f&(cpWhitespace|cpLetter|cpNumber) == 0 }) {
				continue
			}
			if p := s.whitespace(pos, false); p != pos {
				pos = p
				continue
			}
			pos++
			s.emit(pos)
		}
	})
}

// llama3Style configures the splitter shared by the llama3, qwen2 and
// qwen35 expressions:
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// qwen2 takes digits one at a time (\p{N}); qwen35 also lets letter runs
// take combining marks ([\p{L}\p{M}]+ and [^\s\p{L}\p{M}\p{N}]).
type llama3Style struct {
	maxDigits int
	marks     bool
}

func (o llama3Style) split(t *cpText, words []int) []int {
	wordClass := cpLetter
	if o.marks {
		wordClass |= cpMark
	}
	return eachSpan(t, words, func(s *span) {
		for pos := s.start; pos < s.end; {
			if n := s.contraction(pos, true); n > 0 {
				pos += s.emit(pos + n)
				continue
			}
			c := s.at(pos)
			f := s.flagsAt(pos)

			// [^\r\n\p{L}\p{N}]?\p{L}+
			if c != '\r' && c != '\n' && f&cpNumber == 0 &&
				(f&wordClass != 0 || s.flagsAt(pos+1)&wordClass != 0) {
				pos++
				for s.flagsAt(pos)&wordClass != 0 {
					pos++
				}
				s.emit(pos)
				continue
			}

			// \p{N}{1,maxDigits}
			if f&cpNumber != 0 {
				first := pos
				for s.flagsAt(pos)&cpNumber != 0 {
					pos++
					if pos-first >= o.maxDigits {
						s.emit(pos)
						first = pos
					}
				}
				s.emit(pos)
				continue
			}

			// ` ?[^\s\p{L}\p{N}]+[\r\n]*`. As in llama.cpp, the test looks
			// past a leading space but requires only that the space itself
			// exists, so a lone space at the end of a word is taken here.
			other := func(f cpFlags) bool { return f != 0 && f&(cpWhitespace|wordClass|cpNumber) == 0 }
			f2 := f
			if c == ' ' {
				f2 = s.flagsAt(pos + 1)
			}
			if f2&(cpWhitespace|wordClass|cpNumber) == 0 && f != 0 {
				if c == ' ' {
					pos++
				}
				for other(s.flagsAt(pos)) {
					pos++
				}
				for c := s.at(pos); c == '\r' || c == '\n'; c = s.at(pos) {
					pos++
				}
				s.emit(pos)
				continue
			}

			if p := s.whitespace(pos, true); p != pos {
				pos = p
				continue
			}
			pos++
			s.emit(pos)
		}
	})
}

// isolate returns a step that splits out every maximal run of code points
// in class (as a std::regex `[class]+` iterated over each word): the runs
// and the text between them become separate words. With single, each code
// point of a run is its own word (`[class]`).
func isolate(class func(r rune, f cpFlags) bool, single bool) splitStep {
	return func(t *cpText, words []int) []int {
		return eachSpan(t, words, func(s *span) {
			pos := s.start
			for pos < s.end {
				if !class(t.cps[pos], t.flags[pos]) {
					pos++
					continue
				}
				s.emit(pos)
				if single {
					pos++
				} else {
					for pos < s.end && class(t.cps[pos], t.flags[pos]) {
						pos++
					}
				}
				s.emit(pos)
			}
			s.emit(s.end)
		})
	}
}

// splitDigitTriples splits out every run of three ASCII digits, left to
// right (`[0-9][0-9][0-9]`).
func splitDigitTriples(t *cpText, words []int) []int {
	digit := func(i int) bool { return t.cps[i] >= '0' && t.cps[i] <= '9' }
	return eachSpan(t, words, func(s *span) {
		for pos := s.start; pos+3 <= s.end; {
			if digit(pos) && digit(pos+1) && digit(pos+2) {
				s.emit(pos)
				pos += 3
				s.emit(pos)
				continue
			}
			pos++
		}
		s.emit(s.end)
	})
}

// splitNewlines is `[^\n]+|[\n]+`: runs of newlines and runs of anything else.
func splitNewlines(t *cpText, words []int) []int {
	return eachSpan(t, words, func(s *span) {
		for pos := s.start; pos < s.end; {
			nl := t.cps[pos] == '\n'
			for pos < s.end && (t.cps[pos] == '\n') == nl {
				pos++
			}
			s.emit(pos)
		}
	})
}

// Character classes of the isolating steps.
func isNumberClass(_ rune, f cpFlags) bool { return f&cpNumber != 0 }

// isPunctClass is `[\p{P}\$\+<=>\^~\|]` (the default pre-tokenizer).
func isPunctClass(r rune, f cpFlags) bool {
	return f&cpPunctuation != 0 || r == '$' || r == '+' || r == '<' || r == '=' || r == '>' || r == '^' || r == '~' || r == '|'
}

// isFalconPunctClass is `[\p{P}\$\+<=>\^~\|\x60]` (falcon adds the backtick).
func isFalconPunctClass(r rune, f cpFlags) bool { return isPunctClass(r, f) || r == '`' }

// preSteps returns the split steps of a pre-tokenizer kind.
func preSteps(k preKind) []splitStep {
	llama3 := llama3Style{maxDigits: 3}.split
	qwen2 := llama3Style{maxDigits: 1}.split
	switch k {
	case preGPT2:
		return []splitStep{splitGPT2}
	case preLlama3:
		return []splitStep{llama3}
	case preQwen2:
		return []splitStep{qwen2}
	case preQwen35:
		return []splitStep{llama3Style{maxDigits: 1, marks: true}.split}
	case preLaguna:
		return []splitStep{splitNewlines, qwen2}
	case preStarCoder:
		return []splitStep{isolate(isNumberClass, true), splitGPT2}
	case preFalcon:
		return []splitStep{isolate(isFalconPunctClass, false), splitGPT2, splitDigitTriples}
	default: // preDefault
		return []splitStep{isolate(isPunctClass, false), splitGPT2, isolate(isNumberClass, false), splitDigitTriples}
	}
}
