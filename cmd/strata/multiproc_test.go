package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratanet/strata/bench"
	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/ledger"
)

// buildStrata builds the binary from this repository.
func buildStrata(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool:", err)
	}
	bin := filepath.Join(t.TempDir(), "strata")
	out, err := exec.CommandContext(t.Context(), goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a process's stderr, read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// server is a `strata serve` process.
type server struct {
	cmd    *exec.Cmd
	addr   string // its first multiaddr
	stderr *syncBuffer
	done   chan error
	dir    string // its data directory
	stdout string // what it printed before its first address
}

func startServe(t *testing.T, bin, model, span string, bootstrap ...string) *server {
	t.Helper()
	return startServeArgs(t, bin, model, []string{"--span", span}, bootstrap...)
}

func startServeArgs(t *testing.T, bin, model string, extra []string, bootstrap ...string) *server {
	t.Helper()
	span := strings.Join(extra, " ")
	dir := t.TempDir()
	args := append([]string{"serve", "--model", model, "--threads", "1",
		"--listen", "/ip4/127.0.0.1/tcp/0", "--data", dir}, extra...)
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1), dir: dir}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.done
	})
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var head strings.Builder
		seen := false
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				if !seen {
					s.stdout = head.String() // read after addrs is received
					seen = true
				}
				select {
				case addrs <- a:
				default:
				}
			} else if !seen {
				head.WriteString(sc.Text() + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		s.done <- cmd.Wait()
	}()
	select {
	case s.addr = <-addrs:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("strata serve %s exited: %v\n%s", span, err, s.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("strata serve %s printed no address\n%s", span, s.stderr)
	}
	if !strings.HasPrefix(s.addr, "/ip4/127.0.0.1/tcp/") {
		t.Fatalf("server listens on %s, want 127.0.0.1", s.addr)
	}
	return s
}

// TestMultiProcess: three `strata serve` processes and one `strata
// generate` process on 127.0.0.1 produce the tokens of `strata run`; a
// server told to stop (SIGTERM) leaves cleanly.
func TestMultiProcess(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	bin := buildStrata(t)
	a := startServe(t, bin, model, "0:2")
	b := startServe(t, bin, model, "2:4", a.addr)
	c := startServe(t, bin, model, "4:5", a.addr)
	prompt := "Once upon a time there was a dragon"
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	clientDir := t.TempDir()
	gen := exec.CommandContext(ctx, bin, "generate", "--bootstrap", b.addr, "--model", model, "--prompt", prompt,
		"-n", "40", "--temp", "0", "--encoding", "f32", "--json", "--listen", "/ip4/127.0.0.1/tcp/0", "--threads", "1",
		"--data", clientDir)
	out, err := gen.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("strata generate: %v\n%s\nservers:\n%s\n%s\n%s", err, stderr, a.stderr, b.stderr, c.stderr)
	}
	var got generateReport
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	code, runOut, runErr := runCLI(t, "run", "--model", model, "--prompt", prompt, "-n", "40", "--temp", "0", "--json")
	if code != 0 {
		t.Fatalf("strata run: exit %d: %s", code, runErr)
	}
	var want runReport
	if err := json.Unmarshal([]byte(runOut), &want); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tokens, want.Tokens) || got.Text != want.Text {
		t.Errorf("swarm generated %v %q; strata run %v %q", got.Tokens, got.Text, want.Tokens, want.Text)
	}
	if len(got.Chain) != 3 || got.Stats.BadReceipts != 0 || got.Stats.Receipts == 0 {
		t.Errorf("chain %v, stats %+v", got.Chain, got.Stats)
	}
	// Every server settled its session with the client.
	var spent float64
	for _, r := range got.Settled {
		if r.Error != "" || r.Credits <= 0 || r.Agreed != 0 {
			t.Errorf("settlement %+v; want unverified work paid at the discount", r)
		}
		spent += r.Credits
	}
	if len(got.Settled) != 3 {
		t.Errorf("settled %+v; want the 3 servers", got.Settled)
	}
	code, out2, errOut := runCLI(t, "peers", "--bootstrap", a.addr, "--model", model, "--data", clientDir, "--json",
		"--listen", "/ip4/127.0.0.1/tcp/0")
	var peers []peerEntry
	if code != 0 || json.Unmarshal([]byte(out2), &peers) != nil {
		t.Fatalf("strata peers: exit %d: %s%s", code, out2, errOut)
	}
	if serving := slices.IndexFunc(peers, func(p peerEntry) bool { return !p.Serving }); len(peers) != 3 || serving >= 0 {
		t.Errorf("strata peers listed %+v; want the 3 servers", peers)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, c.stderr)
		}
		if !strings.Contains(c.stderr.String(), "left: 0 sessions handed over") {
			t.Errorf("serve stderr after SIGTERM:\n%s", c.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not exit within 30 s of SIGTERM")
	}
	// The stopped server's ledger holds its work; the client's its spend.
	code, out2, errOut = runCLI(t, "credits", "balance", "--data", c.dir, "--json")
	var acc ledger.Account
	if code != 0 || json.Unmarshal([]byte(out2), &acc) != nil || acc.Work != 1 || acc.Earned <= 0 {
		t.Errorf("credits balance of a server: exit %d, %+v: %s", code, acc, errOut)
	}
	code, out2, errOut = runCLI(t, "credits", "balance", "--data", clientDir, "--json")
	if code != 0 || json.Unmarshal([]byte(out2), &acc) != nil || acc.Spends != 3 || !closeTo(acc.Spent, spent) {
		t.Errorf("credits balance of the client: exit %d, %+v (settled %g): %s", code, acc, spent, errOut)
	}
}

