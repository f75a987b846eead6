package tokenizer

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// MaxTextLen is the longest text Encode accepts, in bytes (symbol offsets
// are 32-bit).
const MaxTextLen = 1 << 28

// Encode tokenizes text as llama.cpp's common_tokenize(text, addSpecial,
// parseSpecial). With addSpecial, BOS and EOS are added when the model asks
// for them (AddBOS, AddEOS). With parseSpecial, the texts of control tokens
// (such as "<s>") in text become those tokens; user-defined tokens are
// always recognised.
//
// Characters that the vocabulary cannot represent (neither a token nor
// byte tokens for their bytes) become the unknown token, one per character,
// or an error wrapping ErrUnknownText when the vocabulary has none.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	if len(text) > MaxTextLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLong, len(text), MaxTextLen)
	}
	out := make([]int32, 0, len(text)/3+2)
	if addSpecial && t.addBOS {
		out = append(out, t.bos)
	}
	prevSpecial := true // SPM puts a space before text that starts the input or follows a special token
	var err error
	for _, f := range t.partition(text, parseSpecial) {
		if f.token >= 0 {
			out = append(out, f.token)
			prevSpecial = true
			continue
		}
		frag := text[f.start:f.end]
		if t.bpe {
			out, err = t.encodeBPE(out, frag)
		} else {
			out, err = t.encodeSPM(out, frag, t.addSpace && prevSpecial)
		}
		if err != nil {
			return nil, err
		}
		prevSpecial = false
	}
	if addSpecial && t.addEOS {
		out = append(out, t.eos)
	}
	return out, nil
}

// fragment is a piece of the input: a special token (token >= 0) or the
// text [start, end).
type fragment struct {
	token      int32
	start, end int
}

// partition cuts the special tokens out of text, longest first, as
// llama.cpp's tokenizer_st_partition. Control and unknown tokens are cut
// only with parseSpecial. A token with the lstrip (rstrip) attribute drops
// the white space before (after) it.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{token: -1, start: 0, end: len(text)}}
	present := t.specialsIn(text)
	if present == nil {
		return frags
	}
	var next []fragment
	for k, id := range t.special {
		a := t.attrs[id]
		if !present[k] || !parseSpecial && a&(attrControl|attrUnknown) != 0 {
			continue
		}
		tok := t.tokens[id]
		found := false
		for _, f := range frags {
			if f.token < 0 && strings.Contains(text[f.start:f.end], tok) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		next = next[:0]
		for _, f := range frags {
			if f.token >= 0 {
				next = append(next, f)
				continue
			}
			pos, end := f.start, f.end
			for {
				i := strings.Index(text[pos:end], tok)
				if i < 0 {
					if pos < end {
						next = append(next, fragment{token: -1, start: pos, end: end})
					}
					break
				}
				m := pos + i
				left := m
				if a&attrLStrip != 0 {
					for left > pos && isCSpace(text[left-1]) {
						left--
					}
				}
				if left > pos {
					next = append(next, fragment{token: -1, start: pos, end: left})
				}
				next = append(next, fragment{token: id})
				pos = m + len(tok)
				if a&attrRStrip != 0 {
					for pos < end && isCSpace(text[pos]) {
						pos++
					}
				}
			}
		}
		frags, next = next, frags
	}
	return frags
}

// specialTrie finds the special tokens in a text: node 0 is the root, whose
// children are in root; deeper nodes keep theirs in a map.
type specialTrie struct {
	root  [256]int32 // child of the root per byte, 0 for none
	nodes []trieNode
}

type trieNode struct {
	next    map[byte]int32
	special int32 // index into Tokenizer.special of the token ending here, or -1
}

func (t *Tokenizer) buildTrie() {
	tr := &t.trie
	tr.nodes = []trieNode{{special: -1}}
	for k, id := range t.special {
		n := int32(0)
		for _, c := range []byte(t.tokens[id]) {
			var child int32
			if n == 0 {
				child = tr.root[c]
			} else {
				child = tr.nodes[n].next[c]
			}
			if child == 0 {
				child = int32(len(tr.nodes))
				tr.nodes = append(tr.nodes, trieNode{special: -1})
				if n == 0 {
					tr.root[c] = child
				} else {
					if tr.nodes[n].next == nil {
						tr.nodes[n].next = map[byte]int32{}
					}
					tr.nodes[n].next[c] = child
				}
			}
			n = child
		}
		tr.nodes[n].special = int32(k)
	}
}

