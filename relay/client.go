package relay

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/zeebo/blake3"

	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/weights"
)

// ClientConfig tunes a [Client]. Zero values take the defaults given.
type ClientConfig struct {
	// Model, Blocks and Dim describe the model: its id, its number of
	// transformer blocks and its hidden size. Required.
	Model  weights.ModelID
	Blocks int
	Dim    int
	// Encoding of activations on the wire (default F16; F32 makes a swarm
	// compute exactly the bits of one process).
	Encoding Encoding
	// StepTimeout is how long a step may take before the stage holding it
	// up is declared failed and replaced (default 30 s).
	StepTimeout time.Duration
	// SessionTimeout is the idle time after which servers drop a session
	// (default 5 min).
	SessionTimeout time.Duration
	// MaxActivationBytes caps a step's activations (default
	// DefaultMaxActivationBytes); replays are cut into steps below it.
	MaxActivationBytes int
	// MaxHistoryBytes caps the hidden states a chain keeps for replay
	// (default 1 GiB); a session that could exceed it is refused at Open.
	MaxHistoryBytes int64
	// Cost prices routes.
	Cost RouteCost
	// Bans keeps failed peers out of routes (default: 2 s doubling to 2 min).
	Bans *Bans
	// Reputation, when set, scores servers: routes prefer higher scores
	// (see RouteCost.ReputationWeight, default 1 with a Reputation) and
	// leave out servers scoring below ExcludeBelow.
	Reputation   consensus.Reputation
	ExcludeBelow float64
	// UptimeInterval is how often, at most, a peer's uptime (it answered
	// when the client looked for servers, or not) goes to Reputation
	// (default 10 min).
	UptimeInterval time.Duration
	// MaxRepairs bounds the stage replacements of one step (default 8).
	MaxRepairs int
	// Link emulates a network link on the client's streams (zero: none).
	Link Link
	// Logger receives diagnostics (default: discard).
	Logger *slog.Logger
	// WaitReceipts makes a step wait for every stage's receipt, not only
	// for the last stage's output, so that Work covers every step (for
	// settlement). Verified chains always wait.
	WaitReceipts bool
}

// Client finds servers of a model in the DHT and opens chains of them.
type Client struct {
	node *dht.Node
	cfg  ClientConfig

	uptimeMu sync.Mutex
	uptime   map[peer.ID]time.Time // when each peer's uptime was last recorded
}

// noteUptime records, at most once per UptimeInterval and peer, whether a
// peer that announced blocks answered.
func (c *Client) noteUptime(p peer.ID, up bool) {
	if c.cfg.Reputation == nil {
		return
	}
	now := time.Now()
	c.uptimeMu.Lock()
	last, ok := c.uptime[p]
	if ok && now.Sub(last) < c.cfg.UptimeInterval {
		c.uptimeMu.Unlock()
		return
	}
	if c.uptime == nil {
		c.uptime = make(map[peer.ID]time.Time)
	}
	c.uptime[p] = now
	c.uptimeMu.Unlock()
	e := consensus.EventUp
	if !up {
		e = consensus.EventDown
	}
	c.cfg.Reputation.Record(p.String(), e, now)
}

// ErrChain is returned when a chain cannot be built or repaired.
var ErrChain = errors.New("relay: chain failed")

