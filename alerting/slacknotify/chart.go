package slacknotify

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/slack-go/slack"
	"gonum.org/v1/plot"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/storage"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// QueryRangeFunc evaluates a PromQL range query.
type QueryRangeFunc func(ctx context.Context, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error)

// Chart window and size.
const (
	chartBefore = time.Hour
	chartPoints = 120
	chartSeries = 8
)

// chart draws the series of an alert's expression over the hour before
// the incident opened until now, as a PNG; nil when there is nothing to
// draw.
func (n *Notifier) chart(ctx context.Context, expr string, opened, now time.Time) ([]byte, error) {
	return Chart(ctx, ChartSource{QueryRange: n.deps.QueryRange, Events: n.deps.Events}, expr, opened.Add(-chartBefore), now)
}

// ChartSource is what charts are drawn from.
type ChartSource struct {
	QueryRange QueryRangeFunc
	// Events, when set, gives the chart of an anomaly score the range
	// the detector considered normal at each anomaly it recorded.
	Events EventQuerier
}

// EventQuerier reads stored events (storage.Store).
type EventQuerier interface {
	QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error)
}

// Chart draws expr from start to end as a PNG, with query evaluating
// it; nil when there is nothing to draw. A comparison with a number
// (rate(errors[5m]) > 0.1) is drawn as its series and the threshold as
// a dashed line, since the filtered expression alone shows only where it
// holds; a capacity forecast (aiops_capacity_exhaustion_seconds) is
// drawn with its bounds. An anomaly score (aiops_anomaly_score{
// aiops_metric="m", …}, alone or inside an aggregation) is drawn as the
// analysed series m itself, which a reader can judge, with each recorded
// anomaly marked and the range the detector considered normal there.
// The error of a query that fails wraps the query engine's.
func Chart(ctx context.Context, src ChartSource, expr string, start, end time.Time) ([]byte, error) {
	if !end.After(start) {
		return nil, nil
	}
	step := max(end.Sub(start)/chartPoints, time.Second)
	series, threshold, hasThreshold := splitThreshold(expr)
	if analysed, ok := analysedSeries(series); ok {
		return anomalyChart(ctx, src, expr, analysed, start, end, step)
	}
	m, err := src.QueryRange(ctx, series, start, end, step)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	p := newChart(expr)
	entries := addLines(p, m)
	// A capacity forecast is drawn with its bounds.
	for i, bound := range forecastBounds(series) {
		bm, err := src.QueryRange(ctx, bound, start, end, step)
		if err != nil || len(bm) == 0 {
			continue
		}
		for _, s := range bm[:min(len(bm), chartSeries)] {
			pts := make(plotter.XYs, 0, len(s.Floats))
			for _, f := range s.Floats {
				pts = append(pts, plotter.XY{X: float64(f.T) / 1000, Y: f.F})
			}
			line, err := plotter.NewLine(pts)
			if err != nil || len(pts) == 0 {
				continue
			}
			line.Color, line.Dashes = color.RGBA{R: 127, G: 127, B: 127, A: 255}, []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(line)
			if s.Metric.Hash() == bm[0].Metric.Hash() {
				p.Legend.Add([]string{"forecast lower bound", "forecast upper bound"}[i], line)
				entries++
			}
		}
	}
	if hasThreshold {
		t := plotter.NewFunction(func(float64) float64 { return threshold })
		t.Color, t.Dashes = color.RGBA{R: 214, G: 39, B: 40, A: 255}, []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(t)
		p.Legend.Add(fmt.Sprintf("threshold %g", threshold), t)
		entries++
		p.Y.Min, p.Y.Max = min(p.Y.Min, threshold), max(p.Y.Max, threshold)
	}
	return render(p, entries)
}

// newChart is an empty chart of expr over UTC time.
func newChart(expr string) *plot.Plot {
	p := plot.New()
	p.Title.Text = truncate(expr, 90)
	p.X.Tick.Marker = plot.TimeTicks{Format: "15:04", Time: func(t float64) time.Time { return time.Unix(int64(t), 0).UTC() }}
	p.X.Label.Text = "UTC"
	p.Add(plotter.NewGrid())
	return p
}

// addLines draws the first chartSeries series of m, each with its
// legend entry, and returns how many entries it added.
func addLines(p *plot.Plot, m promql.Matrix) int {
	entries := 0
	for i, s := range m[:min(len(m), chartSeries)] {
		pts := make(plotter.XYs, 0, len(s.Floats))
		for _, f := range s.Floats {
			pts = append(pts, plotter.XY{X: float64(f.T) / 1000, Y: f.F})
		}
		if len(pts) == 0 {
			continue
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			continue // NaN or Inf: nothing a line can show
		}
		line.Color = palette[i%len(palette)]
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(truncate(s.Metric.String(), 80), line)
		entries++
	}
	return entries
}