// specialsIn reports which special tokens (by index into t.special) occur
// in text, or nil when none does. Only those can be cut out of it.
func (t *Tokenizer) specialsIn(text string) []bool {
	var present []bool
	for i := 0; i < len(text); i++ {
		n := t.trie.root[text[i]]
		for j := i + 1; n != 0; j++ {
			if k := t.trie.nodes[n].special; k >= 0 {
				if present == nil {
					present = make([]bool, len(t.special))
				}
				present[k] = true
			}
			if j == len(text) {
				break
			}
			n = t.trie.nodes[n].next[text[j]]
		}
	}
	return present
}

// isCSpace is C's isspace in the "C" locale.
func isCSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// unknown returns the token for text that the vocabulary cannot represent.
func (t *Tokenizer) unknown(s string) (int32, error) {
	if t.unk >= 0 {
		return t.unk, nil
	}
	r, _ := utf8.DecodeRuneInString(s)
	return -1, fmt.Errorf("%w: %q (U+%04X) has no token, no byte tokens and the vocabulary has no unknown token", ErrUnknownText, s, r)
}

// symbol is a piece of the word being merged: text [start, start+n),
// linked to its neighbours. Merged-away symbols have n == 0.
type symbol struct {
	prev, next int32
	start, n   int32
}

// bigram is a candidate merge of the adjacent symbols left and right,
// which had sizes lsize and rsize when it was queued. Bigrams come out of
// the queue by ascending key: for SPM the highest score first, for BPE the
// lowest rank first, and then the leftmost, as in llama.cpp.
type bigram struct {
	key          uint64
	left, right  int32
	lsize, rsize int32
}

// spmKey orders SPM bigrams: descending score, then ascending left.
func spmKey(score float32, left int32) uint64 {
	if score == 0 {
		score = 0 // -0 ties with +0
	}
	u := math.Float32bits(score)
	if u&(1<<31) != 0 {
		u = ^u
	} else {
		u |= 1 << 31
	}
	return uint64(^u)<<32 | uint64(uint32(left))
}

// bpeKey orders BPE bigrams: ascending rank, then ascending left.
func bpeKey(rank, left int32) uint64 {
	return uint64(uint32(rank))<<32 | uint64(uint32(left))
}

