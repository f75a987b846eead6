// Package relay is the session protocol /strata/session/1.0.0: the frames a
// client and the stages of a chain exchange, and the encodings of the hidden
// states they carry.
//
// # Wire format
//
// A frame is a 4-byte big-endian payload length followed by a msgpack
// payload. The payload is an array whose first element is the [Kind] and
// whose other elements are the frame's fields, in the order listed on each
// type, with an exact element count per kind. Byte strings ([16]byte session
// ids, [32]byte hashes, activations, signatures) are msgpack bin, text is
// msgpack str (valid UTF-8), numbers are msgpack non-negative integers. A
// payload is at most [MaxControlFrame] bytes, except a [Step], which is at
// most its activation cap plus [StepOverhead].
//
// Decoding is strict and allocation-bounded: every length is checked against
// the bytes left and the per-field cap before anything is reserved, trailing
// bytes are an error, and every error wraps [ErrFrame].
package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/weights"
)

// Protocol is the libp2p protocol id of the session protocol.
const Protocol = "/strata/session/1.0.0"

// Limits of a frame.
const (
	MaxControlFrame           = 64 << 10 // payload bytes of every kind but Step
	StepOverhead              = 256      // payload bytes of a Step besides its activations
	DefaultMaxActivationBytes = 8 << 20  // activation bytes of a Step unless configured
	MaxLength                 = 1 << 20  // positions of a session (Open.MaxLength, Step positions)
	MaxDim                    = 1 << 16  // hidden size
	MaxNextHops               = 16       // entries of Open.NextHops
	MaxHopLen                 = 512      // bytes of one next hop (a multiaddr or peer id)
	MaxPeerIDLen              = 128      // bytes of Receipt.PeerID
	MaxSignatureLen           = 256      // bytes of Receipt.Signature
	MaxMessageLen             = 1024     // bytes of Error.Message
	MaxTimeoutMS              = 3600_000 // Open.TimeoutMS: at most an hour
)

// ErrFrame is returned for a frame that is malformed, truncated, oversized,
// of an unknown kind, out of range or followed by trailing bytes. A stream
// that yields it should be reset.
var ErrFrame = errors.New("relay: malformed frame")

// Kind tags the type of a frame on the wire.
type Kind uint8

