package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/zeebo/blake3"
	"golang.org/x/sync/semaphore"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
	"github.com/stratanet/strata/weights"
)

// MigrateProtocol carries a session, KV cache included, from a leaving
// server to a successor serving the same blocks: one [Migrate] frame, the
// KV export, then a [Ready] or [Error] answer.
const MigrateProtocol protocol.ID = "/strata/migrate/1.0.0"

// More error codes.
const (
	CodeMoved ErrorCode = 10 // the session moved to another server
)

// ServerConfig tunes a [Server]. Zero values take the defaults given.
type ServerConfig struct {
	// Model is the id of the model the shard belongs to; required.
	Model weights.ModelID
	// Profile is the numerics profile reported to clients (default
	// "cpu-v1/kv-<type>").
	Profile string
	// Version is reported to clients.
	Version string
	// MaxSessions caps open sessions (default 64); MaxSessionsPerPeer caps
	// those of one client (default 8).
	MaxSessions, MaxSessionsPerPeer int
	// MaxActivationBytes caps the activations of one step (default
	// DefaultMaxActivationBytes).
	MaxActivationBytes int
	// StepMemory is the memory for steps being read and computed, reserved
	// before a step's bytes are read (default 256 MiB): when it is used
	// up, readers wait (backpressure) up to StreamTimeout.
	StepMemory int64
	// StreamTimeout bounds reading one frame's body, every write, dialing
	// the next hop and waiting for step memory (default 30 s).
	StreamTimeout time.Duration
	// ExpiryInterval is how often idle sessions are looked for (default 1 s).
	ExpiryInterval time.Duration
	// Link emulates a network link on every stream this server writes
	// session data to (zero: none).
	Link Link
	// Throughput is the decode tokens/s reported to clients; 0 measures it
	// at start.
	Throughput float64
	// Slots is the number of steps computed at once (default 1: the
	// shard's thread pool runs one matrix product at a time anyway).
	// Steps beyond them wait, and go in order of Priority.
	Slots int
	// Priority ranks the owners of waiting steps (higher first; nil: all
	// equal), e.g. by the credit balance their ledger proves. Aging (per
	// second waited, default 0.1) is added to a waiting step's priority,
	// so that nobody waits forever.
	Priority func(peer.ID) float64
	Aging    float64
	// Fault makes the server misbehave on purpose (tests, demos,
	// research); zero: honest.
	Fault Fault
	// Logger receives diagnostics (default: discard).
	Logger *slog.Logger
}

