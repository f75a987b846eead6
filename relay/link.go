package relay

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// ErrLink is returned (wrapped) by [ParseLink] for a description it cannot
// parse; the message names the offending part.
var ErrLink = errors.New("relay: invalid link description")

// Link describes an emulated network link, applied to the bytes a node
// writes. It replaces netem, which the kernels Strata runs on may lack, and
// makes benchmarks repeatable: with the same Seed and the same writes at the
// same times, every delivery happens at the same offset.
//
// A write of n bytes made at time t is delivered, in order, at
//
//	tx    = max(t, end of the previous write's transmission) + n*8/Bandwidth
//	at    = tx + Latency + jitter + retransmissions
//	deliv = max(at, delivery time of the previous write)
//
// where jitter is drawn uniformly from [0, Jitter) for each write and
// retransmissions is the time lost to Loss (see [Link.RTO]). The last line
// keeps deliveries in order: a later write never overtakes an earlier one,
// as on a reliable stream. Writes larger than 64 KiB are delivered in
// 64 KiB pieces, each at the end of its own transmission, so a receiver sees
// a large write arrive progressively.
type Link struct {
	Latency   time.Duration // one-way delay
	Bandwidth float64       // bits per second; 0 = unlimited
	Jitter    time.Duration // each write's delay gets a uniform random extra in [0, Jitter)
	Loss      float64       // probability in [0,1) that a write (a segment) is lost and retransmitted
	Seed      uint64        // seeds jitter and loss so runs are repeatable
}

// Limits of the emulation.
const (
	// linkSegment is the largest piece a write is delivered in.
	linkSegment = 64 << 10
	// linkMinQueue is the least number of undelivered bytes a wrapped
	// stream accepts before Write blocks.
	linkMinQueue = 1 << 20
	// linkMinRTO and linkMaxRTO bound the retransmission timeout, as Linux
	// TCP_RTO_MIN and TCP_RTO_MAX do.
	linkMinRTO = 200 * time.Millisecond
	linkMaxRTO = 120 * time.Second
	// linkMaxRetries is how often one write can be lost in a row before it
	// is delivered anyway (Linux tcp_retries2).
	linkMaxRetries = 15
)

// IsZero reports whether l emulates nothing: no latency, no bandwidth
// limit, no jitter and no loss. Seed alone has no effect.
func (l Link) IsZero() bool {
	return l.Latency == 0 && l.Bandwidth == 0 && l.Jitter == 0 && l.Loss == 0
}

// RTO is the retransmission timeout of a lost write: max(200ms, 2*RTT)
// where RTT = 2*Latency, like TCP's RTO for a steady RTT with its 200 ms
// floor. A lost write is delivered one RTO later than it would have been;
// if the retransmission is lost too (with the same probability Loss), the
// timeout doubles, up to 120 s, and after 15 retransmissions the write is
// delivered regardless.
func (l Link) RTO() time.Duration {
	return max(linkMinRTO, 4*l.Latency)
}

// validate reports whether l's fields are in range.
func (l Link) validate() error {
	switch {
	case l.Latency < 0:
		return fmt.Errorf("%w: negative latency %v", ErrLink, l.Latency)
	case l.Jitter < 0:
		return fmt.Errorf("%w: negative jitter %v", ErrLink, l.Jitter)
	case !(l.Bandwidth >= 0) || math.IsInf(l.Bandwidth, 0):
		return fmt.Errorf("%w: bandwidth %v", ErrLink, l.Bandwidth)
	case !(l.Loss >= 0 && l.Loss < 1):
		return fmt.Errorf("%w: loss %v not in [0,1)", ErrLink, l.Loss)
	}
	return nil
}

