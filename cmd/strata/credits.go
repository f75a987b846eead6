package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/stratanet/strata/dht"
	"github.com/stratanet/strata/ledger"
	"github.com/stratanet/strata/relay"
)

// ledgerFile is where a node keeps its ledger, beside its identity key.
const ledgerFile = "ledger.db"

// openNodeLedger opens the ledger of node (whose identity is in its
// peerstore) in dir.
func openNodeLedger(node *dht.Node, dir string) (*ledger.Ledger, error) {
	key := node.Host().Peerstore().PrivKey(node.ID())
	if key == nil {
		return nil, fmt.Errorf("the node's private key is not in its peerstore")
	}
	return ledger.Open(filepath.Join(dir, ledgerFile), key)
}

// priorityHook is a ServerConfig.Priority that asks the balances set
// once the server's host exists (the server is made before its ledger
// services).
type priorityHook struct {
	b atomic.Pointer[ledger.Balances]
}

func (p *priorityHook) priority(id peer.ID) float64 {
	if b := p.b.Load(); b != nil {
		return b.Priority(id)
	}
	return 0
}

// serverLedger starts a server's ledger services: settlement of its
// sessions (work records in l), the audit protocol, and ranking of its
// clients by audited balance through hook. close stops them.
func serverLedger(sv *relay.Serving, l *ledger.Ledger, m *modelFile, hook *priorityHook) (stop func(), err error) {
	h := sv.Node.Host()
	settle := ledger.ServeSettle(h, l, m.id, ledger.ShapeOf(m.hp), func(id [16]byte, client peer.ID) (ledger.SessionFacts, bool) {
		w, ok := sv.Server.Served(relay.SessionID(id), client)
		return factsOf(w), ok
	})
	audit, err := ledger.ServeAudit(h, l)
	if err != nil {
		settle.Close()
		return nil, err
	}
	rep, err := ledger.NewReputation(l, ledger.DefaultHalfLife, ledger.DefaultExcludeBelow)
	if err != nil {
		settle.Close()
		audit.Close()
		return nil, err
	}
	auditor, err := ledger.NewAuditor(h, rep)
	if err != nil {
		settle.Close()
		audit.Close()
		return nil, err
	}
	balances := ledger.NewBalances(auditor, ledger.DefaultPolicy, 10*time.Minute)
	hook.b.Store(balances)
	return func() {
		hook.b.Store(nil)
		balances.Close()
		audit.Close()
		settle.Close()
	}, nil
}

func factsOf(w relay.WorkSummary) ledger.SessionFacts {
	return ledger.SessionFacts{Start: w.Span.Start, End: w.Span.End, First: w.First, Positions: w.Positions,
		Steps: w.Steps, StepsHash: w.StepsHash}
}

// settlement is the client's side of settling a generation.
type settlement struct {
	node *dht.Node
	l    *ledger.Ledger
	m    *modelFile
}

// settledReceipt is one server's settled work, for reports.
type settledReceipt struct {
	Server    string  `json:"server"`
	Span      string  `json:"span"`
	Positions int     `json:"positions"`
	FLOPs     uint64  `json:"flops"`
	Agreed    int     `json:"agreed"`
	Blamed    int     `json:"blamed"`
	Credits   float64 `json:"credits"`
	Error     string  `json:"error,omitempty"`
}

