package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stratanet/strata/bench"
	"github.com/stratanet/strata/consensus"
	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/ledger"
)

// runCLI runs one command line in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), &env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	lines := [][]string{{"help"}, {"weights", "--help"}}
	for _, c := range commands() {
		lines = append(lines, []string{c.name, "--help"})
	}
	for _, c := range weightsCommands {
		lines = append(lines, []string{"weights", c.name, "--help"})
	}
	for _, c := range benchCommands {
		lines = append(lines, []string{"bench", c.name, "--help"})
	}
	for _, args := range lines {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "Usage") {
			t.Errorf("strata %s: exit %d, stdout %q, stderr %q; want usage and exit 0", strings.Join(args, " "), code, out, errOut)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"inspect"},
		{"inspect", "a", "b"},
		{"inspect", "--nosuchflag", "x"},
		{"tokenize", "--text", "hi"},
		{"weights"},
		{"weights", "nosuch"},
		{"weights", "synth"},
		{"weights", "synth", "--out", "x", "--type", "iq2_xxs"},
		{"weights", "synth", "--out", "x", "--type", "q9_9"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("strata %s: exit %d, stderr %q; want exit 2 with a message", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCLI(t, "demo", "--keep", dir)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"model id", "starting 3 servers on 127.0.0.1", "chain:", "same tokens as a single-process run: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "demo-llama-q8_0.gguf")); err != nil {
		t.Errorf("--keep did not keep the model: %v", err)
	}
}

// TestDemoVerified: with three replicas per span and one liar in each,
// the demo's output is still a single process's, and the report names the
// liars it blamed.
func TestDemoVerified(t *testing.T) {
	code, out, errOut := runCLI(t, "demo", "--redundancy", "3", "--fault", "zero", "-n", "8")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"starting 12 servers", "(faulty: zero)", "replica lane 3:", "3 replicas per stage: 8 steps",
		"blamed: ", "same tokens as a single-process run: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Every blamed peer is one the demo made faulty.
	faulty := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(line, "(faulty: zero)") {
			f := strings.Fields(line)
			faulty[f[6]] = true
		}
	}
	_, blamed, _ := strings.Cut(out, "blamed: ")
	blamed, _, _ = strings.Cut(blamed, ";")
	for _, b := range strings.Split(blamed, ", ") {
		if p, _, _ := strings.Cut(b, " "); !faulty[p] {
			t.Errorf("blamed %q is not one of the faulty nodes %v", p, faulty)
		}
	}
}

// TestDemoSpotChecks: spot checks on an honest swarm; the report does not
// claim the unchecked steps were verified.
func TestDemoSpotChecks(t *testing.T) {
	code, out, errOut := runCLI(t, "demo", "--verify-rate", "0.5", "-n", "8")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"spot checks at rate 0.5 (escalation to 3 replicas): 8 steps", "NOT fully verified",
		"same tokens as a single-process run: yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestDemoVerifyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--fault", "zero"},
		{"demo", "--redundancy", "0"},
		{"demo", "--verify-rate", "1.5"},
		{"demo", "--redundancy", "3", "--fault", "lies"},
		{"generate", "--verify-rate", "-1", "--model", "m", "--bootstrap", "/ip4/127.0.0.1/tcp/1"},
	} {
		if code, _, errOut := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage): %s", args, code, errOut)
		}
	}
}

func TestInspectRealModel(t *testing.T) {
	path := testenv.Shared(t, "models/stories260K.gguf")
	code, out, errOut := runCLI(t, "inspect", path, "--json", "--tensors")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	h := rep.HParams
	if h == nil || h.Layers != 5 || h.Dim != 64 || h.FFN != 172 || h.Heads != 8 || h.KVHeads != 4 || h.Vocab != 512 || h.TiedOutput {
		t.Errorf("inspect hparams = %+v", h)
	}
	if len(rep.Tensors) != 48 || rep.Tokenizer == nil || rep.Tokenizer.Tokens != 512 {
		t.Errorf("inspect: %d tensors, tokenizer %+v", len(rep.Tensors), rep.Tokenizer)
	}
	code, out, _ = runCLI(t, "inspect", path)
	if code != 0 || !strings.Contains(out, "feed-forward length  172") {
		t.Errorf("text inspect: exit %d\n%s", code, out)
	}
}

