package relay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/shard"
)

// waitLong bounds what a test waits for: generous, so a loaded machine
// does not fail it, and never an upper bound on how fast things happen.
const waitLong = 30 * time.Second

// rawPeer is a libp2p host of the swarm that speaks the session protocol
// frame by frame, as a buggy or hostile peer might.
type rawPeer struct {
	t    *testing.T
	node *dht.Node
}

func (sw *swarm) rawPeer() *rawPeer {
	t := sw.t
	t.Helper()
	n, err := dht.New(t.Context(), append(loopbackOpts(t), dht.WithBootstrapPeers(sw.boot))...)
	if err != nil {
		t.Fatal(err)
	}
	checkLoopback(t, n)
	t.Cleanup(func() { n.Close() })
	return &rawPeer{t: t, node: n}
}

// rawStream is one session-protocol stream of a rawPeer.
type rawStream struct {
	t  *testing.T
	st network.Stream
	r  *bufio.Reader // whole frames at once, so a reset does not cut one in two
}

// stream opens a session-protocol stream to sv.
func (p *rawPeer) stream(t *testing.T, sv *Serving) *rawStream {
	t.Helper()
	return p.streamProto(t, sv, Protocol)
}

// streamProto opens a stream of protocol proto to sv.
func (p *rawPeer) streamProto(t *testing.T, sv *Serving, proto protocol.ID) *rawStream {
	t.Helper()
	h := p.node.Host()
	h.Peerstore().AddAddrs(sv.Node.ID(), sv.Node.Host().Addrs(), time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	st, err := h.NewStream(ctx, sv.Node.ID(), proto)
	if err != nil {
		t.Fatalf("NewStream(%s, %s) = %v", sv.Node.ID(), proto, err)
	}
	t.Cleanup(func() { _ = st.Reset() })
	return &rawStream{t: t, st: st, r: bufio.NewReaderSize(st, 64<<10)}
}

func (s *rawStream) write(f Frame) {
	s.t.Helper()
	_ = s.st.SetWriteDeadline(time.Now().Add(waitLong))
	if err := WriteFrame(s.st, f, 0); err != nil {
		s.t.Fatalf("WriteFrame(%v) = %v", f.Kind(), err)
	}
}

func (s *rawStream) writeRaw(b []byte) {
	s.t.Helper()
	_ = s.st.SetWriteDeadline(time.Now().Add(waitLong))
	if _, err := s.st.Write(b); err != nil {
		s.t.Fatalf("Write(%d bytes) = %v", len(b), err)
	}
}

// read returns the next frame, waiting at most d.
func (s *rawStream) read(d time.Duration) (Frame, error) {
	_ = s.st.SetReadDeadline(time.Now().Add(d))
	return ReadFrame(s.r, 0)
}

// wantError reads an Error frame of code for session id.
func (s *rawStream) wantError(what string, id SessionID, code ErrorCode) {
	s.t.Helper()
	f, err := s.read(waitLong)
	e, ok := f.(*Error)
	switch {
	case err != nil:
		s.t.Errorf("%s: read = %v, want an error frame of code %d", what, err, code)
	case !ok:
		s.t.Errorf("%s: got a %v frame, want an error frame of code %d", what, f.Kind(), code)
	case e.Code != code || e.SessionID != id:
		s.t.Errorf("%s: error %d for session %x (%q), want code %d for %x", what, e.Code, e.SessionID[:4], e.Message, code, id[:4])
	}
}

// wantEnd checks that the server ended (closed or reset) the stream.
func (s *rawStream) wantEnd(what string) {
	s.t.Helper()
	if f, err := s.read(waitLong); err == nil {
		s.t.Errorf("%s: got a %v frame, want the stream to end", what, f.Kind())
	} else if errors.Is(err, ErrFrame) || isTimeout(err) {
		s.t.Errorf("%s: read = %v, want the stream to end", what, err)
	}
}

// wantRejected is wantError then wantEnd.
func (s *rawStream) wantRejected(what string, id SessionID, code ErrorCode) {
	s.t.Helper()
	s.wantError(what, id, code)
	s.wantEnd(what)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// open opens a session of span on the stream and checks the Ready.
func (s *rawStream) open(o *Open) {
	s.t.Helper()
	s.write(o)
	f, err := s.read(waitLong)
	if r, ok := f.(*Ready); err != nil || !ok || r.SessionID != o.SessionID || r.Len != 0 {
		s.t.Fatalf("open: answer %#v, %v; want ready for %x", f, err, o.SessionID[:4])
	}
}

// wantOutput reads a step's output and receipt from a control stream.
func (s *rawStream) wantOutput(what string, id SessionID, start, count int) {
	s.t.Helper()
	f, err := s.read(waitLong)
	if st, ok := f.(*Step); err != nil || !ok || st.SessionID != id || st.Start != start || st.Count != count {
		s.t.Fatalf("%s: answer %v (%v), want the output of positions %d+%d", what, kindOf(f), err, start, count)
	}
	f, err = s.read(waitLong)
	if rc, ok := f.(*Receipt); err != nil || !ok || rc.SessionID != id || rc.Tokens != count {
		s.t.Fatalf("%s: answer %v (%v), want the receipt of %d positions", what, kindOf(f), err, count)
	}
}

func kindOf(f Frame) any {
	if e, ok := f.(*Error); ok {
		return *e
	}
	if f == nil {
		return nil
	}
	return f.Kind()
}

func rawID(b byte) SessionID {
	var id SessionID
	for i := range id {
		id[i] = b ^ byte(i*37)
	}
	return id
}

// rawOpen is a valid Open of span for the swarm's model.
func (sw *swarm) rawOpen(id SessionID, span shard.Span, timeout time.Duration) *Open {
	return &Open{SessionID: id, Model: sw.model, Span: dht.Span{Start: span.Start, End: span.End},
		MaxLength: 64, Encoding: F32, TimeoutMS: uint32(timeout.Milliseconds())}
}

// rawStep is a valid F32 step of positions [start, start+count).
func (sw *swarm) rawStep(id SessionID, seq uint64, start, count int) *Step {
	x := make([]float32, count*sw.hp.Dim)
	for i := range x {
		x[i] = float32(math.Sin(float64(start*sw.hp.Dim + i)))
	}
	b, err := EncodeActivations(F32, x)
	if err != nil {
		sw.t.Fatal(err)
	}
	return &Step{SessionID: id, Seq: seq, Start: start, Count: count, Dim: sw.hp.Dim, Encoding: F32, Activations: b}
}

// header is a frame length prefix.
func header(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

// reference is a client of the swarm and what one process generates, to
// check that the swarm still serves honest clients.
type reference struct {
	sw     *swarm
	c      *Client
	ends   *shard.Shard
	prompt []int32
	n      int
	want   run
}

func (sw *swarm) reference(text string, n int) *reference {
	p := sw.prompt(text)
	return &reference{sw: sw, c: sw.client(ClientConfig{}), ends: sw.ends(), prompt: p, n: n, want: sw.local(p, n)}
}

// check runs a generation through the swarm and compares it with one
// process, bit for bit.
func (r *reference) check(t *testing.T, what string) {
	t.Helper()
	ch, err := r.c.Open(t.Context(), len(r.prompt)+r.n)
	if err != nil {
		t.Fatalf("%s: Open = %v", what, err)
	}
	defer ch.Close()
	got, err := generate(t, t.Context(), r.ends, ch, r.prompt, r.n, nil)
	if err != nil {
		t.Fatalf("%s: generation failed: %v", what, err)
	}
	sameRun(t, what, got, r.want)
	if st := ch.Stats(); st.Failovers != 0 {
		t.Errorf("%s: %d failovers, want 0", what, st.Failovers)
	}
}

// waitFor polls cond until it holds or waitLong passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIsolationConcurrent: two clients generating at the same time through
// the same two servers, in lockstep, each get exactly the bits they get
// from one process alone.
func TestIsolationConcurrent(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, shard.Span{Start: 0, End: 2}, shard.Span{Start: 2, End: 5})
	const n = 12
	prompts := [2][]int32{sw.prompt("Once upon a time, there was a little"), sw.prompt("Lily and Ben went to the park")}
	var want [2]run
	for i, p := range prompts {
		want[i] = sw.local(p, n)
	}
	if equalTokens(want[0].tokens, want[1].tokens) {
		t.Fatalf("the two prompts generate the same tokens %v; the test would prove nothing", want[0].tokens)
	}
	var chains [2]*Chain
	var ends [2]*shard.Shard
	for i := range chains {
		ch, err := sw.client(ClientConfig{}).Open(t.Context(), len(prompts[i])+n)
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		if len(ch.Hops()) != 2 {
			t.Fatalf("chain %d: %v, want both servers", i, ch.Hops())
		}
		chains[i], ends[i] = ch, sw.ends()
	}
	if chains[0].id == chains[1].id {
		t.Fatal("two chains share a session id")
	}

	// Lockstep: after each token, a generation waits for the other one to
	// reach the same token, so the two sessions interleave on the servers.
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var progress [2]int
	var finished [2]bool
	var sessions []int // Server.Stats().Sessions at the first token
	var got [2]run
	var errs [2]error
	var wg sync.WaitGroup
	for i := range chains {
		wg.Go(func() {
			defer func() {
				mu.Lock()
				finished[i] = true
				cond.Broadcast()
				mu.Unlock()
			}()
			got[i], errs[i] = generate(t, t.Context(), ends[i], chains[i], prompts[i], n, func(k int) {
				if k == 1 && i == 0 {
					for _, sv := range sw.servers {
						sessions = append(sessions, sv.Server.Stats().Sessions)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				progress[i] = k
				cond.Broadcast()
				for progress[1-i] < k && !finished[1-i] {
					cond.Wait()
				}
			})
		})
	}
	wg.Wait()
	for i := range chains {
		if errs[i] != nil {
			t.Fatalf("generation %d: %v", i, errs[i])
		}
		sameRun(t, []string{"first of two concurrent generations", "second of two concurrent generations"}[i], got[i], want[i])
		if st := chains[i].Stats(); st.Failovers != 0 || st.BadReceipts != 0 || st.Mismatches != 0 {
			t.Errorf("chain %d: %+v", i, st)
		}
	}
	for i, s := range sessions {
		if s != 2 {
			t.Errorf("server %d held %d sessions during the generations, want 2", i, s)
		}
	}
}

// TestSessionBoundToOwner: a third host that knows a session's id cannot
// step, attach to, re-route, close or migrate it on any of its servers,
// and the owner's generation goes on with the bits of one process.
func TestSessionBoundToOwner(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, shard.Span{Start: 0, End: 2}, shard.Span{Start: 2, End: 5})
	prompt := sw.prompt("Once upon a time, there was a little")
	const n, attackAt = 12, 5
	want := sw.local(prompt, n)
	ch, err := sw.client(ClientConfig{}).Open(t.Context(), len(prompt)+n)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	attacker := sw.rawPeer()
	attack := func() {
		id := ch.id
		for i, hop := range ch.Hops() {
			var sv *Serving
			for _, s := range sw.servers {
				if s.Node.ID() == hop.Peer {
					sv = s
				}
			}
			span := shard.Span{Start: hop.Span.Start, End: hop.Span.End}
			t.Run(hop.Span.String(), func(t *testing.T) {
				// A stage counts a step after forwarding it: wait for the
				// count of the last one.
				waitFor(t, "the chain's steps counted", func() bool { return sv.Server.Stats().Steps == ch.Stats().Steps })
				before := sv.Server.Stats()
				// A step as the first frame: as if from the upstream stage.
				st := attacker.stream(t, sv)
				st.write(sw.rawStep(id, ch.seq, ch.n, 1))
				st.wantRejected("step from a stranger", id, CodeNoSession)

				// An open of the same session: an attach to read its outputs.
				st = attacker.stream(t, sv)
				st.write(sw.rawOpen(id, span, time.Minute))
				f, err := st.read(waitLong)
				if e, ok := f.(*Error); err != nil || !ok {
					t.Errorf("open of another's session: answer %v (%v), want an error", kindOf(f), err)
				} else if e.SessionID != id {
					t.Errorf("open of another's session: error for %x, want %x", e.SessionID[:4], id[:4])
				}
				st.wantEnd("open of another's session")

				// Control frames without a session of one's own.
				for _, f := range []Frame{
					&Reroute{SessionID: id, Upstream: attacker.node.ID().String()},
					&Close{SessionID: id},
				} {
					st = attacker.stream(t, sv)
					st.write(f)
					st.wantRejected(f.Kind().String()+" as the first frame", SessionID{}, CodeBadFrame)
				}

				// The same on the attacker's own, valid session.
				own := rawID(byte(0x80 + i))
				st = attacker.stream(t, sv)
				st.open(sw.rawOpen(own, span, time.Minute))
				for _, f := range []Frame{
					&Reroute{SessionID: id, Upstream: attacker.node.ID().String()},
					sw.rawStep(id, ch.seq, ch.n, 1),
					&Close{SessionID: id},
				} {
					st.write(f)
					st.wantError(f.Kind().String()+" of another's session on one's own stream", own, CodeNoSession)
				}
				st.write(&Close{SessionID: own})
				st.wantEnd("close of one's own session")

				// A migration of the session into the server that holds it.
				ms := attacker.streamProto(t, sv, MigrateProtocol)
				ms.write(&Migrate{Open: *sw.rawOpen(id, span, time.Minute), Owner: attacker.node.ID().String()})
				ms.wantRejected("migration of another's session", id, CodeBadFrame)

				waitFor(t, "the attacker's session closed", func() bool {
					return sv.Server.Stats().Sessions == before.Sessions
				})
				if after := sv.Server.Stats(); after.Steps != before.Steps || after.Expired != 0 || after.MigratedIn != 0 {
					t.Errorf("stats after the attack: %+v, before %+v", after, before)
				}
			})
		}
	}
	got, err := generate(t, t.Context(), sw.ends(), ch, prompt, n, func(k int) {
		if k == attackAt {
			attack()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sameRun(t, "after the attack", got, want)
	if st := ch.Stats(); st.Failovers != 0 || st.BadReceipts != 0 || st.Mismatches != 0 {
		t.Errorf("chain stats %+v, want no failover, no bad receipt, no mismatch", st)
	}
}

// TestBadInput: each kind of bad input gets an error frame of the right
// code, and after each the server still serves an honest client.
func TestBadInput(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{StreamTimeout: time.Second},
		shard.Span{Start: 0, End: 2}, shard.Span{Start: 2, End: 5})
	ref := sw.reference("Once upon a time", 4)
	p := sw.rawPeer()
	sv := sw.servers[0]
	span := shard.Span{Start: 0, End: 2}
	id := rawID(1)
	otherModel := sw.model
	otherModel[0] ^= 0xff

	cases := []struct {
		name string
		run  func(t *testing.T, st *rawStream)
	}{
		{"malformed", func(t *testing.T, st *rawStream) {
			st.writeRaw(append(header(10), 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1))
			st.wantRejected("garbage payload", SessionID{}, CodeBadFrame)
		}},
		{"not-an-array", func(t *testing.T, st *rawStream) {
			st.writeRaw(append(header(3), 0x93, 0x01, 0x02)) // an array of 3: wrong count for any kind
			st.wantRejected("short array", SessionID{}, CodeBadFrame)
		}},
		{"truncated-closed", func(t *testing.T, st *rawStream) {
			st.writeRaw(append(header(100), make([]byte, 10)...))
			if err := st.st.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			st.wantRejected("truncated frame, then the stream closed", SessionID{}, CodeBadFrame)
		}},
		{"truncated-deadline", func(t *testing.T, st *rawStream) {
			st.writeRaw(append(header(100), make([]byte, 10)...))
			st.wantRejected("truncated frame, then nothing", SessionID{}, CodeBadFrame)
		}},
		{"truncated-header", func(t *testing.T, st *rawStream) {
			st.writeRaw([]byte{0, 0})
			if err := st.st.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			st.wantRejected("truncated header", SessionID{}, CodeBadFrame)
		}},
		{"oversized", func(t *testing.T, st *rawStream) {
			st.writeRaw(header(DefaultMaxActivationBytes + StepOverhead + 1))
			st.wantRejected("oversized frame", SessionID{}, CodeBadFrame)
		}},
		{"oversized-control", func(t *testing.T, st *rawStream) {
			o, err := EncodeFrame(sw.rawOpen(id, span, time.Minute), 0)
			if err != nil {
				t.Fatal(err)
			}
			pad := make([]byte, MaxControlFrame) // trailing bytes past the control cap
			st.writeRaw(append(append(header(uint32(len(o)+len(pad))), o...), pad...))
			st.wantRejected("open beyond the control frame cap", SessionID{}, CodeBadFrame)
		}},
		{"out-of-order", func(t *testing.T, st *rawStream) {
			st.open(sw.rawOpen(id, span, time.Minute))
			st.write(sw.rawStep(id, 0, 1, 1))
			st.wantError("step at 1 of an empty session", id, CodeOutOfOrder)
			st.write(sw.rawStep(id, 0, 0, 2))
			st.wantOutput("step at 0 after the refused one", id, 0, 2)
			st.write(sw.rawStep(id, 1, 5, 1))
			st.wantError("step at 5 of a session of 2", id, CodeOutOfOrder)
			st.write(sw.rawStep(id, 1, 60, 10))
			st.wantError("step beyond the session's length", id, CodeOutOfOrder)
			st.write(sw.rawStep(id, 1, 2, 1))
			st.wantOutput("step at 2", id, 2, 1)
			st.write(&Close{SessionID: id})
			st.wantEnd("close")
		}},
		{"wrong-dim", func(t *testing.T, st *rawStream) {
			st.open(sw.rawOpen(id, span, time.Minute))
			s := sw.rawStep(id, 0, 0, 2)
			s.Dim, s.Count = 2*sw.hp.Dim, 1 // the same bytes, another width
			st.write(s)
			st.wantError("step of the wrong width", id, CodeBadFrame)
			st.write(sw.rawStep(id, 0, 0, 1))
			st.wantOutput("step after the refused one", id, 0, 1)
			st.write(&Close{SessionID: id})
			st.wantEnd("close")
		}},
		{"wrong-encoding", func(t *testing.T, st *rawStream) {
			st.open(sw.rawOpen(id, span, time.Minute))
			s := sw.rawStep(id, 0, 0, 1)
			s.Encoding, s.Activations = F16, s.Activations[:2*sw.hp.Dim]
			st.write(s)
			st.wantError("F16 step of an F32 session", id, CodeBadFrame)
			st.write(sw.rawStep(id, 0, 0, 1))
			st.wantOutput("step after the refused one", id, 0, 1)
			st.write(&Close{SessionID: id})
			st.wantEnd("close")
		}},
		{"wrong-model", func(t *testing.T, st *rawStream) {
			o := sw.rawOpen(id, span, time.Minute)
			o.Model = otherModel
			st.write(o)
			st.wantRejected("open of another model", id, CodeWrongModel)
		}},
		{"span-not-held", func(t *testing.T, st *rawStream) {
			st.write(sw.rawOpen(id, shard.Span{Start: 0, End: 5}, time.Minute))
			st.wantRejected("open of blocks 0:5 on a server of 0:2", id, CodeSpan)
		}},
		{"span-beyond-model", func(t *testing.T, st *rawStream) {
			st.write(sw.rawOpen(id, shard.Span{Start: 1, End: 9}, time.Minute))
			st.wantRejected("open of blocks 1:9", id, CodeSpan)
		}},
		{"first-frame-ready", func(t *testing.T, st *rawStream) {
			st.write(&Ready{SessionID: id})
			st.wantRejected("ready as the first frame", SessionID{}, CodeBadFrame)
		}},
		{"first-frame-receipt", func(t *testing.T, st *rawStream) {
			st.write(&Receipt{SessionID: id, Span: dht.Span{Start: 0, End: 2}, Tokens: 1})
			st.wantRejected("receipt as the first frame", SessionID{}, CodeBadFrame)
		}},
		{"first-frame-error", func(t *testing.T, st *rawStream) {
			st.write(&Error{SessionID: id, Code: CodeInternal, Message: "hello"})
			st.wantRejected("error as the first frame", SessionID{}, CodeBadFrame)
		}},
		{"bad-frame-mid-session", func(t *testing.T, st *rawStream) {
			st.open(sw.rawOpen(id, span, time.Minute))
			st.writeRaw(append(header(4), 0xc1, 0xc1, 0xc1, 0xc1))
			st.wantRejected("garbage on a control stream", id, CodeBadFrame)
		}},
	}
	ref.check(t, "before any bad input")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := sv.Server.Stats()
			tc.run(t, p.stream(t, sv))
			if t.Failed() {
				return
			}
			waitFor(t, "the server holds no session of the bad peer", func() bool { return sv.Server.Stats().Sessions == 0 })
			if after := sv.Server.Stats(); after.Rejected <= before.Rejected {
				t.Errorf("Rejected = %d after, %d before; want it counted", after.Rejected, before.Rejected)
			}
			ref.check(t, "after "+tc.name)
		})
	}
}

// TestExpiry: sessions of a peer that never sends are dropped once idle
// for their timeout, and the owner hears of it.
func TestExpiry(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{ExpiryInterval: 50 * time.Millisecond}, shard.Span{Start: 0, End: 5})
	sv := sw.servers[0]
	p := sw.rawPeer()
	var streams []*rawStream
	for i := range 3 {
		st := p.stream(t, sv)
		st.open(sw.rawOpen(rawID(byte(i)), shard.Span{Start: 0, End: 5}, 200*time.Millisecond))
		streams = append(streams, st)
	}
	for i, st := range streams {
		f, err := st.read(waitLong)
		if err == nil {
			if e, ok := f.(*Error); !ok || e.Code != CodeExpired {
				t.Errorf("idle session %d: answer %v, want an error of code %d or a reset", i, kindOf(f), CodeExpired)
			}
			st.wantEnd("after expiry")
		} else if errors.Is(err, ErrFrame) || isTimeout(err) {
			t.Errorf("idle session %d: read = %v, want an expiry error or a reset", i, err)
		}
	}
	waitFor(t, "idle sessions dropped", func() bool { return sv.Server.Stats().Sessions == 0 })
	if st := sv.Server.Stats(); st.Expired != 3 {
		t.Errorf("Expired = %d, want 3", st.Expired)
	}
	// A session that keeps stepping within its timeout lives on.
	st := p.stream(t, sv)
	id := rawID(9)
	st.open(sw.rawOpen(id, shard.Span{Start: 0, End: 5}, time.Minute))
	for k := range 4 {
		st.write(sw.rawStep(id, uint64(k), k, 1))
		st.wantOutput("busy session", id, k, 1)
	}
	if got := sv.Server.Stats(); got.Sessions != 1 || got.Expired != 3 {
		t.Errorf("busy session: stats %+v, want 1 session and still 3 expired", got)
	}
	sw.reference("Once upon a time", 4).check(t, "after expiries")
}

// TestMaxSessionsPerPeer: a peer gets at most MaxSessionsPerPeer sessions;
// another peer can still open one, and a closed session frees its slot.
func TestMaxSessionsPerPeer(t *testing.T) {
	const limit = 2
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{MaxSessionsPerPeer: limit}, shard.Span{Start: 0, End: 5})
	sv := sw.servers[0]
	span := shard.Span{Start: 0, End: 5}
	greedy, other := sw.rawPeer(), sw.rawPeer()
	var held []*rawStream
	for i := range limit {
		st := greedy.stream(t, sv)
		st.open(sw.rawOpen(rawID(byte(i)), span, time.Minute))
		held = append(held, st)
	}
	st := greedy.stream(t, sv)
	st.write(sw.rawOpen(rawID(limit), span, time.Minute))
	st.wantRejected("one session too many", rawID(limit), CodeOverloaded)

	st = other.stream(t, sv)
	st.open(sw.rawOpen(rawID(100), span, time.Minute))
	sw.reference("Once upon a time", 4).check(t, "a third peer while one is at its limit")

	held[0].write(&Close{SessionID: rawID(0)})
	held[0].wantEnd("close")
	waitFor(t, "the closed session dropped", func() bool { return sv.Server.Stats().Sessions == limit })
	st = greedy.stream(t, sv)
	st.open(sw.rawOpen(rawID(limit), span, time.Minute))
}