// settle settles every server's work with it, concurrently; a server that
// cannot settle (it left, or refuses) is reported, not fatal.
func (s *settlement) settle(ctx context.Context, work []relay.WorkSummary) []settledReceipt {
	out := make([]settledReceipt, len(work))
	var wg sync.WaitGroup
	for i, w := range work {
		out[i] = settledReceipt{Server: w.Peer.String(), Span: w.Span.String(), Positions: w.Positions, Agreed: w.Agreed, Blamed: w.Blamed}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := ledger.Draft(w.Session, s.m.id, ledger.ShapeOf(s.m.hp), factsOf(w), w.Agreed, w.Unverified, w.Blamed, w.Peer, s.node.ID())
			if err == nil {
				out[i].FLOPs = d.FLOPs
				var r *ledger.WorkReceipt
				if r, err = ledger.Settle(ctx, s.node.Host(), s.l, d); r != nil {
					out[i].Credits = ledger.DefaultPolicy.Credits(r)
				}
			}
			if err != nil {
				out[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}

func runCredits(ctx context.Context, e *env, args []string) error {
	return runGroup(ctx, e, "credits", []command{
		{"balance", "what this node's ledger proves it earned, has in escrow, spent and can spend", runCreditsBalance},
		{"history", "the records of this node's ledger", runCreditsHistory},
		{"verify", "check every record's signature and link; name the first bad one", runCreditsVerify},
	}, args)
}

// openLedgerDir opens the ledger in dir with the identity kept there.
func openLedgerDir(dir string) (*ledger.Ledger, error) {
	key, err := dht.LoadOrCreateIdentity(dir)
	if err != nil {
		return nil, err
	}
	return ledger.Open(filepath.Join(dir, ledgerFile), key)
}

// ledgerCommand parses the flags every credits command takes and opens
// the ledger they name; the caller closes it.
func ledgerCommand(e *env, name, usage, help string, args []string) (l *ledger.Ledger, asJSON bool, err error) {
	fs := newFlags(e, name, usage, help)
	dir := fs.String("data", "", "the node's data directory (as given to serve or generate; required)")
	j := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return nil, false, err
	}
	l, err = requireLedger(*dir)
	return l, *j, err
}

// accountCommand is ledgerCommand with the chain verified and its account
// computed.
func accountCommand(e *env, name, usage, help string, args []string) (*ledger.Ledger, *ledger.Account, bool, error) {
	l, asJSON, err := ledgerCommand(e, name, usage, help, args)
	if err != nil {
		return nil, nil, false, err
	}
	a, err := ledger.AccountOf(l, ledger.DefaultPolicy)
	if err != nil {
		l.Close()
		return nil, nil, false, err
	}
	return l, a, asJSON, nil
}

func runCreditsBalance(_ context.Context, e *env, args []string) error {
	l, a, asJSON, err := accountCommand(e, "credits balance", "credits balance --data DIR [--json]",
		"Verify this node's ledger and print the credits it proves: GPU-hours earned by serving verified work\n"+
			"(unverified work at a quarter, work with blame at nothing), the part in escrow until the node has\n"+
			"served enough clean receipts, GPU-hours spent as a client, and the balance.", args)
	if err != nil {
		return err
	}
	defer l.Close()
	if asJSON {
		return writeJSON(e.stdout, a)
	}
	fmt.Fprintf(e.stdout, "owner     %s\nrecords   %d\nearned    %.6g GPU-h (%d work receipts, %d with blame; %.3g FLOPs served)\nescrow    %.6g GPU-h\nspent     %.6g GPU-h (%d receipts; %.3g FLOPs used)\nstarter   %.6g GPU-h\nbalance   %.6g GPU-h\n",
		a.Owner, a.Records, a.Earned, a.Work, a.Blamed, float64(a.ServedFLOPs), a.Escrowed, a.Spent, a.Spends, float64(a.UsedFLOPs), a.Starter, a.Balance)
	return nil
}

func runCreditsHistory(_ context.Context, e *env, args []string) error {
	l, asJSON, err := ledgerCommand(e, "credits history", "credits history --data DIR [--json]",
		"Print every record of this node's ledger, oldest first.", args)
	if err != nil {
		return err
	}
	defer l.Close()
	recs, err := l.Records(0, l.Len())
	if err != nil {
		return err
	}
	type entry struct {
		Seq     uint64 `json:"seq"`
		Kind    string `json:"kind"`
		Time    string `json:"time"`
		Hash    string `json:"hash"`
		Payload any    `json:"payload"`
	}
	var out []entry
	for _, r := range recs {
		en := entry{Seq: r.Seq, Kind: r.Kind.String(), Time: time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano), Hash: fmt.Sprintf("%x", r.Hash())}
		switch r.Kind {
		case ledger.KindWork, ledger.KindSpend:
			en.Payload, _ = ledger.DecodeWork(r.Payload)
		case ledger.KindReputation:
			en.Payload, _ = ledger.DecodeReputation(r.Payload)
		case ledger.KindForkProof:
			if f, err := ledger.DecodeForkProof(r.Payload); err == nil {
				en.Payload = map[string]string{"peer": f.Peer}
			}
		}
		out = append(out, en)
	}
	if asJSON {
		return writeJSON(e.stdout, out)
	}
	for _, en := range out {
		fmt.Fprintf(e.stdout, "%6d  %-10s  %s  %s", en.Seq, en.Kind, en.Time, en.Hash[:16])
		if w, ok := en.Payload.(*ledger.WorkReceipt); ok && w != nil {
			fmt.Fprintf(e.stdout, "  blocks %d:%d, positions %d+%d, %d FLOPs, agreed %d, unverified %d, blamed %d, server %s, client %s, %.3g GPU-h",
				w.Start, w.End, w.First, w.Positions, w.FLOPs, w.Agreed, w.Unverified, w.Blamed, w.Server, w.Client, ledger.DefaultPolicy.Credits(w))
		}
		if ev, ok := en.Payload.(*ledger.ReputationEvent); ok && ev != nil {
			fmt.Fprintf(e.stdout, "  %s %d", ev.Peer, ev.Event)
		}
		fmt.Fprintln(e.stdout)
	}
	return nil
}

func runCreditsVerify(_ context.Context, e *env, args []string) error {
	l, a, asJSON, err := accountCommand(e, "credits verify", "credits verify --data DIR [--json]",
		"Check every record of this node's ledger: format, signature, link to the record before, the signatures\n"+
			"of the receipts inside, and the balances. A bad record is named by its number; exit status 1.", args)
	if err != nil {
		return err
	}
	defer l.Close()
	_, head := l.Head()
	if asJSON {
		return writeJSON(e.stdout, map[string]any{"ok": true, "records": a.Records, "head": fmt.Sprintf("%x", head), "account": a})
	}
	fmt.Fprintf(e.stdout, "ok: %d records, head %x, balance %.6g GPU-h\n", a.Records, head, a.Balance)
	return nil
}

// requireLedger opens an existing ledger in dir.
func requireLedger(dir string) (*ledger.Ledger, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: --data is required", errUsage)
	}
	if _, err := os.Stat(filepath.Join(dir, ledgerFile)); err != nil {
		return nil, fmt.Errorf("no ledger in %s: %w", dir, err)
	}
	return openLedgerDir(dir)
}