// NewClient makes a client on node.
func NewClient(node *dht.Node, cfg ClientConfig) (*Client, error) {
	if node == nil || cfg.Blocks <= 0 || cfg.Dim <= 0 || cfg.Dim > MaxDim {
		return nil, errors.New("relay: NewClient needs a node, the model's blocks and its hidden size")
	}
	if cfg.Encoding == 0 {
		cfg.Encoding = DefaultEncoding
	}
	if !cfg.Encoding.Valid() || cfg.Encoding == Q8_0 && cfg.Dim%q8Block != 0 {
		return nil, fmt.Errorf("relay: encoding %s cannot carry a hidden size of %d", cfg.Encoding, cfg.Dim)
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 30 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 5 * time.Minute
	}
	cfg.MaxActivationBytes = maxActivation(cfg.MaxActivationBytes)
	if cfg.MaxHistoryBytes <= 0 {
		cfg.MaxHistoryBytes = 1 << 30
	}
	if cfg.UptimeInterval <= 0 {
		cfg.UptimeInterval = 10 * time.Minute
	}
	if cfg.Reputation != nil && cfg.Cost.ReputationWeight == 0 {
		cfg.Cost.ReputationWeight = 1
	}
	if cfg.Bans == nil {
		cfg.Bans = NewBans(2*time.Second, 2*time.Minute)
	}
	if cfg.MaxRepairs <= 0 {
		cfg.MaxRepairs = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{node: node, cfg: cfg}, nil
}

// Bans is the client's ban list.
func (c *Client) Bans() *Bans { return c.cfg.Bans }

// Candidates asks the DHT who serves blocks of span and each of them for
// its info.
func (c *Client) Candidates(ctx context.Context, span dht.Span) ([]Candidate, map[peer.ID]dht.Info, error) {
	var mu sync.Mutex
	seen := make(map[peer.ID]bool)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for b := span.Start; b < span.End; b++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(b int) {
			defer wg.Done()
			defer func() { <-sem }()
			provs, err := c.node.FindProviders(ctx, c.cfg.Model, b)
			if err != nil {
				c.cfg.Logger.Debug("relay: find providers", "block", b, "err", err)
				return
			}
			mu.Lock()
			for _, p := range provs {
				if p.ID != c.node.ID() {
					seen[p.ID] = true
					c.node.Host().Peerstore().AddAddrs(p.ID, p.Addrs, 10*time.Minute)
				}
			}
			mu.Unlock()
		}(b)
	}
	wg.Wait()
	infos := make(map[peer.ID]dht.Info)
	var cands []Candidate
	for p := range seen {
		wg.Add(1)
		go func(p peer.ID) {
			defer wg.Done()
			t0 := time.Now()
			in, err := c.node.Info(ctx, p)
			rtt := time.Since(t0)
			if err != nil {
				c.cfg.Logger.Debug("relay: info", "peer", p, "err", err)
				if ctx.Err() == nil {
					c.noteUptime(p, false)
				}
				return
			}
			c.noteUptime(p, true)
			if l := c.node.Host().Peerstore().LatencyEWMA(p); l > 0 {
				rtt = l
			}
			mu.Lock()
			defer mu.Unlock()
			infos[p] = in
			score := consensus.Prior
			if c.cfg.Reputation != nil {
				score = c.cfg.Reputation.Score(p.String(), time.Now())
			}
			cands = append(cands, Candidate{Peer: p, Span: in.Span, Throughput: in.Throughput, RTT: rtt, Score: score,
				FreeKV: in.FreeKVBytes, Load: in.ActiveSessions})
		}(p)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(cands, func(a, b Candidate) int { return bytes.Compare([]byte(a.Peer), []byte(b.Peer)) })
	return cands, infos, nil
}

// ChainStats counts what happened to a chain.
type ChainStats struct {
	Steps             int64 // Forward calls completed
	Positions         int64 // positions computed by the whole chain
	Failovers         int64 // stages replaced after a failure
	Migrations        int64 // stages that handed their session over on leaving
	ReplayedPositions int64 // positions re-sent to rebuild a KV cache
	Receipts          int64 // receipts whose signature verified
	BadReceipts       int64 // receipts that did not verify or did not match
	Mismatches        int64 // a stage's output differed from an earlier copy of the same positions
	BytesSent         int64 // bytes of the steps the client sent
}

// stage is one hop of an open chain.
type stage struct {
	hop     Hop
	addrs   []string // multiaddrs ending in /p2p/<peer>
	profile string   // the server's numerics profile
	ctl     network.Stream
	acks    chan *Ready
	gone    chan struct{} // closed when the stage leaves the chain
	once    sync.Once
}

func (st *stage) retire() {
	st.once.Do(func() {
		close(st.gone)
		if st.ctl != nil {
			_ = st.ctl.Reset()
		}
	})
}

// event is a frame (or the end of the stream) from a stage.
type event struct {
	st  *stage
	f   Frame
	err error
}

// history keeps the hidden states that entered one block boundary, in
// position order, as wire bytes.
type history struct {
	starts []int
	data   [][]byte
	n      int
}

func (h *history) add(start, count int, b []byte) (dup, mismatch bool) {
	if start+count <= h.n {
		// Compare with what we have when it lines up with one entry.
		if i, ok := slices.BinarySearch(h.starts, start); ok && len(h.data[i]) == len(b) {
			return true, !bytes.Equal(h.data[i], b)
		}
		return true, false
	}
	if start != h.n {
		return false, false
	}
	h.starts = append(h.starts, start)
	h.data = append(h.data, bytes.Clone(b))
	h.n = start + count
	return false, false
}

// chunks returns positions [from, to) as steps of at most maxBytes.
func (h *history) chunks(from, to, bytesPerPos, maxBytes int) []stepBytes {
	var out []stepBytes
	var cur stepBytes
	flush := func() {
		if cur.count > 0 {
			out = append(out, cur)
		}
		cur = stepBytes{}
	}
	for i, s := range h.starts {
		cnt := len(h.data[i]) / bytesPerPos
		lo, hi := max(s, from), min(s+cnt, to)
		if lo >= hi {
			continue
		}
		part := h.data[i][(lo-s)*bytesPerPos : (hi-s)*bytesPerPos]
		for len(part) > 0 {
			if cur.count > 0 && (cur.start+cur.count != lo || len(cur.data)+bytesPerPos > maxBytes) {
				flush()
			}
			if cur.count == 0 {
				cur.start = lo
			}
			room := max((maxBytes-len(cur.data))/bytesPerPos, 1)
			take := min(room, len(part)/bytesPerPos)
			cur.data = append(cur.data, part[:take*bytesPerPos]...)
			cur.count += take
			lo += take
			part = part[take*bytesPerPos:]
		}
	}
	flush()
	return out
}

// truncate forgets positions pos and later (pos is a step boundary).
func (h *history) truncate(pos int) {
	i, _ := slices.BinarySearch(h.starts, pos)
	h.starts, h.data = h.starts[:i], h.data[:i]
	h.n = min(h.n, pos)
}

// set replaces the bytes of the entry starting at start.
func (h *history) set(start int, b []byte) bool {
	i, ok := slices.BinarySearch(h.starts, start)
	if ok && len(h.data[i]) == len(b) {
		h.data[i] = bytes.Clone(b)
	}
	return ok
}

func (h *history) get(start, count int) []byte {
	if i, ok := slices.BinarySearch(h.starts, start); ok {
		return h.data[i]
	}
	return nil
}

type stepBytes struct {
	start, count int
	data         []byte
}

// Chain is an open session over a chain of stages covering all blocks. It
// implements shard.Body: Forward runs the blocks on new positions.
//
// Failures. Each stage sends the client a copy of its output after
// pushing it on (off the critical path), so the client holds the hidden
// states that entered every stage: at most (stages × MaxLen × Dim × the
// encoding's bytes per value), capped by MaxHistoryBytes. When a stage
// dies, errors or misses the step deadline, the client bans it, routes its
// blocks again, opens the new stages, re-wires the neighbours ([Reroute])
// and replays the kept inputs so the new stages rebuild the KV cache; the
// output is the same bits. A stage that leaves on purpose hands its KV
// cache to a successor first ([Moved]): the client only re-wires.
//
// A Chain is not safe for concurrent use.
type Chain struct {
	c      *Client
	id     SessionID
	maxLen int
	span   dht.Span // the blocks the chain covers: all of them, or one stage's for a checker
	stages []*stage
	hist   map[int]*history // by block boundary
	n      int              // positions done
	seq    uint64
	events chan event
	direct map[*stage]bool // stages to send the pending step to when their input arrives
	cur    *stepBytes      // the pending step's input to the first stage
	last   *stepBytes      // the last completed step's
	result []byte
	// receipts of the pending step, by stage, when waitReceipts is set
	// (verification compares them across replicas).
	receipts     map[*stage]*Receipt
	waitReceipts bool
	stats        ChainStats
	failed       []peer.ID // stages replaced after a failure, oldest first
	// align, when set, makes every stage one server holding exactly one
	// of these spans (replicas of a verified chain stay comparable); claim
	// reserves a server for a stage, failing if another replica lane has
	// it.
	align []dht.Span
	claim func(peer.ID, dht.Span) bool
	// avoid rules out servers beyond the bans (those verification blamed,
	// for the whole session, whatever the ban's backoff).
	avoid func(peer.ID) bool
	// profiles, when set, is the numerics profile every server of an
	// aligned stage must have (replicas' outputs are comparable only
	// between equal profiles).
	profiles map[dht.Span]string
	broken   error
	closed   bool
	// work is what each server the chain used did for the session, from
	// its receipts, in the order the servers joined.
	work      map[*stage]*workLog
	workOrder []*stage
}

func (ch *Chain) logOf(st *stage) *workLog {
	if ch.work == nil {
		ch.work = make(map[*stage]*workLog)
	}
	w := ch.work[st]
	if w == nil {
		w = &workLog{}
		ch.work[st] = w
		ch.workOrder = append(ch.workOrder, st)
	}
	return w
}

// judge records how verification judged st's output of the step at start.
func (ch *Chain) judge(st *stage, start int, o Outcome) {
	if w := ch.work[st]; w != nil {
		w.judge(start, o)
	}
}

// Work summarizes, for every server the chain used (those replaced
// included), what it computed for the session: the facts of the work
// receipts the client settles with them.
func (ch *Chain) Work() []WorkSummary {
	var out []WorkSummary
	for _, st := range ch.workOrder {
		s := ch.work[st].summary()
		if s.Steps == 0 {
			continue
		}
		s.Peer, s.Span, s.Session = st.hop.Peer, st.hop.Span, ch.id
		out = append(out, s)
	}
	return out
}

func (c *Client) bytesPerPos() int {
	n, _ := c.cfg.Encoding.Size(c.cfg.Dim)
	return n
}

// Open builds the cheapest chain over all blocks and opens a session of
// maxLen positions on every stage.
func (c *Client) Open(ctx context.Context, maxLen int) (*Chain, error) {
	return c.open(ctx, maxLen, dht.Span{Start: 0, End: c.cfg.Blocks}, nil, nil, nil, nil)
}

// open is Open over the blocks of span only, with stages aligned to align
// and servers excluded per stage (see Chain.align and Chain.avoid).
func (c *Client) open(ctx context.Context, maxLen int, span dht.Span, align []dht.Span, claim func(peer.ID, dht.Span) bool,
	avoid func(peer.ID) bool, profiles map[dht.Span]string) (*Chain, error) {
	if maxLen < 1 || maxLen > MaxLength {
		return nil, fmt.Errorf("%w: session of %d positions", ErrChain, maxLen)
	}
	ch := &Chain{c: c, maxLen: maxLen, span: span, hist: map[int]*history{span.Start: {}}, events: make(chan event, 256),
		direct: make(map[*stage]bool), receipts: make(map[*stage]*Receipt), align: align, claim: claim, avoid: avoid,
		profiles: profiles, waitReceipts: c.cfg.WaitReceipts}
	if _, err := rand.Read(ch.id[:]); err != nil {
		return nil, err
	}
	var lastErr error
	for range c.cfg.MaxRepairs {
		stages, err := ch.build(ctx, span, "", nil)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil || errors.Is(err, ErrNoRoute) {
				break
			}
			continue
		}
		ch.stages = stages
		if need := int64(len(stages)) * int64(maxLen) * int64(c.bytesPerPos()); need > c.cfg.MaxHistoryBytes {
			ch.Close()
			return nil, fmt.Errorf("%w: replay history of up to %d bytes exceeds the cap of %d", ErrChain, need, c.cfg.MaxHistoryBytes)
		}
		return ch, nil
	}
	return nil, fmt.Errorf("%w: %w", ErrChain, lastErr)
}