// Frame kinds.
const (
	KindOpen     Kind = 1
	KindStep     Kind = 2
	KindClose    Kind = 3
	KindReceipt  Kind = 4
	KindError    Kind = 5
	KindReady    Kind = 6
	KindReroute  Kind = 7
	KindMoved    Kind = 8
	KindMigrate  Kind = 9
	KindRollback Kind = 10
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindOpen:
		return "open"
	case KindStep:
		return "step"
	case KindClose:
		return "close"
	case KindReceipt:
		return "receipt"
	case KindError:
		return "error"
	case KindReady:
		return "ready"
	case KindReroute:
		return "reroute"
	case KindMoved:
		return "moved"
	case KindMigrate:
		return "migrate"
	case KindRollback:
		return "rollback"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// fields is the number of array elements of each kind, the kind included.
var fields = [...]int{KindOpen: 10, KindStep: 8, KindClose: 2, KindReceipt: 10, KindError: 4,
	KindReady: 3, KindReroute: 4, KindMoved: 4, KindMigrate: 15, KindRollback: 3}

// Frame is one message of the session protocol: *Open, *Step, *Close,
// *Receipt, *Error, *Ready, *Reroute, *Rollback, *Moved or *Migrate.
type Frame interface {
	Kind() Kind
	// Validate reports the first field out of range, wrapped in ErrFrame.
	Validate() error
}

// SessionID names a session; the client picks it at random.
type SessionID [16]byte

// Open starts a session on a stage; the stage answers [Ready] or [Error].
// Wire order: SessionID, Model, Span.Start, Span.End, MaxLength, Encoding,
// NextHops, TimeoutMS, Upstream.
type Open struct {
	SessionID SessionID
	Model     weights.ModelID
	Span      dht.Span // blocks [Start, End) this stage runs
	MaxLength int      // positions the session may reach, 1..MaxLength
	Encoding  Encoding // of the activations of its steps
	// NextHops are the multiaddrs of the next stage, each ending in
	// /p2p/<its peer id> (one peer); empty: this is the last stage.
	NextHops  []string
	TimeoutMS uint32 // idle time after which the stage drops the session, 1..MaxTimeoutMS
	// Upstream is the peer id of the stage that pushes steps to this one;
	// empty: the client sends them itself.
	Upstream string
}

// Ready answers an Open (or the client's attach to a migrated session):
// the session exists and holds Len positions. Wire order: SessionID, Len.
type Ready struct {
	SessionID SessionID
	Len       int
}

// Reroute changes the neighbours of a session after a stage was replaced.
// Wire order: SessionID, Upstream, NextHops (as in [Open]).
type Reroute struct {
	SessionID SessionID
	Upstream  string
	NextHops  []string
}

// Rollback asks a stage to forget the positions from Len on (the end of
// an earlier step), so that they can be computed again from other inputs:
// a replica whose input was wrong is repaired this way. The stage answers
// [Ready]. Wire order: SessionID, Len.
type Rollback struct {
	SessionID SessionID
	Len       int
}

// Moved tells the client that a leaving stage handed its session, KV cache
// included, to another peer. Wire order: SessionID, Peer, Addrs.
type Moved struct {
	SessionID SessionID
	Peer      string   // peer id of the successor
	Addrs     []string // its multiaddrs
}

// Migrate starts the hand-over of a session between two servers of the
// same span: the session's Open (its current neighbours included), its
// owner, how far it got, and the length of the KV-cache export (shard's
// "SKV1" format) that follows the frame on the stream as raw bytes.
// Wire order: the fields of Open (without its kind), then Owner, Len,
// NextSeq, History, KVBytes.
type Migrate struct {
	Open
	Owner   string   // peer id of the client that opened the session
	Len     int      // positions the KV cache holds
	NextSeq uint64   // the step number the session expects next
	History [32]byte // running hash of the inputs the session consumed
	KVBytes int64    // bytes of the KV export that follow, 0..MaxKVBytes
}

// MaxKVBytes caps a migrated KV cache.
const MaxKVBytes = 16 << 30

// Step carries hidden states for positions [Start, Start+Count). Wire
// order: SessionID, Seq, Start, Count, Dim, Encoding, Activations.
type Step struct {
	SessionID   SessionID
	Seq         uint64   // step number within the session
	Start       int      // first position
	Count       int      // positions, >= 1; Start+Count <= MaxLength
	Dim         int      // hidden size, 1..MaxDim
	Encoding    Encoding // of Activations
	Activations []byte   // Count × Dim values (Dim innermost) in Encoding; decoded, it shares memory with the frame
}

// Close ends a session. Wire order: SessionID.
type Close struct {
	SessionID SessionID
}

// Receipt is what a stage attests for one step. Wire order: SessionID, Seq,
// Span.Start, Span.End, Tokens, InputHash, OutputHash, HistoryHash, PeerID,
// Signature. The signature covers [Receipt.SigningBytes].
type Receipt struct {
	SessionID   SessionID
	Seq         uint64
	Span        dht.Span
	Tokens      int      // positions computed, 1..MaxLength
	InputHash   [32]byte // BLAKE3 of this step's input activations
	OutputHash  [32]byte // BLAKE3 of its output activations
	HistoryHash [32]byte // running hash of every input position the session consumed, this step included: h = BLAKE3(h || BLAKE3(row)) per position, from 32 zero bytes
	PeerID      string   // the signer
	Signature   []byte   // over SigningBytes; may be empty before signing
}

// ErrorCode classifies an [Error] frame.
type ErrorCode uint16

// Error codes.
const (
	CodeInternal    ErrorCode = 1
	CodeBadFrame    ErrorCode = 2
	CodeWrongModel  ErrorCode = 3
	CodeSpan        ErrorCode = 4 // span not served here
	CodeNoSession   ErrorCode = 5
	CodeOutOfOrder  ErrorCode = 6
	CodeOverloaded  ErrorCode = 7
	CodeExpired     ErrorCode = 8
	CodeNextHopFail ErrorCode = 9
)

// Error reports a failure of a session. Wire order: SessionID, Code, Message.
type Error struct {
	SessionID SessionID
	Code      ErrorCode // non-zero
	Message   string
}

// Kind implements [Frame].
func (*Open) Kind() Kind { return KindOpen }

// Kind implements [Frame].
func (*Step) Kind() Kind { return KindStep }

// Kind implements [Frame].
func (*Close) Kind() Kind { return KindClose }

// Kind implements [Frame].
func (*Receipt) Kind() Kind { return KindReceipt }

// Kind implements [Frame].
func (*Error) Kind() Kind { return KindError }

// Kind implements [Frame].
func (*Ready) Kind() Kind { return KindReady }

// Kind implements [Frame].
func (*Reroute) Kind() Kind { return KindReroute }

// Kind implements [Frame].
func (*Moved) Kind() Kind { return KindMoved }

// Kind implements [Frame].
func (*Migrate) Kind() Kind { return KindMigrate }

// Kind implements [Frame].
func (*Rollback) Kind() Kind { return KindRollback }

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFrame, fmt.Sprintf(format, args...))
}

