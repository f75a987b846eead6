package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/ledger"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
	"github.com/stratanet/strata/weights"
	"github.com/stratanet/strata/weights/quant"
)

// demoConfig is the built-in default model of the demo: small enough to
// make in a second, shaped like a real llama.
var demoConfig = weights.SynthConfig{Arch: "llama", Dim: 256, FFN: 768, Layers: 4, Heads: 8, KVHeads: 4,
	Vocab: 2048, Context: 512, Type: quant.Q8_0, Seed: 1}

// demoStepTimeout is how long the demo's client waits for a step before
// replacing the stage (the demo's model takes a millisecond a step).
const demoStepTimeout = 2 * time.Second

const demoText = "Once upon a time, a small swarm of machines ran one model together."

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "demo", "demo [--nodes 3] [--model M] [--prompt T] [-n 32] [--encoding f32] [--keep DIR] [--redundancy R | --verify-rate P] [--fault KIND[:RATE]]",
		"Run Strata's main job on a built-in default: start a swarm of --nodes servers in this process on\n"+
			"127.0.0.1, each serving a contiguous span of the model's blocks and announcing it in the DHT; start a\n"+
			"client that finds a chain covering all blocks, print the chain, and stream a generation through it.\n"+
			"With no --model, a small llama-shaped model is synthesized first (its weights are random, so its\n"+
			"text is too). With --encoding f32 the tokens are checked against a single-process run.\n"+
			"With --redundancy or --verify-rate, each span gets enough replicas (and one spare) for verified\n"+
			"generation; --fault makes one replica of each span misbehave (advertising a high throughput so\n"+
			"that routes pick it) and the report shows it caught.")
	model := fs.String("model", "", "use this GGUF model instead of a synthetic one")
	keep := fs.String("keep", "", "write the synthetic model into DIR and keep it")
	data := fs.String("data", "", "keep the nodes' identities and ledgers in DIR/node<i> and DIR/client (default: a temporary directory)")
	nodes := fs.Int("nodes", 3, "servers in the swarm")
	prompt := fs.String("prompt", demoText, "prompt text")
	n := fs.Int("n", 32, "tokens to generate")
	encName := fs.String("encoding", "f32", "activations on the wire: f32 (bit-exact), f16 or q8_0")
	threads := fs.Int("threads", 1, "kernel threads per node")
	faultStr := fs.String("fault", "", "one replica of each span misbehaves: noise, zero, stale, bitflip, slow or drop, with an optional :rate")
	verify := verifyFlags(fs)
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	vcfg, err := verify()
	if err != nil {
		return err
	}
	fault, err := relay.ParseFault(*faultStr)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fault.Kind != relay.NoFault && vcfg == nil {
		return fmt.Errorf("%w: --fault needs --redundancy or --verify-rate to catch it", errUsage)
	}
	if fault.Kind == relay.FaultSlow {
		fault.Delay = 3 * demoStepTimeout
	}
	if *nodes < 1 || *n < 1 || *threads < 1 {
		return fmt.Errorf("%w: --nodes, -n and --threads must be at least 1", errUsage)
	}
	enc, err := parseEncoding(*encName)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "strata-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dataDir := *data
	if dataDir == "" {
		dataDir = tmp
	}
	path := *model
	if path == "" {
		dir := *keep
		if dir == "" {
			dir = tmp
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		path = filepath.Join(dir, "demo-llama-q8_0.gguf")
		c := demoConfig
		fmt.Fprintf(e.stdout, "== synthesizing a %d-block llama (dim %d, vocab %d, %s) at %s\n", c.Layers, c.Dim, c.Vocab, c.Type, path)
		if err := writeModelFile(path, true, func(f *os.File) error { return weights.WriteSynth(f, c) }); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pool := kernels.NewPool(*threads)
	defer pool.Close()
	kpath := kernels.Best()
	cm, err := openClientModel(path, pool, kpath)
	if err != nil {
		return err
	}
	defer cm.f.Close()
	fmt.Fprintf(e.stdout, "== model %s: %s, %d blocks, dim %d, model id %s\n", filepath.Base(path), cm.hp.Family.Name, cm.hp.Layers, cm.hp.Dim, cm.id)

	spans := splitSpans(cm.hp.Layers, *nodes)
	// Replicas of each span: one without verification; with it, enough
	// for the votes and one spare to take a blamed replica's place.
	replicas := 1
	if vcfg != nil {
		replicas = vcfg.Redundancy + 1
		if vcfg.SpotRate > 0 {
			replicas = max(vcfg.Redundancy, 3) + 1
		}
	}
	type server struct {
		span  shard.Span
		cfg   relay.ServerConfig
		fault bool
	}
	var servers []server
	for _, sp := range spans {
		for j := range replicas {
			// Advertised throughputs make the routes predictable: the
			// liar claims to be fastest, the spare slowest.
			cfg := relay.ServerConfig{Model: cm.id, Version: version}
			switch {
			case replicas == 1:
			case j == 0 && fault.Kind != relay.NoFault:
				cfg.Fault, cfg.Throughput = fault, 40
				cfg.Fault.Seed = uint64(len(servers))
			case j == replicas-1:
				cfg.Throughput = 10
			default:
				cfg.Throughput = 20
			}
			servers = append(servers, server{sp, cfg, cfg.Fault.Kind != relay.NoFault})
		}
	}
	fmt.Fprintf(e.stdout, "\n== starting %d servers on 127.0.0.1\n", len(servers))
	var boot []dht.Option
	var running []demoNode
	for i, srv := range servers {
		sp := srv.span
		npool := kernels.NewPool(*threads)
		defer npool.Close()
		sh, err := shard.Open(cm.f, shard.Config{Span: sp, Pool: npool, Path: kpath})
		if err != nil {
			return err
		}
		dir := filepath.Join(dataDir, fmt.Sprint("node", i))
		opts := append([]dht.Option{dht.WithDataDir(dir),
			dht.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), dht.WithForcePrivate()}, boot...)
		hook := &priorityHook{}
		srv.cfg.Priority = hook.priority
		sv, err := relay.Serve(ctx, sh, srv.cfg, opts...)
		if err != nil {
			return err
		}
		defer sv.Close()
		l, err := openNodeLedger(sv.Node, dir)
		if err != nil {
			return err
		}
		defer l.Close()
		stopLedger, err := serverLedger(sv, l, cm.modelFile, hook)
		if err != nil {
			return err
		}
		defer stopLedger()
		running = append(running, demoNode{i, sv, l, srv.fault})
		if i == 0 {
			boot = []dht.Option{dht.WithBootstrapPeers(sv.Node.AddrInfo())}
		}
		lies := ""
		if srv.fault {
			lies = " (faulty: " + srv.cfg.Fault.String() + ")"
		}
		fmt.Fprintf(e.stdout, "   node %d serves blocks %-5s as %s at %s%s\n", i, sp, sv.Node.ID(), sv.Node.Addrs()[0], lies)
	}
	node, err := dht.New(ctx, append([]dht.Option{dht.WithDataDir(filepath.Join(dataDir, "client")),
		dht.WithListenAddrs("/ip4/127.0.0.1/tcp/0"), dht.WithForcePrivate()}, boot...)...)
	if err != nil {
		return err
	}
	defer node.Close()
	cl, err := openNodeLedger(node, filepath.Join(dataDir, "client"))
	if err != nil {
		return err
	}
	defer cl.Close()
	clientAudit, err := ledger.ServeAudit(node.Host(), cl)
	if err != nil {
		return err
	}
	defer clientAudit.Close()
	rep0, err := ledger.NewReputation(cl, ledger.DefaultHalfLife, ledger.DefaultExcludeBelow)
	if err != nil {
		return err
	}
	if vcfg != nil {
		vcfg.Reputation = rep0
	}
	client, err := relay.NewClient(node, relay.ClientConfig{Model: cm.id, Blocks: cm.hp.Layers, Dim: cm.hp.Dim, Encoding: enc,
		StepTimeout: demoStepTimeout, WaitReceipts: true, Reputation: rep0, ExcludeBelow: ledger.DefaultExcludeBelow})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n== generating %d tokens through the swarm (%s activations)\n", *n, enc)
	fmt.Fprintf(e.stdout, "prompt: %q\n", *prompt)
	scfg := shard.Greedy()
	rep, err := swarmGenerate(ctx, e.stdout, cm, client, *prompt, *n, scfg, vcfg, &settlement{node: node, l: cl, m: cm.modelFile}, e.stdout)
	if err != nil {
		return err
	}
	st := rep.Stats
	fmt.Fprintf(e.stdout, "\n%d tokens at %.1f tok/s; %d receipts signed and verified\n", len(rep.Tokens), rep.DecodeTokPerS, st.Receipts)
	if rep.Verification != nil {
		fmt.Fprintln(e.stdout, "verification:", verifyLine(rep.Verification))
	}
	fmt.Fprintln(e.stdout, "settled:", settleLine(rep.Settled))
	if err := demoCredits(e.stdout, rep, running, cl, rep0); err != nil {
		return err
	}
	if enc != relay.F32 {
		return nil
	}
	want, err := localTokens(ctx, cm, rep.PromptTokens, *n, pool, kpath)
	if err != nil {
		return err
	}
	if !slices.Equal(want, rep.Tokens) {
		if v := rep.Verification; v != nil && v.Unchecked > 0 && fault.Kind != relay.NoFault {
			// Spot checks catch a liar, not every lie: what it said on
			// the steps before it was caught went through.
			fmt.Fprintf(e.stdout, "same tokens as a single-process run: no — the faulty replicas' outputs on %d unchecked steps went through before a spot check caught them\n", v.Unchecked)
			return nil
		}
		return fmt.Errorf("the swarm generated %v, a single process %v", rep.Tokens, want)
	}
	fmt.Fprintln(e.stdout, "same tokens as a single-process run: yes")
	return nil
}

