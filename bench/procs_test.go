package bench

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
)

// noneLeft fails t if a process of bin is still running (or a child of
// this process is left unwaited for).
func noneLeft(t *testing.T, bin string) {
	t.Helper()
	if left, ok := testenv.Running(bin); ok && len(left) > 0 {
		t.Errorf("processes left behind: %q", left)
	}
}

// TestLayoutsProcs: a 2-stage and a 3-stage layout, on loopback and on an
// emulated link, with every server a `strata serve` process: the local
// run's tokens, one compute figure per stage read from the processes'
// info counters, the bytes on the wire of the same rows in one process,
// the link's latency on every hop; the results written; no process left.
func TestLayoutsProcs(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	bin := testenv.BuildStrata(t)
	const latency = 2 * time.Millisecond
	layouts := [][]shard.Span{{{Start: 0, End: 2}, {Start: 2, End: 5}}, {{Start: 0, End: 1}, {Start: 1, End: 3}, {Start: 3, End: 5}}}
	c := LayoutConfig{Layouts: layouts, Swarm: SwarmConfig{ModelPath: model, Links: []relay.Link{{}, {Latency: latency}},
		Threads: 2, StageThreads: 1, Path: kernels.Best(), Encoding: relay.F32, PromptTokens: 8, GenTokens: 8, Runs: 1}}
	in, err := RunLayouts(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	c.Procs = bin
	rep, err := RunLayouts(t.Context(), c)
	noneLeft(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Procs || len(rep.Rows) != 4 {
		t.Fatalf("procs %v, %d rows; want 4 rows from processes", rep.Procs, len(rep.Rows))
	}
	want := localTokens(t, model, 8, 8)
	for i, r := range rep.Rows {
		if !cmp.Equal(r.Tokens, want) || r.Stages != len(layouts[i/2]) || len(r.StageComputeMS) != r.Stages {
			t.Errorf("row %d: %+v; want the local tokens and one compute figure per stage", i, r)
		}
		for s, ms := range r.StageComputeMS {
			// A stage of 1 to 3 of stories260K's blocks takes microseconds
			// per token, not nothing and not seconds.
			if !(ms > 0 && ms < r.PerTokenMS) {
				t.Errorf("row %d: stage %d computes %v ms per token of %v", i, s, ms, r.PerTokenMS)
			}
		}
		sum := 0.0
		for _, ms := range r.StageComputeMS {
			sum += ms
		}
		if math.Abs(sum-r.ServerComputeMS) > 1e-9*max(1, sum) {
			t.Errorf("row %d: stages %v do not add up to the servers' %v ms", i, r.StageComputeMS, r.ServerComputeMS)
		}
		if min := float64((r.Stages + 1) * 64 * 4); r.WireBytesPerToken < min {
			t.Errorf("row %d: %v bytes per token, fewer than the activations' %v", i, r.WireBytesPerToken, min)
		}
		if one := in.Rows[i].WireBytesPerToken; math.Abs(r.WireBytesPerToken-one) > 0.05*one {
			t.Errorf("row %d: %v bytes per token from processes, %v in one process", i, r.WireBytesPerToken, one)
		}
		if r.Link != "none" {
			if floor := float64(time.Duration(r.Hops)*latency) / float64(time.Millisecond); r.PerTokenMS < floor {
				t.Errorf("row %d: %v ms per token on %s, under the %d hops' %v ms: the link is not emulated", i, r.PerTokenMS, r.Link, r.Hops, floor)
			}
		}
	}
	dir := t.TempDir()
	if _, err := WriteResults(rep, dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Procs bool
		Rows  []map[string]any
	}
	if err := json.Unmarshal(raw, &got); err != nil || !got.Procs || len(got.Rows) != 4 {
		t.Fatalf("results.json: procs %v, %d rows, %v", got.Procs, len(got.Rows), err)
	}
	// The same columns as in one process.
	inJS, err := json.Marshal(in.Rows[0])
	if err != nil {
		t.Fatal(err)
	}
	var inRow map[string]any
	if err := json.Unmarshal(inJS, &inRow); err != nil {
		t.Fatal(err)
	}
	for k := range inRow {
		if _, ok := got.Rows[0][k]; !ok {
			t.Errorf("results.json rows lack %q", k)
		}
	}
}

// TestLayoutsProcsFail: a benchmark cancelled while its servers start, or
// given no binary, returns an error and leaves no process behind.
func TestLayoutsProcsFail(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	bin := testenv.BuildStrata(t)
	if _, ok := testenv.Running(bin); !ok {
		t.Skip("no /proc to watch processes with")
	}
	c := LayoutConfig{Layouts: [][]shard.Span{{{Start: 0, End: 1}, {Start: 1, End: 3}, {Start: 3, End: 5}}},
		Swarm: SwarmConfig{ModelPath: model, Links: []relay.Link{{}}, Threads: 1, Path: kernels.Best(), PromptTokens: 4, GenTokens: 4, Runs: 1},
		Procs: filepath.Join(t.TempDir(), "no-such-strata")}
	if _, err := RunLayouts(t.Context(), c); err == nil {
		t.Error("RunLayouts with a missing binary succeeded")
	}
	c.Procs = bin
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { // cancel as soon as the first server runs
		for ctx.Err() == nil {
			if left, _ := testenv.Running(bin); len(left) > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := RunLayouts(ctx, c)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RunLayouts cancelled while its servers start: %v, want context.Canceled", err)
	}
	noneLeft(t, bin)
}