func validText(what, s string, max int) error {
	if len(s) > max || !utf8.ValidString(s) {
		return bad("%s of %d bytes (at most %d, UTF-8)", what, len(s), max)
	}
	return nil
}

// Validate implements [Frame].
func (o *Open) Validate() error {
	if err := o.Span.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	switch {
	case o.MaxLength < 1 || o.MaxLength > MaxLength:
		return bad("max length %d", o.MaxLength)
	case !o.Encoding.Valid():
		return bad("encoding %d", uint8(o.Encoding))
	case o.TimeoutMS < 1 || o.TimeoutMS > MaxTimeoutMS:
		return bad("timeout %d ms", o.TimeoutMS)
	}
	if err := validHops(o.NextHops); err != nil {
		return err
	}
	return validText("upstream", o.Upstream, MaxPeerIDLen)
}

func validHops(hops []string) error {
	if len(hops) > MaxNextHops {
		return bad("%d next hops, at most %d", len(hops), MaxNextHops)
	}
	for i, h := range hops {
		if h == "" {
			return bad("next hop %d is empty", i)
		}
		if err := validText("next hop", h, MaxHopLen); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements [Frame].
func (r *Ready) Validate() error {
	if r.Len < 0 || r.Len > MaxLength {
		return bad("length %d", r.Len)
	}
	return nil
}

// Validate implements [Frame].
func (r *Rollback) Validate() error {
	if r.Len < 0 || r.Len > MaxLength {
		return bad("length %d", r.Len)
	}
	return nil
}

// Validate implements [Frame].
func (r *Reroute) Validate() error {
	if err := validHops(r.NextHops); err != nil {
		return err
	}
	return validText("upstream", r.Upstream, MaxPeerIDLen)
}

// Validate implements [Frame].
func (m *Moved) Validate() error {
	if m.Peer == "" {
		return bad("no successor")
	}
	if err := validHops(m.Addrs); err != nil {
		return err
	}
	return validText("peer", m.Peer, MaxPeerIDLen)
}

// Validate implements [Frame].
func (m *Migrate) Validate() error {
	if err := m.Open.Validate(); err != nil {
		return err
	}
	switch {
	case m.Owner == "":
		return bad("no owner")
	case m.Len < 0 || m.Len > m.MaxLength:
		return bad("length %d of a session of %d", m.Len, m.MaxLength)
	case m.KVBytes < 0 || m.KVBytes > MaxKVBytes:
		return bad("KV export of %d bytes", m.KVBytes)
	}
	return validText("owner", m.Owner, MaxPeerIDLen)
}

// Validate implements [Frame] with the default activation cap.
func (s *Step) Validate() error { return s.validate(DefaultMaxActivationBytes) }

func (s *Step) validate(maxAct int) error {
	switch {
	case s.Count < 1 || s.Start < 0 || s.Count > MaxLength || s.Start > MaxLength-s.Count:
		return bad("positions %d+%d", s.Start, s.Count)
	case s.Dim < 1 || s.Dim > MaxDim:
		return bad("dim %d", s.Dim)
	case !s.Encoding.Valid():
		return bad("encoding %d", uint8(s.Encoding))
	}
	size, err := s.Encoding.Size(s.Count * s.Dim) // <= 2^36: no overflow
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	if size > maxAct {
		return bad("%d activation bytes, at most %d", size, maxAct)
	}
	if len(s.Activations) != size {
		return bad("%d activation bytes for %d×%d %s, want %d", len(s.Activations), s.Count, s.Dim, s.Encoding, size)
	}
	return nil
}

// Validate implements [Frame].
func (*Close) Validate() error { return nil }

// Validate implements [Frame].
func (r *Receipt) Validate() error {
	if err := r.Span.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrFrame, err)
	}
	switch {
	case r.Tokens < 1 || r.Tokens > MaxLength:
		return bad("tokens %d", r.Tokens)
	case len(r.Signature) > MaxSignatureLen:
		return bad("signature of %d bytes, at most %d", len(r.Signature), MaxSignatureLen)
	}
	return validText("peer id", r.PeerID, MaxPeerIDLen)
}

