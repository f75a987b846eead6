package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/weights/quant"
)

// Session is one sequence's state on a shard: its KV cache for the
// shard's blocks, keyed by absolute layer index, and its length. Make one
// with Shard.NewSession; Close it to give its memory back.
type Session struct {
	shard  *Shard
	span   Span // absolute blocks this session runs, within the shard's span
	lo, hi int  // the same as local block indices
	maxLen int
	n      int // positions filled
	closed bool
	kvDim  int
	// Per local block: keys and values, [kvDim][maxLen] token-major, as
	// float32 or float16 bits depending on the shard's KVType.
	k32, v32 [][]float32
	k16, v16 [][]uint16
	bytes    int64
}

// NewSession makes a session of all the shard's blocks with room for
// maxLen positions, reserving its KV cache in the shard's budget.
func (s *Shard) NewSession(maxLen int) (*Session, error) {
	return s.NewSessionSpan(s.cfg.Span, maxLen)
}

// NewSessionSpan makes a session that runs only blocks span, a non-empty
// sub-range of the shard's span (a pipeline may use part of a server's
// blocks), with a KV cache for those blocks only.
func (s *Shard) NewSessionSpan(span Span, maxLen int) (*Session, error) {
	h := s.hp
	if span.Len() <= 0 || span.Start < s.cfg.Span.Start || span.End > s.cfg.Span.End {
		return nil, fmt.Errorf("%w: blocks %s are not within this shard's %s", ErrSpan, span, s.cfg.Span)
	}
	if maxLen <= 0 || maxLen > h.ContextLength {
		return nil, fmt.Errorf("%w: session of %d positions; the model's context is %d", ErrContext, maxLen, h.ContextLength)
	}
	if h.VDim() != h.KVDim() {
		return nil, fmt.Errorf("%w: key width %d differs from value width %d", ErrTensor, h.KVDim(), h.VDim())
	}
	kvDim := h.KVDim()
	lo, hi := span.Start-s.cfg.Span.Start, span.End-s.cfg.Span.Start
	bytes := int64(hi-lo) * 2 * int64(maxLen) * int64(kvDim) * int64(s.cfg.KVType.bytes())
	s.mu.Lock()
	if s.cfg.KVBudget > 0 && s.kvUsed+bytes > s.cfg.KVBudget {
		used := s.kvUsed
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %d bytes wanted, %d of %d in use", ErrKVBudget, bytes, used, s.cfg.KVBudget)
	}
	s.kvUsed += bytes
	s.mu.Unlock()
	sess := &Session{shard: s, span: span, lo: lo, hi: hi, maxLen: maxLen, kvDim: kvDim, bytes: bytes}
	for range hi - lo {
		if s.cfg.KVType == KVF16 {
			sess.k16 = append(sess.k16, make([]uint16, maxLen*kvDim))
			sess.v16 = append(sess.v16, make([]uint16, maxLen*kvDim))
		} else {
			sess.k32 = append(sess.k32, make([]float32, maxLen*kvDim))
			sess.v32 = append(sess.v32, make([]float32, maxLen*kvDim))
		}
	}
	return sess, nil
}

// FreeKV returns the bytes of the KV budget not in use (-1 when there is
// no budget).
func (s *Shard) FreeKV() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.KVBudget <= 0 {
		return -1
	}
	return s.cfg.KVBudget - s.kvUsed
}

// Len is the number of positions the session holds.
func (sess *Session) Len() int { return sess.n }

// MaxLen is the session's capacity.
func (sess *Session) MaxLen() int { return sess.maxLen }

// Span is the blocks the session runs.
func (sess *Session) Span() Span { return sess.span }

// KVBytes is the size of the session's KV cache.
func (sess *Session) KVBytes() int64 { return sess.bytes }

// Forward runs the session's blocks on new positions: see [Shard.Forward].
func (sess *Session) Forward(_ context.Context, x []float32) error {
	return sess.shard.Forward(sess, x)
}

// Close frees the session's KV cache. Using a closed session is an error.
func (sess *Session) Close() {
	s := sess.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.closed {
		return
	}
	sess.closed = true
	s.kvUsed -= sess.bytes
	sess.k32, sess.v32, sess.k16, sess.v16 = nil, nil, nil, nil
}

// Rollback forgets positions pos and later, so that they can be replayed
// (after a failure downstream, say).
func (sess *Session) Rollback(pos int) error {
	s := sess.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.closed {
		return fmt.Errorf("%w: session is closed", ErrInput)
	}
	if pos < 0 || pos > sess.n {
		return fmt.Errorf("%w: rollback to %d of a session of %d positions", ErrInput, pos, sess.n)
	}
	sess.n = pos
	return nil
}

