package chaos

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Picture writes a scenario's timeline as a PNG: the alerts firing, the
// simulator's own health (1 while it judges itself unhealthy), and the
// control actions it received, against seconds since the injection.
func (r Result) Picture(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: %s", r.Name, r.Outcome)
	p.X.Label.Text = "seconds since the fault"
	p.Y.Label.Text = "alerts firing / unhealthy"
	firing := make(plotter.XYs, len(r.Series))
	unhealthy := make(plotter.XYs, len(r.Series))
	var acts plotter.XYs
	for i, pt := range r.Series {
		firing[i] = plotter.XY{X: pt.Seconds, Y: float64(pt.Firing)}
		if !pt.Healthy {
			unhealthy[i] = plotter.XY{X: pt.Seconds, Y: 1}
		} else {
			unhealthy[i] = plotter.XY{X: pt.Seconds}
		}
		if pt.Action {
			acts = append(acts, plotter.XY{X: pt.Seconds, Y: 0})
		}
	}
	lf, err := plotter.NewLine(firing)
	if err != nil {
		return err
	}
	lf.Color = color.RGBA{R: 200, A: 255}
	lu, err := plotter.NewLine(unhealthy)
	if err != nil {
		return err
	}
	lu.Color = color.RGBA{B: 200, A: 255}
	lu.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(plotter.NewGrid(), lf, lu)
	p.Legend.Add("alerts firing", lf)
	p.Legend.Add("simulator unhealthy", lu)
	if len(acts) > 0 {
		sa, err := plotter.NewScatter(acts)
		if err != nil {
			return err
		}
		sa.GlyphStyle = draw.GlyphStyle{Color: color.RGBA{G: 140, A: 255}, Radius: vg.Points(5), Shape: draw.TriangleGlyph{}}
		p.Add(sa)
		p.Legend.Add("control action", sa)
	}
	p.Legend.Top = true
	return p.Save(8*vg.Inch, 3*vg.Inch, path)
}

// pictureName is a scenario's PNG file name; the runs after the first
// say which they are.
func pictureName(res Result) string {
	r := strings.NewReplacer("/", "_", "+", "_and_", " ", "_")
	run := ""
	if res.Run > 1 {
		run = fmt.Sprintf("-run%d", res.Run)
	}
	return "timeline-" + r.Replace(res.Name) + run + ".png"
}

// writePictures writes one PNG per scenario into dir.
func (rep *Report) writePictures(dir string) error {
	for _, r := range rep.Scenarios {
		if err := r.Picture(filepath.Join(dir, pictureName(r))); err != nil {
			return fmt.Errorf("timeline of %s: %w", r.Name, err)
		}
	}
	return nil
}