// Validate implements [Frame].
func (e *Error) Validate() error {
	if e.Code == 0 {
		return bad("error code 0")
	}
	return validText("message", e.Message, MaxMessageLen)
}

// receiptDomain starts the signing bytes of a receipt.
const receiptDomain = "strata/receipt/v1\x00"

// SigningBytes returns the canonical bytes a receipt's signature covers,
// independent of any msgpack encoder. Layout (integers big-endian):
//
//	"strata/receipt/v1\x00"  18 bytes, domain separation
//	SessionID                16 bytes
//	Seq                      8 bytes
//	Span.Start, Span.End     4 bytes each
//	Tokens                   4 bytes
//	InputHash                32 bytes
//	OutputHash               32 bytes
//	HistoryHash              32 bytes
//	len(PeerID)              2 bytes
//	PeerID                   len(PeerID) bytes
//
// The Signature field is not covered. Call it on a validated receipt; the
// integer fields are truncated to their width otherwise.
func (r *Receipt) SigningBytes() []byte {
	b := make([]byte, 0, len(receiptDomain)+16+8+12+3*32+2+len(r.PeerID))
	b = append(b, receiptDomain...)
	b = append(b, r.SessionID[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint32(b, uint32(r.Span.Start))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Span.End))
	b = binary.BigEndian.AppendUint32(b, uint32(r.Tokens))
	b = append(b, r.InputHash[:]...)
	b = append(b, r.OutputHash[:]...)
	b = append(b, r.HistoryHash[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.PeerID)))
	return append(b, r.PeerID...)
}

// frameCap is the payload cap of kind k given the activation cap.
func frameCap(k Kind, maxAct int) int {
	if k == KindStep {
		return maxAct + StepOverhead
	}
	return MaxControlFrame
}

// maxActivation resolves a caller's activation cap: <= 0 means the default.
func maxActivation(max int) int {
	if max <= 0 {
		return DefaultMaxActivationBytes
	}
	return min(max, math.MaxInt32-StepOverhead)
}

// EncodeFrame validates f and returns its msgpack payload (without the
// length prefix). maxAct caps a Step's activation bytes; <= 0 means
// [DefaultMaxActivationBytes].
func EncodeFrame(f Frame, maxAct int) ([]byte, error) {
	b, err := appendFrame(f, maxAct)
	if err != nil {
		return nil, err
	}
	return b[4:], nil
}