// String returns l in the syntax [ParseLink] accepts, such that
// ParseLink(l.String()) == l: "none" for the zero Link, otherwise the
// non-zero fields among latency (one-way), bw, jitter, loss and seed.
func (l Link) String() string {
	if l.IsZero() && l.Seed == 0 {
		return "none"
	}
	var parts []string
	if l.Latency != 0 {
		parts = append(parts, "latency="+l.Latency.String())
	}
	if l.Bandwidth != 0 {
		parts = append(parts, "bw="+formatBandwidth(l.Bandwidth))
	}
	if l.Jitter != 0 {
		parts = append(parts, "jitter="+l.Jitter.String())
	}
	if l.Loss != 0 {
		parts = append(parts, "loss="+formatLoss(l.Loss))
	}
	if l.Seed != 0 {
		parts = append(parts, "seed="+strconv.FormatUint(l.Seed, 10))
	}
	return strings.Join(parts, ",")
}

// bandwidthUnits are the units of "bw", lower-cased, in bits per second.
// Multipliers are decimal, as in tc(8).
var bandwidthUnits = map[string]float64{
	"bit": 1, "bps": 1,
	"kbit": 1e3, "kbps": 1e3,
	"mbit": 1e6, "mbps": 1e6,
	"gbit": 1e9, "gbps": 1e9,
}

func formatBandwidth(bw float64) string {
	for _, u := range []struct {
		name string
		mult float64
	}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}} {
		if q := bw / u.mult; q >= 1 && q == math.Trunc(q) && q*u.mult == bw {
			return strconv.FormatFloat(q, 'f', -1, 64) + u.name
		}
	}
	return strconv.FormatFloat(bw, 'f', -1, 64) + "bit"
}

func formatLoss(loss float64) string {
	pct := strconv.FormatFloat(loss*100, 'g', -1, 64) + "%"
	if v, err := parseLoss(pct); err == nil && v == loss {
		return pct
	}
	return strconv.FormatFloat(loss, 'g', -1, 64)
}

func parseLoss(v string) (float64, error) {
	num, pct := strings.CutSuffix(v, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return 0, err
	}
	if pct {
		f /= 100
	}
	if !(f >= 0 && f < 1) {
		return 0, errors.New("not in [0%, 100%)")
	}
	return f, nil
}

func parseBandwidth(v string) (float64, error) {
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, errors.New("want a number and a unit such as 100Mbit")
	}
	num, unit := v[:i], strings.ToLower(strings.TrimSpace(v[i:]))
	mult, ok := bandwidthUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (want bit, Kbit, Mbit, Gbit or bps, Kbps, Mbps, Gbps)", v[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, err
	}
	bw := f * mult
	if math.IsInf(bw, 0) {
		return 0, errors.New("out of range")
	}
	return bw, nil
}

func parseNonNegDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// ParseLink parses a link description: comma-separated key=value parts, in
// any order, each key at most once:
//
//	rtt=20ms      round-trip time; Latency = rtt/2
//	latency=10ms  one-way latency (not together with rtt)
//	bw=100Mbit    bandwidth in bit, Kbit, Mbit or Gbit (case-insensitive;
//	              the forms bps, Kbps, Mbps, Gbps mean the same); decimal
//	              multipliers; 0 with a unit means unlimited
//	jitter=2ms    uniform extra delay in [0, jitter) per write
//	loss=0.1%     loss probability, as a percentage or a fraction (0.001)
//	seed=42       seed of jitter and loss
//
// Durations use [time.ParseDuration] syntax and must not be negative. ""
// and "none" give the zero Link. Errors wrap [ErrLink] and quote the part
// at fault.
func ParseLink(s string) (Link, error) {
	var l Link
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return l, nil
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || v == "" {
			return Link{}, fmt.Errorf("%w: %q: want key=value", ErrLink, part)
		}
		key := k
		if key == "rtt" {
			key = "latency"
		}
		if seen[key] {
			return Link{}, fmt.Errorf("%w: %q: latency given twice", ErrLink, part)
		}
		seen[key] = true
		var err error
		switch k {
		case "rtt":
			var d time.Duration
			d, err = parseNonNegDuration(v)
			l.Latency = d / 2
		case "latency":
			l.Latency, err = parseNonNegDuration(v)
		case "bw":
			l.Bandwidth, err = parseBandwidth(v)
		case "jitter":
			l.Jitter, err = parseNonNegDuration(v)
		case "loss":
			l.Loss, err = parseLoss(v)
		case "seed":
			l.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			err = errors.New("unknown key (want rtt, latency, bw, jitter, loss or seed)")
		}
		if err != nil {
			return Link{}, fmt.Errorf("%w: %q: %v", ErrLink, part, err)
		}
	}
	return l, nil
}