func TestTokenizeMatchesGolden(t *testing.T) {
	var golden struct {
		Prompt      struct{ Text string } `json:"prompt"`
		InputTokens []int32               `json:"input_tokens"`
	}
	raw, err := os.ReadFile(testenv.Shared(t, "golden/stories260K.p1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "tokenize", "--model", testenv.Shared(t, "models/stories260K.gguf"), "--text", golden.Prompt.Text, "--bos", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res struct{ Tokens []int32 }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, golden.InputTokens) {
		t.Errorf("tokenize %q = %v, want %v", golden.Prompt.Text, res.Tokens, golden.InputTokens)
	}
}

func TestSynthManifestAndConvert(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "q.gguf")
	code, out, errOut := runCLI(t, "weights", "synth", "--out", q, "--dim", "64", "--ffn", "128", "--layers", "2",
		"--heads", "4", "--kv-heads", "2", "--vocab", "300", "--type", "q4_0", "--seed", "3")
	if code != 0 {
		t.Fatalf("synth: exit %d: %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "weights", "synth", "--out", q, "--dim", "64", "--ffn", "128"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("synth over an existing file: exit %d, %q; want a refusal", code, errOut)
	}
	code, out, _ = runCLI(t, "weights", "manifest", q)
	if code != 0 || !strings.Contains(out, "tensor blk.0.attn_q.weight Q4_0 64x64 ") || !strings.Contains(out, "model id ") {
		t.Errorf("manifest: exit %d\n%s", code, out)
	}
	f := filepath.Join(dir, "f.gguf")
	if code, _, errOut := runCLI(t, "weights", "convert", "--type", "f32", q, f); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, errOut)
	}
	code, out, _ = runCLI(t, "inspect", f, "--json")
	if code != 0 || !strings.Contains(out, `"F32": 21`) {
		t.Errorf("converted model: exit %d\n%s", code, out)
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(testenv.Shared(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"text":      []byte("not a model at all"),
		"empty":     nil,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"inspect", p}, {"tokenize", "--model", p, "--text", "x"}, {"weights", "manifest", p}} {
			code, _, errOut := runCLI(t, args...)
			if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "gguf:") {
				t.Errorf("strata %s on %s file: exit %d, stderr %q; want exit 1 and one line naming the problem", args[0], name, code, errOut)
			}
		}
	}
}