// appendFrame returns the whole frame: the 4-byte length, then the payload.
func appendFrame(f Frame, maxAct int) ([]byte, error) {
	maxAct = maxActivation(maxAct)
	if f == nil {
		return nil, bad("nil frame")
	}
	var err error
	if s, ok := f.(*Step); ok {
		err = s.validate(maxAct)
	} else {
		err = f.Validate()
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	k := f.Kind()
	if int(k) >= len(fields) || fields[k] == 0 {
		return nil, bad("unknown kind %v", k)
	}
	if s, ok := f.(*Step); ok {
		buf.Grow(4 + len(s.Activations) + 64)
	}
	buf.Write([]byte{0, 0, 0, 0}) // the length, set below
	err = e.EncodeArrayLen(fields[k])
	err = errors.Join(err, e.EncodeUint(uint64(k)))
	hops := func(hs []string) error {
		err := e.EncodeArrayLen(len(hs))
		for _, h := range hs {
			err = errors.Join(err, e.EncodeString(h))
		}
		return err
	}
	open := func(o *Open) error {
		return errors.Join(
			e.EncodeBytes(o.SessionID[:]), e.EncodeBytes(o.Model[:]),
			e.EncodeUint(uint64(o.Span.Start)), e.EncodeUint(uint64(o.Span.End)),
			e.EncodeUint(uint64(o.MaxLength)), e.EncodeUint(uint64(o.Encoding)),
			hops(o.NextHops), e.EncodeUint(uint64(o.TimeoutMS)), e.EncodeString(o.Upstream))
	}
	switch f := f.(type) {
	case *Open:
		err = errors.Join(err, open(f))
	case *Ready:
		err = errors.Join(err, e.EncodeBytes(f.SessionID[:]), e.EncodeUint(uint64(f.Len)))
	case *Rollback:
		err = errors.Join(err, e.EncodeBytes(f.SessionID[:]), e.EncodeUint(uint64(f.Len)))
	case *Reroute:
		err = errors.Join(err, e.EncodeBytes(f.SessionID[:]), e.EncodeString(f.Upstream), hops(f.NextHops))
	case *Moved:
		err = errors.Join(err, e.EncodeBytes(f.SessionID[:]), e.EncodeString(f.Peer), hops(f.Addrs))
	case *Migrate:
		err = errors.Join(err, open(&f.Open), e.EncodeString(f.Owner), e.EncodeUint(uint64(f.Len)),
			e.EncodeUint(f.NextSeq), e.EncodeBytes(f.History[:]), e.EncodeUint(uint64(f.KVBytes)))
	case *Step:
		err = errors.Join(err,
			e.EncodeBytes(f.SessionID[:]), e.EncodeUint(f.Seq),
			e.EncodeUint(uint64(f.Start)), e.EncodeUint(uint64(f.Count)),
			e.EncodeUint(uint64(f.Dim)), e.EncodeUint(uint64(f.Encoding)),
			e.EncodeBytes(f.Activations))
	case *Close:
		err = errors.Join(err, e.EncodeBytes(f.SessionID[:]))
	case *Receipt:
		err = errors.Join(err,
			e.EncodeBytes(f.SessionID[:]), e.EncodeUint(f.Seq),
			e.EncodeUint(uint64(f.Span.Start)), e.EncodeUint(uint64(f.Span.End)),
			e.EncodeUint(uint64(f.Tokens)),
			e.EncodeBytes(f.InputHash[:]), e.EncodeBytes(f.OutputHash[:]), e.EncodeBytes(f.HistoryHash[:]),
			e.EncodeString(f.PeerID), e.EncodeBytes(append([]byte{}, f.Signature...))) // bin, never nil
	case *Error:
		err = errors.Join(err,
			e.EncodeBytes(f.SessionID[:]), e.EncodeUint(uint64(f.Code)), e.EncodeString(f.Message))
	default:
		return nil, bad("unknown frame type %T", f)
	}
	if err != nil {
		return nil, fmt.Errorf("relay: encode %v: %w", k, err)
	}
	b := buf.Bytes()
	if c := frameCap(k, maxAct); len(b)-4 > c {
		return nil, bad("%v of %d bytes, at most %d", k, len(b)-4, c)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b, nil
}

// decoder reads the elements of one payload.
type decoder struct {
	b []byte
	r *bytes.Reader
	d *msgpack.Decoder
}

func (d *decoder) wrap(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return bad("%s: truncated", what)
	}
	return fmt.Errorf("%w: %s: %w", ErrFrame, what, err)
}

// raw returns the next bin (or str, if text) value of at most max bytes, as
// a sub-slice of the payload: nothing is allocated.
func (d *decoder) raw(what string, max int, text bool) ([]byte, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return nil, d.wrap(what, err)
	}
	if text && !msgpcode.IsString(c) || !text && !msgpcode.IsBin(c) {
		return nil, bad("%s: wrong type (code %#x)", what, c)
	}
	n, err := d.d.DecodeBytesLen()
	if err != nil {
		return nil, d.wrap(what, err)
	}
	if n < 0 || n > max || n > d.r.Len() {
		return nil, bad("%s: length %d (at most %d, %d bytes left)", what, n, max, d.r.Len())
	}
	off := len(d.b) - d.r.Len()
	if _, err := d.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, d.wrap(what, err)
	}
	return d.b[off : off+n : off+n], nil
}