func (c *ServerConfig) defaults(sh *shard.Shard) {
	if c.Profile == "" {
		kv := "f32"
		if sh.KVType() == shard.KVF16 {
			kv = "f16"
		}
		c.Profile = "cpu-v1/kv-" + kv
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 64
	}
	if c.MaxSessionsPerPeer <= 0 {
		c.MaxSessionsPerPeer = 8
	}
	c.MaxActivationBytes = maxActivation(c.MaxActivationBytes)
	if c.Slots <= 0 {
		c.Slots = 1
	}
	if !(c.Aging > 0) {
		c.Aging = 0.1
	}
	if c.StepMemory <= 0 {
		c.StepMemory = 256 << 20
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = 30 * time.Second
	}
	if c.ExpiryInterval <= 0 {
		c.ExpiryInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ServerStats counts what a server did.
type ServerStats struct {
	Sessions       int           // open now
	Opened         int64         // sessions opened (migrations in included)
	Steps          int64         // steps computed
	Completed      int64         // of those, the steps whose frames (output, copy, receipt) are written: BytesSent counts them
	Positions      int64         // positions computed
	Duplicates     int64         // steps dropped because the session already held them
	MigratedIn     int64         // sessions received from a leaving server
	MigratedOut    int64         // sessions handed to a successor
	Expired        int64         // sessions dropped for idleness
	Rejected       int64         // frames answered with an error
	ComputeTime    time.Duration // time in the shard's forward passes
	HashTime       time.Duration // time in BLAKE3: input, history and output hashes of receipts
	SignTime       time.Duration // time signing receipts (Ed25519)
	ForwardFailure int64         // steps whose next hop could not be reached
	// BytesSent counts the bytes of the frames the server wrote (to next
	// hops and to clients: steps, copies, receipts, control).
	BytesSent int64
	// Faults counts the steps whose output ServerConfig.Fault changed,
	// delayed or dropped (a step run again after a rollback counts once,
	// as its latest attempt went).
	Faults int64
}

// Server runs a shard's blocks for remote sessions over the session
// protocol. Create it with [NewServer]; it serves until Close or Leave.
type Server struct {
	node  *dht.Node
	shard *shard.Shard
	cfg   ServerConfig
	key   crypto.PrivKey
	dim   int
	mem   *semaphore.Weighted
	fault *faulter
	// served remembers what closed sessions were served (for work
	// receipts).
	served *lru.Cache[SessionID, WorkSummary]
	sched  *scheduler
	// bytesSent counts the frames' bytes this server wrote.
	bytesSent atomic.Int64
	// completed counts the steps whose frames are all written.
	completed atomic.Int64

	mu       sync.Mutex
	sessions map[SessionID]*session
	perPeer  map[peer.ID]int
	stats    ServerStats
	leaving  bool
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

// session is one client's session on this server.
type session struct {
	id    SessionID
	owner peer.ID
	sh    *shard.Session
	enc   Encoding

	mu       sync.Mutex // serializes steps and guards what follows
	open     Open       // its current neighbours included
	upstream peer.ID    // "" : the owner sends the steps
	nextSeq  uint64
	history  [32]byte
	marks    []mark // history at the end of each step, for rollback
	last     time.Time
	closed   bool
	moved    bool
	next     network.Stream // to the next hop, opened lazily
	ctl      *ctlStream     // to the owner; nil until attached
	done     chan struct{}  // closed when the session is dropped
	work     workLog        // the steps computed for the owner
}

// mark is a session's history hash when it held n positions.
type mark struct {
	n       int
	history [32]byte
}

// ctlStream is a stream whose writes come from several goroutines.
type ctlStream struct {
	mu sync.Mutex
	s  network.Stream
}

// NewServer starts serving sh, the blocks of model cfg.Model, on node's
// host. The node should have been started with an info function that
// returns [Server.Info] (see [InfoFunc]).
func NewServer(node *dht.Node, sh *shard.Shard, cfg ServerConfig) (*Server, error) {
	if node == nil || sh == nil {
		return nil, errors.New("relay: NewServer needs a node and a shard")
	}
	if sh.Span().Len() == 0 {
		return nil, errors.New("relay: the shard holds no blocks")
	}
	cfg.defaults(sh)
	key := node.Host().Peerstore().PrivKey(node.ID())
	if key == nil {
		return nil, errors.New("relay: the node's private key is not in its peerstore")
	}
	s := &Server{
		node: node, shard: sh, cfg: cfg, key: key, dim: sh.HParams().Dim,
		mem:      semaphore.NewWeighted(cfg.StepMemory),
		fault:    newFaulter(cfg.Fault),
		served:   servedCache(),
		sched:    newScheduler(cfg.Slots, cfg.Priority, cfg.Aging),
		sessions: make(map[SessionID]*session),
		perPeer:  make(map[peer.ID]int),
		done:     make(chan struct{}),
	}
	if s.cfg.Throughput <= 0 {
		tp, err := MeasureThroughput(sh)
		if err != nil {
			return nil, err
		}
		s.cfg.Throughput = tp
	}
	node.Host().SetStreamHandler(Protocol, s.handleSession)
	node.Host().SetStreamHandler(MigrateProtocol, s.handleMigrate)
	s.wg.Add(1)
	go s.expire()
	return s, nil
}

// MeasureThroughput times a few decode steps of the shard's blocks in a
// throw-away session and returns tokens/s.
func MeasureThroughput(sh *shard.Shard) (float64, error) {
	const warm, timed = 2, 6
	sess, err := sh.NewSession(warm + timed)
	if err != nil {
		return 0, fmt.Errorf("relay: measure throughput: %w", err)
	}
	defer sess.Close()
	x := make([]float32, sh.HParams().Dim)
	var start time.Time
	for i := range warm + timed {
		if i == warm {
			start = time.Now()
		}
		for j := range x {
			x[j] = float32(math.Sin(float64(i*len(x) + j)))
		}
		if err := sh.Forward(sess, x); err != nil {
			return 0, fmt.Errorf("relay: measure throughput: %w", err)
		}
	}
	return timed / max(time.Since(start).Seconds(), 1e-9), nil
}

// Info is what the info protocol answers for this server.
func (s *Server) Info() dht.Info {
	st := s.Stats()
	sp := s.shard.Span()
	addrs := s.node.Host().Addrs()
	if len(addrs) > dht.MaxInfoAddrs {
		addrs = addrs[:dht.MaxInfoAddrs]
	}
	return dht.Info{
		Span: dht.Span{Start: sp.Start, End: sp.End}, Throughput: s.cfg.Throughput,
		FreeKVBytes: max(s.shard.FreeKV(), 0), ActiveSessions: int64(st.Sessions),
		Profile: s.cfg.Profile, Version: s.cfg.Version, Addrs: addrs,
		Counters: dht.Counters{Steps: st.Completed, Compute: st.ComputeTime, Hash: st.HashTime, Sign: st.SignTime, BytesSent: st.BytesSent},
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	// Completed first: the steps it counts are in what follows, their
	// times and bytes included.
	completed := s.completed.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Completed = completed
	st.Sessions = len(s.sessions)
	st.Faults = s.fault.hits()
	st.BytesSent = s.bytesSent.Load()
	return st
}

// Close stops serving at once: sessions are dropped, their streams reset.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.mu.Unlock()
	s.node.Host().RemoveStreamHandler(Protocol)
	s.node.Host().RemoveStreamHandler(MigrateProtocol)
	for _, ss := range all {
		s.drop(ss, true)
	}
	s.wg.Wait()
	return nil
}

func (s *Server) logf(msg string, args ...any) { s.cfg.Logger.Debug("relay: "+msg, args...) }

// expire drops sessions idle for longer than their timeout.
func (s *Server) expire() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			var idle []*session
			for _, ss := range s.sessions {
				if ss.mu.TryLock() {
					if now.Sub(ss.last) > time.Duration(ss.open.TimeoutMS)*time.Millisecond {
						idle = append(idle, ss)
					}
					ss.mu.Unlock()
				}
			}
			s.stats.Expired += int64(len(idle))
			s.mu.Unlock()
			for _, ss := range idle {
				s.logf("session expired", "session", fmt.Sprintf("%x", ss.id[:4]))
				s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeExpired, Message: "session idle for too long"})
				s.drop(ss, true)
			}
		}
	}
}

