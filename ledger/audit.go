package ledger

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// AuditProtocol is the protocol by which a peer fetches a range of this
// node's chain, to verify it and recompute its balances.
//
// Every frame is a 4-byte big-endian length and that many bytes.
//
// The request is one frame of at most [MaxAuditRequest] bytes: a msgpack
// map {"from": uint, "to": uint}, asking for the records of seq in
// [from, to); a "to" of 0, or past the head, means up to the head.
//
// The response is a header frame of at most [MaxAuditHeader] bytes, a
// msgpack map {"len": uint, "head": bin 32}: the chain's length and its
// last record's hash when the request was served. Record frames follow,
// each one record's encoding (at most [MaxRecordLen] bytes), of seq from,
// from+1, ... in order, at most [MaxRecordsPerResponse] of them; then the
// stream ends. A server may end a response early (its page size); the
// client asks again from where it ended. A request the server refuses
// (from past the head, from past to, malformed, too late, the server
// busy) gets a header {"err": message} and nothing else.
const AuditProtocol protocol.ID = "/strata/ledger/1.0.0"

// Limits of the audit protocol.
const (
	// MaxAuditRequest is the longest request frame.
	MaxAuditRequest = 64
	// MaxAuditHeader is the longest response header or error frame.
	MaxAuditHeader = 2048
	// MaxRecordsPerResponse is the most records one response holds.
	MaxRecordsPerResponse = 1 << 16
	// MaxResponseBytes is the most record bytes a client accepts in one
	// response.
	MaxResponseBytes = 64 << 20
	// maxAuditErr bounds the message of an error frame.
	maxAuditErr = 1024
)

// Defaults of the audit protocol.
const (
	DefaultRequestTimeout  = 10 * time.Second // for the server to read a request
	DefaultResponseTimeout = 30 * time.Second // to write, or read, one response
	DefaultServePageBytes  = 16 << 20         // record bytes after which a server ends a response
	DefaultServeStreams    = 16               // audits a server answers at once
	DefaultAuditPeers      = 256              // chains an Auditor remembers
	DefaultAuditMemory     = 256 << 20        // bytes an Auditor keeps of them
)

// Audit errors.
var (
	// ErrFork is returned by [Auditor.Audit] when the peer served a
	// record that differs from the one of the same seq it served before,
	// both signed by it: it keeps two chains.
	ErrFork = errors.New("ledger: forked chain")
	// ErrRollback is returned by [Auditor.Audit] when the peer served a
	// valid chain shorter than the one it served before: a ledger never
	// loses an acknowledged record, so the peer dropped some.
	ErrRollback = errors.New("ledger: chain rolled back")
	// ErrAuditRefused is returned when the audited peer answers with an
	// error frame.
	ErrAuditRefused = errors.New("ledger: audit refused")
	// ErrAuditResponse is returned for a response that is malformed,
	// oversized, truncated or does not answer the request.
	ErrAuditResponse = errors.New("ledger: malformed audit response")
	// ErrAuditConfig is returned for an invalid audit option.
	ErrAuditConfig = errors.New("ledger: invalid audit configuration")
)

// auditRequest asks for the records of seq in [From, To); To 0 means up
// to the head.
type auditRequest struct {
	From, To uint64
}

// auditHeader starts a response: the chain's length and head hash, or,
// when Err is set, why the request was refused.
type auditHeader struct {
	Len  uint64
	Head [32]byte
	Err  string
}

// Wire keys.
const (
	fieldFrom = "from"
	fieldTo   = "to"
	fieldLen  = "len"
	fieldHead = "head"
	fieldErr  = "err"
)

func encodeAuditRequest(r auditRequest) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	// Writes to a bytes.Buffer do not fail.
	_ = e.EncodeMapLen(2)
	_ = e.EncodeString(fieldFrom)
	_ = e.EncodeUint(r.From)
	_ = e.EncodeString(fieldTo)
	_ = e.EncodeUint(r.To)
	return buf.Bytes()
}

