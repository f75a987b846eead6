package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
)

// Targets of the swarm benchmark (see [SwarmReport.Misses]).
const (
	// TargetVsLocal is the least decode tok/s of 4 stages on loopback (no
	// emulated link), as a fraction of one process's.
	TargetVsLocal = 0.9
	// TargetVsBound is the most per-token time on an emulated link, as a
	// multiple of [SwarmRow.BoundMS].
	TargetVsBound = 1.1
	// TargetHashShare is the most of the servers' step time that hashing
	// receipts may take in a verified row.
	TargetHashShare = 0.01
)

// SwarmConfig is a swarm decode benchmark: for every number of stages and
// every link, an in-process swarm on 127.0.0.1 generates GenTokens greedy
// tokens after a PromptTokens prompt, Runs times after one warm-up, and is
// compared with the whole model in one process (what `strata run` does).
type SwarmConfig struct {
	// ModelPath is the GGUF model; required.
	ModelPath string
	// Stages are the chain lengths to measure (default 1, 2, 4). The
	// model's blocks are cut into that many contiguous spans whose sizes
	// differ by at most one; a model of fewer blocks is skipped with a note.
	Stages []int
	// Links are emulated on every hop (default: none, 10 ms and 50 ms of
	// one-way latency): the client applies it to what it sends the first
	// stage, each server to what it sends the next stage or the client.
	Links []relay.Link
	// Threads is the thread budget, as `strata run --threads`; required.
	// The local baseline runs with Threads threads. Each of n stages gets a
	// pool of max(1, Threads/n) threads, so that the stages together use
	// no more than the budget (one thread each if the budget is smaller
	// than n). The client's embedding and head run on a pool of Threads
	// threads, as in one process: a single sequence runs one part at a
	// time, so they never compute while a stage does.
	Threads int
	// StageThreads, when positive, is the pool size of every stage
	// instead of max(1, Threads/n): Threads, say, stands for stages that
	// each have a machine like this one (on one machine, a single
	// sequence still computes on one stage at a time).
	StageThreads int
	// Path is the kernel implementation, as in [RunConfig].
	Path kernels.Path
	// KVType is the KV cache type of the stages and the baseline (default
	// f32).
	KVType shard.KVType
	// Encoding of activations between stages (default relay.F16; relay.F32
	// makes the swarm compute the bits of one process).
	Encoding relay.Encoding
	// Redundancy lists the replica counts to measure (default 1): with r
	// > 1 every span is served by r servers and the client runs verified
	// generation (relay.VerifiedChain) over r lanes. On one machine the
	// replicas share its cores, so compute-bound rows slow down about r
	// times; HashShare is the part that verification itself costs.
	Redundancy []int
	// PromptTokens (default 32) is the prompt, run as one batch; GenTokens
	// (default 32) is the number of decode steps timed; Runs (default 3) is
	// the number of measured runs, of which the median is reported.
	PromptTokens, GenTokens, Runs int
}

func (c *SwarmConfig) defaults() error {
	if c.ModelPath == "" {
		return errors.New("bench: swarm needs a model")
	}
	if c.Threads <= 0 {
		return fmt.Errorf("bench: threads must be positive, not %d", c.Threads)
	}
	if len(c.Stages) == 0 {
		c.Stages = []int{1, 2, 4}
	}
	for _, n := range c.Stages {
		if n <= 0 {
			return fmt.Errorf("bench: %d stages", n)
		}
	}
	if len(c.Redundancy) == 0 {
		c.Redundancy = []int{1}
	}
	for _, r := range c.Redundancy {
		if r <= 0 {
			return fmt.Errorf("bench: redundancy %d", r)
		}
	}
	if len(c.Links) == 0 {
		c.Links = []relay.Link{{}, {Latency: 10 * time.Millisecond}, {Latency: 50 * time.Millisecond}}
	}
	if c.Encoding == 0 {
		c.Encoding = relay.F16
	}
	if !c.Encoding.Valid() {
		return fmt.Errorf("bench: encoding %v", c.Encoding)
	}
	if c.PromptTokens == 0 {
		c.PromptTokens = 32
	}
	if c.GenTokens == 0 {
		c.GenTokens = 32
	}
	if c.Runs == 0 {
		c.Runs = 3
	}
	if c.PromptTokens < 0 || c.GenTokens < 0 || c.Runs < 0 {
		return fmt.Errorf("bench: prompt, gen and runs must be positive: %d, %d, %d", c.PromptTokens, c.GenTokens, c.Runs)
	}
	return nil
}