// summary is what the server did for ss (ss.mu held).
func (s *Server) summary(ss *session) WorkSummary {
	w := ss.work.summary()
	w.Peer, w.Span, w.Session = ss.owner, ss.open.Span, ss.id
	return w
}

// Served returns what this server computed for session id, open or
// recently closed (the last MaxServed), if owner opened it: the facts the
// server signs a work receipt for. Peer is the owner; replays are not
// counted.
func (s *Server) Served(id SessionID, owner peer.ID) (WorkSummary, bool) {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss != nil {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.owner != owner || ss.closed {
			return WorkSummary{}, false
		}
		return s.summary(ss), len(ss.work.steps) > 0
	}
	w, ok := s.served.Get(id)
	if !ok || w.Peer != owner {
		return WorkSummary{}, false
	}
	return w, true
}

func servedCache() *lru.Cache[SessionID, WorkSummary] {
	c, _ := lru.New[SessionID, WorkSummary](MaxServed) // fails only for a size <= 0
	return c
}

// MaxServed is how many closed sessions a server remembers for
// settlement.
const MaxServed = 4096

// drop closes a session, frees its KV cache and, if reset, its streams.
func (s *Server) drop(ss *session, reset bool) {
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
		if s.perPeer[ss.owner]--; s.perPeer[ss.owner] <= 0 {
			delete(s.perPeer, ss.owner)
		}
	}
	s.mu.Unlock()
	ss.mu.Lock()
	if !ss.closed {
		ss.closed = true
		ss.sh.Close()
		if len(ss.work.steps) > 0 && !ss.moved {
			s.served.Add(ss.id, s.summary(ss))
		}
	}
	select {
	case <-ss.done:
	default:
		close(ss.done)
	}
	s.fault.forget(ss.id)
	next, ctl := ss.next, ss.ctl
	ss.next = nil
	ss.mu.Unlock()
	if next != nil {
		_ = next.Reset()
	}
	if ctl != nil {
		if reset {
			_ = ctl.s.Reset()
		} else {
			_ = ctl.s.Close()
		}
	}
}