// build routes span, opens a session on each stage with the given
// upstream before the first and next after the last, and returns the
// stages. A stage that fails to open is banned.
func (ch *Chain) build(ctx context.Context, span dht.Span, upstream string, next *stage) ([]*stage, error) {
	c := ch.c
	cands, infos, err := c.Candidates(ctx, span)
	if err != nil {
		return nil, err
	}
	inChain := make(map[peer.ID]bool)
	for _, st := range ch.stages {
		inChain[st.hop.Peer] = true
	}
	now := time.Now()
	excluded := func(p peer.ID) bool {
		return inChain[p] || c.cfg.Bans.Banned(p, now) || ch.avoid != nil && ch.avoid(p) ||
			c.cfg.Reputation != nil && c.cfg.Reputation.Score(p.String(), now) < c.cfg.ExcludeBelow
	}
	var hops []Hop
	if ch.align == nil {
		if hops, _, err = FindRoute(cands, span, c.cfg.Cost, excluded); err != nil {
			return nil, err
		}
	} else if hops, err = ch.alignedRoute(cands, span, func(p peer.ID, sp dht.Span) bool {
		want, ok := ch.profiles[sp]
		return excluded(p) || ok && infos[p].Profile != want
	}); err != nil {
		return nil, err
	}
	stages := make([]*stage, len(hops))
	for i, h := range hops {
		stages[i] = &stage{hop: h, addrs: p2pAddrs(h.Peer, infos[h.Peer].Addrs), profile: infos[h.Peer].Profile,
			acks: make(chan *Ready, 4), gone: make(chan struct{})}
	}
	for i := len(stages) - 1; i >= 0; i-- {
		up := upstream
		if i > 0 {
			up = stages[i-1].hop.Peer.String()
		}
		nx := next
		if i+1 < len(stages) {
			nx = stages[i+1]
		}
		if _, err := ch.openStage(ctx, stages[i], up, nx); err != nil {
			c.cfg.Bans.Fail(stages[i].hop.Peer, time.Now())
			c.node.ForgetInfo(stages[i].hop.Peer)
			for _, st := range stages[i+1:] {
				ch.closeStage(st)
			}
			return nil, fmt.Errorf("open %s on %s: %w", stages[i].hop.Span, stages[i].hop.Peer, err)
		}
	}
	return stages, nil
}