// SwarmReport is the result of [RunSwarm]: the local baseline and one row
// per (stages, link) measured.
type SwarmReport struct {
	Model        string     `json:"model"`
	Threads      int        `json:"threads"`
	Kernels      string     `json:"kernels"`
	KV           string     `json:"kv_type"`
	Encoding     string     `json:"encoding"`
	Blocks       int        `json:"blocks"`
	Dim          int        `json:"dim"`
	PromptTokens int        `json:"prompt_tokens"`
	GenTokens    int        `json:"gen_tokens"`
	Local        *RunResult `json:"local"`
	// Procs says the servers ran as `strata serve` processes
	// ([LayoutConfig.Procs]).
	Procs bool       `json:"procs,omitempty"`
	Rows  []SwarmRow `json:"rows"`
	// Notes say which configurations were skipped and why.
	Notes []string `json:"notes,omitempty"`
}

// SwarmRow is one (stages, link) configuration: the run of median
// per-token time, with every run's decode tok/s kept.
//
// Per-token time is the decode time divided by the decoded tokens (the
// inverse of DecodeTokS). It is split into:
//
//   - compute: the servers' time in their shards' forward passes
//     ([relay.ServerStats.ComputeTime], summed over the stages; read from
//     their info protocol's counters, [dht.Counters], when they run as
//     processes), plus the
//     client's time outside the chain's Forward (embedding, head and
//     sampling);
//   - network: the rest, i.e. the time in the chain's Forward that no
//     stage spent computing: (de)coding and framing activations, the
//     transport, scheduling and the emulated link.
//
// Bound is compute plus the one-way delay of each of the stages+1 hops
// a token's activations take (client → stage 1 → … → stage n → client):
// the link's latency and, on a bandwidth-limited link, the transmission
// time of one position's activations in the chosen encoding (frame
// headers left out).
//
// With Redundancy r > 1, ServerComputeMS is the servers' compute summed
// over stages and averaged over the r replicas (one lane's worth);
// HashMS is the BLAKE3 time of every replica's receipts (input, history
// and output hashes) per token, SignMS their Ed25519 signing, and
// HashShare = HashMS / (HashMS + all replicas' compute): the part of the
// servers' step time that hashing takes.
type SwarmRow struct {
	Stages          int       `json:"stages"`
	Redundancy      int       `json:"redundancy"`
	StageThreads    int       `json:"stage_threads"` // each stage's pool
	Spans           string    `json:"spans"`         // the blocks of each stage, e.g. "0-2,2-4"
	Link            string    `json:"link"`
	Hops            int       `json:"hops"` // one-way hops per token: stages+1
	DecodeTokS      float64   `json:"decode_tok_s"`
	DecodeRuns      []float64 `json:"decode_runs_tok_s"`
	PerTokenMS      float64   `json:"per_token_ms"`
	ComputeMS       float64   `json:"compute_ms"`
	ServerComputeMS float64   `json:"server_compute_ms"`
	ClientComputeMS float64   `json:"client_compute_ms"`
	NetworkMS       float64   `json:"network_ms"`
	VsLocal         float64   `json:"vs_local"` // DecodeTokS / the local decode tok/s
	BoundMS         float64   `json:"bound_ms"`
	VsBound         float64   `json:"vs_bound"` // PerTokenMS / BoundMS
	// TTFTMS is the time to the first token (the prompt's prefill through
	// the chain, and the head); StageComputeMS each stage's compute per
	// token (averaged over its replicas); WireBytesPerToken the bytes the
	// client and all servers sent per decoded token (frames included).
	TTFTMS            float64   `json:"ttft_ms"`
	StageComputeMS    []float64 `json:"stage_compute_ms"`
	WireBytesPerToken float64   `json:"wire_bytes_per_token"`
	HashMS            float64   `json:"hash_ms"`
	SignMS            float64   `json:"sign_ms"`
	HashShare         float64   `json:"hash_share"`
	// VsR1 is DecodeTokS over the same stages and link's r = 1 row (when
	// measured).
	VsR1 float64 `json:"vs_r1,omitempty"`
	// Tokens are the tokens of the reported run (first, from prefill,
	// included).
	Tokens []int32 `json:"-"`
}

