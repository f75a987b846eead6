package dht

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/stratanet/strata/weights"
)

// InfoProtocol is the protocol of the info exchange.
const InfoProtocol protocol.ID = "/strata/info/1.0.0"

// Limits of an info frame.
const (
	MaxInfoFrame  = 64 << 10 // bytes of msgpack after the 4-byte length
	MaxInfoString = 256      // bytes of Profile and Version
	MaxInfoAddrs  = 32       // entries of Addrs
	maxInfoKeys   = 64       // map entries, known or not
)

// ErrInfo is returned for an info frame that is malformed, oversized,
// truncated or out of range. The server that sent it is not cached.
var ErrInfo = errors.New("dht: malformed info")

// Info is what a serving node says about itself. Values are live: the server
// computes them per request through its [WithInfoFunc] callback.
type Info struct {
	Model          weights.ModelID
	Span           Span           // blocks served
	Throughput     float64        // measured decode tokens/s, >= 0
	FreeKVBytes    int64          // KV cache budget still free, >= 0
	ActiveSessions int64          // current load, >= 0
	Profile        string         // numerics profile, e.g. "cpu-v1"
	Version        string         // Strata version
	Addrs          []ma.Multiaddr // listen addresses
	// Counters are the server's running totals since it started; a
	// server that predates them sends none (all zero).
	Counters Counters
}

// Counters are what a server has done since it started, for benchmarks
// and monitoring from another process. All are >= 0.
type Counters struct {
	Steps     int64         // steps computed and sent on (BytesSent includes them)
	Compute   time.Duration // in the shard's forward passes
	Hash      time.Duration // hashing receipts (BLAKE3)
	Sign      time.Duration // signing receipts (Ed25519)
	BytesSent int64         // bytes of the session frames it wrote
}

// Validate reports the first field out of range, wrapped in [ErrInfo].
func (in *Info) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInfo, fmt.Sprintf(format, args...))
	}
	if err := in.Span.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInfo, err)
	}
	switch {
	case math.IsNaN(in.Throughput) || math.IsInf(in.Throughput, 0) || in.Throughput < 0:
		return bad("throughput %v", in.Throughput)
	case in.FreeKVBytes < 0:
		return bad("free KV bytes %d", in.FreeKVBytes)
	case in.ActiveSessions < 0:
		return bad("active sessions %d", in.ActiveSessions)
	case len(in.Profile) > MaxInfoString || !utf8.ValidString(in.Profile):
		return bad("profile of %d bytes", len(in.Profile))
	case len(in.Version) > MaxInfoString || !utf8.ValidString(in.Version):
		return bad("version of %d bytes", len(in.Version))
	case len(in.Addrs) > MaxInfoAddrs:
		return bad("%d addresses, at most %d", len(in.Addrs), MaxInfoAddrs)
	case in.Counters.Steps < 0 || in.Counters.Compute < 0 || in.Counters.Hash < 0 || in.Counters.Sign < 0 || in.Counters.BytesSent < 0:
		return bad("negative counters %+v", in.Counters)
	}
	return nil
}

// Wire keys of the info map.
const (
	keyModel    = "model"
	keyStart    = "start"
	keyEnd      = "end"
	keyTPS      = "tps"
	keyFreeKV   = "free_kv"
	keySessions = "sessions"
	keyProfile  = "profile"
	keyVersion  = "version"
	keyAddrs    = "addrs"
	keySteps    = "steps"
	keyCompute  = "compute_ns"
	keyHash     = "hash_ns"
	keySign     = "sign_ns"
	keySent     = "sent_bytes"
)