func writeJSON(w io.Writer, v any) error {
	j := json.NewEncoder(w)
	j.SetIndent("", "  ")
	return j.Encode(v)
}

// settleLine sums up settlements in one line.
func settleLine(rs []settledReceipt) string {
	var ok, failed int
	var credits float64
	var flops uint64
	for _, r := range rs {
		if r.Error != "" {
			failed++
			continue
		}
		ok++
		credits += r.Credits
		flops += r.FLOPs
	}
	line := fmt.Sprintf("%d work receipts countersigned, %.3g FLOPs, %.6g GPU-h spent", ok, float64(flops), credits)
	if failed > 0 {
		line += fmt.Sprintf("; %d servers could not settle (first: %s)", failed, firstError(rs))
	}
	return line
}

func firstError(rs []settledReceipt) string {
	for _, r := range rs {
		if r.Error != "" {
			return r.Server + ": " + r.Error
		}
	}
	return ""
}

// peerEntry is one line of `strata peers`.
type peerEntry struct {
	Peer       string  `json:"peer"`
	Span       string  `json:"span,omitempty"`
	Throughput float64 `json:"throughput_tok_s,omitempty"`
	Load       int64   `json:"sessions,omitempty"`
	FreeKV     int64   `json:"free_kv_bytes,omitempty"`
	RTTMS      float64 `json:"rtt_ms,omitempty"`
	Profile    string  `json:"profile,omitempty"`
	Version    string  `json:"version,omitempty"`
	Score      float64 `json:"reputation"`
	Events     int     `json:"events"`
	Excluded   bool    `json:"excluded"`
	Serving    bool    `json:"serving"`
}