// Misses lists the rows that miss a target: 4 stages on an unemulated
// link below [TargetVsLocal] of the local decode speed, or an emulated
// link with latency above [TargetVsBound] times the bound.
func (r *SwarmReport) Misses() []string {
	var out []string
	for _, row := range r.Rows {
		if row.Redundancy > 1 {
			if row.HashShare > TargetHashShare {
				out = append(out, fmt.Sprintf("%d stages × %d replicas, link %s: hashing %.2f%% of step time, target %.0f%%",
					row.Stages, row.Redundancy, row.Link, 100*row.HashShare, 100*TargetHashShare))
			}
			continue
		}
		if row.Stages == 4 && row.Link == (relay.Link{}).String() && row.VsLocal < TargetVsLocal {
			out = append(out, fmt.Sprintf("%d stages, link %s: %.1f%% of local decode tok/s, target %.0f%%",
				row.Stages, row.Link, 100*row.VsLocal, 100*TargetVsLocal))
		}
		if row.Link != (relay.Link{}).String() && row.VsBound > TargetVsBound {
			out = append(out, fmt.Sprintf("%d stages, link %s: per-token %.2f ms = %.2f × bound %.2f ms, target %.2f×",
				row.Stages, row.Link, row.PerTokenMS, row.VsBound, row.BoundMS, TargetVsBound))
		}
	}
	return out
}

// RunSwarm runs the swarm benchmark. The local baseline is [RunLocal] with
// the same model, threads, kernels, KV type and token counts. For each row
// the swarm (servers, their nodes and pools, the client) is started
// afresh and closed before the next; the chain is checked to consist of
// exactly the intended stages. The prompt is a fixed sequence of token
// ids, the same as RunLocal's.
func RunSwarm(ctx context.Context, c SwarmConfig) (*SwarmReport, error) {
	sw, rep, err := startBench(ctx, &c)
	if err != nil {
		return nil, err
	}
	defer sw.f.Close()
	hp, local := sw.hp, rep.Local
	for _, n := range c.Stages {
		if n > hp.Layers {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d stages skipped: the model has %d blocks", n, hp.Layers))
			continue
		}
		for _, r := range c.Redundancy {
			for li, l := range c.Links {
				row, err := sw.row(ctx, n, r, l)
				if err != nil {
					return nil, fmt.Errorf("bench: %d stages × %d replicas, link %s: %w", n, r, l, err)
				}
				row.VsLocal = row.DecodeTokS / local.DecodeTokS
				for _, prev := range rep.Rows {
					if prev.Stages == n && prev.Redundancy == 1 && prev.Link == c.Links[li].String() {
						row.VsR1 = row.DecodeTokS / prev.DecodeTokS
					}
				}
				rep.Rows = append(rep.Rows, *row)
			}
		}
	}
	return rep, nil
}