// readFrame reads one frame from st: the header may take as long as it
// takes (sessions idle between steps; expiry resets idle streams), the
// body must follow within the stream timeout, and memory for a step is
// reserved before its body is read. release gives the memory back.
func (s *Server) readFrame(st network.Stream) (f Frame, release func(), err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, bad("frame header truncated")
		}
		return nil, nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if limit := int64(max(s.cfg.MaxActivationBytes+StepOverhead, MaxControlFrame)); n > limit {
		return nil, nil, bad("frame of %d bytes, at most %d", n, limit)
	}
	// Decoding a step takes up to ~4 bytes of floats per wire byte, and the
	// output about as much again.
	reserve := 6*n + 1024
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StreamTimeout)
	err = s.mem.Acquire(ctx, reserve)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: no memory for a frame of %d bytes within %v", errOverloaded, n, s.cfg.StreamTimeout)
	}
	release = func() { s.mem.Release(reserve) }
	_ = st.SetReadDeadline(time.Now().Add(s.cfg.StreamTimeout))
	b := make([]byte, n)
	_, err = io.ReadFull(st, b)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		release()
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, bad("frame of %d bytes truncated: %v", n, err)
		}
		return nil, nil, err
	}
	f, err = DecodeFrame(b, s.cfg.MaxActivationBytes)
	if err != nil {
		release()
		return nil, nil, err
	}
	return f, release, nil
}

var errOverloaded = errors.New("relay: server overloaded")

// writeFrame writes f within the stream timeout.
func (s *Server) writeFrame(st network.Stream, f Frame) error {
	b, err := appendFrame(f, s.cfg.MaxActivationBytes)
	if err != nil {
		return err
	}
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.StreamTimeout))
	_, err = st.Write(b)
	s.bytesSent.Add(int64(len(b)))
	return err
}

// sendCtl writes f to the session's owner, if attached. Errors are
// logged: a dead control stream ends the session through its reader.
func (s *Server) sendCtl(ss *session, f Frame) {
	ss.mu.Lock()
	c := ss.ctl
	ss.mu.Unlock()
	s.send(c, f)
}

// send writes f on a control stream (nil: nowhere).
func (s *Server) send(c *ctlStream, f Frame) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := s.writeFrame(c.s, f); err != nil {
		s.logf("write to client failed", "err", err)
	}
}

// reject answers a bad request on st and resets it.
func (s *Server) reject(st network.Stream, id SessionID, code ErrorCode, err error) {
	s.mu.Lock()
	s.stats.Rejected++
	s.mu.Unlock()
	msg := err.Error()
	if len(msg) > MaxMessageLen {
		msg = msg[:MaxMessageLen]
	}
	s.logf("rejected", "peer", st.Conn().RemotePeer(), "code", code, "err", msg)
	if err := s.writeFrame(st, &Error{SessionID: id, Code: code, Message: toValidUTF8(msg)}); err != nil {
		_ = st.Reset()
		return
	}
	// Close, not Reset: a reset makes the peer drop what it has not read
	// yet, this error included. Closing the read side too discards
	// whatever the peer still sends.
	_ = st.Close()
}

func toValidUTF8(s string) string {
	for i := len(s); i > 0; i-- {
		if validText("", s[:i], MaxMessageLen) == nil {
			return s[:i]
		}
	}
	return ""
}

func codeOf(err error) ErrorCode {
	switch {
	case errors.Is(err, errOverloaded), errors.Is(err, shard.ErrKVBudget):
		return CodeOverloaded
	case errors.Is(err, ErrFrame), errors.Is(err, ErrActivation):
		return CodeBadFrame
	}
	return CodeInternal
}