// Wrap returns a stream whose writes reach s after the link's delay; the
// zero Link returns s itself. It panics if l's fields are out of range
// (negative durations or bandwidth, Loss outside [0,1)), which ParseLink
// never returns.
//
// The wrapped stream behaves as follows.
//
//   - Write copies p into a queue and returns at once, unless the queue
//     already holds at least max(1 MiB, 2*Bandwidth*(Latency+Jitter)/8)
//     undelivered bytes; then it blocks until there is room, the write
//     deadline passes (the error wraps [os.ErrDeadlineExceeded]), or the
//     stream is closed or reset. With unlimited bandwidth that bound caps
//     throughput at about 1 MiB per Latency.
//   - One goroutine per stream, started by the first Write, delivers the
//     queue to s in order, at the times given on [Link].
//   - An error from s.Write is returned by the next Write, Close or
//     CloseWrite; the data still queued is dropped.
//   - Close flushes: it waits until everything queued has been delivered,
//     then closes s. CloseWrite does the same and then calls s.CloseWrite.
//     If the write deadline passes first, they reset s and return an error
//     wrapping os.ErrDeadlineExceeded.
//   - Reset and ResetWithError drop what is queued, reset s and wait for
//     the delivery goroutine to exit, which the reset of s unblocks.
//   - SetWriteDeadline applies to the wrapper's Write, Close and CloseWrite,
//     not to s (whose writes happen later, in the delivery goroutine);
//     SetDeadline sets s's read deadline and the wrapper's write deadline.
//   - Everything else (Read, CloseRead, SetReadDeadline, Protocol, Conn,
//     Stat, Scope, ...) goes to s directly.
//
// Each wrapped stream draws jitter and loss from its own generator seeded
// with l.Seed, so two streams wrapped by the same Link see the same draws.
func (l Link) Wrap(s network.Stream) network.Stream {
	if l.IsZero() {
		return s
	}
	return &linkStream{Stream: s, sh: newShaper(l, s)}
}

// WrapWriter is [Link.Wrap] for a plain writer: writes reach w after the
// link's delay, Close flushes then closes w. The zero Link returns w itself.
// There is no write deadline, so Write may block for as long as w does.
func (l Link) WrapWriter(w io.WriteCloser) io.WriteCloser {
	if l.IsZero() {
		return w
	}
	return &linkWriter{w: w, sh: newShaper(l, w)}
}

// linkWriter is a plain writer behind a link.
type linkWriter struct {
	w  io.WriteCloser
	sh *shaper
}

func (lw *linkWriter) Write(p []byte) (int, error) { return lw.sh.write(p) }

func (lw *linkWriter) Close() error {
	err := lw.sh.flush()
	if cerr := lw.w.Close(); err == nil {
		err = cerr
	}
	return err
}

// linkStream is a libp2p stream behind a link; methods not overridden go
// to the embedded stream.
type linkStream struct {
	network.Stream
	sh *shaper
}

var _ network.Stream = (*linkStream)(nil)

func (ls *linkStream) Write(p []byte) (int, error) { return ls.sh.write(p) }

func (ls *linkStream) Close() error {
	return ls.finish(ls.Stream.Close)
}

func (ls *linkStream) CloseWrite() error {
	return ls.finish(ls.Stream.CloseWrite)
}

