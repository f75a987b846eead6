package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/ledger"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/gguf"
	"github.com/stratanet/strata/weights/tokenizer"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for part := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		*l = append(*l, part)
	}
	return nil
}

// repeatFlag collects a repeatable string flag whose values may contain
// commas (one value per use).
type repeatFlag []string

func (l *repeatFlag) String() string { return strings.Join(*l, " ") }

func (l *repeatFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// netFlags registers the flags every swarm node takes.
type netFlags struct {
	listen, bootstrap listFlag
	data              *string
	link              *string
}

func addNetFlags(fs *flag.FlagSet, dataHelp string) *netFlags {
	n := &netFlags{}
	fs.Var(&n.listen, "listen", "multiaddr to listen on (repeatable; default: TCP and QUIC on all interfaces, any port)")
	fs.Var(&n.bootstrap, "bootstrap", "multiaddr of a node to join through, ending in /p2p/<id> (repeatable)")
	n.data = fs.String("data", "", dataHelp)
	n.link = fs.String("link", "", `emulate a link on this node's session streams, e.g. "rtt=20ms,bw=100Mbit" (benchmarks)`)
	return n
}

// options turns the flags into node options; dataDir is the default data
// directory.
func (n *netFlags) options(dataDir string) ([]dht.Option, relay.Link, string, error) {
	dir := *n.data
	if dir == "" {
		dir = dataDir
	}
	opts := []dht.Option{dht.WithDataDir(dir)}
	if len(n.listen) > 0 {
		opts = append(opts, dht.WithListenAddrs(n.listen...))
	}
	if len(n.bootstrap) > 0 {
		opts = append(opts, dht.WithBootstrap(n.bootstrap...))
	}
	link, err := relay.ParseLink(*n.link)
	if err != nil {
		return nil, link, "", fmt.Errorf("%w: %v", errUsage, err)
	}
	return opts, link, dir, nil
}

// defaultDataDir is where a node keeps its identity unless told otherwise.
func defaultDataDir(name string) string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "strata", name)
	}
	return filepath.Join(".strata", name)
}

func parseEncoding(s string) (relay.Encoding, error) {
	for _, e := range []relay.Encoding{relay.F32, relay.F16, relay.Q8_0} {
		if e.String() == s {
			return e, nil
		}
	}
	return 0, fmt.Errorf("%w: --encoding %q (f32, f16 or q8_0)", errUsage, s)
}

// modelFile is a GGUF model opened for the swarm: its id and hyper-parameters.
type modelFile struct {
	f  *gguf.File
	hp *weights.HParams
	id weights.ModelID
}