// alignedRoute routes span as the aligned stages within it, one server
// holding each whole stage, none that the chain's exclusion rules out.
func (ch *Chain) alignedRoute(cands []Candidate, span dht.Span, excluded func(peer.ID, dht.Span) bool) ([]Hop, error) {
	var hops []Hop
	for _, sp := range ch.align {
		if sp.Start < span.Start || sp.End > span.End {
			continue
		}
		type option struct {
			hop  Hop
			cost time.Duration
		}
		var opts []option
		for _, c := range cands {
			if c.Span.Start > sp.Start || c.Span.End < sp.End || excluded(c.Peer, sp) {
				continue
			}
			if h, cost, err := FindRoute([]Candidate{c}, sp, ch.c.cfg.Cost, nil); err == nil && len(h) == 1 {
				opts = append(opts, option{h[0], cost})
			}
		}
		slices.SortStableFunc(opts, func(a, b option) int {
			if a.cost != b.cost {
				return cmp.Compare(a.cost, b.cost)
			}
			return strings.Compare(string(a.hop.Peer), string(b.hop.Peer))
		})
		var best []Hop
		for _, o := range opts {
			if ch.claim == nil || ch.claim(o.hop.Peer, sp) {
				best = []Hop{o.hop}
				break
			}
		}
		if best == nil {
			return nil, fmt.Errorf("%w: no further server holds all of blocks %s", ErrNoRoute, sp)
		}
		hops = append(hops, best...)
	}
	if len(hops) == 0 {
		return nil, fmt.Errorf("%w: blocks %s are not a run of aligned stages", ErrNoRoute, span)
	}
	return hops, nil
}

