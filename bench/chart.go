package bench

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Chart colours.
var (
	computeColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	networkColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	barColor     = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
)

// WriteCharts draws rep's rows as horizontal bar charts, each saved as SVG
// and PNG in dir: decode tok/s (tokps), time to first token (ttft),
// per-token time split into compute and network (time), and bytes on the
// wire per token (bytes). It returns the files written.
func WriteCharts(rep *SwarmReport, dir string) ([]string, error) {
	if len(rep.Rows) == 0 {
		return nil, fmt.Errorf("bench: no rows to chart")
	}
	labels := make([]string, len(rep.Rows))
	var tokps, ttft, compute, network, wire plotter.Values
	for i, r := range rep.Rows {
		labels[i] = rowLabel(r)
		tokps = append(tokps, r.DecodeTokS)
		ttft = append(ttft, r.TTFTMS)
		compute = append(compute, max(r.ComputeMS, 0))
		network = append(network, max(r.NetworkMS, 0))
		wire = append(wire, r.WireBytesPerToken)
	}
	localNote := ""
	if rep.Local != nil {
		localNote = fmt.Sprintf(" (one process: %.1f)", rep.Local.DecodeTokS)
	}
	charts := []struct {
		name, title, unit string
		series            []plotter.Values
		names             []string
		colors            []color.Color
	}{
		{"tokps", "Decode speed" + localNote, "tokens/s", []plotter.Values{tokps}, nil, []color.Color{barColor}},
		{"ttft", "Time to first token", "ms", []plotter.Values{ttft}, nil, []color.Color{barColor}},
		{"time", "Per-token time", "ms", []plotter.Values{compute, network}, []string{"compute", "network"},
			[]color.Color{computeColor, networkColor}},
		{"bytes", "Bytes on the wire per token", "bytes", []plotter.Values{wire}, nil, []color.Color{barColor}},
	}
	var files []string
	height := vg.Length(len(rep.Rows))*0.8*vg.Centimeter + 4*vg.Centimeter
	for _, c := range charts {
		p := plot.New()
		p.Title.Text = c.title
		p.X.Label.Text = c.unit
		var below *plotter.BarChart
		for i, vals := range c.series {
			b, err := plotter.NewBarChart(vals, 0.5*vg.Centimeter)
			if err != nil {
				return nil, err
			}
			b.Horizontal = true
			b.Color = c.colors[i]
			b.LineStyle.Width = 0
			if below != nil {
				b.StackOn(below)
			}
			below = b
			p.Add(b)
			if c.names != nil {
				p.Legend.Add(c.names[i], b)
			}
		}
		p.Legend.Top = true
		p.NominalY(labels...)
		// Room on the right for the legend and the longest bar.
		var most float64
		for i := range c.series[0] {
			var total float64
			for _, vals := range c.series {
				total += vals[i]
			}
			most = max(most, total)
		}
		p.X.Min, p.X.Max = 0, most*1.6+1e-9
		for _, ext := range []string{"svg", "png"} {
			path := filepath.Join(dir, c.name+"."+ext)
			if err := p.Save(16*vg.Centimeter, height, path); err != nil {
				return nil, fmt.Errorf("bench: chart %s: %w", path, err)
			}
			files = append(files, path)
		}
	}
	return files, nil
}