// decodeAuditRequest parses a request strictly: a map of at most the keys
// "from" and "to", each once, with unsigned integer values, and nothing
// after it. A missing key is 0.
func decodeAuditRequest(b []byte) (auditRequest, error) {
	var r auditRequest
	if len(b) > MaxAuditRequest {
		return r, fmt.Errorf("request of %d bytes, at most %d", len(b), MaxAuditRequest)
	}
	d := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := mpMapLen(d, 2)
	if err != nil {
		return r, err
	}
	var seen [2]bool
	for range n {
		k, err := mpKey(d)
		if err != nil {
			return r, err
		}
		var i int
		var dst *uint64
		switch k {
		case fieldFrom:
			i, dst = 0, &r.From
		case fieldTo:
			i, dst = 1, &r.To
		default:
			return r, fmt.Errorf("unknown key %q", k)
		}
		if seen[i] {
			return r, fmt.Errorf("key %q twice", k)
		}
		seen[i] = true
		if *dst, err = mpUint(d); err != nil {
			return r, fmt.Errorf("%s: %w", k, err)
		}
	}
	return r, mpEnd(d)
}

func encodeAuditHeader(h auditHeader) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	if h.Err != "" {
		_ = e.EncodeMapLen(1)
		_ = e.EncodeString(fieldErr)
		_ = e.EncodeString(h.Err)
		return buf.Bytes()
	}
	_ = e.EncodeMapLen(2)
	_ = e.EncodeString(fieldLen)
	_ = e.EncodeUint(h.Len)
	_ = e.EncodeString(fieldHead)
	_ = e.EncodeBytes(h.Head[:])
	return buf.Bytes()
}

// decodeAuditHeader parses a response header strictly: either {"err":
// message} alone, or "len" (at least 1: every chain has its genesis) and
// "head" (32 bytes), each once, and nothing after it.
func decodeAuditHeader(b []byte) (auditHeader, error) {
	var h auditHeader
	if len(b) > MaxAuditHeader {
		return h, fmt.Errorf("header of %d bytes, at most %d", len(b), MaxAuditHeader)
	}
	d := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := mpMapLen(d, 2)
	if err != nil {
		return h, err
	}
	var seen [3]bool
	for range n {
		k, err := mpKey(d)
		if err != nil {
			return h, err
		}
		var i int
		switch k {
		case fieldLen:
			i = 0
			h.Len, err = mpUint(d)
		case fieldHead:
			i = 1
			var head []byte
			if head, err = mpBin(d, len(h.Head)); err == nil {
				copy(h.Head[:], head)
			}
		case fieldErr:
			i = 2
			h.Err, err = mpStr(d, maxAuditErr)
			if err == nil && h.Err == "" {
				err = errors.New("empty message")
			}
		default:
			return h, fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return h, fmt.Errorf("%s: %w", k, err)
		}
		if seen[i] {
			return h, fmt.Errorf("key %q twice", k)
		}
		seen[i] = true
	}
	switch {
	case seen[2] && n != 1:
		return h, errors.New("an error frame with other keys")
	case !seen[2] && !(seen[0] && seen[1]):
		return h, errors.New("a header without its length or head")
	case !seen[2] && h.Len == 0:
		return h, errors.New("a chain of 0 records")
	}
	return h, mpEnd(d)
}

// Strict msgpack readers: each accepts only the types (and, for maps and
// keys, the short forms) our encoder writes.

func mpMapLen(d *msgpack.Decoder, max int) (int, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedMap(c) {
		return 0, fmt.Errorf("code %#x, want a map", c)
	}
	n, err := d.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("a map of %d keys, at most %d", n, max)
	}
	return n, nil
}

func mpKey(d *msgpack.Decoder) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsFixedString(c) {
		return "", fmt.Errorf("code %#x, want a short string key", c)
	}
	return d.DecodeString()
}

func mpUint(d *msgpack.Decoder) (uint64, error) {
	c, err := d.PeekCode()
	if err != nil {
		return 0, err
	}
	if c > msgpcode.PosFixedNumHigh && (c < msgpcode.Uint8 || c > msgpcode.Uint64) {
		return 0, fmt.Errorf("code %#x, want an unsigned integer", c)
	}
	return d.DecodeUint64()
}

func mpBin(d *msgpack.Decoder, n int) ([]byte, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	if c != msgpcode.Bin8 {
		return nil, fmt.Errorf("code %#x, want %d bytes", c, n)
	}
	b, err := d.DecodeBytes()
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), n)
	}
	return b, nil
}

