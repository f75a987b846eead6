package bench

import (
	"bytes"
	"encoding/csv"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratanet/strata/internal/testenv"
	"github.com/stratanet/strata/kernels"
	"github.com/stratanet/strata/relay"
	"github.com/stratanet/strata/shard"
)

func TestParseLayout(t *testing.T) {
	got, err := ParseLayout("0:6, 6:12,12:22", 22)
	if err != nil || !cmp.Equal(got, []shard.Span{{Start: 0, End: 6}, {Start: 6, End: 12}, {Start: 12, End: 22}}) {
		t.Errorf("ParseLayout = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0:6,7:22", "0:6,5:22", "0:6,6:20", "0:6,6:23", "6:0,0:22", "a:b", "0:22,"} {
		if _, err := ParseLayout(bad, 22); err == nil {
			t.Errorf("ParseLayout(%q) accepted", bad)
		}
	}
}

// TestLayouts: two layouts on two links run as real swarms, generate the
// local run's tokens, and write results.json, results.csv and four charts
// as SVG and PNG; a PNG is a real, non-blank image.
func TestLayouts(t *testing.T) {
	model := testenv.Shared(t, "models/stories260K.gguf")
	layouts := [][]shard.Span{{{Start: 0, End: 2}, {Start: 2, End: 5}}, {{Start: 0, End: 1}, {Start: 1, End: 3}, {Start: 3, End: 5}}}
	c := LayoutConfig{Layouts: layouts, Swarm: SwarmConfig{ModelPath: model, Links: []relay.Link{{}, {Latency: 2 * time.Millisecond}},
		Threads: 2, Path: kernels.Best(), Encoding: relay.F32, PromptTokens: 8, GenTokens: 8, Runs: 1}}
	rep, err := RunLayouts(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rep.Rows))
	}
	want := localTokens(t, model, 8, 8)
	for i, r := range rep.Rows {
		if !cmp.Equal(r.Tokens, want) || r.Stages != len(layouts[i/2]) || len(r.StageComputeMS) != r.Stages {
			t.Errorf("row %d: %+v; want the local tokens and one compute figure per stage", i, r)
		}
		if !(r.TTFTMS > 0 && r.WireBytesPerToken > 0) {
			t.Errorf("row %d: ttft %v ms, %v bytes per token; want both positive", i, r.TTFTMS, r.WireBytesPerToken)
		}
		// f32 activations of 64 floats cross stages+1 hops per token, plus
		// copies and receipts: at least the activations.
		if min := float64((r.Stages + 1) * 64 * 4); r.WireBytesPerToken < min {
			t.Errorf("row %d: %v bytes per token, fewer than the activations' %v", i, r.WireBytesPerToken, min)
		}
	}
	dir := t.TempDir()
	files, err := WriteResults(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2+4*2 {
		t.Errorf("wrote %v", files)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil || len(recs) != 5 || recs[1][0] != "0-2,2-5" {
		t.Errorf("results.csv: %v %v", recs, err)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "time.svg"))
	if err != nil || !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "network") {
		t.Errorf("time.svg is not an SVG chart with a legend: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, "tokps.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Not blank: many pixels that are not the background, of several colours.
	b := img.Bounds()
	bg := img.At(b.Min.X, b.Min.Y)
	colours := map[[4]uint32]bool{}
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := img.At(x, y)
			if c != bg {
				ink++
			}
			r, g, bl, a := c.RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if ink < b.Dx()*b.Dy()/50 || len(colours) < 3 {
		t.Errorf("tokps.png has %d inked pixels of %d and %d colours: blank", ink, b.Dx()*b.Dy(), len(colours))
	}
}