func openModel(path string, workers int) (*modelFile, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	hp, err := weights.DecodeHParams(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	m, err := weights.ManifestOf(f, workers)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &modelFile{f: f, hp: hp, id: m.ID}, nil
}

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "serve", "serve --model M --span A:B|auto [--blocks N] [--listen MULTIADDR] [--bootstrap MULTIADDR...] [--data DIR] [--fault KIND[:RATE]]",
		"Serve blocks A..B-1 of a model to the swarm: announce them in the DHT, run sessions for clients,\n"+
			"and push each step's output to the next stage. Prints this node's multiaddrs (one per line,\n"+
			"starting with \"addr \") for others to bootstrap from. On SIGINT or SIGTERM it hands its sessions,\n"+
			"KV caches included, to another server of the same blocks before it exits. Clients settle each\n"+
			"session with it: the countersigned work receipts go into the ledger in --data (strata credits).\n"+
			"With --span auto it serves --blocks blocks where the swarm is weakest (the window over the least\n"+
			"served blocks, as the DHT shows them), and every --rebalance-every moves (handing its sessions over)\n"+
			"when another window would raise the swarm's least-served block by more than --rebalance-gain.")
	model := fs.String("model", "", "GGUF model (required)")
	spanStr := fs.String("span", "", "blocks to serve, start:end, or auto (required)")
	nBlocks := fs.Int("blocks", 0, "with --span auto: how many blocks to serve (default: all)")
	every := fs.Duration("rebalance-every", 5*time.Minute, "with --span auto: how often to reconsider the span (0: never)")
	gain := fs.Float64("rebalance-gain", 0.2, "with --span auto: the least-served block's gain that makes a move worth it")
	kv := fs.String("kv", "f32", "KV cache type: f32 or f16")
	kvBudget := fs.Int64("kv-budget", 0, "bytes of KV cache for all sessions together (0: no cap)")
	mapped := mmapFlag(fs)
	leave := fs.Duration("leave-timeout", 30*time.Second, "how long hand-over of sessions may take on exit")
	faultStr := fs.String("fault", "", "misbehave on purpose (tests, demos): noise, zero, stale, bitflip, slow or drop, with an optional :rate")
	nf := addNetFlags(fs, "directory for this node's identity key (default: the user config dir's strata/serve)")
	engine := engineFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" || *spanStr == "" {
		return fmt.Errorf("%w: --model and --span are required", errUsage)
	}
	auto := *spanStr == "auto"
	var span shard.Span
	if !auto {
		var err error
		if span, err = shard.ParseSpan(*spanStr); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if *nBlocks < 0 || *every < 0 || !(*gain >= 0) {
		return fmt.Errorf("%w: --blocks, --rebalance-every and --rebalance-gain must not be negative", errUsage)
	}
	kvType, err := parseKV(*kv)
	if err != nil {
		return err
	}
	opts, link, dataDir, err := nf.options(defaultDataDir("serve"))
	if err != nil {
		return err
	}
	fault, err := relay.ParseFault(*faultStr)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	defer pool.Close()
	m, err := openModel(*model, pool.Threads())
	if err != nil {
		return err
	}
	defer m.f.Close()
	n := *nBlocks
	if n == 0 || n > m.hp.Layers {
		n = m.hp.Layers
	}
	if auto {
		if span, err = chooseSpan(ctx, e, nf, m, n); err != nil {
			return err
		}
	}
	for {
		next, err := serveSpan(ctx, e, m, span, shard.Config{Pool: pool, Path: path, KVType: kvType, KVBudget: *kvBudget, Mapped: *mapped},
			relay.ServerConfig{Model: m.id, Version: version, Link: link, Fault: fault}, opts, dataDir, *leave,
			func(sv *relay.Serving) <-chan shard.Span {
				if !auto || *every == 0 {
					return nil
				}
				return watchBalance(ctx, sv, m, span, *every, *gain)
			})
		if err != nil || next == nil {
			return err
		}
		fmt.Fprintf(e.stderr, "rebalance: moving from blocks %s to %s\n", span, *next)
		span = *next
	}
}

// chooseSpan asks the swarm, through a throwaway node, which blocks are
// served how much, and picks the n blocks where a new server helps most.
// With no one to ask it takes the first n.
func chooseSpan(ctx context.Context, e *env, nf *netFlags, m *modelFile, n int) (shard.Span, error) {
	span := shard.Span{Start: 0, End: n}
	if len(nf.bootstrap) == 0 {
		fmt.Fprintf(e.stderr, "span auto: no --bootstrap to ask; serving blocks %s\n", span)
		return span, nil
	}
	tmp, err := os.MkdirTemp("", "strata-probe-")
	if err != nil {
		return span, err
	}
	defer os.RemoveAll(tmp)
	opts := []dht.Option{dht.WithDataDir(tmp), dht.WithBootstrap(nf.bootstrap...)}
	if len(nf.listen) > 0 {
		opts = append(opts, dht.WithListenAddrs(nf.listen...))
	}
	probe, err := dht.New(ctx, opts...)
	if err != nil {
		return span, err
	}
	defer probe.Close()
	c, err := relay.NewClient(probe, relay.ClientConfig{Model: m.id, Blocks: m.hp.Layers, Dim: m.hp.Dim})
	if err != nil {
		return span, err
	}
	cands, _, err := c.Candidates(ctx, dht.Span{Start: 0, End: m.hp.Layers})
	if err != nil {
		return span, err
	}
	cov := relay.Coverage(m.hp.Layers, cands)
	sp, err := relay.ChooseSpan(cov, n)
	if err != nil {
		return span, err
	}
	fmt.Fprintf(e.stderr, "span auto: %d servers seen; least-served block at %.1f tok/s; serving blocks %s\n",
		len(cands), relay.MinCoverage(cov), sp)
	return shard.Span{Start: sp.Start, End: sp.End}, nil
}