// handleSession serves one stream of the session protocol. Its first frame
// decides what it is: an Open from a client (the session's control stream)
// or a Step from the session's upstream stage (a relay stream).
func (s *Server) handleSession(st network.Stream) {
	st = s.cfg.Link.Wrap(st)
	remote := st.Conn().RemotePeer()
	f, release, err := s.readFrame(st)
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.reject(st, SessionID{}, codeOf(err), err)
		} else {
			_ = st.Reset()
		}
		return
	}
	switch f := f.(type) {
	case *Open:
		release()
		s.serveControl(st, remote, f)
	case *Step:
		s.serveRelay(st, remote, f, release)
	default:
		release()
		s.reject(st, SessionID{}, CodeBadFrame, fmt.Errorf("%w: a session stream starts with open or step, not %v", ErrFrame, f.Kind()))
	}
}

// openSession checks an Open and makes its session, or attaches the
// owner's control stream to an existing session (after a migration, or a
// reconnect).
func (s *Server) openSession(st network.Stream, remote peer.ID, o *Open) (*session, ErrorCode, error) {
	sp := s.shard.Span()
	switch {
	case o.Model != s.cfg.Model:
		return nil, CodeWrongModel, fmt.Errorf("model %s is not served here (this is %s)", o.Model, s.cfg.Model)
	case o.Span.Start < sp.Start || o.Span.End > sp.End:
		return nil, CodeSpan, fmt.Errorf("blocks %s are not served here (this server has %s)", o.Span, sp)
	case o.Encoding == Q8_0 && s.dim%q8Block != 0:
		return nil, CodeBadFrame, fmt.Errorf("q8_0 activations need a hidden size divisible by %d, not %d", q8Block, s.dim)
	}
	var upstream peer.ID
	if o.Upstream != "" {
		p, err := peer.Decode(o.Upstream)
		if err != nil {
			return nil, CodeBadFrame, fmt.Errorf("upstream %q: %v", o.Upstream, err)
		}
		upstream = p
	}
	if _, err := nextHop(o.NextHops); err != nil {
		return nil, CodeBadFrame, err
	}
	s.mu.Lock()
	if ss, ok := s.sessions[o.SessionID]; ok {
		s.mu.Unlock()
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if ss.owner != remote || ss.open.Model != o.Model || ss.open.Span != o.Span || ss.closed {
			return nil, CodeBadFrame, errors.New("session id in use")
		}
		old := ss.ctl
		ss.ctl = &ctlStream{s: st}
		ss.last = time.Now()
		if old != nil {
			_ = old.s.Reset()
		}
		return ss, 0, nil
	}
	s.mu.Unlock()
	return s.admit(remote, o, upstream, &ctlStream{s: st})
}

// admit makes a new session for owner: a slot within the limits, then its
// KV cache. The session is returned registered and unlocked.
func (s *Server) admit(owner peer.ID, o *Open, upstream peer.ID, ctl *ctlStream) (*session, ErrorCode, error) {
	s.mu.Lock()
	if s.leaving || s.closed {
		s.mu.Unlock()
		return nil, CodeOverloaded, errors.New("server is leaving")
	}
	if _, ok := s.sessions[o.SessionID]; ok {
		s.mu.Unlock()
		return nil, CodeBadFrame, errors.New("session id in use")
	}
	if len(s.sessions) >= s.cfg.MaxSessions || s.perPeer[owner] >= s.cfg.MaxSessionsPerPeer {
		s.mu.Unlock()
		return nil, CodeOverloaded, fmt.Errorf("too many sessions (%d here, %d of this peer)", len(s.sessions), s.perPeer[owner])
	}
	// Reserve the slot before the (slow) KV allocation; steps wait on ss.mu.
	ss := &session{id: o.SessionID, owner: owner, enc: o.Encoding, open: *o, upstream: upstream,
		last: time.Now(), ctl: ctl, done: make(chan struct{})}
	ss.mu.Lock()
	s.sessions[o.SessionID] = ss
	s.perPeer[owner]++
	s.mu.Unlock()
	sh, err := s.shard.NewSessionSpan(shard.Span{Start: o.Span.Start, End: o.Span.End}, o.MaxLength)
	if err != nil {
		ss.closed = true
		ss.mu.Unlock()
		s.drop(ss, false)
		return nil, codeOf(err), err
	}
	ss.sh = sh
	ss.mu.Unlock()
	s.mu.Lock()
	s.stats.Opened++
	s.mu.Unlock()
	return ss, 0, nil
}

