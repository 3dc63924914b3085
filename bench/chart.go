package main

import (
	"fmt"
	"image/color"
	"math"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// pathStyle gives every path the same color and dashes in every panel:
// references in greys and blues, Trellis in warm colors, two-hop paths
// dashed.
var pathStyle = map[string]struct {
	c      color.RGBA
	dashed bool
	shape  draw.GlyphDrawer
}{
	"direct":                  {color.RGBA{0, 0, 0, 255}, false, draw.CircleGlyph{}},
	"nginx":                   {color.RGBA{0, 150, 57, 255}, false, draw.SquareGlyph{}},
	"haproxy":                 {color.RGBA{31, 119, 180, 255}, false, draw.TriangleGlyph{}},
	"trellis-gateway":         {color.RGBA{214, 39, 40, 255}, false, draw.RingGlyph{}},
	"nginx-2":                 {color.RGBA{0, 150, 57, 255}, true, draw.BoxGlyph{}},
	"haproxy-2":               {color.RGBA{31, 119, 180, 255}, true, draw.PyramidGlyph{}},
	"trellis-sidecars":        {color.RGBA{255, 127, 14, 255}, true, draw.CrossGlyph{}},
	"trellis-gateway-sidecar": {color.RGBA{148, 103, 189, 255}, true, draw.PlusGlyph{}},
}

// writeChart draws one panel per protocol: latency (ms, log scale) at
// p50, p90, p99 and p99.9, one line per path.
func writeChart(r *Run, file string) error {
	protos := r.protocols()
	if len(protos) == 0 {
		return fmt.Errorf("no results")
	}
	labels := []string{"p50", "p90", "p99", "p99.9"}
	var ticks []plot.Tick
	for i, l := range labels {
		ticks = append(ticks, plot.Tick{Value: float64(i), Label: l})
	}
	plots := make([][]*plot.Plot, 1)
	for _, proto := range protos {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: latency at %d rps, %d connections", protocolTitle[proto], r.Settings.Rate, r.Settings.Connections)
		p.Y.Label.Text = "ms (log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -0.2, float64(len(labels)-1)+0.2
		p.Add(plotter.NewGrid())
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.TextStyle.Font.Size = vg.Points(9)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, path := range r.Paths {
			res := r.result(path.ID, proto)
			if res == nil || res.Latency == nil {
				continue
			}
			l := res.Latency
			vals := []float64{l.P50, l.P90, l.P99, l.P999}
			xys := make(plotter.XYs, len(vals))
			for i, v := range vals {
				xys[i].X, xys[i].Y = float64(i), math.Max(v, 0.001)
				lo, hi = math.Min(lo, xys[i].Y), math.Max(hi, xys[i].Y)
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return err
			}
			st := pathStyle[path.ID]
			line.Color, line.Width = st.c, vg.Points(1.5)
			if st.dashed {
				line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			points.Color, points.Shape, points.Radius = st.c, st.shape, vg.Points(3)
			p.Add(line, points)
			p.Legend.Add(fmt.Sprintf("%s (%d hop%s)", path.Title, path.Hops, plural(path.Hops)), line, points)
		}
		if !math.IsInf(lo, 0) {
			p.Y.Min, p.Y.Max = lo/1.5, hi*3 // room for the legend above the lines
		}
		plots[0] = append(plots[0], p)
	}
	const panelW, panelH = 6 * vg.Inch, 5 * vg.Inch
	img := vgimg.New(panelW*vg.Length(len(protos)), panelH)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(protos), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots[0] {
		plots[0][j].Draw(canvases[0][j])
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