// encodeSPM appends the tokens of one text fragment, as llama.cpp's
// llm_tokenizer_spm_session: spaces become U+2581, the text is cut into
// UTF-8 characters (by the lead byte alone, so invalid bytes just become
// short or odd symbols), and the adjacent pair whose concatenation is the
// best-scoring token is merged until no pair is a token.
func (t *Tokenizer) encodeSPM(out []int32, frag string, spacePrefix bool) ([]int32, error) {
	var b strings.Builder
	b.Grow(len(frag)*3 + 3)
	if spacePrefix {
		b.WriteString("▁")
	}
	for i := 0; i < len(frag); i++ {
		if frag[i] == ' ' {
			b.WriteString("▁")
		} else {
			b.WriteByte(frag[i])
		}
	}
	text := b.String()

	syms := make([]symbol, 0, len(text))
	for offs := 0; offs < len(text); {
		n := min(utf8SeqLen(text[offs]), len(text)-offs)
		i := int32(len(syms))
		next := i + 1
		if offs+n == len(text) {
			next = -1
		}
		syms = append(syms, symbol{prev: i - 1, next: next, start: int32(offs), n: int32(n)})
		offs += n
	}

	var q queue
	tryAdd := func(left, right int32) {
		if left < 0 || right < 0 {
			return
		}
		l, r := syms[left], syms[right]
		id, ok := t.ids[text[l.start:l.start+l.n+r.n]]
		if !ok {
			return
		}
		q.push(bigram{key: spmKey(t.scores[id], left), left: left, right: right, lsize: l.n, rsize: r.n})
	}
	for i := int32(1); i < int32(len(syms)); i++ {
		tryAdd(i-1, i)
	}
	for len(q) > 0 {
		bg := q.pop()
		l, r := &syms[bg.left], &syms[bg.right]
		// Skip pairs that an earlier merge changed.
		if l.n != bg.lsize || r.n != bg.rsize {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = bg.left
		}
		tryAdd(l.prev, bg.left)
		tryAdd(bg.left, l.next)
	}

	for i := int32(0); i >= 0 && len(syms) > 0; i = syms[i].next {
		s := text[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.ids[s]; ok {
			out = append(out, id)
			continue
		}
		// No token: byte tokens, or the unknown token for the whole symbol.
		var err error
		if out, err = t.appendBytes(out, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// appendBytes appends the byte tokens of s, or the unknown token if one of
// its bytes has none.
func (t *Tokenizer) appendBytes(out []int32, s string) ([]int32, error) {
	for i := 0; i < len(s); i++ {
		if t.byteTokens[s[i]] < 0 {
			id, err := t.unknown(s)
			if err != nil {
				return nil, err
			}
			return append(out, id), nil
		}
	}
	for i := 0; i < len(s); i++ {
		out = append(out, t.byteTokens[s[i]])
	}
	return out, nil
}

// encodeBPE appends the tokens of one text fragment, as llama.cpp's
// llm_tokenizer_bpe_session: the pre-tokenizer splits it into words, each
// word is mapped to GPT-2's byte alphabet and merged separately.
func (t *Tokenizer) encodeBPE(out []int32, frag string) ([]int32, error) {
	cps := decodeCodePoints(frag, make([]rune, 0, len(frag)))
	tx := cpText{cps: cps, flags: make([]cpFlags, len(cps))}
	for i, r := range cps {
		if r > maxCodePoint {
			return nil, fmt.Errorf("%w: byte sequence decodes to U+%X, beyond U+10FFFF", ErrInvalidUTF8, r)
		}
		tx.flags[i] = flagsOf(r)
	}
	words := []int{len(cps)}
	for _, step := range t.steps {
		words = step(&tx, words)
	}

	var (
		word []byte
		enc  [4]byte
		syms []symbol
		q    queue
	)
	start := 0
	for _, n := range words {
		word = word[:0]
		for _, r := range cps[start : start+n] {
			for _, c := range appendCodePoint(enc[:0], r) {
				word = utf8.AppendRune(word, byteToRune[c])
			}
		}
		start += n
		w := string(word)

		if t.ignoreMerges {
			if id, ok := t.ids[w]; ok {
				out = append(out, id)
				continue
			}
		}

		syms = syms[:0]
		for offs := 0; offs < len(w); {
			c := min(utf8SeqLen(w[offs]), len(w)-offs)
			i := int32(len(syms))
			next := i + 1
			if offs+c == len(w) {
				next = -1
			}
			syms = append(syms, symbol{prev: i - 1, next: next, start: int32(offs), n: int32(c)})
			offs += c
		}
		tryAdd := func(left, right int32) {
			if left < 0 || right < 0 {
				return
			}
			l, r := syms[left], syms[right]
			rank, ok := t.merges[mergePair{w[l.start : l.start+l.n], w[r.start : r.start+r.n]}]
			if !ok {
				return
			}
			q.push(bigram{key: bpeKey(rank, left), left: left, right: right, lsize: l.n, rsize: r.n})
		}
		q = q[:0]
		for i := int32(1); i < int32(len(syms)); i++ {
			tryAdd(i-1, i)
		}
		for len(q) > 0 {
			bg := q.pop()
			l, r := &syms[bg.left], &syms[bg.right]
			// Skip pairs whose symbols changed since they were queued.
			if l.n != bg.lsize || r.n != bg.rsize {
				continue
			}
			l.n += r.n
			r.n = 0
			l.next = r.next
			if r.next >= 0 {
				syms[r.next].prev = bg.left
			}
			tryAdd(l.prev, bg.left)
			tryAdd(bg.left, l.next)
		}

		for _, s := range syms {
			if s.n == 0 {
				continue
			}
			piece := w[s.start : s.start+s.n]
			if id, ok := t.ids[piece]; ok {
				out = append(out, id)
				continue
			}
			// A merge that made no token: fall back to its characters.
			for _, r := range piece {
				id, ok := t.ids[string(r)]
				if !ok {
					var err error
					if id, err = t.unknown(string(r)); err != nil {
						return nil, err
					}
				}
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// queue is a min-heap of bigrams by key. It is 4-ary and moves a hole
// rather than swapping, which halves the cost of a binary heap here.
type queue []bigram

func (q *queue) push(x bigram) {
	h := append(*q, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if h[p].key <= x.key {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
	*q = h
}

func (q *queue) pop() bigram {
	h := *q
	top := h[0]
	n := len(h) - 1
	x := h[n]
	h = h[:n]
	i := 0
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m, mk := c, h[c].key
		for j := c + 1; j < min(c+4, n); j++ {
			if k := h[j].key; k < mk {
				m, mk = j, k
			}
		}
		if x.key <= mk {
			break
		}
		h[i] = h[m]
		i = m
	}
	if n > 0 {
		h[i] = x
	}
	*q = h
	return top
}
