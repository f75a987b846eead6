package bench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
)

func TestSplitBlocks(t *testing.T) {
	tests := []struct {
		blocks, n int
		want      []shard.Span
	}{
		{5, 1, []shard.Span{{Start: 0, End: 5}}},
		{5, 2, []shard.Span{{Start: 0, End: 3}, {Start: 3, End: 5}}},
		{6, 4, []shard.Span{{Start: 0, End: 2}, {Start: 2, End: 4}, {Start: 4, End: 5}, {Start: 5, End: 6}}},
		{4, 4, []shard.Span{{Start: 0, End: 1}, {Start: 1, End: 2}, {Start: 2, End: 3}, {Start: 3, End: 4}}},
	}
	for _, tc := range tests {
		if got := splitBlocks(tc.blocks, tc.n); !cmp.Equal(got, tc.want) {
			t.Errorf("splitBlocks(%d, %d) = %v, want %v", tc.blocks, tc.n, got, tc.want)
		}
	}
}

// localTokens is what `strata run` generates from RunSwarm's prompt.
func localTokens(t *testing.T, model string, prompt, gen int) []int32 {
	t.Helper()
	pool := kernels.NewPool(1)
	defer pool.Close()
	l, err := shard.OpenLocal(model, shard.Config{Pool: pool, Path: kernels.Generic})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sess, err := l.Shard.NewSession(prompt + gen + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	smp, err := shard.NewSampler(shard.Greedy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var toks []int32
	_, err = l.Generate(t.Context(), sess, benchPrompt(prompt, l.Shard.HParams().Vocab), gen+1, smp, nil,
		func(s shard.Step) error { toks = append(toks, s.Token); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// TestSwarm: a small swarm benchmark on loopback, with and without
// emulated latency, gives a full report whose swarm rows generate the
// local run's tokens (F32 activations) and, with latency, take at least
// the latency of every hop per token (a lower bound only: timings are not
// asserted from above). More stages than blocks are skipped with a note.
func TestSwarm(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	const lat = 5 * time.Millisecond
	c := SwarmConfig{ModelPath: model, Stages: []int{1, 2, 8}, Links: []relay.Link{{}, {Latency: lat}},
		Threads: 2, Path: kernels.Best(), Encoding: relay.F32, PromptTokens: 8, GenTokens: 8, Runs: 1}
	rep, err := RunSwarm(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %s", out)
	if rep.Local == nil || !(rep.Local.DecodeTokS > 0) {
		t.Fatalf("local baseline %+v, want positive decode tok/s", rep.Local)
	}
	// 8 stages are more than the model's 5 blocks.
	if len(rep.Rows) != 4 || len(rep.Notes) != 1 {
		t.Fatalf("%d rows, notes %q; want 4 rows and a note on 8 stages", len(rep.Rows), rep.Notes)
	}
	want := localTokens(t, model, c.PromptTokens, c.GenTokens)
	for i, row := range rep.Rows {
		stages, link := c.Stages[i/2], c.Links[i%2]
		if row.Stages != stages || row.Link != link.String() || row.Hops != stages+1 {
			t.Errorf("row %d: %d stages, link %s, %d hops; want %d, %s, %d", i, row.Stages, row.Link, row.Hops, stages, link, stages+1)
		}
		if !(row.DecodeTokS > 0 && row.PerTokenMS > 0 && row.ComputeMS > 0 && row.ServerComputeMS > 0 &&
			row.BoundMS > 0 && row.VsLocal > 0 && row.VsBound > 0) || len(row.DecodeRuns) != c.Runs {
			t.Errorf("row %d: %+v, want positive figures and %d runs", i, row, c.Runs)
		}
		if got := row.ComputeMS + row.NetworkMS; got < row.PerTokenMS*0.999 || got > row.PerTokenMS*1.001 {
			t.Errorf("row %d: compute %.3f + network %.3f ms != per-token %.3f ms", i, row.ComputeMS, row.NetworkMS, row.PerTokenMS)
		}
		if !cmp.Equal(row.Tokens, want) {
			t.Errorf("row %d: tokens %v, want the local run's %v", i, row.Tokens, want)
		}
		if minMS := float64(time.Duration(row.Hops)*link.Latency) / float64(time.Millisecond); row.PerTokenMS < minMS {
			t.Errorf("row %d: %.3f ms per token, less than the %d hops' latency %.3f ms", i, row.PerTokenMS, row.Hops, minMS)
		}
	}
	if rep.Rows[1].NetworkMS < float64(2*lat)/float64(time.Millisecond) {
		t.Errorf("1 stage at %v: network %.3f ms per token, want at least 2 hops' latency", lat, rep.Rows[1].NetworkMS)
	}
}

// TestSwarmRedundancy: verified rows run every span on r servers over r
// lanes, generate the local run's tokens, and account for receipt hashing
// and signing; the r = 1 row is the reference of VsR1.
func TestSwarmRedundancy(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	c := SwarmConfig{ModelPath: model, Stages: []int{2}, Redundancy: []int{1, 3}, Links: []relay.Link{{}},
		Threads: 2, Path: kernels.Best(), Encoding: relay.F32, PromptTokens: 8, GenTokens: 8, Runs: 1}
	rep, err := RunSwarm(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rep.Rows))
	}
	want := localTokens(t, model, c.PromptTokens, c.GenTokens)
	for i, row := range rep.Rows {
		if row.Redundancy != c.Redundancy[i] || !cmp.Equal(row.Tokens, want) {
			t.Errorf("row %d: redundancy %d, tokens %v; want %d and the local run's %v", i, row.Redundancy, row.Tokens, c.Redundancy[i], want)
		}
		if !(row.HashMS > 0 && row.SignMS > 0 && row.HashShare > 0 && row.HashShare < 1) {
			t.Errorf("row %d: hash %.4f ms, sign %.4f ms, share %.4f; want positive, share below 1", i, row.HashMS, row.SignMS, row.HashShare)
		}
	}
	if r3 := rep.Rows[1]; !(r3.VsR1 > 0) || rep.Rows[0].VsR1 != 0 {
		t.Errorf("vs r=1: %v and %v; want 0 for the r=1 row and positive for r=3", rep.Rows[0].VsR1, r3.VsR1)
	}
}