// watchBalance looks at the swarm every interval and sends the span to
// move to when moving pays.
func watchBalance(ctx context.Context, sv *relay.Serving, m *modelFile, span shard.Span, every time.Duration, gain float64) <-chan shard.Span {
	out := make(chan shard.Span, 1)
	c, err := relay.NewClient(sv.Node, relay.ClientConfig{Model: m.id, Blocks: m.hp.Layers, Dim: m.hp.Dim})
	if err != nil {
		return nil
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cands, _, err := c.Candidates(ctx, dht.Span{Start: 0, End: m.hp.Layers})
			if err != nil {
				continue
			}
			own := sv.Server.Info().Throughput
			cands = append(cands, relay.Candidate{Peer: sv.Node.ID(), Span: dht.Span{Start: span.Start, End: span.End}, Throughput: own})
			if next, move := relay.Rebalance(relay.Coverage(m.hp.Layers, cands), dht.Span{Start: span.Start, End: span.End}, own, gain); move {
				out <- shard.Span{Start: next.Start, End: next.End}
				return
			}
		}
	}()
	return out
}

// serveSpan serves span until ctx ends (it returns nil, after handing
// sessions over) or the balance watch asks for another span (it returns
// that span, after handing sessions over).
func serveSpan(ctx context.Context, e *env, m *modelFile, span shard.Span, scfg shard.Config, rcfg relay.ServerConfig,
	opts []dht.Option, dataDir string, leave time.Duration, watch func(*relay.Serving) <-chan shard.Span) (*shard.Span, error) {
	scfg.Span = span
	sh, err := shard.Open(m.f, scfg)
	if err != nil {
		return nil, err
	}
	hook := &priorityHook{}
	rcfg.Priority = hook.priority
	sv, err := relay.Serve(ctx, sh, rcfg, opts...)
	if err != nil {
		return nil, err
	}
	defer sv.Close()
	l, err := openNodeLedger(sv.Node, dataDir)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	stopLedger, err := serverLedger(sv, l, m, hook)
	if err != nil {
		return nil, err
	}
	defer stopLedger()
	info := sv.Server.Info()
	fmt.Fprintf(e.stdout, "serving blocks %s of model %s as %s (%.1f tok/s measured, profile %s)\n",
		span, m.id.Short(), sv.Node.ID(), info.Throughput, info.Profile)
	for _, a := range sv.Node.Addrs() {
		fmt.Fprintf(e.stdout, "addr %s\n", a)
	}
	if f, ok := e.stdout.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}
	var next *shard.Span
	select {
	case <-ctx.Done():
		fmt.Fprintln(e.stderr, "leaving: handing sessions over")
	case sp := <-watch(sv):
		next = &sp
		fmt.Fprintln(e.stderr, "rebalancing: handing sessions over")
	}
	lctx, cancel := context.WithTimeout(context.Background(), leave)
	defer cancel()
	moved, err := sv.Leave(lctx)
	fmt.Fprintf(e.stderr, "left: %d sessions handed over\n", moved)
	if err != nil {
		return nil, fmt.Errorf("leave: %w", err)
	}
	return next, nil
}

// generateReport is generate's --json output.
type generateReport struct {
	Prompt         string           `json:"prompt"`
	PromptTokens   []int32          `json:"prompt_tokens"`
	Tokens         []int32          `json:"tokens"`
	Text           string           `json:"text"`
	PrefillTokPerS float64          `json:"prefill_tok_s"`
	DecodeTokPerS  float64          `json:"decode_tok_s"`
	Seed           uint64           `json:"seed"`
	Encoding       string           `json:"encoding"`
	Chain          []chainHop       `json:"chain"`
	Stats          relay.ChainStats `json:"stats"`
	// With verification: every replica lane's chain (the first is Chain),
	// the spot checkers per stage, and what the votes found.
	Lanes        [][]chainHop        `json:"lanes,omitempty"`
	Checkers     [][]chainHop        `json:"checkers,omitempty"`
	Verification *relay.VerifyReport `json:"verification,omitempty"`
	// Settled is the work receipt settled with each server.
	Settled []settledReceipt `json:"settled,omitempty"`
}