// fixed reads a bin value of exactly len(dst) bytes into dst.
func (d *decoder) fixed(what string, dst []byte) error {
	v, err := d.raw(what, len(dst), false)
	if err != nil {
		return err
	}
	if len(v) != len(dst) {
		return bad("%s of %d bytes, want %d", what, len(v), len(dst))
	}
	copy(dst, v)
	return nil
}

// text reads a str value of at most max bytes of valid UTF-8.
func (d *decoder) text(what string, max int) (string, error) {
	v, err := d.raw(what, max, true)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(v) {
		return "", bad("%s is not UTF-8", what)
	}
	return string(v), nil
}

// uint reads a non-negative integer of at most max.
func (d *decoder) uint(what string, max uint64) (uint64, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return 0, d.wrap(what, err)
	}
	if !msgpcode.IsFixedNum(c) && (c < msgpcode.Uint8 || c > msgpcode.Int64) {
		return 0, bad("%s: not an integer (code %#x)", what, c)
	}
	if msgpcode.IsFixedNum(c) && int8(c) < 0 || c >= msgpcode.Int8 && c <= msgpcode.Int64 {
		v, err := d.d.DecodeInt64()
		if err != nil {
			return 0, d.wrap(what, err)
		}
		if v < 0 || uint64(v) > max {
			return 0, bad("%s: %d out of range", what, v)
		}
		return uint64(v), nil
	}
	v, err := d.d.DecodeUint64()
	if err != nil {
		return 0, d.wrap(what, err)
	}
	if v > max {
		return 0, bad("%s: %d out of range", what, v)
	}
	return v, nil
}

// small reads a non-negative integer of at most max as an int.
func (d *decoder) small(what string, max int) (int, error) {
	v, err := d.uint(what, uint64(max))
	return int(v), err
}