// EncodeInfo returns the msgpack payload of an info frame: a map from the
// wire keys above to bin (model: 32 bytes; addrs: array of binary
// multiaddrs), ints, a float64 (tps) and strings. The counters are
// non-negative ints (durations in nanoseconds); older peers skip them as
// unknown keys.
func EncodeInfo(in Info) ([]byte, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	err := errors.Join(
		e.EncodeMapLen(14),
		e.EncodeString(keyModel), e.EncodeBytes(in.Model[:]),
		e.EncodeString(keyStart), e.EncodeInt(int64(in.Span.Start)),
		e.EncodeString(keyEnd), e.EncodeInt(int64(in.Span.End)),
		e.EncodeString(keyTPS), e.EncodeFloat64(in.Throughput),
		e.EncodeString(keyFreeKV), e.EncodeInt(in.FreeKVBytes),
		e.EncodeString(keySessions), e.EncodeInt(in.ActiveSessions),
		e.EncodeString(keyProfile), e.EncodeString(in.Profile),
		e.EncodeString(keyVersion), e.EncodeString(in.Version),
		e.EncodeString(keySteps), e.EncodeInt(in.Counters.Steps),
		e.EncodeString(keyCompute), e.EncodeInt(int64(in.Counters.Compute)),
		e.EncodeString(keyHash), e.EncodeInt(int64(in.Counters.Hash)),
		e.EncodeString(keySign), e.EncodeInt(int64(in.Counters.Sign)),
		e.EncodeString(keySent), e.EncodeInt(in.Counters.BytesSent),
		e.EncodeString(keyAddrs), e.EncodeArrayLen(len(in.Addrs)),
	)
	for _, a := range in.Addrs {
		err = errors.Join(err, e.EncodeBytes(a.Bytes()))
	}
	if err != nil {
		return nil, fmt.Errorf("dht: encode info: %w", err)
	}
	if buf.Len() > MaxInfoFrame {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInfo, buf.Len(), MaxInfoFrame)
	}
	return buf.Bytes(), nil
}