type chainHop struct {
	Peer string `json:"peer"`
	Span string `json:"span"`
}

func hopsOf(hops []relay.Hop) []chainHop {
	var out []chainHop
	for _, h := range hops {
		out = append(out, chainHop{Peer: h.Peer.String(), Span: h.Span.String()})
	}
	return out
}

// clientModel is what a client holds: tokenizer, embedding and head.
type clientModel struct {
	*modelFile
	tok  *tokenizer.Tokenizer
	ends *shard.Shard
}

func openClientModel(path string, pool *kernels.Pool, kpath kernels.Path) (*clientModel, error) {
	m, err := openModel(path, pool.Threads())
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(&m.f.Metadata)
	if err != nil {
		m.f.Close()
		return nil, err
	}
	ends, err := shard.Open(m.f, shard.Config{EndsOnly: true, Embed: true, Head: true, Pool: pool, Path: kpath})
	if err != nil {
		m.f.Close()
		return nil, err
	}
	return &clientModel{modelFile: m, tok: tok, ends: ends}, nil
}

// verifyFlags adds --redundancy and --verify-rate to fs; the function it
// returns gives the verification asked for (nil for none).
func verifyFlags(fs *flag.FlagSet) func() (*relay.VerifyConfig, error) {
	r := fs.Int("redundancy", 1, "run every step on this many replicas of each stage and go on with the BLAKE3 hash majority")
	rate := fs.Float64("verify-rate", 0, "spot-check this fraction of steps on a second replica of each stage instead, escalating a stage to --redundancy (at least 3) replicas on a mismatch")
	return func() (*relay.VerifyConfig, error) {
		if *r < 1 || !(*rate >= 0 && *rate <= 1) {
			return nil, fmt.Errorf("%w: --redundancy must be at least 1 and --verify-rate in [0, 1]", errUsage)
		}
		if *r == 1 && *rate == 0 {
			return nil, nil
		}
		return &relay.VerifyConfig{Redundancy: *r, SpotRate: *rate}, nil
	}
}

// verifyLine sums up a verification report in one line.
func verifyLine(v *relay.VerifyReport) string {
	var b strings.Builder
	if v.SpotRate > 0 {
		fmt.Fprintf(&b, "spot checks at rate %g (escalation to %d replicas): %d steps, %d checked at every stage (%d unanimous, %d by majority, %d without a majority), %d not",
			v.SpotRate, v.Redundancy, v.Steps, v.Unanimous+v.ByMajority+v.Unverified, v.Unanimous, v.ByMajority, v.Unverified, v.Unchecked)
	} else {
		fmt.Fprintf(&b, "%d replicas per stage: %d steps, %d unanimous, %d by majority, %d without a majority",
			v.Redundancy, v.Steps, v.Unanimous, v.ByMajority, v.Unverified)
	}
	if len(v.Escalated) > 0 {
		fmt.Fprintf(&b, "; escalated blocks %s", strings.Join(v.Escalated, ", "))
	}
	for _, m := range []struct {
		what string
		by   map[string]int
	}{{"blamed", v.Blamed}, {"timed out", v.TimedOut}} {
		peers := slices.Sorted(maps.Keys(m.by))
		for i, p := range peers {
			peers[i] = fmt.Sprintf("%s ×%d", p, m.by[p])
		}
		if len(peers) > 0 {
			fmt.Fprintf(&b, "; %s: %s", m.what, strings.Join(peers, ", "))
		}
	}
	if v.DroppedLanes > 0 || v.Short > 0 {
		fmt.Fprintf(&b, "; %d replica lanes dropped and %d stage-steps short of replicas, for want of servers", v.DroppedLanes, v.Short)
	}
	if v.Verified() {
		b.WriteString("; verified")
	} else {
		b.WriteString("; NOT fully verified")
	}
	return b.String()
}