func p2pAddrs(p peer.ID, addrs []ma.Multiaddr) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if len(out) == MaxNextHops {
			break
		}
		out = append(out, a.Encapsulate(ma.StringCast("/p2p/"+p.String())).String())
	}
	return out
}

// openStage opens (or attaches to) the session on st and starts reading
// its control stream. It returns the positions the session holds.
func (ch *Chain) openStage(ctx context.Context, st *stage, upstream string, next *stage) (int, error) {
	c := ch.c
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StepTimeout)
	defer cancel()
	if len(st.addrs) > 0 {
		if ai, err := nextHop(st.addrs); err == nil && ai != nil {
			c.node.Host().Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*time.Minute)
		}
	}
	s, err := c.node.Host().NewStream(ctx, st.hop.Peer, Protocol)
	if err != nil {
		return 0, err
	}
	s = c.cfg.Link.Wrap(s)
	o := &Open{SessionID: ch.id, Model: c.cfg.Model, Span: st.hop.Span, MaxLength: ch.maxLen, Encoding: c.cfg.Encoding,
		TimeoutMS: uint32(min(c.cfg.SessionTimeout.Milliseconds(), MaxTimeoutMS)), Upstream: upstream}
	if next != nil {
		o.NextHops = next.addrs
	}
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	if err := WriteFrame(s, o, c.cfg.MaxActivationBytes); err != nil {
		_ = s.Reset()
		return 0, err
	}
	f, err := ReadFrame(s, c.cfg.MaxActivationBytes)
	if err != nil {
		_ = s.Reset()
		return 0, err
	}
	_ = s.SetDeadline(time.Time{})
	switch f := f.(type) {
	case *Ready:
		if f.SessionID != ch.id {
			_ = s.Reset()
			return 0, fmt.Errorf("ready for another session")
		}
		st.ctl = s
		go ch.read(st)
		return f.Len, nil
	case *Error:
		_ = s.Reset()
		return 0, fmt.Errorf("%s (code %d)", f.Message, f.Code)
	}
	_ = s.Reset()
	return 0, fmt.Errorf("answered %v to open", f.Kind())
}

// read delivers a stage's frames as events until its stream ends.
func (ch *Chain) read(st *stage) {
	for {
		f, err := ReadFrame(st.ctl, ch.c.cfg.MaxActivationBytes)
		if r, ok := f.(*Ready); ok && err == nil {
			select {
			case st.acks <- r:
			case <-st.gone:
				return
			}
			continue
		}
		select {
		case ch.events <- event{st: st, f: f, err: err}:
		case <-st.gone:
			return
		}
		if err != nil {
			return
		}
		if _, ok := f.(*Moved); ok {
			// Nothing follows; closing tells the leaving server that we
			// know where the session went.
			_ = st.ctl.Reset()
			return
		}
	}
}

func (ch *Chain) closeStage(st *stage) {
	if st.ctl != nil {
		_ = st.ctl.SetWriteDeadline(time.Now().Add(time.Second))
		_ = WriteFrame(st.ctl, &Close{SessionID: ch.id}, 0)
	}
	st.retire()
}

// Len is the number of positions the chain holds.
func (ch *Chain) Len() int { return ch.n }

// MaxLen is the session's capacity.
func (ch *Chain) MaxLen() int { return ch.maxLen }

// Stats returns the chain's counters.
func (ch *Chain) Stats() ChainStats { return ch.stats }

// Hops returns the current stages.
func (ch *Chain) Hops() []Hop {
	out := make([]Hop, len(ch.stages))
	for i, st := range ch.stages {
		out[i] = st.hop
	}
	return out
}

// Close ends the session on every stage.
func (ch *Chain) Close() error {
	if ch.closed {
		return nil
	}
	ch.closed = true
	for _, st := range ch.stages {
		ch.closeStage(st)
	}
	return nil
}

// send writes a step to a stage's control stream.
func (ch *Chain) send(st *stage, s *Step) error {
	b, err := appendFrame(s, ch.c.cfg.MaxActivationBytes)
	if err != nil {
		return err
	}
	_ = st.ctl.SetWriteDeadline(time.Now().Add(ch.c.cfg.StepTimeout))
	_, err = st.ctl.Write(b)
	ch.stats.BytesSent += int64(len(b))
	return err
}