// DecodeInfo parses and validates the payload of an info frame. It never
// allocates much more than len(b): every length is checked against what is
// left before anything is reserved. Unknown keys are skipped.
func DecodeInfo(b []byte) (Info, error) {
	var in Info
	if len(b) > MaxInfoFrame {
		return in, fmt.Errorf("%w: %d bytes, at most %d", ErrInfo, len(b), MaxInfoFrame)
	}
	r := bytes.NewReader(b)
	d := msgpack.NewDecoder(r) // r is a ByteScanner: d reads from it unbuffered
	wrap := func(what string, err error) error {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s: truncated", ErrInfo, what)
		}
		return fmt.Errorf("%w: %s: %w", ErrInfo, what, err)
	}
	// raw reads a bin or str value whose length fits in what is left.
	raw := func(what string, max int) ([]byte, error) {
		n, err := d.DecodeBytesLen()
		if err != nil {
			return nil, wrap(what, err)
		}
		if n < 0 || n > max || n > r.Len() {
			return nil, fmt.Errorf("%w: %s: length %d (at most %d, %d bytes left)", ErrInfo, what, n, max, r.Len())
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return nil, wrap(what, err)
		}
		return v, nil
	}
	integer := func(what string) (int64, error) {
		c, err := d.PeekCode()
		if err != nil {
			return 0, wrap(what, err)
		}
		if !msgpcode.IsFixedNum(c) && (c < msgpcode.Uint8 || c > msgpcode.Int64) {
			return 0, fmt.Errorf("%w: %s: not an integer (code %#x)", ErrInfo, what, c)
		}
		v, err := d.DecodeInt64()
		if err != nil {
			return 0, wrap(what, err)
		}
		if v < 0 || v > math.MaxInt32 {
			return 0, fmt.Errorf("%w: %s: %d out of range", ErrInfo, what, v)
		}
		return v, nil
	}
	// count reads a non-negative int64.
	count := func(what string) (int64, error) {
		c, err := d.PeekCode()
		if err != nil {
			return 0, wrap(what, err)
		}
		if !msgpcode.IsFixedNum(c) && (c < msgpcode.Uint8 || c > msgpcode.Int64) {
			return 0, fmt.Errorf("%w: %s: not an integer (code %#x)", ErrInfo, what, c)
		}
		v, err := d.DecodeInt64()
		if err != nil {
			return 0, wrap(what, err)
		}
		if v < 0 {
			return 0, fmt.Errorf("%w: %s: %d is negative", ErrInfo, what, v)
		}
		return v, nil
	}
	c, err := d.PeekCode()
	if err != nil {
		return in, wrap("frame", err)
	}
	if !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32 {
		return in, fmt.Errorf("%w: frame is not a map (code %#x)", ErrInfo, c)
	}
	nkeys, err := d.DecodeMapLen()
	if err != nil {
		return in, wrap("frame", err)
	}
	if nkeys > maxInfoKeys {
		return in, fmt.Errorf("%w: %d keys, at most %d", ErrInfo, nkeys, maxInfoKeys)
	}
	var haveModel, haveStart, haveEnd bool
	for range nkeys {
		kb, err := raw("key", 64)
		if err != nil {
			return in, err
		}
		switch key := string(kb); key {
		case keyModel:
			v, err := raw(key, len(in.Model))
			if err != nil {
				return in, err
			}
			if len(v) != len(in.Model) {
				return in, fmt.Errorf("%w: model id of %d bytes, want %d", ErrInfo, len(v), len(in.Model))
			}
			copy(in.Model[:], v)
			haveModel = true
		case keyStart, keyEnd:
			v, err := integer(key)
			if err != nil {
				return in, err
			}
			if key == keyStart {
				in.Span.Start, haveStart = int(v), true
			} else {
				in.Span.End, haveEnd = int(v), true
			}
		case keyTPS:
			c, err := d.PeekCode()
			if err != nil {
				return in, wrap(key, err)
			}
			if c != msgpcode.Float && c != msgpcode.Double {
				return in, fmt.Errorf("%w: %s: not a float (code %#x)", ErrInfo, key, c)
			}
			if in.Throughput, err = d.DecodeFloat64(); err != nil {
				return in, wrap(key, err)
			}
		case keyFreeKV, keySessions, keySteps, keyCompute, keyHash, keySign, keySent:
			v, err := count(key)
			if err != nil {
				return in, err
			}
			switch key {
			case keyFreeKV:
				in.FreeKVBytes = v
			case keySessions:
				in.ActiveSessions = v
			case keySteps:
				in.Counters.Steps = v
			case keyCompute:
				in.Counters.Compute = time.Duration(v)
			case keyHash:
				in.Counters.Hash = time.Duration(v)
			case keySign:
				in.Counters.Sign = time.Duration(v)
			default:
				in.Counters.BytesSent = v
			}
		case keyProfile, keyVersion:
			v, err := raw(key, MaxInfoString)
			if err != nil {
				return in, err
			}
			if key == keyProfile {
				in.Profile = string(v)
			} else {
				in.Version = string(v)
			}
		case keyAddrs:
			n, err := d.DecodeArrayLen()
			if err != nil {
				return in, wrap(key, err)
			}
			if n > MaxInfoAddrs {
				return in, fmt.Errorf("%w: %d addresses, at most %d", ErrInfo, n, MaxInfoAddrs)
			}
			in.Addrs = nil
			for i := range max(n, 0) {
				v, err := raw(key, 1024)
				if err != nil {
					return in, err
				}
				a, err := ma.NewMultiaddrBytes(v)
				if err != nil {
					return in, fmt.Errorf("%w: address %d: %w", ErrInfo, i, err)
				}
				in.Addrs = append(in.Addrs, a)
			}
		default: // a newer peer's field
			if err := skipValue(d, r, 0); err != nil {
				return in, wrap(key, err)
			}
		}
	}
	if r.Len() != 0 {
		return in, fmt.Errorf("%w: %d bytes after the map", ErrInfo, r.Len())
	}
	if !haveModel || !haveStart || !haveEnd {
		return in, fmt.Errorf("%w: model, start or end missing", ErrInfo)
	}
	if err := in.Validate(); err != nil {
		return in, err
	}
	return in, nil
}

// maxSkipDepth bounds the nesting of an unknown value.
const maxSkipDepth = 8