// render writes p as a PNG, with room above the lines for its legend
// of entries lines.
func render(p *plot.Plot, entries int) ([]byte, error) {
	p.Y.Max += (p.Y.Max - p.Y.Min) * 0.1 * float64(entries+1)
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.YOffs = -vg.Points(2)
	w, err := p.WriterTo(9*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 148, G: 103, B: 189, A: 255},
	color.RGBA{R: 140, G: 86, B: 75, A: 255}, color.RGBA{R: 227, G: 119, B: 194, A: 255},
	color.RGBA{R: 127, G: 127, B: 127, A: 255}, color.RGBA{R: 23, G: 190, B: 207, A: 255},
}

// postChart puts the chart of the incident's first alert expression in
// its thread. A picture is a help, not the notification: a failure is
// counted and logged, and not retried beyond the usual delivery.
func (n *Notifier) postChart(ctx context.Context, inc incidentView, msg Message) {
	expr := ""
	for _, l := range inc.links {
		if l != "" {
			expr = l
			break
		}
	}
	if expr == "" {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	png, err := n.chart(qctx, expr, inc.opened, n.deps.Now())
	cancel()
	if err != nil || png == nil {
		if err != nil {
			n.m.failed.WithLabelValues(opChart).Inc()
			n.logger.Warn("No chart for the incident", "incident", inc.id, "err", err)
		}
		return
	}
	err = n.do(ctx, opChart, func(ctx context.Context) error {
		_, err := UploadChart(ctx, n.api, png, inc.id+".png", expr, msg.Channel, msg.TS)
		return err
	})
	if err != nil {
		n.m.failed.WithLabelValues(opChart).Inc()
		n.logger.Warn("Uploading the incident's chart failed", "incident", inc.id, "err", err)
		return
	}
	n.m.calls.WithLabelValues(opChart).Inc()
}

// Uploader is Slack's files API (*slack.Client).
type Uploader interface {
	UploadFileContext(ctx context.Context, params slack.UploadFileParameters) (*slack.FileSummary, error)
}

// UploadChart uploads a chart of expr through Slack's files API
// (files.getUploadURLExternal, the upload, files.completeUploadExternal)
// into channel, in the thread of threadTS when set. An empty channel
// shares it nowhere: the file is the uploader's alone until a message
// shows it (an image block naming its id).
func UploadChart(ctx context.Context, api Uploader, png []byte, filename, expr, channel, threadTS string) (*slack.FileSummary, error) {
	return api.UploadFileContext(ctx, slack.UploadFileParameters{
		Reader: bytes.NewReader(png), FileSize: len(png), Filename: filename,
		Title: truncate(expr, 200), AltTxt: ChartAltText(expr),
		Channel: channel, ThreadTimestamp: threadTS,
	})
}

// ChartAltText is the alternative text of a chart of expr.
func ChartAltText(expr string) string { return "chart of " + truncate(expr, 900) }

// incidentView is what a chart needs of an incident.
type incidentView struct {
	id     string
	opened time.Time
	links  []string
}

// splitThreshold returns the series side and the threshold of a
// comparison of a vector with a number ("rate(x[5m]) > 0.1"), else expr
// itself.
func splitThreshold(expr string) (series string, threshold float64, ok bool) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return expr, 0, false
	}
	for {
		pe, isParen := e.(*parser.ParenExpr)
		if !isParen {
			break
		}
		e = pe.Expr
	}
	b, isBin := e.(*parser.BinaryExpr)
	if !isBin || !b.Op.IsComparisonOperator() || b.ReturnBool {
		return expr, 0, false
	}
	if n, isNum := b.RHS.(*parser.NumberLiteral); isNum && b.LHS.Type() == parser.ValueTypeVector {
		return b.LHS.String(), n.Val, true
	}
	if n, isNum := b.LHS.(*parser.NumberLiteral); isNum && b.RHS.Type() == parser.ValueTypeVector {
		return b.RHS.String(), n.Val, true
	}
	return expr, 0, false
}

// forecastBounds returns the selectors of a capacity forecast's lower and
// upper bounds when expr selects the forecast itself, else nil.
func forecastBounds(expr string) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil
	}
	vs, ok := e.(*parser.VectorSelector)
	if !ok || vs.Name != results.ExhaustionMetric {
		return nil
	}
	var out []string
	for _, name := range []string{results.ExhaustionLowerMetric, results.ExhaustionUpperMetric} {
		b := *vs
		b.Name = name
		b.LabelMatchers = nil
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				m = labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, name)
			}
			b.LabelMatchers = append(b.LabelMatchers, m)
		}
		out = append(out, b.String())
	}
	return out
}