// TestRunGreedy runs `strata run --json --temp 0 --logits 10` and compares
// tokens and logits with llama.cpp's golden output.
func TestRunGreedy(t *testing.T) {
	var golden struct {
		Prompt      struct{ Text string } `json:"prompt"`
		InputTokens []int32               `json:"input_tokens"`
		Greedy      struct {
			Tokens []int32 `json:"tokens"`
		} `json:"greedy"`
		Logits struct {
			Positions []logitPos `json:"positions"`
		} `json:"logits"`
	}
	raw, err := os.ReadFile(testenv.Shared(t, "golden/stories260K.p1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "run", "--model", testenv.Shared(t, "models/stories260K.gguf"), "--prompt", golden.Prompt.Text,
		"-n", "64", "--temp", "0", "--json", "--logits", "10", "--threads", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep runReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.PromptTokens, golden.InputTokens) || !slices.Equal(rep.Tokens, golden.Greedy.Tokens) {
		t.Errorf("run: prompt %v, tokens %v; llama.cpp %v, %v", rep.PromptTokens, rep.Tokens, golden.InputTokens, golden.Greedy.Tokens)
	}
	if len(rep.Logits) != len(golden.Logits.Positions) {
		t.Fatalf("run --logits gave %d positions, llama.cpp %d", len(rep.Logits), len(golden.Logits.Positions))
	}
	for i, p := range rep.Logits {
		g := golden.Logits.Positions[i]
		if p.Pos != g.Pos || p.InputToken != g.InputToken || p.Top[0][0] != g.Top[0][0] {
			t.Errorf("position %d: %+v, llama.cpp %+v", i, p, g)
		}
	}
	if rep.DecodeTokPerS <= 0 || rep.PrefillTokPerS <= 0 {
		t.Errorf("run reported speeds %v, %v", rep.PrefillTokPerS, rep.DecodeTokPerS)
	}
	// Text mode streams the same text.
	code, text, _ := runCLI(t, "run", "--model", testenv.Shared(t, "models/stories260K.gguf"), "--prompt", golden.Prompt.Text, "-n", "64", "--temp", "0")
	if code != 0 || strings.TrimSpace(text) != strings.TrimSpace(rep.Text) {
		t.Errorf("text mode printed %q, JSON text %q", text, rep.Text)
	}
}

func TestRunBadInput(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	for _, args := range [][]string{
		{"run", "--model", model, "--prompt", "hi", "-n", "5000"},
		{"run", "--model", model, "--prompt", "hi", "--ctx", "3"},
		{"run", "--model", testenv.Shared(t, "golden/README.md"), "--prompt", "hi"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code == 0 || errOut == "" {
			t.Errorf("strata %v: exit %d, stderr %q; want an error", args, code, errOut)
		}
	}
	code, _, _ := runCLI(t, "run", "--model", model, "--prompt", "hi", "--temp", "-1", "--top-p", "2")
	if code != 2 {
		t.Errorf("bad sampler settings: exit %d, want 2", code)
	}
	code, _, _ = runCLI(t, "bench", "run", "--model", model, "--prompt", "4", "--gen", "2", "--reps", "1")
	if code != 0 {
		t.Errorf("bench run: exit %d", code)
	}
}

// TestDemoCredits: after a verified demo with a liar per span, each node's
// ledger (read here on its own, not through the demo) proves it earned the
// FLOPs it served at the reference rate, the liars nothing; the client's
// ledger proves it spent their sum, and its reputation records put the
// liars below the prior. `strata credits` reads the same.
func TestDemoCredits(t *testing.T) {
	data := t.TempDir()
	code, out, errOut := runCLI(t, "demo", "--redundancy", "3", "--fault", "zero", "-n", "6", "--data", data)
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "credits add up") {
		t.Errorf("demo output lacks the credits check:\n%s", out)
	}
	faulty := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "node" && strings.HasSuffix(line, "(faulty: zero)") {
			faulty["node"+f[1]] = true
		}
	}
	if len(faulty) != 3 {
		t.Fatalf("found faulty nodes %v in the output, want 3", faulty)
	}
	policy := ledger.DefaultPolicy
	var earned float64
	liarIDs := map[string]bool{}
	for i := range 12 {
		name := fmt.Sprint("node", i)
		l, err := openLedgerDir(filepath.Join(data, name))
		if err != nil {
			t.Fatal(err)
		}
		a, err := ledger.AccountOf(l, policy)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var served float64
		var blamed int
		if err := l.Verify(func(r ledger.Record) error {
			if r.Kind != ledger.KindWork {
				return nil
			}
			w, err := ledger.DecodeWork(r.Payload)
			if err != nil {
				return err
			}
			if w.Blamed > 0 {
				blamed++
			} else if w.Agreed == w.Positions {
				served += float64(w.FLOPs) / (3600 * policy.ReferenceFLOPS)
			} else {
				t.Errorf("%s: a receipt with unverified positions in a verified run: %+v", name, w)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		l.Close()
		if a.Work == 0 {
			t.Errorf("%s settled nothing", name)
		}
		if faulty[name] {
			liarIDs[a.Owner] = true
			if a.Earned != 0 || blamed == 0 {
				t.Errorf("liar %s: earned %g with %d blamed receipts; want nothing, and its lie blamed", name, a.Earned, blamed)
			}
		} else if !closeTo(a.Earned, served) || served == 0 {
			t.Errorf("%s earned %g; its receipts' FLOPs at the reference rate are %g", name, a.Earned, served)
		}
		earned += a.Earned
	}
	cl, err := openLedgerDir(filepath.Join(data, "client"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ca, err := ledger.AccountOf(cl, policy)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Spends != 12 || !closeTo(ca.Spent, earned) {
		t.Errorf("client spent %g in %d receipts; servers earned %g in 12", ca.Spent, ca.Spends, earned)
	}
	rep, err := ledger.NewReputation(cl, ledger.DefaultHalfLife, ledger.DefaultExcludeBelow)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Peers(time.Now()) {
		if liarIDs[p.Peer] != (p.Score < consensus.Prior) {
			t.Errorf("peer %s (liar %v) scores %.3f", p.Peer, liarIDs[p.Peer], p.Score)
		}
	}
	cl.Close()
	code, out, errOut = runCLI(t, "credits", "balance", "--data", filepath.Join(data, "client"), "--json")
	var a ledger.Account
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.Spends != 12 || !closeTo(a.Spent, ca.Spent) {
		t.Errorf("credits balance: exit %d, %+v\n%s", code, a, errOut)
	}
	if code, out, errOut = runCLI(t, "credits", "verify", "--data", filepath.Join(data, "node1")); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("credits verify: exit %d: %s%s", code, out, errOut)
	}
	if code, out, _ = runCLI(t, "credits", "history", "--data", filepath.Join(data, "node1")); code != 0 || !strings.Contains(out, "genesis") || !strings.Contains(out, "work") {
		t.Errorf("credits history: exit %d:\n%s", code, out)
	}
	// One changed byte in the client's first spend record: verify names it.
	db, err := bolt.Open(filepath.Join(data, "client", ledgerFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("records"))
		k := binary.BigEndian.AppendUint64(nil, 1)
		v := bytes.Clone(b.Get(k))
		v[60] ^= 1 // in the payload
		return b.Put(k, v)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if code, out, errOut = runCLI(t, "credits", "verify", "--data", filepath.Join(data, "client")); code != 1 || !strings.Contains(errOut, "record 1") {
		t.Errorf("credits verify of a tampered ledger: exit %d, %s%s; want exit 1 naming record 1", code, out, errOut)
	}
}

func TestBenchSim(t *testing.T) {
	code, out, errOut := runCLI(t, "bench", "sim", "--nodes", "150", "--hours", "0.05", "--policy", "petals", "--policy", "random", "--json")
	var reps []bench.SimReport
	if code != 0 || json.Unmarshal([]byte(out), &reps) != nil || len(reps) != 2 || reps[0].Policy != "petals" || reps[1].Policy != "random" ||
		reps[0].Requests == 0 {
		t.Fatalf("bench sim: exit %d, %+v: %s", code, reps, errOut)
	}
	if code, _, _ := runCLI(t, "bench", "sim", "--policy", "best"); code != 2 {
		t.Errorf("bench sim --policy best: exit %d, want 2", code)
	}
	// --predict reads a layout benchmark's results.
	res := filepath.Join(t.TempDir(), "results.json")
	js, _ := json.Marshal(bench.SwarmReport{Blocks: 5, Dim: 64, Encoding: "f16", Rows: []bench.SwarmRow{{Stages: 2, Redundancy: 1,
		Spans: "0-2,2-5", Link: "latency=5ms", Hops: 3, PerTokenMS: 16, StageComputeMS: []float64{0.5, 0.5}}}})
	if err := os.WriteFile(res, js, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "bench", "sim", "--predict", res, "--json")
	var ps []bench.Prediction
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 1 || ps[0].PredictedMS != 16 {
		t.Errorf("bench sim --predict: exit %d, %+v: %s", code, ps, errOut)
	}
}