// TestServeSpanAuto: `strata serve --span auto` processes joining one by
// one take the least-served blocks: after one server of blocks 0:2, the
// next takes 2:4 and the one after 3:5, covering every block.
func TestServeSpanAuto(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	bin := buildStrata(t)
	a := startServe(t, bin, model, "0:2")
	for i, want := range []string{"2:4", "3:5"} {
		s := startServeArgs(t, bin, model, []string{"--span", "auto", "--blocks", "2"}, a.addr)
		if !strings.Contains(s.stdout, "serving blocks "+want+" ") {
			t.Errorf("auto server: %q; want it to serve %s\n%s", s.stdout, want, s.stderr)
		}
		// The next one must see this one in the DHT.
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, out, _ := runCLI(t, "peers", "--bootstrap", a.addr, "--model", model, "--json", "--listen", "/ip4/127.0.0.1/tcp/0")
			var peers []peerEntry
			if code == 0 && json.Unmarshal([]byte(out), &peers) == nil && len(peers) == i+2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the DHT does not list %d servers: %s", i+2, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestBenchLayoutProcs: `strata bench layout --procs` runs a 2-stage and a
// 3-stage layout with every server a `strata serve` process of the same
// binary, writes results.json and results.csv with a row per layout (a
// compute figure per stage, bytes on the wire), and leaves no process.
func TestBenchLayoutProcs(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	bin := buildStrata(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "layout", "--model", model, "--layout", "0:2,2:5", "--layout", "0:1,1:3,3:5",
		"--link", "latency=1ms", "--threads", "1", "--tokens", "4", "--prompt", "4", "--reps", "1", "--procs", "--out", out)
	stdout, err := cmd.CombinedOutput()
	if left, ok := testenv.Running(bin); ok && len(left) > 0 {
		t.Errorf("processes left behind: %q", left)
	}
	if err != nil {
		t.Fatalf("strata bench layout --procs: %v\n%s", err, stdout)
	}
	raw, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.SwarmReport
	if err := json.Unmarshal(raw, &rep); err != nil || !rep.Procs || len(rep.Rows) != 2 {
		t.Fatalf("results.json: %v, procs %v, %d rows\n%s", err, rep.Procs, len(rep.Rows), raw)
	}
	for i, r := range rep.Rows {
		if r.Stages != 2+i || len(r.StageComputeMS) != r.Stages || r.Link != "latency=1ms" {
			t.Errorf("row %d: %+v; want %d stages on latency=1ms", i, r, 2+i)
		}
		for s, ms := range r.StageComputeMS {
			if !(ms > 0 && ms < r.PerTokenMS) {
				t.Errorf("row %d: stage %d computes %v ms per token of %v", i, s, ms, r.PerTokenMS)
			}
		}
		if r.WireBytesPerToken < float64((r.Stages+1)*64*2) || r.PerTokenMS < float64(r.Hops) {
			t.Errorf("row %d: %v bytes and %v ms per token; want at least the f16 activations and 1 ms per hop", i, r.WireBytesPerToken, r.PerTokenMS)
		}
	}
	csv, err := os.ReadFile(filepath.Join(out, "results.csv"))
	if err != nil || strings.Count(string(csv), "\n") != 3 || !strings.Contains(string(csv), "stage_compute_ms") {
		t.Errorf("results.csv: %v\n%s", err, csv)
	}
}