// skipValue skips one value of an unknown key without reserving memory for
// it: every declared length is checked against the bytes left in r.
func skipValue(d *msgpack.Decoder, r *bytes.Reader, depth int) error {
	if depth > maxSkipDepth {
		return fmt.Errorf("nested deeper than %d", maxSkipDepth)
	}
	c, err := d.PeekCode()
	if err != nil {
		return err
	}
	var n int
	switch {
	case msgpcode.IsString(c) || msgpcode.IsBin(c):
		if n, err = d.DecodeBytesLen(); err != nil {
			return err
		}
		if n > r.Len() {
			return io.ErrUnexpectedEOF
		}
		_, err = r.Seek(int64(n), io.SeekCurrent)
		return err
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		if n, err = d.DecodeArrayLen(); err != nil {
			return err
		}
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		if n, err = d.DecodeMapLen(); err != nil {
			return err
		}
		n *= 2
	case msgpcode.IsExt(c):
		return fmt.Errorf("unexpected extension (code %#x)", c)
	default: // nil, bool, number: fixed size, nothing reserved
		return d.Skip()
	}
	if n > r.Len() { // every element takes at least one byte
		return io.ErrUnexpectedEOF
	}
	for range max(n, 0) {
		if err := skipValue(d, r, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// WriteInfoFrame writes the 4-byte big-endian length and the payload.
func WriteInfoFrame(w io.Writer, payload []byte) error {
	if len(payload) > MaxInfoFrame {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInfo, len(payload), MaxInfoFrame)
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	_, err := w.Write(append(frame, payload...))
	return err
}

// ReadInfoFrame reads one frame and returns its payload; the length is
// checked against [MaxInfoFrame] before the payload is reserved.
func ReadInfoFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: frame header: %w", ErrInfo, err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxInfoFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes, at most %d", ErrInfo, n, MaxInfoFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: frame truncated: %w", ErrInfo, err)
	}
	return b, nil
}

func (n *Node) deadline(ctx context.Context) time.Time {
	dl := time.Now().Add(n.cfg.StreamTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	return dl
}

func (n *Node) handleInfo(s network.Stream) {
	if err := n.serveInfo(s); err != nil {
		n.cfg.Logger.Debug("dht: info request failed", "peer", s.Conn().RemotePeer(), "err", err)
		s.Reset()
		return
	}
	s.Close()
}

func (n *Node) serveInfo(s network.Stream) error {
	if err := s.SetDeadline(n.deadline(context.Background())); err != nil {
		return err
	}
	payload, err := EncodeInfo(n.cfg.InfoFunc())
	if err != nil {
		return err
	}
	return WriteInfoFrame(s, payload)
}

// Info asks peer p for its [Info], or returns the cached answer if it is
// younger than the cache TTL. Errors are not cached.
func (n *Node) Info(ctx context.Context, p peer.ID) (Info, error) {
	if in, ok := n.cache.Get(p); ok {
		return in, nil
	}
	in, err := n.fetchInfo(ctx, p)
	if err != nil {
		return Info{}, err
	}
	n.cache.Add(p, in)
	return in, nil
}

// FetchInfo asks peer p for its [Info] now, whatever the cache holds, and
// caches the answer: for live values such as [Info.Counters].
func (n *Node) FetchInfo(ctx context.Context, p peer.ID) (Info, error) {
	in, err := n.fetchInfo(ctx, p)
	if err != nil {
		return Info{}, err
	}
	n.cache.Add(p, in)
	return in, nil
}

// ForgetInfo drops p's cached info, for a caller that saw p fail.
func (n *Node) ForgetInfo(p peer.ID) { n.cache.Remove(p) }

func (n *Node) fetchInfo(ctx context.Context, p peer.ID) (Info, error) {
	s, err := n.host.NewStream(ctx, p, InfoProtocol)
	if err != nil {
		return Info{}, fmt.Errorf("dht: info from %s: %w", p, err)
	}
	in, err := readInfo(s, n.deadline(ctx))
	if err != nil {
		s.Reset()
		return Info{}, fmt.Errorf("dht: info from %s: %w", p, err)
	}
	s.Close()
	return in, nil
}

func readInfo(s network.Stream, deadline time.Time) (Info, error) {
	if err := s.SetDeadline(deadline); err != nil {
		return Info{}, err
	}
	// The request is empty. Closing our side can fail when the server has
	// already answered and closed the stream; the reply is still readable.
	_ = s.CloseWrite()
	b, err := ReadInfoFrame(s)
	if err != nil {
		return Info{}, err
	}
	return DecodeInfo(b)
}