// startBench applies c's defaults, runs the local baseline and opens the
// model for swarm rows; the caller closes sw.f.
func startBench(ctx context.Context, c *SwarmConfig) (*swarmBench, *SwarmReport, error) {
	if err := c.defaults(); err != nil {
		return nil, nil, err
	}
	local, err := RunLocal(ctx, RunConfig{Model: c.ModelPath, Threads: c.Threads, Path: c.Path, KVType: c.KVType,
		PromptTokens: c.PromptTokens, GenTokens: c.GenTokens, Reps: c.Runs})
	if err != nil {
		return nil, nil, err
	}
	f, err := gguf.Open(c.ModelPath)
	if err != nil {
		return nil, nil, err
	}
	hp, err := weights.DecodeHParams(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	m, err := weights.ManifestOf(f, c.Threads)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	rep := &SwarmReport{Model: c.ModelPath, Threads: c.Threads, Kernels: c.Path.String(), KV: c.KVType.String(),
		Encoding: c.Encoding.String(), Blocks: hp.Layers, Dim: hp.Dim, PromptTokens: c.PromptTokens, GenTokens: c.GenTokens, Local: local}
	return &swarmBench{cfg: *c, f: f, hp: hp, model: m.ID, prompt: benchPrompt(c.PromptTokens, hp.Vocab)}, rep, nil
}

// benchPrompt is RunLocal's prompt.
func benchPrompt(n, vocab int) []int32 {
	p := make([]int32, n)
	for i := range p {
		p[i] = int32((i*7919 + 3) % vocab)
	}
	return p
}

// splitBlocks cuts blocks into n contiguous spans whose sizes differ by at
// most one, the larger first.
func splitBlocks(blocks, n int) []shard.Span {
	spans := make([]shard.Span, n)
	start := 0
	for i := range spans {
		size := blocks / n
		if i < blocks%n {
			size++
		}
		spans[i] = shard.Span{Start: start, End: start + size}
		start += size
	}
	return spans
}

type swarmBench struct {
	cfg    SwarmConfig
	procs  string // the strata binary whose serve processes are the servers; "": servers in this process
	f      *gguf.File
	hp     *weights.HParams
	model  weights.ModelID
	prompt []int32
}

// swarm is one row's running swarm; close releases everything in reverse
// order of acquisition.
type swarm struct {
	stages  []stage // every span's servers, in order of the spans
	client  *relay.Client
	ends    *shard.Shard
	closers []func() error
}

// stage is one server of a row's swarm, in this process or another.
type stage interface {
	peer() peer.ID
	// stats are its counters now.
	stats(ctx context.Context) (relay.ServerStats, error)
}

// localStage is a server in this process: its counters are read directly.
type localStage struct{ sv *relay.Serving }

func (l localStage) peer() peer.ID { return l.sv.Node.ID() }

func (l localStage) stats(context.Context) (relay.ServerStats, error) {
	return l.sv.Server.Stats(), nil
}

func (s *swarm) close() error {
	var errs []error
	for _, c := range slices.Backward(s.closers) {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// loopback returns the options of a node on 127.0.0.1 with a fresh data
// directory, bootstrapped by boot (nil: none).
func (sw *swarmBench) loopback(s *swarm, boot dht.Option) ([]dht.Option, error) {
	dir, err := tempDir(s)
	if err != nil {
		return nil, err
	}
	opts := []dht.Option{dht.WithDataDir(dir), dht.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), dht.WithForcePrivate()}
	if boot != nil {
		opts = append(opts, boot)
	}
	return opts, nil
}

// tempDir makes a directory that s's close removes.
func tempDir(s *swarm) (string, error) {
	dir, err := os.MkdirTemp("", "strata-bench-swarm-")
	if err != nil {
		return "", err
	}
	s.closers = append(s.closers, func() error { return os.RemoveAll(dir) })
	return dir, nil
}

func (sw *swarmBench) pool(s *swarm, threads int) *kernels.Pool {
	p := kernels.NewPool(threads)
	s.closers = append(s.closers, func() error { p.Close(); return nil })
	return p
}

// start starts the servers of spans and the client on 127.0.0.1. On error
// what was started is closed.
func (sw *swarmBench) start(ctx context.Context, spans []shard.Span, replicas, threads int, link relay.Link) (_ *swarm, err error) {
	s := &swarm{}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.close())
		}
	}()
	c := sw.cfg
	var boot dht.Option
	if sw.procs != "" {
		if boot, err = sw.startProcs(ctx, s, spans, replicas, threads, link); err != nil {
			return nil, err
		}
	} else {
		scfg := relay.ServerConfig{Model: sw.model, Link: link, Throughput: 1}
		var first *dht.Node
		for _, sp := range spans {
			for range replicas {
				if err := sw.serve(ctx, s, sp, threads, scfg, &first); err != nil {
					return nil, err
				}
			}
		}
		boot = dht.WithBootstrapPeers(first.AddrInfo())
	}
	opts, err := sw.loopback(s, boot)
	if err != nil {
		return nil, err
	}
	node, err := dht.New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, node.Close)
	for _, st := range s.stages {
		if p, ok := st.(*procStage); ok {
			p.node = node
		}
	}
	s.client, err = relay.NewClient(node, relay.ClientConfig{Model: sw.model, Blocks: sw.hp.Layers, Dim: sw.hp.Dim,
		Encoding: c.Encoding, Link: link})
	if err != nil {
		return nil, err
	}
	s.ends, err = shard.Open(sw.f, shard.Config{EndsOnly: true, Embed: true, Head: true, Pool: sw.pool(s, c.Threads), Path: c.Path})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// serve starts one server of sp; the first becomes the bootstrap node.