// demoNode is one of the demo's servers.
type demoNode struct {
	index int
	sv    *relay.Serving
	l     *ledger.Ledger
	fault bool
}

// demoCredits prints what each node's ledger proves after the generation
// and checks it against the settled receipts: a server earned the credits
// of the FLOPs it served (nothing for a session it lied in), the client
// spent their sum, and a blamed server's reputation fell.
func demoCredits(w io.Writer, rep *generateReport, nodes []demoNode, cl *ledger.Ledger, reputation *ledger.Reputation) error {
	fmt.Fprintln(w, "\n== credits (GPU-hours at the reference rate of 100 TFLOP/s)")
	var problems []string
	var earned float64
	now := time.Now()
	for _, nd := range nodes {
		a, err := ledger.AccountOf(nd.l, ledger.DefaultPolicy)
		if err != nil {
			return fmt.Errorf("node %d's ledger: %w", nd.index, err)
		}
		var want float64
		var flops uint64
		for _, r := range rep.Settled {
			if r.Server == nd.sv.Node.ID().String() && r.Error == "" {
				want += r.Credits
				flops += r.FLOPs
			}
		}
		earned += a.Earned
		line := fmt.Sprintf("   node %-2d %d receipts, %.3g FLOPs served, earned %.4g (escrow %.4g)", nd.index, a.Work, float64(a.ServedFLOPs), a.Earned, a.Escrowed)
		if reputation != nil {
			line += fmt.Sprintf(", reputation %.3f", reputation.Score(nd.sv.Node.ID().String(), now))
		}
		if nd.fault {
			line += " (faulty)"
		}
		fmt.Fprintln(w, line)
		if a.ServedFLOPs != flops || !closeTo(a.Earned, want) {
			problems = append(problems, fmt.Sprintf("node %d earned %g for %d FLOPs; its settled receipts say %g for %d", nd.index, a.Earned, a.ServedFLOPs, want, flops))
		}
		if nd.fault && a.Blamed > 0 && reputation != nil && reputation.Score(nd.sv.Node.ID().String(), now) >= consensus.Prior {
			problems = append(problems, fmt.Sprintf("faulty node %d was blamed but its reputation did not fall", nd.index))
		}
	}
	ca, err := ledger.AccountOf(cl, ledger.DefaultPolicy)
	if err != nil {
		return fmt.Errorf("the client's ledger: %w", err)
	}
	fmt.Fprintf(w, "   client  %d receipts, %.3g FLOPs used, spent %.4g, balance %.4g\n", ca.Spends, float64(ca.UsedFLOPs), ca.Spent, ca.Balance)
	if !closeTo(ca.Spent, earned) {
		problems = append(problems, fmt.Sprintf("the client spent %g, the servers earned %g", ca.Spent, earned))
	}
	if len(problems) > 0 {
		return fmt.Errorf("credits do not add up: %s", strings.Join(problems, "; "))
	}
	fmt.Fprintln(w, "credits add up: each server earned its FLOPs at the reference rate, the client spent their sum")
	return nil
}

func closeTo(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*max(math.Abs(a), math.Abs(b), 1e-300)
}

// localTokens generates greedily with the whole model in this process.
func localTokens(ctx context.Context, cm *clientModel, prompt []int32, n int, pool *kernels.Pool, kpath kernels.Path) ([]int32, error) {
	sh, err := shard.Open(cm.f, shard.Config{Embed: true, Head: true, Pool: pool, Path: kpath})
	if err != nil {
		return nil, err
	}
	sess, err := sh.NewSession(len(prompt) + n)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	smp, err := shard.NewSampler(shard.Greedy(), nil)
	if err != nil {
		return nil, err
	}
	var toks []int32
	_, err = shard.Generate(ctx, sh, sess, prompt, n, smp, nil, func(s shard.Step) error {
		toks = append(toks, s.Token)
		return nil
	})
	return toks, err
}
