package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/shard"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

// swarm is an in-process swarm of real libp2p hosts on 127.0.0.1.
type swarm struct {
	t       *testing.T
	f       *gguf.File
	hp      *weights.HParams
	model   weights.ModelID
	scfg    ServerConfig
	servers []*Serving
	boot    peer.AddrInfo
}

func loopbackOpts(t *testing.T) []dht.Option {
	return []dht.Option{dht.WithDataDir(t.TempDir()), dht.WithListenAddrs("/ip4/127.0.0.1/tcp/0"),
		dht.WithForcePrivate(), dht.WithBootstrapWait(10 * time.Second), dht.WithInfoCache(64, 200*time.Millisecond)}
}

func checkLoopback(t *testing.T, n *dht.Node) {
	t.Helper()
	for _, a := range n.Host().Addrs() {
		if ip, err := a.ValueForProtocol(ma.P_IP4); err != nil || ip != "127.0.0.1" {
			t.Fatalf("test host listens on %v, want 127.0.0.1 only", a)
		}
	}
}

func newSwarm(t *testing.T, model string, scfg ServerConfig, spans ...shard.Span) *swarm {
	t.Helper()
	f, err := gguf.Open(testenv.Shared(t, "models/"+model))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	hp, err := weights.DecodeHParams(f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := weights.ManifestOf(f, 2)
	if err != nil {
		t.Fatal(err)
	}
	scfg.Model = m.ID
	if scfg.Throughput == 0 {
		scfg.Throughput = 1000 // measured throughput would make routes depend on timing
	}
	sw := &swarm{t: t, f: f, hp: hp, model: m.ID, scfg: scfg}
	for _, sp := range spans {
		sw.add(sp)
	}
	return sw
}

// add starts one more server of blocks sp.
func (sw *swarm) add(sp shard.Span) *Serving {
	t := sw.t
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	sh, err := shard.Open(sw.f, shard.Config{Span: sp, Pool: pool, Path: kernels.Best()})
	if err != nil {
		t.Fatal(err)
	}
	opts := loopbackOpts(t)
	if len(sw.servers) > 0 {
		opts = append(opts, dht.WithBootstrapPeers(sw.boot))
	}
	sv, err := Serve(t.Context(), sh, sw.scfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	checkLoopback(t, sv.Node)
	t.Cleanup(func() { sv.Close() })
	if len(sw.servers) == 0 {
		sw.boot = sv.Node.AddrInfo()
	}
	sw.servers = append(sw.servers, sv)
	return sv
}

// client starts a client node and a Client for the swarm's model.
func (sw *swarm) client(ccfg ClientConfig) *Client {
	t := sw.t
	t.Helper()
	n, err := dht.New(t.Context(), append(loopbackOpts(t), dht.WithBootstrapPeers(sw.boot))...)
	if err != nil {
		t.Fatal(err)
	}
	checkLoopback(t, n)
	t.Cleanup(func() { n.Close() })
	ccfg.Model, ccfg.Blocks, ccfg.Dim = sw.model, sw.hp.Layers, sw.hp.Dim
	if ccfg.Encoding == 0 {
		ccfg.Encoding = F32
	}
	c, err := NewClient(n, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ends opens the client's embedding and head.
func (sw *swarm) ends() *shard.Shard {
	pool := kernels.NewPool(1)
	sw.t.Cleanup(pool.Close)
	e, err := shard.Open(sw.f, shard.Config{EndsOnly: true, Embed: true, Head: true, Pool: pool, Path: kernels.Best()})
	if err != nil {
		sw.t.Fatal(err)
	}
	return e
}

// run is one generation's tokens and the bytes of every logit vector.
type run struct {
	tokens []int32
	logits []byte
}

func appendFloats(b []byte, x []float32) []byte {
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func generate(t *testing.T, ctx context.Context, ends *shard.Shard, body shard.Body, prompt []int32, n int, onToken func(i int)) (run, error) {
	t.Helper()
	var r run
	smp, err := shard.NewSampler(shard.Greedy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = shard.Generate(ctx, ends, body, prompt, n, smp,
		func(_ int, l []float32) { r.logits = appendFloats(r.logits, l) },
		func(s shard.Step) error {
			r.tokens = append(r.tokens, s.Token)
			r.logits = appendFloats(r.logits, s.Logits)
			if onToken != nil {
				onToken(len(r.tokens))
			}
			return nil
		})
	return r, err
}

// local is what `strata run` computes: the whole model in one process.
func (sw *swarm) local(prompt []int32, n int) run {
	t := sw.t
	pool := kernels.NewPool(2)
	defer pool.Close()
	sh, err := shard.Open(sw.f, shard.Config{Embed: true, Head: true, Pool: pool, Path: kernels.Generic})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := sh.NewSession(len(prompt) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	r, err := generate(t, t.Context(), sh, sess, prompt, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (sw *swarm) prompt(text string) []int32 {
	tok, err := tokenizer.FromGGUF(&sw.f.Metadata)
	if err != nil {
		sw.t.Fatal(err)
	}
	ids, err := tok.Encode(text, true, false)
	if err != nil {
		sw.t.Fatal(err)
	}
	return ids
}

func sameRun(t *testing.T, what string, got, want run) {
	t.Helper()
	if !equalTokens(got.tokens, want.tokens) {
		t.Errorf("%s: tokens %v, want %v", what, got.tokens, want.tokens)
	}
	if !bytes.Equal(got.logits, want.logits) {
		t.Errorf("%s: logits differ from one process (%d vs %d bytes)", what, len(got.logits), len(want.logits))
	}
}

func equalTokens(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSwarmMatchesLocal: a swarm of 4 servers on loopback generates
// exactly the tokens and logits of one process, for each shared model.
func TestSwarmMatchesLocal(t *testing.T) {
	cases := []struct {
		model string
		spans []shard.Span
	}{
		{"stories260K.gguf", []shard.Span{{Start: 0, End: 2}, {Start: 2, End: 3}, {Start: 3, End: 5}, {Start: 1, End: 4}}},
		{"tinystories-656k-q8_0.gguf", []shard.Span{{Start: 0, End: 1}, {Start: 1, End: 2}, {Start: 0, End: 1}, {Start: 1, End: 2}}},
		{"TinyStories-656K.f16.gguf", []shard.Span{{Start: 0, End: 1}, {Start: 1, End: 2}, {Start: 0, End: 2}, {Start: 1, End: 2}}},
	}
	for _, tc := range cases {
		t.Run(tc.model, func(t *testing.T) {
			sw := newSwarm(t, tc.model, ServerConfig{}, tc.spans...)
			prompt := sw.prompt("Once upon a time, there was a little")
			const n = 32
			want := sw.local(prompt, n)
			c := sw.client(ClientConfig{})
			ch, err := c.Open(t.Context(), len(prompt)+n)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			t.Logf("chain: %v", ch.Hops())
			got, err := generate(t, t.Context(), sw.ends(), ch, prompt, n, nil)
			if err != nil {
				t.Fatal(err)
			}
			sameRun(t, "swarm", got, want)
			st := ch.Stats()
			// The last receipt of a step may still be on its way.
			if st.BadReceipts != 0 || st.Receipts < st.Steps-1 {
				t.Errorf("receipts: %+v", st)
			}
		})
	}
}

// TestFailover: a stage is killed (host closed abruptly) or told to leave
// (graceful) at a random point of a generation; every generation completes
// with the output of an uninterrupted run, and the graceful path replays
// nothing.
func TestFailover(t *testing.T) {
	trials := 20
	if testing.Short() {
		trials = 6
	}
	layouts := [][]shard.Span{
		{{Start: 0, End: 2}, {Start: 0, End: 2}, {Start: 2, End: 5}, {Start: 2, End: 5}},
		{{Start: 0, End: 2}, {Start: 0, End: 2}, {Start: 2, End: 5}, {Start: 2, End: 5}, {Start: 2, End: 3}, {Start: 3, End: 5}},
		{{Start: 0, End: 5}, {Start: 0, End: 5}, {Start: 0, End: 1}, {Start: 1, End: 5}},
	}
	var want run
	var once sync.Once
	for trial := range trials {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		graceful := trial%2 == 1
		layout := layouts[rng.IntN(len(layouts))]
		name := fmt.Sprintf("trial=%d/graceful=%v/layout=%v", trial, graceful, layout)
		t.Run(name, func(t *testing.T) {
			sw := newSwarm(t, "stories260K.gguf", ServerConfig{}, layout...)
			prompt := sw.prompt("Lily and Ben went to the park")
			const n = 24
			once.Do(func() { want = sw.local(prompt, n) })
			c := sw.client(ClientConfig{StepTimeout: 5 * time.Second, Bans: NewBans(time.Minute, time.Minute), Logger: testLogger(t)})
			ch, err := c.Open(t.Context(), len(prompt)+n)
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			killAt := 1 + rng.IntN(n-2)
			victimIdx := rng.IntN(len(ch.Hops()))
			async := rng.IntN(2) == 0
			var wg sync.WaitGroup
			var leaveErr error
			moved := -1
			got, err := generate(t, t.Context(), sw.ends(), ch, prompt, n, func(i int) {
				if i == killAt+1 {
					wg.Wait() // the stage is gone before the next step
				}
				if i != killAt {
					return
				}
				victim := ch.Hops()[victimIdx].Peer
				var sv *Serving
				for _, s := range sw.servers {
					if s.Node.ID() == victim {
						sv = s
					}
				}
				kill := func() {
					if graceful {
						moved, leaveErr = sv.Leave(context.Background())
					} else {
						sv.Close()
					}
				}
				if async {
					wg.Add(1)
					go func() { defer wg.Done(); time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond); kill() }()
				} else {
					kill()
				}
			})
			wg.Wait()
			if err != nil {
				t.Fatalf("generation failed: %v (stats %+v)", err, ch.Stats())
			}
			sameRun(t, "after a failure", got, want)
			st := ch.Stats()
			t.Logf("killed stage %d at token %d (async %v); chain now %v; stats %+v", victimIdx, killAt, async, ch.Hops(), st)
			if graceful {
				if leaveErr != nil || moved != 1 {
					t.Errorf("Leave moved %d sessions: %v", moved, leaveErr)
				}
				if st.Migrations != 1 || st.ReplayedPositions != 0 || st.Failovers != 0 {
					t.Errorf("graceful leave: %d migrations, %d failovers, %d positions replayed; want 1, 0, 0",
						st.Migrations, st.Failovers, st.ReplayedPositions)
				}
			} else if st.Failovers != 1 {
				// Only the killed stage is replaced: its neighbours, re-wired,
				// go on serving.
				t.Errorf("%d failovers after one stage was killed; want 1", st.Failovers)
			}
		})
	}
}

// testLogger sends a component's log to the test's.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestFailoverKeepsNeighbours: when a middle stage is replaced, the stage
// before it is re-wired to push to the replacement and still takes steps
// from its own upstream: no other stage fails.
func TestFailoverKeepsNeighbours(t *testing.T) {
	sw := newSwarm(t, "stories260K.gguf", ServerConfig{},
		shard.Span{Start: 0, End: 1}, shard.Span{Start: 1, End: 2}, shard.Span{Start: 2, End: 3}, shard.Span{Start: 3, End: 5})
	sw.scfg.Throughput = 500 // the spare: routes pick it only when needed
	sw.add(shard.Span{Start: 2, End: 3})
	prompt := sw.prompt("Lily and Ben went to the park")
	const n = 8
	c := sw.client(ClientConfig{StepTimeout: 2 * time.Second, Bans: NewBans(time.Minute, time.Minute)})
	ch, err := c.Open(t.Context(), len(prompt)+n)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	victim := ch.Hops()[2].Peer
	got, err := generate(t, t.Context(), sw.ends(), ch, prompt, n, func(i int) {
		if i == 3 {
			for _, s := range sw.servers {
				if s.Node.ID() == victim {
					s.Close()
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sameRun(t, "after a middle stage failed", got, sw.local(prompt, n))
	if st := ch.Stats(); st.Failovers != 1 {
		t.Errorf("%d failovers after one stage was killed; want 1 (chain %v)", st.Failovers, ch.Hops())
	}
}