func mpStr(d *msgpack.Decoder, max int) (string, error) {
	c, err := d.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsFixedString(c) && c != msgpcode.Str8 && c != msgpcode.Str16 {
		return "", fmt.Errorf("code %#x, want a string", c)
	}
	s, err := d.DecodeString()
	if err != nil {
		return "", err
	}
	if len(s) > max || !utf8.ValidString(s) {
		return "", fmt.Errorf("a string of %d bytes, at most %d of UTF-8", len(s), max)
	}
	return s, nil
}

func mpEnd(d *msgpack.Decoder) error {
	if _, err := d.PeekCode(); err == nil {
		return errors.New("trailing bytes")
	}
	return nil
}

// writeAuditFrame writes b with its 4-byte big-endian length.
func writeAuditFrame(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// errFrameTooLong is returned by readAuditFrame for a length over its limit.
var errFrameTooLong = errors.New("frame too long")

// readAuditFrame reads one frame of at most max bytes. It returns io.EOF only
// when r ends before the frame starts. Memory grows with the bytes that
// arrive, not with the length announced.
func readAuditFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLong, n, max)
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, noEOF(err)
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, err
	}
	if len(b) != int(n) {
		return nil, io.ErrUnexpectedEOF
	}
	return b, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ServeConfig configures an [AuditServer].
type ServeConfig struct {
	RequestTimeout  time.Duration // to read a request
	ResponseTimeout time.Duration // to write a response
	// PageRecords and PageBytes end a response early: after PageRecords
	// records, or after the record that reaches PageBytes bytes.
	PageRecords int
	PageBytes   int
	// Streams is how many audits are answered at once; more are refused.
	Streams int
	Logger  *slog.Logger
}

// ServeOption changes a [ServeConfig].
type ServeOption func(*ServeConfig) error

// ServeDefaults is the first option [ServeAudit] applies.
func ServeDefaults(c *ServeConfig) error {
	*c = ServeConfig{
		RequestTimeout:  DefaultRequestTimeout,
		ResponseTimeout: DefaultResponseTimeout,
		PageRecords:     MaxRecordsPerResponse,
		PageBytes:       DefaultServePageBytes,
		Streams:         DefaultServeStreams,
		Logger:          slog.New(slog.DiscardHandler),
	}
	return nil
}

// WithServeTimeouts sets how long a peer has to send its request, and
// how long the server has to write the response.
func WithServeTimeouts(request, response time.Duration) ServeOption {
	return func(c *ServeConfig) error { c.RequestTimeout, c.ResponseTimeout = request, response; return nil }
}

// WithServePage bounds a response to records records and about bytes
// bytes (it ends after the record that reaches them).
func WithServePage(records, bytes int) ServeOption {
	return func(c *ServeConfig) error { c.PageRecords, c.PageBytes = records, bytes; return nil }
}

// WithServeStreams sets how many audits are answered at once.
func WithServeStreams(n int) ServeOption {
	return func(c *ServeConfig) error { c.Streams = n; return nil }
}

// WithServeLogger sets the logger of failed requests (at debug level).
func WithServeLogger(l *slog.Logger) ServeOption {
	return func(c *ServeConfig) error { c.Logger = l; return nil }
}

// Validate reports the first invalid setting, wrapped in ErrAuditConfig.
func (c *ServeConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrAuditConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.RequestTimeout <= 0 || c.ResponseTimeout <= 0:
		return bad("timeouts %v and %v must be positive", c.RequestTimeout, c.ResponseTimeout)
	case c.PageRecords <= 0 || c.PageRecords > MaxRecordsPerResponse:
		return bad("page of %d records, want 1 to %d", c.PageRecords, MaxRecordsPerResponse)
	case c.PageBytes <= 0 || c.PageBytes > MaxResponseBytes-MaxRecordLen:
		return bad("page of %d bytes, want 1 to %d", c.PageBytes, MaxResponseBytes-MaxRecordLen)
	case c.Streams <= 0:
		return bad("%d streams", c.Streams)
	case c.Logger == nil:
		return bad("no logger")
	}
	return nil
}