// store writes nTok keys and values (token-major, kvDim each) of local
// block li at positions p0...
func (sess *Session) store(li, p0 int, k, v []float32) {
	off := p0 * sess.kvDim
	if sess.k16 != nil {
		kd, vd := sess.k16[li][off:off+len(k)], sess.v16[li][off:off+len(v)]
		for i := range k {
			kd[i] = quant.FP32ToFP16(k[i])
			vd[i] = quant.FP32ToFP16(v[i])
		}
		return
	}
	copy(sess.k32[li][off:], k)
	copy(sess.v32[li][off:], v)
}

// views returns the cache of local block li for positions [0, n).
func (sess *Session) views(li, n int) (k, v kernels.KV) {
	m := n * sess.kvDim
	if sess.k16 != nil {
		return kernels.KV{F16: sess.k16[li][:m]}, kernels.KV{F16: sess.v16[li][:m]}
	}
	return kernels.KV{F32: sess.k32[li][:m]}, kernels.KV{F32: sess.v32[li][:m]}
}

// The KV cache export format (little-endian), for moving a session to
// another node serving the same span:
//
//	"SKV1"  u32 kv type (0 f32, 1 f16)  u32 span start  u32 span end
//	u32 kvDim  u32 positions n
//	then for each block of the span in order: keys [kvDim][n], values [kvDim][n]
const kvMagic = "SKV1"

// ErrKVFormat is returned by ImportKV for bytes that are not a KV export
// matching this shard.
var ErrKVFormat = errors.New("shard: malformed or mismatched KV cache export")

// ExportKV serializes the session's KV cache for its filled positions.
func (sess *Session) ExportKV() ([]byte, error) {
	s := sess.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.closed {
		return nil, fmt.Errorf("%w: session is closed", ErrInput)
	}
	elem := s.cfg.KVType.bytes()
	m := sess.n * sess.kvDim
	nb := sess.hi - sess.lo
	out := make([]byte, 0, 24+nb*2*m*elem)
	out = append(out, kvMagic...)
	for _, x := range []int{int(s.cfg.KVType), sess.span.Start, sess.span.End, sess.kvDim, sess.n} {
		out = binary.LittleEndian.AppendUint32(out, uint32(x))
	}
	for li := range nb {
		if sess.k16 != nil {
			for _, arr := range [][]uint16{sess.k16[li][:m], sess.v16[li][:m]} {
				for _, x := range arr {
					out = binary.LittleEndian.AppendUint16(out, x)
				}
			}
			continue
		}
		for _, arr := range [][]float32{sess.k32[li][:m], sess.v32[li][:m]} {
			for _, x := range arr {
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
			}
		}
	}
	return out, nil
}

// ImportKV replaces the session's KV cache with an export from a session
// of a shard with the same span, KV type and width.
func (sess *Session) ImportKV(b []byte) error {
	s := sess.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.closed {
		return fmt.Errorf("%w: session is closed", ErrInput)
	}
	if len(b) < 24 || string(b[:4]) != kvMagic {
		return fmt.Errorf("%w: no header", ErrKVFormat)
	}
	var hdr [5]int
	for i := range hdr {
		hdr[i] = int(binary.LittleEndian.Uint32(b[4+4*i:]))
	}
	typ, start, end, kvDim, n := hdr[0], hdr[1], hdr[2], hdr[3], hdr[4]
	if KVType(typ) != s.cfg.KVType || start != sess.span.Start || end != sess.span.End || kvDim != sess.kvDim {
		return fmt.Errorf("%w: export is %s blocks %d:%d width %d; this session is %s %s width %d",
			ErrKVFormat, KVType(typ), start, end, kvDim, s.cfg.KVType, sess.span, sess.kvDim)
	}
	if n > sess.maxLen {
		return fmt.Errorf("%w: %d positions exceed the session's %d", ErrContext, n, sess.maxLen)
	}
	elem := s.cfg.KVType.bytes()
	m := n * kvDim
	nb := sess.hi - sess.lo
	if want := 24 + nb*2*m*elem; len(b) != want {
		return fmt.Errorf("%w: %d bytes, want %d", ErrKVFormat, len(b), want)
	}
	p := b[24:]
	for li := range nb {
		if sess.k16 != nil {
			for _, arr := range [][]uint16{sess.k16[li][:m], sess.v16[li][:m]} {
				for i := range arr {
					arr[i] = binary.LittleEndian.Uint16(p)
					p = p[2:]
				}
			}
			continue
		}
		for _, arr := range [][]float32{sess.k32[li][:m], sess.v32[li][:m]} {
			for i := range arr {
				arr[i] = math.Float32frombits(binary.LittleEndian.Uint32(p))
				p = p[4:]
			}
		}
	}
	sess.n = n
	return nil
}