// DecodeFrame parses and validates one payload (without the length
// prefix). maxAct caps a Step's activation bytes; <= 0 means
// [DefaultMaxActivationBytes]. A decoded Step's Activations share memory
// with b. It never allocates much beyond the frame struct and its strings:
// every declared length is checked against the bytes left and its cap first.
func DecodeFrame(b []byte, maxAct int) (Frame, error) {
	maxAct = maxActivation(maxAct)
	if len(b) > maxAct+StepOverhead && len(b) > MaxControlFrame {
		return nil, bad("payload of %d bytes, at most %d", len(b), max(maxAct+StepOverhead, MaxControlFrame))
	}
	r := bytes.NewReader(b)
	d := &decoder{b: b, r: r, d: msgpack.NewDecoder(r)} // r is a ByteScanner: read unbuffered
	c, err := d.d.PeekCode()
	if err != nil {
		return nil, d.wrap("frame", err)
	}
	if !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return nil, bad("frame is not an array (code %#x)", c)
	}
	n, err := d.d.DecodeArrayLen()
	if err != nil {
		return nil, d.wrap("frame", err)
	}
	kv, err := d.uint("kind", 255)
	if err != nil {
		return nil, err
	}
	k := Kind(kv)
	if int(k) >= len(fields) || fields[k] == 0 {
		return nil, bad("unknown kind %d", kv)
	}
	if n != fields[k] {
		return nil, bad("%v of %d elements, want %d", k, n, fields[k])
	}
	if c := frameCap(k, maxAct); len(b) > c {
		return nil, bad("%v of %d bytes, at most %d", k, len(b), c)
	}
	var f Frame
	switch k {
	case KindOpen:
		f, err = d.open()
	case KindStep:
		f, err = d.step(maxAct)
	case KindClose:
		var cl Close
		err = d.fixed("session id", cl.SessionID[:])
		f = &cl
	case KindReceipt:
		f, err = d.receipt()
	case KindError:
		f, err = d.error()
	case KindReady:
		f, err = d.ready()
	case KindRollback:
		var r *Ready
		if r, err = d.ready(); r != nil {
			f = &Rollback{SessionID: r.SessionID, Len: r.Len}
		}
	case KindReroute:
		f, err = d.route()
	case KindMoved:
		f, err = d.moved()
	case KindMigrate:
		f, err = d.migrate()
	}
	if err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, bad("%d bytes after the %v frame", r.Len(), k)
	}
	if s, ok := f.(*Step); ok {
		err = s.validate(maxAct)
	} else {
		err = f.Validate()
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (d *decoder) open() (*Open, error) {
	var o Open
	if err := d.fixed("session id", o.SessionID[:]); err != nil {
		return nil, err
	}
	if err := d.fixed("model id", o.Model[:]); err != nil {
		return nil, err
	}
	var err error
	if o.Span.Start, err = d.small("span start", dht.MaxBlocks); err != nil {
		return nil, err
	}
	if o.Span.End, err = d.small("span end", dht.MaxBlocks); err != nil {
		return nil, err
	}
	if o.MaxLength, err = d.small("max length", MaxLength); err != nil {
		return nil, err
	}
	enc, err := d.small("encoding", 255)
	if err != nil {
		return nil, err
	}
	o.Encoding = Encoding(enc)
	if o.NextHops, err = d.hops("next hops"); err != nil {
		return nil, err
	}
	t, err := d.small("timeout", MaxTimeoutMS)
	if err != nil {
		return nil, err
	}
	o.TimeoutMS = uint32(t)
	if o.Upstream, err = d.text("upstream", MaxPeerIDLen); err != nil {
		return nil, err
	}
	return &o, nil
}

// hops reads an array of at most MaxNextHops multiaddr strings.
func (d *decoder) hops(what string) ([]string, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return nil, d.wrap(what, err)
	}
	if !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return nil, bad("%s: not an array (code %#x)", what, c)
	}
	n, err := d.d.DecodeArrayLen()
	if err != nil {
		return nil, d.wrap(what, err)
	}
	if n < 0 || n > MaxNextHops {
		return nil, bad("%s: %d entries, at most %d", what, n, MaxNextHops)
	}
	if n == 0 {
		return nil, nil
	}
	hs := make([]string, n)
	for i := range hs {
		if hs[i], err = d.text(what, MaxHopLen); err != nil {
			return nil, err
		}
	}
	return hs, nil
}

func (d *decoder) ready() (*Ready, error) {
	var r Ready
	if err := d.fixed("session id", r.SessionID[:]); err != nil {
		return nil, err
	}
	var err error
	r.Len, err = d.small("length", MaxLength)
	return &r, err
}

func (d *decoder) route() (*Reroute, error) {
	var r Reroute
	if err := d.fixed("session id", r.SessionID[:]); err != nil {
		return nil, err
	}
	var err error
	if r.Upstream, err = d.text("upstream", MaxPeerIDLen); err != nil {
		return nil, err
	}
	r.NextHops, err = d.hops("next hops")
	return &r, err
}

func (d *decoder) moved() (*Moved, error) {
	var m Moved
	if err := d.fixed("session id", m.SessionID[:]); err != nil {
		return nil, err
	}
	var err error
	if m.Peer, err = d.text("peer", MaxPeerIDLen); err != nil {
		return nil, err
	}
	m.Addrs, err = d.hops("addrs")
	return &m, err
}