func runPeers(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "peers", "peers --bootstrap MULTIADDR --model M [--data DIR] [--json]",
		"List the peers serving blocks of M (span, measured throughput, load, free KV, RTT, numerics profile,\n"+
			"version) with the reputation this node's ledger (in --data) gives them; peers it has a reputation for\n"+
			"that serve nothing now are listed too. Peers scoring below the exclusion threshold are left out of routes.")
	model := fs.String("model", "", "GGUF model (required; only its metadata is read)")
	asJSON := fs.Bool("json", false, "print JSON")
	nf := addNetFlags(fs, "this node's data directory, whose ledger holds its reputation records (default: none)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *model == "" || len(nf.bootstrap) == 0 {
		return fmt.Errorf("%w: --model and --bootstrap are required", errUsage)
	}
	m, err := openModel(*model, 1)
	if err != nil {
		return err
	}
	defer m.f.Close()
	tmp, err := os.MkdirTemp("", "strata-peers-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	withLedger := *nf.data != ""
	opts, _, dataDir, err := nf.options(tmp)
	if err != nil {
		return err
	}
	var rep *ledger.Reputation
	if withLedger {
		l, err := requireLedger(dataDir)
		if err != nil {
			return err
		}
		rep, err = ledger.NewReputation(l, ledger.DefaultHalfLife, ledger.DefaultExcludeBelow)
		l.Close()
		if err != nil {
			return err
		}
	}
	node, err := dht.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer node.Close()
	client, err := relay.NewClient(node, relay.ClientConfig{Model: m.id, Blocks: m.hp.Layers, Dim: m.hp.Dim})
	if err != nil {
		return err
	}
	cands, infos, err := client.Candidates(ctx, dht.Span{Start: 0, End: m.hp.Layers})
	if err != nil {
		return err
	}
	now := time.Now()
	var out []peerEntry
	seen := map[string]bool{}
	scores := map[string]ledger.PeerScore{}
	if rep != nil {
		for _, p := range rep.Peers(now) {
			scores[p.Peer] = p
		}
	}
	for _, c := range cands {
		in := infos[c.Peer]
		id := c.Peer.String()
		seen[id] = true
		pe := peerEntry{Peer: id, Span: c.Span.String(), Throughput: c.Throughput, Load: c.Load, FreeKV: c.FreeKV,
			RTTMS: float64(c.RTT) / float64(time.Millisecond), Profile: in.Profile, Version: in.Version, Score: 0.5, Serving: true}
		if s, ok := scores[id]; ok {
			pe.Score, pe.Events, pe.Excluded = s.Score, s.Events, s.Excluded
		}
		out = append(out, pe)
	}
	for id, s := range scores {
		if !seen[id] {
			out = append(out, peerEntry{Peer: id, Score: s.Score, Events: s.Events, Excluded: s.Excluded})
		}
	}
	slices.SortFunc(out, func(a, b peerEntry) int {
		if a.Serving != b.Serving {
			if a.Serving {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Span+a.Peer, b.Span+b.Peer)
	})
	if *asJSON {
		return writeJSON(e.stdout, out)
	}
	fmt.Fprintf(e.stdout, "%-52s  %-7s  %9s  %4s  %8s  %-14s  %-10s  %s\n", "peer", "blocks", "tok/s", "load", "rtt ms", "profile", "version", "reputation")
	for _, p := range out {
		excl := ""
		if p.Excluded {
			excl = " (excluded)"
		}
		if !p.Serving {
			fmt.Fprintf(e.stdout, "%-52s  %-7s  %9s  %4s  %8s  %-14s  %-10s  %.3f (%d events)%s\n", p.Peer, "-", "-", "-", "-", "-", "-", p.Score, p.Events, excl)
			continue
		}
		fmt.Fprintf(e.stdout, "%-52s  %-7s  %9.1f  %4d  %8.2f  %-14s  %-10s  %.3f (%d events)%s\n", p.Peer, p.Span, p.Throughput, p.Load, p.RTTMS,
			p.Profile, p.Version, p.Score, p.Events, excl)
	}
	return nil
}