// Forward runs all blocks on nTok = len(x)/Dim new positions, x updated in
// place with the last stage's output (decoded from the wire encoding).
func (ch *Chain) Forward(ctx context.Context, x []float32) error {
	d := ch.c.cfg.Dim
	if len(x) == 0 || len(x)%d != 0 {
		return fmt.Errorf("%w: %d hidden floats is not a positive multiple of %d", ErrChain, len(x), d)
	}
	count := len(x) / d
	in, err := EncodeActivations(ch.c.cfg.Encoding, x)
	if err != nil {
		return err
	}
	out, err := ch.forwardBytes(ctx, in, count)
	if err != nil {
		return err
	}
	y, err := DecodeActivations(ch.c.cfg.Encoding, out, count*d)
	if err != nil {
		return err
	}
	copy(x, y)
	return nil
}

// forwardBytes runs the chain's blocks on count new positions given as
// wire bytes and returns the last stage's output bytes. A step larger than
// MaxActivationBytes is cut into several (the same bits as one batch).
func (ch *Chain) forwardBytes(ctx context.Context, in []byte, count int) ([]byte, error) {
	c := ch.c
	switch {
	case ch.closed:
		return nil, fmt.Errorf("%w: chain closed", ErrChain)
	case ch.broken != nil:
		return nil, ch.broken
	case count <= 0:
		return nil, fmt.Errorf("%w: a step of %d positions", ErrChain, count)
	case len(in) != count*c.bytesPerPos():
		return nil, fmt.Errorf("%w: %d bytes for %d positions", ErrChain, len(in), count)
	case ch.n+count > ch.maxLen:
		return nil, fmt.Errorf("%w: %d + %d positions > %d", ErrChain, ch.n, count, ch.maxLen)
	}
	if len(in) > c.cfg.MaxActivationBytes {
		bpp := c.bytesPerPos()
		per := max(c.cfg.MaxActivationBytes/bpp, 1)
		var out []byte
		for off := 0; off < count; off += per {
			n := min(per, count-off)
			o, err := ch.forwardBytes(ctx, in[off*bpp:(off+n)*bpp], n)
			if err != nil {
				return nil, err
			}
			out = append(out, o...)
		}
		return out, nil
	}
	ch.cur = &stepBytes{start: ch.n, count: count, data: in}
	ch.result = nil
	clear(ch.receipts)
	ch.hist[ch.span.Start].add(ch.n, count, in)
	clear(ch.direct)
	if err := ch.send(ch.stages[0], ch.step(ch.cur)); err != nil {
		ch.direct[ch.stages[0]] = true // resent once the stage is replaced
		ch.events <- event{st: ch.stages[0], err: err}
	}
	if err := ch.wait(ctx); err != nil {
		ch.broken = fmt.Errorf("%w: %w", ErrChain, err)
		return nil, ch.broken
	}
	ch.last = ch.cur
	ch.n += count
	ch.seq++
	ch.stats.Steps++
	ch.stats.Positions += int64(count)
	return ch.result, nil
}

func (ch *Chain) step(s *stepBytes) *Step {
	return &Step{SessionID: ch.id, Seq: ch.seq, Start: s.start, Count: s.count, Dim: ch.c.cfg.Dim,
		Encoding: ch.c.cfg.Encoding, Activations: s.data}
}

func (ch *Chain) index(st *stage) int {
	for i, s := range ch.stages {
		if s == st {
			return i
		}
	}
	return -1
}

