package slacknotify

import (
	"context"
	"fmt"
	"image/color"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/storage"
)

// anomaliesPerSeries bounds the anomaly events read for one series of a
// chart: a chart of 120 points has no room for more marks.
const anomaliesPerSeries = 500

// analysedSeries returns the selector of the series an anomaly score
// was computed on, when expr reads the score of one named metric
// (aiops_anomaly_score{aiops_metric="m", job="api"} → m{job="api"}),
// alone or inside functions and aggregations; ok is false otherwise,
// and for a score selected by a pattern on the metric, which names no
// single series to draw.
func analysedSeries(expr string) (selector string, ok bool) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return "", false
	}
	var score *parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, isVS := n.(*parser.VectorSelector); isVS && score == nil && selects(vs, results.ScoreMetric) {
			score = vs
		}
		return nil
	})
	if score == nil {
		return "", false
	}
	metric := ""
	for _, m := range score.LabelMatchers {
		if m.Name == results.MetricLabel && m.Type == labels.MatchEqual {
			metric = m.Value
		}
	}
	if metric == "" {
		return "", false
	}
	out := &parser.VectorSelector{Name: metric, LabelMatchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metric)}}
	for _, m := range score.LabelMatchers {
		if m.Name != labels.MetricName && m.Name != results.MetricLabel {
			out.LabelMatchers = append(out.LabelMatchers, m)
		}
	}
	return out.String(), true
}

// selects reports whether vs selects the metric name.
func selects(vs *parser.VectorSelector, name string) bool {
	if vs.Name == name {
		return true
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual && m.Value == name {
			return true
		}
	}
	return false
}

// anomalyChart draws the analysed series of an anomaly alert's score,
// each recorded anomaly as a red mark at its observed value, and, where
// the detector had one, the normal range it expected there as a grey bar
// with the expected value in its middle.
func anomalyChart(ctx context.Context, src ChartSource, expr, analysed string, start, end time.Time, step time.Duration) ([]byte, error) {
	m, err := src.QueryRange(ctx, analysed, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("query %s (the series under %s): %w", analysed, expr, err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	p := newChart(expr)
	entries := addLines(p, m)
	if src.Events == nil {
		return render(p, entries)
	}
	var observed, expected plotter.XYs
	var bands []plotter.XYs
	for _, s := range m[:min(len(m), chartSeries)] {
		// An anomaly event's subject is its series' label hash
		// (results.EncodeAnomaly), the metric name included.
		evs, err := src.Events.QueryEvents(ctx, storage.EventQuery{
			KindPrefix: results.AnomalyKind, Subject: fmt.Sprintf("%016x", s.Metric.Hash()),
			Start: start, End: end, Limit: anomaliesPerSeries,
		})
		if err != nil {
			return nil, fmt.Errorf("read the anomalies of %s: %w", s.Metric, err)
		}
		for _, ev := range evs {
			if ev.Kind != results.AnomalyKind {
				continue
			}
			an, err := results.DecodeAnomaly(ev)
			if err != nil {
				continue // a record a newer analyzer wrote; the line still shows the series
			}
			x := float64(an.Time.Unix())
			observed = append(observed, plotter.XY{X: x, Y: an.Value})
			if an.Lower != nil && an.Upper != nil {
				bands = append(bands, plotter.XYs{{X: x, Y: *an.Lower}, {X: x, Y: *an.Upper}})
			}
			if an.Expected != nil {
				expected = append(expected, plotter.XY{X: x, Y: *an.Expected})
			}
		}
	}
	grey := color.RGBA{R: 150, G: 150, B: 150, A: 255}
	for i, b := range bands {
		bar, err := plotter.NewLine(b)
		if err != nil {
			continue
		}
		bar.Color, bar.Width = grey, vg.Points(4)
		p.Add(bar)
		if i == 0 {
			p.Legend.Add("normal range the detector expected", bar)
			entries++
		}
	}
	if len(expected) > 0 {
		if sc, err := plotter.NewScatter(expected); err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: color.Black, Radius: vg.Points(2), Shape: draw.PlusGlyph{}}
			p.Add(sc)
			p.Legend.Add("expected value", sc)
			entries++
		}
	}
	if len(observed) > 0 {
		if sc, err := plotter.NewScatter(observed); err == nil {
			sc.GlyphStyle = draw.GlyphStyle{Color: color.RGBA{R: 214, G: 39, B: 40, A: 255}, Radius: vg.Points(3), Shape: draw.CircleGlyph{}}
			p.Add(sc)
			p.Legend.Add(fmt.Sprintf("anomaly (%d)", len(observed)), sc)
			entries++
		}
	}
	return render(p, entries)
}