func (sw *swarmBench) serve(ctx context.Context, s *swarm, sp shard.Span, threads int, scfg relay.ServerConfig, boot **dht.Node) error {
	c := sw.cfg
	sh, err := shard.Open(sw.f, shard.Config{Span: sp, Pool: sw.pool(s, threads), Path: c.Path, KVType: c.KVType})
	if err != nil {
		return err
	}
	var bootOpt dht.Option
	if *boot != nil {
		bootOpt = dht.WithBootstrapPeers((*boot).AddrInfo())
	}
	opts, err := sw.loopback(s, bootOpt)
	if err != nil {
		return err
	}
	sv, err := relay.Serve(ctx, sh, scfg, opts...)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, sv.Close)
	s.stages = append(s.stages, localStage{sv})
	if *boot == nil {
		*boot = sv.Node
	}
	return nil
}

// row measures n stages of r replicas each on link.
func (sw *swarmBench) row(ctx context.Context, n, r int, link relay.Link) (_ *SwarmRow, err error) {
	return sw.rowSpans(ctx, splitBlocks(sw.hp.Layers, n), r, link)
}

// rowSpans measures a chain of the given spans, r replicas each, on link.
func (sw *swarmBench) rowSpans(ctx context.Context, spans []shard.Span, r int, link relay.Link) (_ *SwarmRow, err error) {
	c := sw.cfg
	n := len(spans)
	threads := max(1, c.Threads/n)
	if c.StageThreads > 0 {
		threads = c.StageThreads
	}
	s, err := sw.start(ctx, spans, r, threads, link)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, s.close()) }()
	var runs []swarmRun
	for rep := -1; rep < c.Runs; rep++ { // rep -1 is the warm-up
		run, err := sw.run(ctx, s, spans, r)
		if err != nil {
			return nil, err
		}
		if rep >= 0 {
			runs = append(runs, run)
		}
	}
	row := &SwarmRow{Stages: n, Redundancy: r, StageThreads: threads, Spans: spansString(spans), Link: link.String(), Hops: n + 1}
	for _, run := range runs {
		row.DecodeRuns = append(row.DecodeRuns, run.st.DecodeTokensPerSec())
	}
	slices.SortFunc(runs, func(a, b swarmRun) int { return int(a.st.Decode - b.st.Decode) })
	run := runs[(len(runs)-1)/2]
	tokens := float64(run.st.GenTokens - 1) // decoded positions
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / tokens }
	row.DecodeTokS = run.st.DecodeTokensPerSec()
	row.PerTokenMS = ms(run.st.Decode)
	row.TTFTMS = float64(run.st.Prefill) / float64(time.Millisecond)
	for _, d := range run.stageCompute {
		row.StageComputeMS = append(row.StageComputeMS, ms(d)/float64(r))
	}
	row.WireBytesPerToken = float64(run.bytes) / tokens
	row.ServerComputeMS = ms(run.serverCompute) / float64(r)
	row.ClientComputeMS = ms(run.st.Decode - run.body)
	row.HashMS, row.SignMS = ms(run.hash), ms(run.sign)
	if all := row.HashMS + ms(run.serverCompute); all > 0 {
		row.HashShare = row.HashMS / all
	}
	row.ComputeMS = row.ServerComputeMS + row.ClientComputeMS
	row.NetworkMS = row.PerTokenMS - row.ComputeMS
	hop := link.Latency
	if link.Bandwidth > 0 {
		size, err := c.Encoding.Size(sw.hp.Dim)
		if err != nil {
			return nil, err
		}
		hop += time.Duration(float64(size*8) / link.Bandwidth * float64(time.Second))
	}
	row.BoundMS = row.ComputeMS + float64(time.Duration(row.Hops)*hop)/float64(time.Millisecond)
	row.VsBound = row.PerTokenMS / row.BoundMS
	row.Tokens = run.tokens
	return row, nil
}