// swarmGenerate runs one generation through a chain and streams its text
// to w (unless w is nil); it returns the report.
func swarmGenerate(ctx context.Context, w io.Writer, cm *clientModel, client *relay.Client, prompt string, n int,
	scfg shard.SamplerConfig, vcfg *relay.VerifyConfig, settle *settlement, chainOut io.Writer) (*generateReport, error) {
	toks, err := cm.tok.Encode(prompt, true, false)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%w: the prompt has no tokens (give --prompt)", errUsage)
	}
	if len(toks)+n > cm.hp.ContextLength {
		return nil, fmt.Errorf("prompt of %d tokens + %d to generate exceeds the model's context of %d", len(toks), n, cm.hp.ContextLength)
	}
	var (
		body    shard.Body
		chain   *relay.Chain
		checked *relay.VerifiedChain
	)
	if vcfg != nil {
		if checked, err = client.OpenVerified(ctx, len(toks)+n, *vcfg); err != nil {
			return nil, err
		}
		defer checked.Close()
		body = checked
	} else {
		if chain, err = client.Open(ctx, len(toks)+n); err != nil {
			return nil, err
		}
		defer chain.Close()
		body = chain
	}
	lanes := func() [][]relay.Hop {
		if checked != nil {
			return checked.Lanes()
		}
		return [][]relay.Hop{chain.Hops()}
	}
	if chainOut != nil {
		for i, lane := range lanes() {
			if i == 0 {
				fmt.Fprintln(chainOut, "chain:")
			} else {
				fmt.Fprintf(chainOut, "replica lane %d:\n", i+1)
			}
			for _, h := range lane {
				fmt.Fprintf(chainOut, "  blocks %-7s on %s\n", h.Span, h.Peer)
			}
		}
	}
	smp, err := shard.NewSampler(scfg, nil)
	if err != nil {
		return nil, err
	}
	rep := &generateReport{Prompt: prompt, PromptTokens: toks, Tokens: []int32{}, Seed: scfg.Seed}
	dec := cm.tok.NewStreamDecoder(false)
	stats, err := shard.Generate(ctx, cm.ends, body, toks, n, smp, nil, func(s shard.Step) error {
		rep.Tokens = append(rep.Tokens, s.Token)
		piece, err := dec.Push(s.Token)
		if err != nil {
			return err
		}
		if w != nil {
			fmt.Fprint(w, piece)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if w != nil {
		fmt.Fprintln(w, dec.Flush())
	}
	if rep.Text, err = cm.tok.Decode(rep.Tokens); err != nil {
		return nil, err
	}
	rep.PrefillTokPerS, rep.DecodeTokPerS = stats.PrefillTokensPerSec(), stats.DecodeTokensPerSec()
	ls := lanes()
	rep.Chain = hopsOf(ls[0])
	if settle != nil {
		var work []relay.WorkSummary
		if checked != nil {
			work = checked.Work()
		} else {
			work = chain.Work()
		}
		rep.Settled = settle.settle(ctx, work)
	}
	if checked != nil {
		rep.Stats = checked.Stats()
		vr := checked.Report()
		rep.Verification = &vr
		for _, l := range ls {
			rep.Lanes = append(rep.Lanes, hopsOf(l))
		}
		for _, c := range checked.Checkers() {
			rep.Checkers = append(rep.Checkers, hopsOf(c))
		}
	} else {
		rep.Stats = chain.Stats()
	}
	return rep, nil
}

func runGenerate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "generate", "generate --bootstrap MULTIADDR --model M --prompt T [-n N] [sampling flags] [--redundancy R | --verify-rate P] [--json]",
		"Generate text through the swarm: this client holds the tokenizer, the embedding and the output\n"+
			"head of M; it finds a chain of servers covering all blocks in the DHT and streams the tokens to\n"+
			"stdout. Failed stages are replaced (and their KV caches replayed) without changing the output.\n"+
			"With --redundancy R every step runs on R replicas of each stage and the BLAKE3 hash majority wins;\n"+
			"a replica that lied is blamed, dropped and replaced. --verify-rate P checks a random fraction P\n"+
			"of the steps on a second replica instead. The verification report goes to stderr (or --json).")
	model := fs.String("model", "", "GGUF model (required; the client reads only its tokenizer, embedding and head)")
	prompt := fs.String("prompt", "", "prompt text")
	n := fs.Int("n", 128, "tokens to generate")
	encName := fs.String("encoding", relay.DefaultEncoding.String(), "activations on the wire: f16, f32 (bit-exact) or q8_0")
	stepTimeout := fs.Duration("step-timeout", 30*time.Second, "time a step may take before its slow stage is replaced")
	asJSON := fs.Bool("json", false, "print one JSON report instead of streaming text")
	nf := addNetFlags(fs, "directory for this client's identity key (default: a fresh temporary one)")
	sampler := samplerFlags(fs)
	engine := engineFlags(fs)
	verify := verifyFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	vcfg, err := verify()
	if err != nil {
		return err
	}
	if *model == "" || len(nf.bootstrap) == 0 {
		return fmt.Errorf("%w: --model and --bootstrap are required", errUsage)
	}
	if *n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", errUsage)
	}
	enc, err := parseEncoding(*encName)
	if err != nil {
		return err
	}
	scfg, err := sampler()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "strata-client-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	opts, link, dataDir, err := nf.options(tmp)
	if err != nil {
		return err
	}
	pool, path, err := engine()
	if err != nil {
		return err
	}
	defer pool.Close()
	cm, err := openClientModel(*model, pool, path)
	if err != nil {
		return err
	}
	defer cm.f.Close()
	node, err := dht.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer node.Close()
	l, err := openNodeLedger(node, dataDir)
	if err != nil {
		return err
	}
	defer l.Close()
	audit, err := ledger.ServeAudit(node.Host(), l) // servers rank clients by audited balance
	if err != nil {
		return err
	}
	defer audit.Close()
	// The ledger's reputation steers routes (and takes verification's
	// events): it persists in --data across runs.
	reputation, err := ledger.NewReputation(l, ledger.DefaultHalfLife, ledger.DefaultExcludeBelow)
	if err != nil {
		return err
	}
	if vcfg != nil {
		vcfg.Reputation = reputation
	}
	client, err := relay.NewClient(node, relay.ClientConfig{Model: cm.id, Blocks: cm.hp.Layers, Dim: cm.hp.Dim,
		Encoding: enc, StepTimeout: *stepTimeout, Link: link, WaitReceipts: true,
		Reputation: reputation, ExcludeBelow: ledger.DefaultExcludeBelow})
	if err != nil {
		return err
	}
	out := e.stdout
	if *asJSON {
		out = nil
	}
	rep, err := swarmGenerate(ctx, out, cm, client, *prompt, *n, scfg, vcfg, &settlement{node: node, l: l, m: cm.modelFile}, e.stderr)
	if err != nil {
		return err
	}
	rep.Encoding = enc.String()
	if *asJSON {
		j := json.NewEncoder(e.stdout)
		j.SetIndent("", "  ")
		return j.Encode(rep)
	}
	st := rep.Stats
	fmt.Fprintf(e.stderr, "prompt %d tokens at %.1f tok/s, generated %d at %.1f tok/s; %d failovers, %d migrations, %d positions replayed, %d receipts verified (seed %d)\n",
		len(rep.PromptTokens), rep.PrefillTokPerS, len(rep.Tokens), rep.DecodeTokPerS, st.Failovers, st.Migrations,
		st.ReplayedPositions, st.Receipts, scfg.Seed)
	if rep.Verification != nil {
		fmt.Fprintln(e.stderr, "verification:", verifyLine(rep.Verification))
	}
	fmt.Fprintln(e.stderr, "settled:", settleLine(rep.Settled))
	if st.BadReceipts > 0 || st.Mismatches > 0 {
		return fmt.Errorf("%d receipts did not verify and %d outputs differed between copies", st.BadReceipts, st.Mismatches)
	}
	return nil
}

// splitSpans cuts blocks into n contiguous near-equal spans.
func splitSpans(blocks, n int) []shard.Span {
	n = max(1, min(n, blocks))
	spans := make([]shard.Span, n)
	for i := range n {
		spans[i] = shard.Span{Start: i * blocks / n, End: (i + 1) * blocks / n}
	}
	return spans
}