func (d *decoder) migrate() (*Migrate, error) {
	o, err := d.open()
	if err != nil {
		return nil, err
	}
	m := Migrate{Open: *o}
	if m.Owner, err = d.text("owner", MaxPeerIDLen); err != nil {
		return nil, err
	}
	if m.Len, err = d.small("length", MaxLength); err != nil {
		return nil, err
	}
	if m.NextSeq, err = d.uint("next seq", math.MaxUint64); err != nil {
		return nil, err
	}
	if err := d.fixed("history", m.History[:]); err != nil {
		return nil, err
	}
	kv, err := d.uint("kv bytes", MaxKVBytes)
	m.KVBytes = int64(kv)
	return &m, err
}

func (d *decoder) step(maxAct int) (*Step, error) {
	var s Step
	if err := d.fixed("session id", s.SessionID[:]); err != nil {
		return nil, err
	}
	var err error
	if s.Seq, err = d.uint("seq", math.MaxUint64); err != nil {
		return nil, err
	}
	if s.Start, err = d.small("start", MaxLength); err != nil {
		return nil, err
	}
	if s.Count, err = d.small("count", MaxLength); err != nil {
		return nil, err
	}
	if s.Dim, err = d.small("dim", MaxDim); err != nil {
		return nil, err
	}
	enc, err := d.small("encoding", 255)
	if err != nil {
		return nil, err
	}
	s.Encoding = Encoding(enc)
	if s.Activations, err = d.raw("activations", maxAct, false); err != nil {
		return nil, err
	}
	return &s, nil
}

func (d *decoder) receipt() (*Receipt, error) {
	var r Receipt
	if err := d.fixed("session id", r.SessionID[:]); err != nil {
		return nil, err
	}
	var err error
	if r.Seq, err = d.uint("seq", math.MaxUint64); err != nil {
		return nil, err
	}
	if r.Span.Start, err = d.small("span start", dht.MaxBlocks); err != nil {
		return nil, err
	}
	if r.Span.End, err = d.small("span end", dht.MaxBlocks); err != nil {
		return nil, err
	}
	if r.Tokens, err = d.small("tokens", MaxLength); err != nil {
		return nil, err
	}
	for _, h := range []struct {
		what string
		dst  []byte
	}{{"input hash", r.InputHash[:]}, {"output hash", r.OutputHash[:]}, {"history hash", r.HistoryHash[:]}} {
		if err := d.fixed(h.what, h.dst); err != nil {
			return nil, err
		}
	}
	if r.PeerID, err = d.text("peer id", MaxPeerIDLen); err != nil {
		return nil, err
	}
	sig, err := d.raw("signature", MaxSignatureLen, false)
	if err != nil {
		return nil, err
	}
	if len(sig) > 0 {
		r.Signature = bytes.Clone(sig)
	}
	return &r, nil
}

func (d *decoder) error() (*Error, error) {
	var e Error
	if err := d.fixed("session id", e.SessionID[:]); err != nil {
		return nil, err
	}
	code, err := d.small("code", math.MaxUint16)
	if err != nil {
		return nil, err
	}
	e.Code = ErrorCode(code)
	if e.Message, err = d.text("message", MaxMessageLen); err != nil {
		return nil, err
	}
	return &e, nil
}

// WriteFrame encodes f and writes it with its 4-byte big-endian length in
// one Write. maxAct is as in [EncodeFrame].
func WriteFrame(w io.Writer, f Frame, maxAct int) error {
	b, err := appendFrame(f, maxAct)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ReadFrame reads and decodes one frame. The declared length is checked
// against the largest cap (maxAct + [StepOverhead] or [MaxControlFrame])
// before the payload is reserved, and against its kind's cap on decode.
// maxAct is as in [EncodeFrame]. I/O errors are returned as they are
// (io.EOF before a header means a clean end); a bad frame wraps [ErrFrame].
func ReadFrame(r io.Reader, maxAct int) (Frame, error) {
	maxAct = maxActivation(maxAct)
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, bad("frame header truncated")
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if limit := max(maxAct+StepOverhead, MaxControlFrame); uint64(n) > uint64(limit) {
		return nil, bad("frame of %d bytes, at most %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, bad("frame of %d bytes truncated", n)
		}
		return nil, err
	}
	return DecodeFrame(b, maxAct)
}