// serveControl runs the owner's control stream of a session.
func (s *Server) serveControl(st network.Stream, remote peer.ID, o *Open) {
	ss, code, err := s.openSession(st, remote, o)
	if err != nil {
		s.reject(st, o.SessionID, code, err)
		return
	}
	ss.mu.Lock()
	n := ss.sh.Len()
	c := ss.ctl
	ss.mu.Unlock()
	c.mu.Lock()
	err = s.writeFrame(st, &Ready{SessionID: ss.id, Len: n})
	c.mu.Unlock()
	if err != nil {
		s.drop(ss, true)
		return
	}
	for {
		f, release, err := s.readFrame(st)
		if err != nil {
			ss.mu.Lock()
			mine := ss.ctl == c
			ss.mu.Unlock()
			if !mine { // replaced by a newer control stream
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) {
				s.reject(st, ss.id, codeOf(err), err)
			}
			s.drop(ss, true)
			return
		}
		if id := sessionOf(f); id != ss.id {
			release()
			s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeNoSession, Message: "frame for another session on this stream"})
			continue
		}
		switch f := f.(type) {
		case *Step:
			s.step(ss, remote, f)
		case *Reroute:
			err := s.route(ss, f)
			if err != nil {
				s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeBadFrame, Message: err.Error()})
			} else {
				ss.mu.Lock()
				n := ss.sh.Len()
				ss.mu.Unlock()
				s.sendCtl(ss, &Ready{SessionID: ss.id, Len: n})
			}
		case *Rollback:
			if err := s.rollback(ss, f.Len); err != nil {
				s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeOutOfOrder, Message: err.Error()})
			} else {
				s.sendCtl(ss, &Ready{SessionID: ss.id, Len: f.Len})
			}
		case *Close:
			release()
			s.drop(ss, false)
			return
		default:
			s.sendCtl(ss, &Error{SessionID: ss.id, Code: CodeBadFrame, Message: fmt.Sprintf("unexpected %v frame", f.Kind())})
		}
		release()
	}
}

func sessionOf(f Frame) SessionID {
	switch f := f.(type) {
	case *Open:
		return f.SessionID
	case *Step:
		return f.SessionID
	case *Close:
		return f.SessionID
	case *Reroute:
		return f.SessionID
	case *Receipt:
		return f.SessionID
	case *Error:
		return f.SessionID
	case *Ready:
		return f.SessionID
	case *Moved:
		return f.SessionID
	case *Migrate:
		return f.SessionID
	case *Rollback:
		return f.SessionID
	}
	return SessionID{}
}

// route re-wires a session's neighbours.
func (s *Server) route(ss *session, r *Reroute) error {
	var up peer.ID
	if r.Upstream != "" {
		p, err := peer.Decode(r.Upstream)
		if err != nil {
			return fmt.Errorf("upstream %q: %v", r.Upstream, err)
		}
		up = p
	}
	if _, err := nextHop(r.NextHops); err != nil {
		return err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.upstream = up
	ss.open.Upstream = r.Upstream
	ss.open.NextHops = append([]string(nil), r.NextHops...)
	if ss.next != nil {
		_ = ss.next.Reset()
		ss.next = nil
	}
	return nil
}

// advanceHistory extends a session's history hash by the input rows of
// count positions: h = BLAKE3(h || BLAKE3(row)) for each position in
// order. Per position, so that a replay cut into other steps (a replaced
// replica rebuilding its KV cache) ends with the same history as the
// original run.
func advanceHistory(h [32]byte, act []byte, count int) [32]byte {
	row := len(act) / count
	var buf [64]byte
	for p := range count {
		copy(buf[:32], h[:])
		r := blake3.Sum256(act[p*row : (p+1)*row])
		copy(buf[32:], r[:])
		h = blake3.Sum256(buf[:])
	}
	return h
}

// rollback forgets a session's positions from n on; n must be the end of
// a step this server computed (or 0).
func (s *Server) rollback(ss *session, n int) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return errors.New("session closed")
	}
	if n == ss.sh.Len() {
		return nil
	}
	hist, i := [32]byte{}, 0
	if n > 0 {
		i = slices.IndexFunc(ss.marks, func(m mark) bool { return m.n == n })
		if i < 0 {
			return fmt.Errorf("cannot roll back to %d: not the end of a step computed here", n)
		}
		hist = ss.marks[i].history
		i++
	}
	if err := ss.sh.Rollback(n); err != nil {
		return err
	}
	ss.marks = ss.marks[:i]
	ss.history = hist
	ss.work.truncate(n)
	return nil
}