// finish flushes the queue and then calls closeFn, or resets the stream
// if the flush runs past the write deadline.
func (ls *linkStream) finish(closeFn func() error) error {
	err := ls.sh.flush()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		ls.sh.abort()
		_ = ls.Stream.Reset() // the deadline error is the one to report
		ls.sh.wait()
		return err
	}
	if cerr := closeFn(); err == nil {
		err = cerr
	}
	return err
}

func (ls *linkStream) Reset() error {
	ls.sh.abort()
	err := ls.Stream.Reset()
	ls.sh.wait()
	return err
}

func (ls *linkStream) ResetWithError(code network.StreamErrorCode) error {
	ls.sh.abort()
	err := ls.Stream.ResetWithError(code)
	ls.sh.wait()
	return err
}

func (ls *linkStream) SetDeadline(t time.Time) error {
	ls.sh.setWriteDeadline(t)
	return ls.Stream.SetReadDeadline(t)
}

func (ls *linkStream) SetWriteDeadline(t time.Time) error {
	ls.sh.setWriteDeadline(t)
	return nil
}

// errLinkClosed is returned by a Write after Close or CloseWrite.
var errLinkClosed = fmt.Errorf("relay: write on closed link: %w", net.ErrClosed)

// segment is a piece of a write and the time it is due.
type segment struct {
	b  []byte
	at time.Time
}

// shaper is the queue and delivery goroutine behind a wrapped writer.
type shaper struct {
	l     Link
	w     io.Writer
	limit int // queued bytes at which Write blocks

	done chan struct{} // closed when the delivery goroutine exits
	wake chan struct{} // capacity 1: tells the goroutine to look again

	mu       sync.Mutex
	rng      *rand.Rand
	q        []segment // undelivered, in order; q[0] may be being written
	queued   int       // bytes in q
	txEnd    time.Time // end of the last write's transmission
	lastAt   time.Time // delivery time of the last segment queued
	deadline time.Time // write deadline; zero for none
	changed  chan struct{}
	err      error // sticky error of w.Write
	closing  bool  // Close or CloseWrite called
	reset    bool  // Reset called or flush deadline passed
	running  bool  // delivery goroutine started
}

func newShaper(l Link, w io.Writer) *shaper {
	if err := l.validate(); err != nil {
		panic(err)
	}
	limit := linkMinQueue
	if l.Bandwidth > 0 {
		bdp := l.Bandwidth / 8 * 2 * (l.Latency + l.Jitter).Seconds()
		if bdp > float64(limit) {
			limit = int(min(bdp, 1<<40))
		}
	}
	return &shaper{
		l:       l,
		w:       w,
		limit:   limit,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		rng:     rand.New(rand.NewPCG(l.Seed, l.Seed^0x9e3779b97f4a7c15)),
		changed: make(chan struct{}),
	}
}

// broadcast wakes every Write waiting for room or a state change.
// s.mu must be held.
func (s *shaper) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// signal wakes the delivery goroutine.
func (s *shaper) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// txTime is how long n bytes take to transmit.
func (s *shaper) txTime(n int) time.Duration {
	if s.l.Bandwidth == 0 {
		return 0
	}
	return time.Duration(float64(n) * 8 / s.l.Bandwidth * float64(time.Second))
}

// extraDelay draws the jitter and retransmission delay of one write.
// s.mu must be held.
func (s *shaper) extraDelay() time.Duration {
	var d time.Duration
	if s.l.Jitter > 0 {
		d = time.Duration(s.rng.Int64N(int64(s.l.Jitter)))
	}
	if s.l.Loss > 0 {
		rto := s.l.RTO()
		for range linkMaxRetries {
			if s.rng.Float64() >= s.l.Loss {
				break
			}
			d += rto
			rto = min(2*rto, linkMaxRTO)
		}
	}
	return d
}