// TestBackpressure: with step memory for one big step, a second peer's
// big step waits for the first one's memory and then succeeds.
func TestBackpressure(t *testing.T) {
	const count = 64 // positions of a big step: ~100 kB reserved with dim 64
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{StepMemory: 150_000}, shard.Span{Start: 0, End: 5})
	if sw.hp.Dim != 64 {
		t.Fatalf("dim %d; the step memory below is sized for 64", sw.hp.Dim)
	}
	sv := sw.servers[0]
	span := shard.Span{Start: 0, End: 5}
	a, b := sw.rawPeer().stream(t, sv), sw.rawPeer().stream(t, sv)
	idA, idB := rawID(1), rawID(2)
	a.open(sw.rawOpen(idA, span, time.Minute))
	b.open(sw.rawOpen(idB, span, time.Minute))

	// A sends half of a big step: the server reserves its memory and waits
	// for the rest.
	frame, err := appendFrame(sw.rawStep(idA, 0, 0, count), 0)
	if err != nil {
		t.Fatal(err)
	}
	half := len(frame) / 2
	a.writeRaw(frame[:half])
	mem := sv.Server.mem
	waitFor(t, "A's step memory reserved", func() bool {
		if mem.TryAcquire(sv.Server.cfg.StepMemory) {
			mem.Release(sv.Server.cfg.StepMemory)
			return false
		}
		return true
	})

	// B's big step cannot be reserved while A's is held: it waits.
	b.write(sw.rawStep(idB, 0, 0, count))
	if f, err := b.read(300 * time.Millisecond); err == nil || !isTimeout(err) {
		t.Fatalf("B's step while A's holds the memory: answer %v (%v), want none yet", kindOf(f), err)
	}
	// The timeout above must not have broken B's stream.
	a.writeRaw(frame[half:])
	a.wantOutput("A's step", idA, 0, count)
	b.wantOutput("B's step after waiting", idB, 0, count)
	if st := sv.Server.Stats(); st.Rejected != 0 || st.Steps != 2 {
		t.Errorf("stats %+v, want 2 steps and nothing rejected", st)
	}
	sw.reference("Once upon a time", 4).check(t, "after the backpressure")
}

// TestBackpressureOverloaded: a frame whose reservation cannot be had
// within StreamTimeout gets CodeOverloaded, and the server goes on.
func TestBackpressureOverloaded(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{StepMemory: 150_000, StreamTimeout: 300 * time.Millisecond},
		shard.Span{Start: 0, End: 5})
	sv := sw.servers[0]
	span := shard.Span{Start: 0, End: 5}
	st := sw.rawPeer().stream(t, sv)
	id := rawID(1)
	st.open(sw.rawOpen(id, span, time.Minute))
	// ~600 kB reserved for a frame of 100 kB: more than all step memory.
	st.writeRaw(header(100_000))
	st.wantRejected("a step larger than the step memory", id, CodeOverloaded)

	// First frames too.
	st = sw.rawPeer().stream(t, sv)
	st.writeRaw(header(100_000))
	st.wantRejected("a first frame larger than the step memory", SessionID{}, CodeOverloaded)

	waitFor(t, "the session dropped", func() bool { return sv.Server.Stats().Sessions == 0 })
	sw.reference("Once upon a time", 4).check(t, "after an overload")
}