// serveRelay runs a stream on which the upstream stage pushes steps.
func (s *Server) serveRelay(st network.Stream, remote peer.ID, first *Step, release func()) {
	s.mu.Lock()
	ss := s.sessions[first.SessionID]
	s.mu.Unlock()
	var allowed bool
	if ss != nil {
		ss.mu.Lock()
		allowed = ss.upstream != "" && ss.upstream == remote && !ss.closed
		ss.mu.Unlock()
	}
	if !allowed {
		release()
		// The same answer whether or not the session exists: another peer
		// learns nothing about it.
		s.reject(st, first.SessionID, CodeNoSession, errors.New("no such session for this peer"))
		return
	}
	f := Frame(first)
	for {
		step, ok := f.(*Step)
		switch {
		case !ok:
			release()
			s.reject(st, ss.id, CodeBadFrame, fmt.Errorf("%w: only steps on a relay stream, not %v", ErrFrame, f.Kind()))
			return
		case step.SessionID != ss.id:
			release()
			s.reject(st, ss.id, CodeNoSession, errors.New("one session per relay stream"))
			return
		}
		if err := s.step(ss, remote, step); err != nil {
			release()
			if errors.Is(err, errNotAllowed) {
				s.reject(st, ss.id, CodeNoSession, errors.New("no such session for this peer"))
				return
			}
			// The owner has been told; the upstream learns it from the reset.
			_ = st.Reset()
			return
		}
		release()
		var err error
		f, release, err = s.readFrame(st)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, network.ErrReset) {
				s.reject(st, ss.id, codeOf(err), err)
			} else {
				_ = st.Close()
			}
			return
		}
	}
}

var errNotAllowed = errors.New("relay: peer may not step this session")