// AuditServer answers [AuditProtocol] requests for a ledger's chain.
type AuditServer struct {
	h   host.Host
	l   *Ledger
	cfg ServeConfig

	mu      sync.Mutex
	closed  bool
	streams map[network.Stream]struct{}
	wg      sync.WaitGroup
}

// ServeAudit answers audits of l's chain on h until Close. h must be the
// identity that owns l: auditors check that the chain is the serving
// peer's own. A host has one AuditServer at a time: a second replaces the
// first's handler, and closing either removes the handler.
func ServeAudit(h host.Host, l *Ledger, opts ...ServeOption) (*AuditServer, error) {
	if h.ID() != l.Owner() {
		return nil, fmt.Errorf("%w: host %s serving the ledger of %s", ErrAuditConfig, h.ID(), l.Owner())
	}
	var cfg ServeConfig
	for i, opt := range append([]ServeOption{ServeDefaults}, opts...) {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("%w: option %d: %w", ErrAuditConfig, i, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &AuditServer{h: h, l: l, cfg: cfg, streams: make(map[network.Stream]struct{})}
	h.SetStreamHandler(AuditProtocol, s.handle)
	return s, nil
}

// Close stops answering, resets the audits in progress and waits for
// their handlers to return.
func (a *AuditServer) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.h.RemoveStreamHandler(AuditProtocol)
	for s := range a.streams {
		s.Reset()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

func (a *AuditServer) handle(s network.Stream) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		s.Reset()
		return
	}
	busy := len(a.streams) >= a.cfg.Streams
	a.streams[s] = struct{}{}
	a.wg.Add(1)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.streams, s)
		a.mu.Unlock()
		a.wg.Done()
	}()
	if err := a.serve(s, busy); err != nil {
		a.cfg.Logger.Debug("ledger: audit request failed", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	s.Close()
}

// errPageFull stops a read of records into memory.
var errPageFull = errors.New("page full")

// Reads of records into memory, between writes to the stream, stop at
// these: no database transaction stays open while a peer reads.
const (
	auditBatchRecords = 256
	auditBatchBytes   = 1 << 20
)

func (a *AuditServer) serve(s network.Stream, busy bool) error {
	if err := s.SetReadDeadline(time.Now().Add(a.cfg.RequestTimeout)); err != nil {
		return err
	}
	b, rerr := readAuditFrame(s, MaxAuditRequest)
	if err := s.SetWriteDeadline(time.Now().Add(a.cfg.ResponseTimeout)); err != nil {
		return err
	}
	refuse := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if len(msg) > maxAuditErr {
			msg = strings.ToValidUTF8(msg[:maxAuditErr], "")
		}
		return writeAuditFrame(s, encodeAuditHeader(auditHeader{Err: msg}))
	}
	if rerr != nil {
		if errors.Is(rerr, errFrameTooLong) {
			return refuse("request %v", rerr)
		}
		return refuse("no request: %v", rerr)
	}
	req, err := decodeAuditRequest(b)
	if err != nil {
		return refuse("malformed request: %v", err)
	}
	if busy {
		return refuse("busy: %d audits in progress", a.cfg.Streams)
	}
	head, hash := a.l.Head()
	n := head.Seq + 1
	to := req.To
	switch {
	case req.From > n:
		return refuse("from %d is beyond the head: the chain has %d records", req.From, n)
	case to != 0 && req.From > to:
		return refuse("from %d is past to %d", req.From, to)
	case to == 0 || to > n:
		to = n
	}
	end := req.From + min(to-req.From, uint64(a.cfg.PageRecords))
	w := bufio.NewWriterSize(s, 64<<10)
	if err := writeAuditFrame(w, encodeAuditHeader(auditHeader{Len: n, Head: hash})); err != nil {
		return err
	}
	sent := 0
	for next := req.From; next < end && sent < a.cfg.PageBytes; {
		var batch [][]byte
		size := 0
		err := a.l.Raw(next, end, func(_ uint64, raw []byte) error {
			batch = append(batch, bytes.Clone(raw))
			size += len(raw)
			if len(batch) >= auditBatchRecords || size >= auditBatchBytes || sent+size >= a.cfg.PageBytes {
				return errPageFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errPageFull) {
			return err
		}
		if len(batch) == 0 {
			return fmt.Errorf("%w: record %d: missing below the head %d", ErrInvalid, next, n-1)
		}
		for _, raw := range batch {
			if err := writeAuditFrame(w, raw); err != nil {
				return err
			}
		}
		next += uint64(len(batch))
		sent += size
	}
	return w.Flush()
}

// FetchChain asks peer p for the records of seq in [from, to) of its
// chain (to 0: up to its head), and returns their encodings, unverified,
// with the chain's length and head hash as p states them. p may return
// fewer records than asked (its page size): ask again from where they
// end. Errors wrap [ErrAuditRefused] when p refused the request and
// [ErrAuditResponse] when its answer is malformed or oversized.
func FetchChain(ctx context.Context, h host.Host, p peer.ID, from, to uint64) (recs [][]byte, length uint64, head [32]byte, err error) {
	return fetchChain(ctx, h, p, from, to, DefaultResponseTimeout)
}

func fetchChain(ctx context.Context, h host.Host, p peer.ID, from, to uint64, timeout time.Duration) ([][]byte, uint64, [32]byte, error) {
	fail := func(err error) ([][]byte, uint64, [32]byte, error) {
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, 0, [32]byte{}, fmt.Errorf("ledger: audit of %s: %w", p, err)
	}
	s, err := h.NewStream(ctx, p, AuditProtocol)
	if err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if err := s.SetDeadline(dl); err != nil {
		s.Reset()
		return fail(err)
	}
	var req bytes.Buffer
	if err := writeAuditFrame(&req, encodeAuditRequest(auditRequest{From: from, To: to})); err != nil {
		s.Reset()
		return fail(err)
	}
	if _, err := s.Write(req.Bytes()); err != nil {
		s.Reset()
		return fail(err)
	}
	// Closing our side can fail when the server has already answered and
	// closed the stream; the answer is still readable.
	_ = s.CloseWrite()
	recs, n, head, err := readResponse(bufio.NewReaderSize(s, 64<<10), from, to)
	if err != nil {
		s.Reset()
		return fail(err)
	}
	s.Close()
	return recs, n, head, nil
}

// readResponse reads the response to a request for [from, to), within
// the protocol's limits. Records are checked for their length and seq
// only; see [Verifier] for the rest.
func readResponse(r io.Reader, from, to uint64) (recs [][]byte, length uint64, head [32]byte, err error) {
	b, err := readAuditFrame(r, MaxAuditHeader)
	if err != nil {
		return nil, 0, head, fmt.Errorf("%w: header: %w", ErrAuditResponse, noEOF(err))
	}
	h, err := decodeAuditHeader(b)
	if err != nil {
		return nil, 0, head, fmt.Errorf("%w: header: %w", ErrAuditResponse, err)
	}
	if h.Err != "" {
		return nil, 0, head, fmt.Errorf("%w: %s", ErrAuditRefused, h.Err)
	}
	if from > h.Len {
		return nil, 0, head, fmt.Errorf("%w: a chain of %d records, asked from record %d", ErrAuditResponse, h.Len, from)
	}
	end := h.Len
	if to != 0 && to < end {
		end = max(to, from)
	}
	limit := min(end-from, MaxRecordsPerResponse)
	total := 0
	for {
		seq := from + uint64(len(recs))
		raw, err := readAuditFrame(r, MaxRecordLen)
		if err == io.EOF {
			return recs, h.Len, h.Head, nil
		}
		if err != nil {
			return nil, 0, head, fmt.Errorf("%w: record %d: %w", ErrAuditResponse, seq, err)
		}
		if uint64(len(recs)) >= limit {
			return nil, 0, head, fmt.Errorf("%w: more than the %d records asked for", ErrAuditResponse, limit)
		}
		if total += len(raw); total > MaxResponseBytes {
			return nil, 0, head, fmt.Errorf("%w: more than %d bytes of records", ErrAuditResponse, MaxResponseBytes)
		}
		if len(raw) < headerLen+SigLen {
			return nil, 0, head, fmt.Errorf("%w: record %d: %d bytes, shorter than a record's %d", ErrInvalid, seq, len(raw), headerLen+SigLen)
		}
		if got := binary.BigEndian.Uint64(raw[1:9]); got != seq {
			return nil, 0, head, fmt.Errorf("%w: record %d: has seq %d", ErrInvalid, seq, got)
		}
		recs = append(recs, raw)
	}
}

// AuditReport is what an audit of a peer's chain found.
type AuditReport struct {
	Peer peer.ID
	// Len is the chain's length as the peer's first answer stated it;
	// Records is how many records, from genesis, verified (Len when Err
	// is nil), and Head the hash of the last of them.
	Len     uint64
	Records uint64
	Head    [32]byte
	// Account is the credit state the verified records prove.
	Account *Account
	// Err is why the chain failed the audit, nil when it passed: it wraps
	// ErrInvalid and names the first bad record, or wraps ErrFork or
	// ErrRollback.
	Err error
	// Fork is the proof that the peer keeps two chains, when Err wraps
	// ErrFork and the auditor kept the record to prove it.
	Fork *ForkProof
}

// Audit fetches peer p's whole chain, verifies it (see [Verifier]; the
// genesis record must name p's own key) and that it ends where p's
// header says, and computes its balances under policy. The report and
// its Err are returned when the chain fails; a nil report and an error
// when the audit could not be carried out (p unreachable, refusing, or
// answering outside the protocol).
func Audit(ctx context.Context, h host.Host, p peer.ID, policy Policy) (*AuditReport, error) {
	return audit(ctx, h, p, policy, MaxRecordsPerResponse, DefaultResponseTimeout, nil)
}

// audit is Audit asking page records at a time, with observe (if not
// nil) called on each record once it verified; an error from observe
// fails the chain.
func audit(ctx context.Context, h host.Host, p peer.ID, policy Policy, page uint64, timeout time.Duration,
	observe func(seq uint64, raw []byte, hash [32]byte) error) (*AuditReport, error) {
	rep := &AuditReport{Peer: p, Account: NewAccount(policy)}
	fail := func(err error) (*AuditReport, error) {
		rep.Err = err
		return rep, err
	}
	owner := p.String()
	v := NewVerifier()
	var target uint64
	var targetHead [32]byte
	for next := uint64(0); next == 0 || next < target; {
		to := next + page
		if next > 0 {
			to = min(to, target)
		}
		recs, n, head, err := fetchChain(ctx, h, p, next, to, timeout)
		if err != nil {
			if errors.Is(err, ErrInvalid) {
				return fail(err)
			}
			return nil, err
		}
		if next == 0 {
			target, targetHead = n, head
			rep.Len = n
		} else if n < target {
			return fail(fmt.Errorf("%w: record %d: missing: the peer's chain shrank from %d to %d records during the audit", ErrInvalid, n, target, n))
		}
		if len(recs) == 0 {
			return fail(fmt.Errorf("%w: record %d: missing: the peer's header claims %d records", ErrInvalid, next, target))
		}
		for _, raw := range recs {
			r, err := v.Add(raw)
			if err != nil {
				return fail(err)
			}
			if r.Seq == 0 && v.Owner() != p {
				return fail(fmt.Errorf("%w: record 0: the chain belongs to %s, not to %s, who served it", ErrInvalid, v.Owner(), p))
			}
			if observe != nil {
				if err := observe(r.Seq, raw, v.Head()); err != nil {
					return fail(err)
				}
			}
			if err := rep.Account.Add(r, owner); err != nil {
				return fail(err)
			}
			rep.Records, rep.Head = v.Next(), v.Head()
		}
		next = v.Next()
	}
	if rep.Head != targetHead {
		return fail(fmt.Errorf("%w: record %d: hash %x, but the peer's header names head %x", ErrInvalid, target-1, rep.Head[:8], targetHead[:8]))
	}
	return rep, nil
}

// Auditor audits peers' chains and remembers what each served: the hash
// of every record, and the records themselves within a memory budget, so
// that a peer that later serves a different record of a seq it served
// before is caught, and proven (see [ForkProof]) to keep two chains. It
// is safe for concurrent use.
type Auditor struct {
	h   host.Host
	rep *Reputation
	cfg AuditorConfig

	mu    sync.Mutex
	peers *simplelru.LRU[peer.ID, *chainMemory]
	bytes int64 // held by peers
}

// chainMemory is what an Auditor keeps of one peer's chain.
type chainMemory struct {
	hashes  [][32]byte // by seq
	raw     [][]byte   // by seq; nil below dropped
	dropped int        // raw[:dropped] were let go to stay within the budget
	bytes   int64
	forked  bool // a fork proof was recorded
}

// AuditorConfig configures an [Auditor].
type AuditorConfig struct {
	Policy  Policy
	Page    int           // records asked for per request
	Timeout time.Duration // per request
	// Peers is how many peers' chains are remembered (the least recently
	// audited are forgotten first), Memory how many bytes of them; past
	// it, a chain's oldest records are let go (their hashes kept).
	Peers  int
	Memory int64
}

// AuditorOption changes an [AuditorConfig].
type AuditorOption func(*AuditorConfig) error

// AuditorDefaults is the first option [NewAuditor] applies.
func AuditorDefaults(c *AuditorConfig) error {
	*c = AuditorConfig{Policy: DefaultPolicy, Page: MaxRecordsPerResponse, Timeout: DefaultResponseTimeout,
		Peers: DefaultAuditPeers, Memory: DefaultAuditMemory}
	return nil
}

// WithAuditPolicy sets the policy balances are computed under.
func WithAuditPolicy(p Policy) AuditorOption {
	return func(c *AuditorConfig) error { c.Policy = p; return nil }
}

// WithAuditPage sets how many records are asked for per request.
func WithAuditPage(records int) AuditorOption {
	return func(c *AuditorConfig) error { c.Page = records; return nil }
}

// WithAuditTimeout sets the deadline of each request.
func WithAuditTimeout(d time.Duration) AuditorOption {
	return func(c *AuditorConfig) error { c.Timeout = d; return nil }
}

// WithAuditMemory bounds what is remembered: peers chains, bytes bytes.
func WithAuditMemory(peers int, bytes int64) AuditorOption {
	return func(c *AuditorConfig) error { c.Peers, c.Memory = peers, bytes; return nil }
}

// Validate reports the first invalid setting, wrapped in ErrAuditConfig.
func (c *AuditorConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrAuditConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Page <= 0 || c.Page > MaxRecordsPerResponse:
		return bad("page of %d records, want 1 to %d", c.Page, MaxRecordsPerResponse)
	case c.Timeout <= 0:
		return bad("timeout %v must be positive", c.Timeout)
	case c.Peers <= 0:
		return bad("%d peers", c.Peers)
	case c.Memory <= 0:
		return bad("memory of %d bytes", c.Memory)
	}
	return nil
}

// NewAuditor audits peers through h. Fork proofs are recorded in rep
// (appended to its ledger, the peer's score dropped); rep may be nil.
func NewAuditor(h host.Host, rep *Reputation, opts ...AuditorOption) (*Auditor, error) {
	var cfg AuditorConfig
	for i, opt := range append([]AuditorOption{AuditorDefaults}, opts...) {
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("%w: option %d: %w", ErrAuditConfig, i, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Auditor{h: h, rep: rep, cfg: cfg}
	lru, err := simplelru.NewLRU(cfg.Peers, func(_ peer.ID, m *chainMemory) { a.bytes -= m.bytes })
	if err != nil {
		return nil, err
	}
	a.peers = lru
	return a, nil
}

// Audit audits p's chain as [Audit] does, and compares it record by
// record, as it arrives, with what p served before. A record of a seq p
// served before with other bytes fails the audit with ErrFork, the two
// records becoming a ForkProof (in the report, and recorded in the
// Reputation); a valid chain shorter than before fails it with
// ErrRollback.
func (a *Auditor) Audit(ctx context.Context, p peer.ID) (*AuditReport, error) {
	var fork *ForkProof
	diverged := -1 // the first seq that differs, when no proof was kept for it
	observe := func(seq uint64, raw []byte, hash [32]byte) error {
		f, at, err := a.observe(p, seq, raw, hash, diverged >= 0)
		if at >= 0 && diverged < 0 {
			diverged = at
		}
		if f != nil {
			fork = f
		}
		return err
	}
	rep, err := audit(ctx, a.h, p, a.cfg.Policy, uint64(a.cfg.Page), a.cfg.Timeout, observe)
	if rep == nil {
		return nil, err
	}
	rep.Fork = fork
	if err != nil {
		return rep, err
	}
	if diverged >= 0 {
		rep.Err = fmt.Errorf("%w: record %d from %s differs from the one it served before (not kept, so not proven)", ErrFork, diverged, p)
		return rep, rep.Err
	}
	a.mu.Lock()
	var known uint64
	if m, ok := a.peers.Peek(p); ok {
		known = uint64(len(m.hashes))
	}
	a.mu.Unlock()
	if known > rep.Records {
		rep.Err = fmt.Errorf("%w: %s served %d records, fewer than the %d it served before", ErrRollback, p, rep.Records, known)
		return rep, rep.Err
	}
	return rep, nil
}

// Known is how many records of p's chain the auditor remembers.
func (a *Auditor) Known(p peer.ID) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, ok := a.peers.Peek(p); ok {
		return uint64(len(m.hashes))
	}
	return 0
}

// Forget drops what the auditor remembers of p's chain.
func (a *Auditor) Forget(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.peers.Remove(p)
}

// observe compares a verified record of p's chain with what p served
// before, remembering it if it is new. When it differs from the record
// of its seq served before, observe returns the fork proof and ErrFork
// if the old record was kept, and otherwise the seq (without an error:
// a later record may prove the fork). Once diverged, nothing is
// remembered: the chain is not the one remembered.
func (a *Auditor) observe(p peer.ID, seq uint64, raw []byte, hash [32]byte, diverged bool) (*ForkProof, int, error) {
	a.mu.Lock()
	m, ok := a.peers.Get(p)
	if !ok {
		if seq != 0 || diverged {
			a.mu.Unlock()
			return nil, -1, nil // forgotten during the audit
		}
		m = &chainMemory{}
		a.peers.Add(p, m)
	}
	switch {
	case seq < uint64(len(m.hashes)):
		if m.hashes[seq] == hash {
			a.mu.Unlock()
			return nil, -1, nil
		}
		old, forked := m.raw[seq], m.forked
		if old == nil {
			a.mu.Unlock()
			return nil, int(seq), nil
		}
		m.forked = true
		a.mu.Unlock()
		f, err := a.fork(p, seq, old, raw, forked)
		return f, -1, err
	case seq == uint64(len(m.hashes)) && !diverged:
		m.hashes = append(m.hashes, hash)
		m.raw = append(m.raw, bytes.Clone(raw))
		n := int64(len(hash) + len(raw))
		m.bytes += n
		a.bytes += n
		a.trim(p, m)
	}
	a.mu.Unlock()
	return nil, -1, nil
}

// trim lets go of other peers' chains, least recently audited first, and
// then of m's oldest records (never its newest), until the memory is
// within budget. a.mu is held.
func (a *Auditor) trim(p peer.ID, m *chainMemory) {
	for a.bytes > a.cfg.Memory {
		if k, _, ok := a.peers.GetOldest(); ok && k != p {
			a.peers.RemoveOldest()
			continue
		}
		if m.dropped+1 >= len(m.raw) {
			return
		}
		n := int64(len(m.raw[m.dropped]))
		m.raw[m.dropped] = nil
		m.dropped++
		m.bytes -= n
		a.bytes -= n
	}
}

// fork builds the proof that p signed old and raw, two records of seq,
// and records it unless it was recorded before.
func (a *Auditor) fork(p peer.ID, seq uint64, old, raw []byte, recorded bool) (*ForkProof, error) {
	key, err := p.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("ledger: fork of %s: %w", p, err)
	}
	pub, err := crypto.MarshalPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("ledger: fork of %s: %w", p, err)
	}
	f := &ForkProof{Peer: p.String(), PubKey: pub, A: old, B: bytes.Clone(raw)}
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("ledger: fork of %s: the proof does not hold: %w", p, err)
	}
	ferr := fmt.Errorf("%w: %s signed two different records %d", ErrFork, p, seq)
	if a.rep != nil && !recorded {
		if err := a.rep.RecordFork(f); err != nil {
			return f, errors.Join(ferr, fmt.Errorf("recording the proof: %w", err))
		}
	}
	return f, ferr
}