// wait handles events until the pending step's output arrives from the
// last stage, repairing the chain on failures.
func (ch *Chain) wait(ctx context.Context) error {
	c := ch.c
	repairs := 0
	timer := time.NewTimer(c.cfg.StepTimeout)
	defer timer.Stop()
	fail := func(st *stage, why error) error {
		if repairs++; repairs > c.cfg.MaxRepairs {
			return fmt.Errorf("giving up after %d repairs: %w", c.cfg.MaxRepairs, why)
		}
		c.cfg.Logger.Info("relay: stage failed", "span", st.hop.Span, "peer", st.hop.Peer, "err", why)
		if err := ch.replace(ctx, st, nil); err != nil {
			return err
		}
		timer.Reset(c.cfg.StepTimeout)
		return nil
	}
	for ch.result == nil || ch.missingCopies() || ch.waitReceipts && ch.missingReceipts() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			st := ch.stuck()
			if err := fail(st, fmt.Errorf("no output within %v", c.cfg.StepTimeout)); err != nil {
				return err
			}
		case ev := <-ch.events:
			i := ch.index(ev.st)
			if i < 0 {
				continue // from a stage no longer in the chain
			}
			if ev.err != nil {
				if err := fail(ev.st, ev.err); err != nil {
					return err
				}
				continue
			}
			switch f := ev.f.(type) {
			case *Step:
				ch.output(ev.st, f)
			case *Receipt:
				ch.receipt(ev.st, f)
			case *Moved:
				if err := ch.moved(ctx, ev.st, f); err != nil {
					if err := fail(ev.st, err); err != nil {
						return err
					}
				}
			case *Error:
				switch f.Code {
				case CodeMoved:
					// The session's successor takes over: a Moved frame follows.
				case CodeNextHopFail:
					// Blame the next stage only if it is still the hop
					// that failed (the message starts "next hop <peer>:").
					if i+1 < len(ch.stages) && strings.HasPrefix(f.Message, "next hop "+ch.stages[i+1].hop.Peer.String()+":") {
						if err := fail(ch.stages[i+1], fmt.Errorf("unreachable from its upstream: %s", f.Message)); err != nil {
							return err
						}
					}
				default:
					if err := fail(ev.st, fmt.Errorf("%s (code %d)", f.Message, f.Code)); err != nil {
						return err
					}
				}
			default:
				if err := fail(ev.st, fmt.Errorf("unexpected %v frame", f.Kind())); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// missingCopies reports whether a stage's copy of its output for the
// pending step has not come yet. A step ends only once the client holds
// the inputs of every stage for it: a stage that fails later is replayed
// from them, and a replay with a hole would leave its replacement short
// of positions. The copies leave each stage right after it pushed its
// output on, so waiting for them costs nothing when the chain is healthy.
func (ch *Chain) missingCopies() bool {
	want := ch.cur.start + ch.cur.count
	for _, st := range ch.stages {
		if end := st.hop.Span.End; end != ch.span.End {
			if h := ch.hist[end]; h == nil || h.n < want {
				return true
			}
		}
	}
	return false
}

// missingReceipts reports whether a stage's receipt for the pending step
// has not come yet.
func (ch *Chain) missingReceipts() bool {
	for _, st := range ch.stages {
		if ch.receipts[st] == nil {
			return true
		}
	}
	return false
}

// stuck is the first stage whose input for the pending step is here but
// whose output is not.
func (ch *Chain) stuck() *stage {
	for _, st := range ch.stages {
		end := st.hop.Span.End
		if end == ch.span.End {
			return st
		}
		if h := ch.hist[end]; h == nil || h.n < ch.cur.start+ch.cur.count {
			return st
		}
	}
	return ch.stages[len(ch.stages)-1]
}

// output records a stage's output copy; the last stage's is the result.
func (ch *Chain) output(st *stage, s *Step) {
	end := st.hop.Span.End
	if s.Dim != ch.c.cfg.Dim || s.Encoding != ch.c.cfg.Encoding {
		return
	}
	if end == ch.span.End {
		if s.Start == ch.cur.start && s.Count == ch.cur.count {
			ch.result = bytes.Clone(s.Activations)
		}
		return
	}
	h := ch.hist[end]
	if h == nil {
		h = &history{}
		ch.hist[end] = h
	}
	if _, mismatch := h.add(s.Start, s.Count, s.Activations); mismatch {
		ch.stats.Mismatches++
	}
	// A replaced stage waiting for this input gets it now.
	for w := range ch.direct {
		if w.hop.Span.Start == end {
			if b := h.get(ch.cur.start, ch.cur.count); b != nil {
				delete(ch.direct, w)
				if err := ch.send(w, ch.step(&stepBytes{start: ch.cur.start, count: ch.cur.count, data: b})); err != nil {
					ch.events <- event{st: w, err: err}
				}
			}
		}
	}
}

// receipt checks a stage's signed receipt.
func (ch *Chain) receipt(st *stage, r *Receipt) {
	ok := r.PeerID == st.hop.Peer.String() && r.Span == st.hop.Span
	if ok {
		pk, err := st.hop.Peer.ExtractPublicKey()
		ok = err == nil
		if ok {
			ok, err = pk.Verify(r.SigningBytes(), r.Signature)
			ok = ok && err == nil
		}
	}
	if ok {
		if h := ch.hist[st.hop.Span.Start]; h != nil {
			if b := h.get(ch.pendingStart(r), r.Tokens); b != nil && blake3.Sum256(b) != r.InputHash {
				ok = false
			}
		}
	}
	if ok {
		ch.stats.Receipts++
		if ch.cur != nil && r.Seq == ch.seq {
			ch.receipts[st] = r
			if r.Tokens == ch.cur.count {
				ch.logOf(st).add(ch.cur.start, r.Tokens, r.OutputHash)
			}
		}
	} else {
		ch.stats.BadReceipts++
	}
}

// replaySeq marks the steps of a replay, so that their receipts are not
// taken for the pending step's.
const replaySeq = 1 << 63

// pendingStart is the first position of the step a receipt is for, when
// it is the pending step; -1 otherwise (receipts of replays carry no
// positions, so they are checked by signature alone).
func (ch *Chain) pendingStart(r *Receipt) int {
	if ch.cur != nil && r.Seq == ch.seq && r.Tokens == ch.cur.count {
		return ch.cur.start
	}
	return -1
}

// replace puts new stages in place of st: routed again after a failure
// (successor nil), or the successor a leaving stage named.
func (ch *Chain) replace(ctx context.Context, bad *stage, successor *stage) error {
	c := ch.c
	i := ch.index(bad)
	if i < 0 {
		return nil
	}
	var upstream string
	if i > 0 {
		upstream = ch.stages[i-1].hop.Peer.String()
	}
	var next *stage
	if i+1 < len(ch.stages) {
		next = ch.stages[i+1]
	}
	bad.retire()
	delete(ch.direct, bad)
	var news []*stage
	lens := 0
	if successor != nil {
		n, err := ch.openStage(ctx, successor, upstream, next)
		if err != nil {
			return fmt.Errorf("attach to %s: %w", successor.hop.Peer, err)
		}
		news, lens = []*stage{successor}, n
		ch.stats.Migrations++
	} else {
		c.cfg.Bans.Fail(bad.hop.Peer, time.Now())
		c.node.ForgetInfo(bad.hop.Peer)
		ch.failed = append(ch.failed, bad.hop.Peer)
		var err error
		for range c.cfg.MaxRepairs {
			if news, err = ch.build(ctx, bad.hop.Span, upstream, next); err == nil || ctx.Err() != nil || errors.Is(err, ErrNoRoute) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("replace blocks %s: %w", bad.hop.Span, err)
		}
		ch.stats.Failovers++
	}
	ch.stages = slices.Concat(ch.stages[:i], news, ch.stages[i+1:])
	// Re-wire the neighbours; one that cannot be reached is repaired next.
	if i > 0 {
		// The stage before keeps its own upstream (reroute looks it up).
		ch.reroute(ch.stages[i-1], "", news[0])
	}
	if next != nil {
		ch.reroute(next, news[len(news)-1].hop.Peer.String(), ch.stageAfter(next))
	}
	// Replay what the first new stage lacks, then the pending step.
	first := news[0]
	h := ch.hist[first.hop.Span.Start]
	bpp := c.bytesPerPos()
	if lens < ch.n {
		for _, s := range h.chunks(lens, ch.n, bpp, c.cfg.MaxActivationBytes) {
			rs := ch.step(&s)
			rs.Seq |= replaySeq
			if err := ch.send(first, rs); err != nil {
				ch.events <- event{st: first, err: err}
				return nil
			}
			ch.stats.ReplayedPositions += int64(s.count)
		}
	}
	if ch.cur != nil && lens < ch.cur.start+ch.cur.count {
		if b := h.get(ch.cur.start, ch.cur.count); b != nil {
			if err := ch.send(first, ch.step(&stepBytes{start: ch.cur.start, count: ch.cur.count, data: b})); err != nil {
				ch.events <- event{st: first, err: err}
			}
		} else {
			ch.direct[first] = true
		}
	}
	return nil
}

func (ch *Chain) stageAfter(st *stage) *stage {
	if i := ch.index(st); i >= 0 && i+1 < len(ch.stages) {
		return ch.stages[i+1]
	}
	return nil
}

// reroute tells st its upstream ("": the stage before it in the chain, or
// the client for the first) and next stage, and waits for its
// acknowledgement; a stage that does not answer gets a failure event.
func (ch *Chain) reroute(st *stage, upstream string, next *stage) {
	if st.ctl == nil {
		return
	}
	if ch.index(st) > 0 && upstream == "" {
		upstream = ch.stages[ch.index(st)-1].hop.Peer.String()
	}
	r := &Reroute{SessionID: ch.id, Upstream: upstream}
	if next != nil {
		r.NextHops = next.addrs
	}
	_ = st.ctl.SetWriteDeadline(time.Now().Add(ch.c.cfg.StepTimeout))
	err := WriteFrame(st.ctl, r, ch.c.cfg.MaxActivationBytes)
	if err == nil {
		select {
		case <-st.acks:
		case <-st.gone:
			err = errors.New("stage gone")
		case <-time.After(ch.c.cfg.StepTimeout):
			err = errors.New("no answer to route")
		}
	}
	if err != nil {
		select {
		case ch.events <- event{st: st, err: fmt.Errorf("route: %w", err)}:
		default:
		}
	}
}

// moved handles a stage that handed its session to a successor.
func (ch *Chain) moved(ctx context.Context, st *stage, m *Moved) error {
	p, err := peer.Decode(m.Peer)
	if err != nil {
		return fmt.Errorf("moved to %q: %w", m.Peer, err)
	}
	addrs := make([]ma.Multiaddr, 0, len(m.Addrs))
	for _, a := range m.Addrs {
		if x, err := ma.NewMultiaddr(a); err == nil {
			addrs = append(addrs, x)
		}
	}
	succ := &stage{hop: Hop{Peer: p, Span: st.hop.Span}, addrs: p2pAddrs(p, addrs), acks: make(chan *Ready, 4), gone: make(chan struct{})}
	return ch.replace(ctx, st, succ)
}