// stateErr is the error a Write or flush returns for the stream's state,
// or nil. s.mu must be held.
func (s *shaper) stateErr() error {
	switch {
	case s.err != nil:
		return s.err
	case s.reset:
		return network.ErrReset
	case s.closing:
		return errLinkClosed
	}
	return nil
}

func (s *shaper) write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if err := s.stateErr(); err != nil {
			return 0, err
		}
		if !s.deadline.IsZero() && !time.Now().Before(s.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		if s.queued < s.limit {
			break
		}
		changed, deadline := s.changed, s.deadline
		s.mu.Unlock()
		var (
			expired <-chan time.Time
			t       *time.Timer
		)
		if !deadline.IsZero() {
			t = time.NewTimer(time.Until(deadline))
			expired = t.C
		}
		select {
		case <-changed:
		case <-expired:
		}
		if t != nil {
			t.Stop()
		}
		s.mu.Lock()
	}
	if len(p) == 0 {
		return 0, nil
	}

	now := time.Now()
	start := now
	if s.txEnd.After(start) {
		start = s.txEnd
	}
	extra := s.l.Latency + s.extraDelay()
	buf := make([]byte, len(p))
	copy(buf, p)
	wasEmpty := len(s.q) == 0
	for off := 0; off < len(buf); off += linkSegment {
		end := min(off+linkSegment, len(buf))
		s.txEnd = start.Add(s.txTime(end))
		at := s.txEnd.Add(extra)
		if at.Before(s.lastAt) {
			at = s.lastAt
		}
		s.lastAt = at
		s.q = append(s.q, segment{b: buf[off:end], at: at})
	}
	s.queued += len(buf)
	if !s.running {
		s.running = true
		go s.run()
	} else if wasEmpty {
		s.signal()
	}
	return len(p), nil
}

// run delivers the queue to s.w until it is closed and empty, reset, or a
// write fails.
func (s *shaper) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.reset || s.err != nil {
			s.mu.Unlock()
			return
		}
		if len(s.q) == 0 {
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return
			}
			<-s.wake
			continue
		}
		seg := s.q[0]
		s.mu.Unlock()

		if d := time.Until(seg.at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-s.wake: // closing or reset: look again
				timer.Stop()
				continue
			}
		}
		_, err := s.w.Write(seg.b)

		s.mu.Lock()
		if s.reset {
			s.mu.Unlock()
			return
		}
		s.q[0] = segment{}
		s.q = s.q[1:]
		s.queued -= len(seg.b)
		if err != nil {
			s.err = err
			s.q, s.queued = nil, 0
		}
		s.broadcast()
		s.mu.Unlock()
	}
}

// flush stops further writes and waits until the queue is delivered, a
// write fails, the stream is reset, or the write deadline passes.
func (s *shaper) flush() error {
	s.mu.Lock()
	s.closing = true
	s.broadcast()
	running, deadline := s.running, s.deadline
	s.mu.Unlock()
	if running {
		s.signal()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-s.done:
		case <-expired:
			return fmt.Errorf("relay: flushing link: %w", os.ErrDeadlineExceeded)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.reset {
		return network.ErrReset
	}
	return nil
}

// abort drops the queue and stops the delivery goroutine at its next
// step; a write to s.w in progress is not interrupted (resetting the
// underlying stream does that).
func (s *shaper) abort() {
	s.mu.Lock()
	s.reset = true
	s.q, s.queued = nil, 0
	s.broadcast()
	s.mu.Unlock()
	s.signal()
}

// wait returns when the delivery goroutine has exited or never started.
func (s *shaper) wait() {
	s.mu.Lock()
	running := s.running // cannot start later: reset or closing is set
	s.mu.Unlock()
	if running {
		<-s.done
	}
}

func (s *shaper) setWriteDeadline(t time.Time) {
	s.mu.Lock()
	s.deadline = t
	s.broadcast()
	s.mu.Unlock()
}
