package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stratanet/strata/shard"
)

// LayoutConfig is a shard-layout benchmark: every layout (a chain of
// spans covering all blocks) runs as a real swarm on 127.0.0.1 on every
// emulated link, with every replica count of Swarm.Redundancy (default 1),
// under the settings of Swarm (its Stages are ignored).
type LayoutConfig struct {
	Swarm   SwarmConfig
	Layouts [][]shard.Span
	// Procs, when set, is the path of a strata binary: every row's servers
	// then run as separate `strata serve` processes of it, as a user would
	// start them (listening on 127.0.0.1 only, the first on its own and
	// the others bootstrapped from it, with Swarm's kernels, KV type,
	// stage threads and the row's emulated link as flags), instead of in
	// this process. Their compute, hashing and signing time and bytes
	// sent are read from outside, from the counters of their info
	// protocol (dht.Info.Counters), so the rows have the same fields as in
	// one process. The client, embedding and head stay in this process.
	// Every process is killed when its row ends, and on any error.
	Procs string
}

// ParseLayout parses "0:6,6:12,12:22": spans that cover blocks [0, blocks)
// in order, without gaps or overlaps.
func ParseLayout(s string, blocks int) ([]shard.Span, error) {
	var spans []shard.Span
	next := 0
	for part := range strings.SplitSeq(s, ",") {
		sp, err := shard.ParseSpan(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("bench: layout %q: %w", s, err)
		}
		if sp.Start != next {
			return nil, fmt.Errorf("bench: layout %q: span %s does not start at block %d", s, sp, next)
		}
		spans = append(spans, sp)
		next = sp.End
	}
	if next != blocks {
		return nil, fmt.Errorf("bench: layout %q covers blocks 0:%d; the model has %d", s, next, blocks)
	}
	return spans, nil
}

// RunLayouts runs the layout benchmark: the local baseline, then one row
// per (layout, redundancy, link), each a swarm started afresh.
func RunLayouts(ctx context.Context, c LayoutConfig) (*SwarmReport, error) {
	if len(c.Layouts) == 0 {
		return nil, errors.New("bench: no layouts")
	}
	sc := c.Swarm
	sw, rep, err := startBench(ctx, &sc)
	if err != nil {
		return nil, err
	}
	defer sw.f.Close()
	sw.procs, rep.Procs = c.Procs, c.Procs != ""
	hp, local := sw.hp, rep.Local
	for _, spans := range c.Layouts {
		if last := spans[len(spans)-1]; spans[0].Start != 0 || last.End != hp.Layers {
			return nil, fmt.Errorf("bench: layout %s does not cover the model's %d blocks", spansString(spans), hp.Layers)
		}
		for _, r := range sc.Redundancy {
			for _, l := range sc.Links {
				row, err := sw.rowSpans(ctx, spans, r, l)
				if err != nil {
					return nil, fmt.Errorf("bench: layout %s × %d replicas, link %s: %w", spansString(spans), r, l, err)
				}
				row.VsLocal = row.DecodeTokS / local.DecodeTokS
				rep.Rows = append(rep.Rows, *row)
			}
		}
	}
	return rep, nil
}

// rowLabel names a row in tables and charts.
func rowLabel(r SwarmRow) string {
	l := r.Spans
	if r.Link != "none" {
		l += " " + r.Link
	}
	if r.Redundancy > 1 {
		l += fmt.Sprintf(" r=%d", r.Redundancy)
	}
	return l
}

// WriteResults writes rep into dir as results.json, results.csv and the
// charts (see [WriteCharts]), and returns the files written.
func WriteResults(rep *SwarmReport, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	files := []string{filepath.Join(dir, "results.json"), filepath.Join(dir, "results.csv")}
	if err := os.WriteFile(files[0], append(js, '\n'), 0o644); err != nil {
		return nil, err
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"layout", "stages", "redundancy", "link", "decode_tok_s", "vs_local", "per_token_ms", "ttft_ms",
		"compute_ms", "network_ms", "bound_ms", "vs_bound", "stage_compute_ms", "wire_bytes_per_token"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range rep.Rows {
		var stages []string
		for _, v := range r.StageComputeMS {
			stages = append(stages, f(v))
		}
		_ = w.Write([]string{r.Spans, strconv.Itoa(r.Stages), strconv.Itoa(r.Redundancy), r.Link, f(r.DecodeTokS), f(r.VsLocal),
			f(r.PerTokenMS), f(r.TTFTMS), f(r.ComputeMS), f(r.NetworkMS), f(r.BoundMS), f(r.VsBound), strings.Join(stages, ";"),
			f(r.WireBytesPerToken)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(files[1], []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	charts, err := WriteCharts(rep, dir)
	if err != nil {
		return nil, err
	}
	return append(files, charts...), nil
}