func spansString(spans []shard.Span) string {
	parts := make([]string, len(spans))
	for i, sp := range spans {
		parts[i] = fmt.Sprintf("%d-%d", sp.Start, sp.End)
	}
	return strings.Join(parts, ",")
}

// swarmRun is one generation through the swarm.
type swarmRun struct {
	st            shard.GenStats
	body          time.Duration   // in the chain's Forward during decode
	serverCompute time.Duration   // the stages' compute during decode
	hash, sign    time.Duration   // the stages' receipt hashing and signing during decode
	stageCompute  []time.Duration // per stage, summed over its replicas, during decode
	bytes         int64           // sent by the client and every server during decode
	tokens        []int32
}

// timedBody times a Body's Forward calls after the first (the prompt).
type timedBody struct {
	shard.Body
	calls  int
	decode time.Duration
}

func (b *timedBody) Forward(ctx context.Context, x []float32) error {
	t0 := time.Now()
	err := b.Body.Forward(ctx, x)
	if b.calls > 0 {
		b.decode += time.Since(t0)
	}
	b.calls++
	return err
}

// run opens a chain (r verified lanes for r > 1), checks that it is made
// of spans on distinct servers in order, and generates through it.
func (sw *swarmBench) run(ctx context.Context, s *swarm, spans []shard.Span, replicas int) (swarmRun, error) {
	c := sw.cfg
	var r swarmRun
	var (
		ch    shard.Body
		lanes func() [][]relay.Hop
		stats func() relay.ChainStats
	)
	maxLen := c.PromptTokens + c.GenTokens + 1
	if replicas > 1 {
		v, err := s.client.OpenVerified(ctx, maxLen, relay.VerifyConfig{Redundancy: replicas})
		if err != nil {
			return r, err
		}
		defer v.Close()
		ch, lanes, stats = v, v.Lanes, v.Stats
	} else {
		one, err := s.client.Open(ctx, maxLen)
		if err != nil {
			return r, err
		}
		defer one.Close()
		ch, stats = one, one.Stats
		lanes = func() [][]relay.Hop { return [][]relay.Hop{one.Hops()} }
	}
	checkLanes := func() error {
		ls := lanes()
		if len(ls) != replicas {
			return fmt.Errorf("%d replica lanes, want %d", len(ls), replicas)
		}
		seen := map[string]bool{}
		for _, l := range ls {
			if err := checkHops(l, spans, s.stages); err != nil {
				return err
			}
			for _, h := range l {
				if seen[h.Peer.String()] {
					return fmt.Errorf("server %s in two lanes", h.Peer)
				}
				seen[h.Peer.String()] = true
			}
		}
		return nil
	}
	if err := checkLanes(); err != nil {
		return r, err
	}
	base := make([]relay.ServerStats, len(s.stages))
	for i, st := range s.stages {
		var err error
		if base[i], err = st.stats(ctx); err != nil {
			return r, err
		}
	}
	// A stage counts a step as completed just after sending its output
	// on and its copy and receipt to the client, so the client may see
	// the output first: wait (briefly, it is a matter of microseconds)
	// until every stage has completed its steps, their bytes counted.
	serverStats := func(steps int64) ([]relay.ServerStats, error) {
		deadline := time.Now().Add(5 * time.Second)
		out := make([]relay.ServerStats, len(s.stages))
		for i, st := range s.stages {
			for {
				var err error
				if out[i], err = st.stats(ctx); err != nil {
					return nil, err
				}
				if out[i].Completed >= base[i].Completed+steps {
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("stage %d completed %d steps, want %d", i, out[i].Completed-base[i].Completed, steps)
				}
				time.Sleep(10 * time.Microsecond)
			}
		}
		return out, nil
	}
	var atDecode []relay.ServerStats
	var clientBytes int64
	// Reading the servers' counters at the first token (a round trip
	// each when they run in other processes) is not decode time.
	var pause time.Duration
	smp, err := shard.NewSampler(shard.Greedy(), nil)
	if err != nil {
		return r, err
	}
	body := &timedBody{Body: ch}
	r.st, err = shard.Generate(ctx, s.ends, body, sw.prompt, c.GenTokens+1, smp, nil, func(st shard.Step) error {
		if len(r.tokens) == 0 {
			t0 := time.Now()
			var err error
			if atDecode, err = serverStats(1); err != nil {
				return err
			}
			clientBytes = stats().BytesSent
			pause = time.Since(t0)
		}
		r.tokens = append(r.tokens, st.Token)
		return nil
	})
	if err != nil {
		return r, err
	}
	r.st.Decode -= pause
	end, err := serverStats(int64(c.GenTokens) + 1)
	if err != nil {
		return r, err
	}
	r.stageCompute = make([]time.Duration, len(spans))
	r.bytes = stats().BytesSent - clientBytes
	for i := range end {
		r.serverCompute += end[i].ComputeTime - atDecode[i].ComputeTime
		r.hash += end[i].HashTime - atDecode[i].HashTime
		r.sign += end[i].SignTime - atDecode[i].SignTime
		r.bytes += end[i].BytesSent - atDecode[i].BytesSent
		r.stageCompute[i/replicas] += end[i].ComputeTime - atDecode[i].ComputeTime
	}
	r.body = body.decode
	if cs := stats(); cs.Failovers != 0 || cs.Migrations != 0 || cs.ReplayedPositions != 0 {
		return r, fmt.Errorf("chain was repaired during the run: %+v", cs)
	}
	if v, ok := ch.(*relay.VerifiedChain); ok {
		if vr := v.Report(); !vr.Verified() {
			return r, fmt.Errorf("honest replicas disagreed: %+v", vr)
		}
	}
	return r, checkLanes()
}

// checkHops reports whether hops are spans, in order, served by distinct
// servers of the swarm.
func checkHops(hops []relay.Hop, spans []shard.Span, servers []stage) error {
	if len(hops) != len(spans) {
		return fmt.Errorf("chain of %d stages %v, want %d", len(hops), hops, len(spans))
	}
	seen := make(map[string]bool)
	for i, h := range hops {
		if h.Span.Start != spans[i].Start || h.Span.End != spans[i].End {
			return fmt.Errorf("stage %d serves blocks %d-%d, want %d-%d", i, h.Span.Start, h.Span.End, spans[i].Start, spans[i].End)
		}
		ok := slices.ContainsFunc(servers, func(st stage) bool { return st.peer() == h.Peer })
		if !ok || seen[h.Peer.String()] {
			return fmt.Errorf("stage %d is peer %s, not a distinct server of the swarm", i, h.Peer)
		}
		seen[h.Peer.String()] = true
	}
	return nil
}