// step runs one step of a session from peer from (its upstream or its
// owner), forwards the output to the next hop and sends a copy and a
// signed receipt to the owner. Errors are reported to the owner; the
// returned error tells the caller whether to keep the stream.
func (s *Server) step(ss *session, from peer.ID, st *Step) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		code, msg := CodeNoSession, "session closed"
		if ss.moved {
			code, msg = CodeMoved, "session moved"
		}
		if from == ss.owner {
			s.send(ss.ctl, &Error{SessionID: ss.id, Code: code, Message: msg})
		}
		return errors.New(msg)
	}
	if from != ss.owner && from != ss.upstream {
		return errNotAllowed
	}
	ss.last = time.Now()
	fail := func(code ErrorCode, format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		s.mu.Lock()
		s.stats.Rejected++
		s.mu.Unlock()
		s.send(ss.ctl, &Error{SessionID: ss.id, Code: code, Message: toValidUTF8(err.Error())})
		return err
	}
	n := ss.sh.Len()
	switch {
	case st.Dim != s.dim:
		return fail(CodeBadFrame, "step of width %d; the model's is %d", st.Dim, s.dim)
	case st.Encoding != ss.enc:
		return fail(CodeBadFrame, "step in %s; the session uses %s", st.Encoding, ss.enc)
	case st.Start+st.Count <= n:
		// Already computed (a replay pushed through a live stage, or the
		// same step from the owner and the upstream): nothing to do.
		s.mu.Lock()
		s.stats.Duplicates++
		s.mu.Unlock()
		return nil
	case st.Start != n:
		return fail(CodeOutOfOrder, "step at positions %d+%d; the session holds %d", st.Start, st.Count, n)
	case st.Start+st.Count > ss.sh.MaxLen():
		return fail(CodeOutOfOrder, "step at positions %d+%d beyond the session's %d", st.Start, st.Count, ss.sh.MaxLen())
	}
	x, err := DecodeActivations(st.Encoding, st.Activations, st.Count*st.Dim)
	if err != nil {
		return fail(CodeBadFrame, "%v", err)
	}
	t0 := time.Now()
	in := blake3.Sum256(st.Activations)
	ss.history = advanceHistory(ss.history, st.Activations, st.Count)
	hashing := time.Since(t0)
	if err := s.sched.acquire(ss.owner, s.done, ss.done); err != nil {
		return err
	}
	t0 = time.Now()
	err = ss.sh.Forward(context.Background(), x)
	compute := time.Since(t0)
	s.sched.release()
	if err != nil {
		return fail(CodeInternal, "%v", err)
	}
	out, err := EncodeActivations(ss.enc, x)
	if err != nil {
		return fail(CodeInternal, "%v", err)
	}
	ss.nextSeq = st.Seq + 1
	ss.marks = append(ss.marks, mark{n: ss.sh.Len(), history: ss.history})
	out, delay, dropped := s.fault.apply(ss.id, st.Seq, ss.enc, x, out)
	if dropped {
		return nil
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.done:
			return errors.New("server closed")
		}
	}
	outStep := &Step{SessionID: ss.id, Seq: st.Seq, Start: st.Start, Count: st.Count, Dim: st.Dim, Encoding: ss.enc, Activations: out}
	fwdErr := s.forward(ss, outStep)
	t0 = time.Now()
	rc := &Receipt{SessionID: ss.id, Seq: st.Seq, Span: ss.open.Span, Tokens: st.Count,
		InputHash: in, OutputHash: blake3.Sum256(out), HistoryHash: ss.history, PeerID: s.node.ID().String()}
	hashing += time.Since(t0)
	if st.Seq&replaySeq == 0 {
		ss.work.add(st.Start, st.Count, rc.OutputHash)
	}
	t0 = time.Now()
	if rc.Signature, err = s.key.Sign(rc.SigningBytes()); err != nil {
		return fail(CodeInternal, "sign receipt: %v", err)
	}
	signing := time.Since(t0)
	s.mu.Lock()
	s.stats.Steps++
	s.stats.Positions += int64(st.Count)
	s.stats.ComputeTime += compute
	s.stats.HashTime += hashing
	s.stats.SignTime += signing
	if fwdErr != nil {
		s.stats.ForwardFailure++
	}
	s.mu.Unlock()
	// The copy for the owner goes after the forward: off the critical path.
	s.send(ss.ctl, outStep)
	s.send(ss.ctl, rc)
	if fwdErr != nil {
		s.send(ss.ctl, &Error{SessionID: ss.id, Code: CodeNextHopFail, Message: toValidUTF8(fwdErr.Error())})
	}
	s.completed.Add(1)
	return nil
}

// nextHop parses a session's next hops: the multiaddrs of one peer.
func nextHop(hops []string) (*peer.AddrInfo, error) {
	if len(hops) == 0 {
		return nil, nil
	}
	addrs := make([]ma.Multiaddr, 0, len(hops))
	for _, h := range hops {
		a, err := ma.NewMultiaddr(h)
		if err != nil {
			return nil, fmt.Errorf("next hop %q: %v", h, err)
		}
		addrs = append(addrs, a)
	}
	ais, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil {
		return nil, fmt.Errorf("next hops: %v", err)
	}
	if len(ais) != 1 {
		return nil, fmt.Errorf("next hops name %d peers, want 1", len(ais))
	}
	return &ais[0], nil
}

// forward pushes a step's output to the session's next hop, opening the
// relay stream on first use. Called with ss.mu held.
func (s *Server) forward(ss *session, out *Step) error {
	ai, err := nextHop(ss.open.NextHops)
	if err != nil || ai == nil {
		return err
	}
	if ss.next == nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StreamTimeout)
		defer cancel()
		h := s.node.Host()
		h.Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*time.Minute)
		st, err := h.NewStream(ctx, ai.ID, Protocol)
		if err != nil {
			return fmt.Errorf("next hop %s: %w", ai.ID, err)
		}
		ss.next = s.cfg.Link.Wrap(st)
		// Answers on a relay stream are errors only; the owner hears of
		// them from the next stage itself. Drain so the stream can end.
		go func(st network.Stream) { _, _ = io.Copy(io.Discard, st) }(ss.next)
	}
	if err := s.writeFrame(ss.next, out); err != nil {
		_ = ss.next.Reset()
		ss.next = nil
		return fmt.Errorf("next hop %s: %w", ai.ID, err)
	}
	return nil
}
