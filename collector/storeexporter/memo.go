package storeexporter

// Memoising Prometheus's OTLP translator per series.
//
// The translator rebuilds, sanitises and sorts the label set of every data
// point it converts, which costs more than appending the sample. A label
// set depends only on the point's identity: its resource's attributes, its
// scope (when scope metadata is promoted), its metric's name, type, unit,
// description and temporality, its own attributes and, for histograms and
// summaries, its bounds and quantiles; never on values or timestamps. So
// the translator converts each identity once, on a copy holding just the
// new points, and later points of the identity are appended with the label
// sets, append options and store references it produced then.
//
// The translator stays the only source of names and labels. Whatever the
// cache does not reduce to "same labels, new values" goes through the
// translator every time, on a copy of the metric: exponential histograms
// and native histograms with custom buckets (their samples are computed
// from the bucket layout), points with exemplars, metrics with no points
// or an invalid temporality, and any metric the translator ever warned or
// erred about. TestMemoMatchesTranslator checks that both paths append
// the same samples, warnings and errors.

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/util/annotations"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/limits"
)

var staleNaN = math.Float64frombits(value.StaleNaN)

// request is one WriteMetrics call on the memoised path.
type request struct {
	w      *MetricsWriter
	c      *seriesCache
	ctx    context.Context
	app    promstorage.AppenderV2
	annots annotations.Annotations
	errs   error
	failed bool
	n      int

	seenTarget map[targetKey]struct{}
	rec        recorder

	// guard is the writer's appender when it applies limits; series and
	// epoch are its series limiter and generation.
	guard  *appender
	series *limits.Series
	epoch  uint64

	// shell holds copies of one resource and scope, in which single
	// metrics are handed to the translator.
	shell      pmetric.Metrics
	shellScope pmetric.ScopeMetrics
	shellAt    [2]int

	keys    []uint64
	entries []*seriesEntry
	misses  []int
	fresh   []freshEntry
}

type targetKey struct {
	hash uint64
	ts   int64
}

type freshEntry struct {
	key uint64
	e   *seriesEntry
}

// translateMemo converts md into app like PrometheusConverter.FromMetrics
// does, through the series cache.
func (w *MetricsWriter) translateMemo(ctx context.Context, app promstorage.AppenderV2, md pmetric.Metrics) (annotations.Annotations, error) {
	r := request{w: w, c: w.cache, ctx: ctx, app: app, shellAt: [2]int{-1, -1}}
	if g, ok := app.(*appender); ok && g.w.series != nil {
		r.guard, r.series, r.epoch = g, g.w.series, g.epoch
	}
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		rm := rms.At(i)
		res := r.resource(rm.Resource())
		if res.err != nil {
			r.errs = errors.Join(r.errs, res.err)
			continue
		}
		earliest, latest := pcommon.Timestamp(math.MaxUint64), pcommon.Timestamp(0)
		sms := rm.ScopeMetrics()
		for j := range sms.Len() {
			sm := sms.At(j)
			scope, err := r.scope(sm)
			if err != nil {
				r.errs = errors.Join(r.errs, err)
				continue
			}
			ms := sm.Metrics()
			for k := range ms.Len() {
				if r.stopped() {
					return r.annots, r.errs
				}
				m := ms.At(k)
				earliest, latest = timeRange(m, earliest, latest)
				r.metric(res, scope, rm, sm, [2]int{i, j}, m)
			}
		}
		if r.stopped() {
			break
		}
		if earliest < pcommon.Timestamp(math.MaxUint64) {
			r.targetInfo(res, earliest, latest)
		}
	}
	return r.annots, r.errs
}

// stopped reports whether the request must end: the store failed an
// append (the caller retries the whole request) or ctx is done.
func (r *request) stopped() bool {
	if r.failed {
		return true
	}
	if err := r.ctx.Err(); err != nil {
		r.errs = errors.Join(r.errs, err)
		r.failed = true
	}
	return r.failed
}

func (r *request) resource(res pcommon.Resource) *resourceEntry {
	attrs := res.Attributes()
	key := r.c.hashAttrs(0, attrs)
	r.c.mu.Lock()
	e, ok := r.c.resources.get(key)
	r.c.mu.Unlock()
	if ok && sameAttrs(e.attrs, attrs) {
		return e
	}
	e = r.probeResource(res)
	r.c.mu.Lock()
	e.id = r.c.newID()
	r.c.resources.put(key, e)
	r.c.mu.Unlock()
	return e
}

// probeResource has the translator convert one bare gauge point of the
// resource: whether it converts tells whether the translator accepts the
// resource; what it appends after the point is the resource's target_info.
func (r *request) probeResource(res pcommon.Resource) *resourceEntry {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	res.CopyTo(rm.Resource())
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("aiops_probe")
	m.SetEmptyGauge().DataPoints().AppendEmpty()
	recs, annots, err := r.translate(md, r.w.settings)
	e := &resourceEntry{attrs: attrsOf(res.Attributes())}
	if len(recs) == 0 {
		e.err = err
		if e.err == nil {
			e.err = errors.New("translator converted nothing of the resource")
		}
		return e
	}
	e.targetErr, e.targetAnnots = err, annots
	if len(recs) > 1 {
		t := recs[1]
		e.target, e.targetHash, e.targetOpts = t.ls, t.ls.Hash(), t.opts
	}
	return e
}

func (r *request) scope(sm pmetric.ScopeMetrics) (*scopeIdentity, error) {
	s := sm.Scope()
	if !r.w.settings.PromoteScopeMetadata || s.Name() == "" {
		return nil, nil
	}
	namer := otlptranslator.LabelNamer{
		UTF8Allowed:                 r.w.settings.AllowUTF8,
		UnderscoreLabelSanitization: r.w.settings.LabelNameUnderscoreSanitization, //nolint:staticcheck // what the translator uses
		PreserveMultipleUnderscores: r.w.settings.LabelNamePreserveMultipleUnderscores,
	}
	// The translator refuses a scope whose attributes make no label
	// name; its error is the namer's.
	for k := range s.Attributes().All() {
		if _, err := namer.Build("otel_scope_" + k); err != nil {
			return nil, err
		}
	}
	return &scopeIdentity{name: s.Name(), version: s.Version(), schemaURL: sm.SchemaUrl(), attrs: attrsOf(s.Attributes())}, nil
}

func (r *request) metricEntry(res *resourceEntry, scope *scopeIdentity, m pmetric.Metric) *metricEntry {
	mono, temp := metricKind(m)
	h := mix(res.id, uint64(m.Type()))
	h = r.c.hashString(h, m.Name())
	h = r.c.hashString(h, m.Unit())
	h = r.c.hashString(h, m.Description())
	h = mix(h, uint64(temp))
	if mono {
		h = mix(h, 1)
	}
	if scope != nil {
		h = r.c.hashString(h, scope.name)
		h = r.c.hashString(h, scope.version)
		h = r.c.hashString(h, scope.schemaURL)
	}
	r.c.mu.Lock()
	e, ok := r.c.metrics.get(h)
	r.c.mu.Unlock()
	if ok && r.c.sameMetric(e, res, scope, m) {
		return e
	}
	e = &metricEntry{
		res: res, scope: scope,
		name: m.Name(), unit: m.Unit(), description: m.Description(),
		typ: m.Type(), monotonic: mono, temporality: temp,
		fast: r.fastKind(m.Type(), temp),
	}
	r.c.mu.Lock()
	e.id = r.c.newID()
	r.c.metrics.put(h, e)
	r.c.mu.Unlock()
	return e
}

// fastKind tells the metric kinds whose points the cache handles.
func (r *request) fastKind(t pmetric.MetricType, temp pmetric.AggregationTemporality) bool {
	validTemp := temp == pmetric.AggregationTemporalityCumulative ||
		(r.w.settings.AllowDeltaTemporality && temp == pmetric.AggregationTemporalityDelta)
	switch t {
	case pmetric.MetricTypeGauge, pmetric.MetricTypeSummary:
		return true
	case pmetric.MetricTypeSum:
		return validTemp
	case pmetric.MetricTypeHistogram:
		return validTemp && !r.w.settings.ConvertHistogramsToNHCB
	}
	return false
}

func (r *request) metric(res *resourceEntry, scope *scopeIdentity, rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric) {
	me := r.metricEntry(res, scope, m)
	if !me.fast || me.slow.Load() {
		r.whole(rm, sm, at, m)
		return
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		r.numbers(me, rm, sm, at, m, m.Gauge().DataPoints())
	case pmetric.MetricTypeSum:
		r.numbers(me, rm, sm, at, m, m.Sum().DataPoints())
	case pmetric.MetricTypeHistogram:
		r.histograms(me, rm, sm, at, m)
	case pmetric.MetricTypeSummary:
		r.summaries(me, rm, sm, at, m)
	}
}

// useShell makes the shell hold copies of rm's resource and sm's scope.
func (r *request) useShell(rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int) {
	if r.shellAt == at {
		r.shellScope.Metrics().RemoveIf(func(pmetric.Metric) bool { return true })
		return
	}
	r.shell = pmetric.NewMetrics()
	nrm := r.shell.ResourceMetrics().AppendEmpty()
	rm.Resource().CopyTo(nrm.Resource())
	nrm.SetSchemaUrl(rm.SchemaUrl())
	r.shellScope = nrm.ScopeMetrics().AppendEmpty()
	sm.Scope().CopyTo(r.shellScope.Scope())
	r.shellScope.SetSchemaUrl(sm.SchemaUrl())
	r.shellAt = at
}

// whole has the translator convert m, with its resource and scope, into
// the store's appender.
func (r *request) whole(rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric) {
	r.useShell(rm, sm, at)
	m.CopyTo(r.shellScope.Metrics().AppendEmpty())
	conv := r.w.converters.Get().(*prw.PrometheusConverter)
	conv.Reset(r.app)
	annots, err := conv.FromMetrics(r.ctx, r.shell, r.w.partSettings)
	conv.Reset(nil)
	r.w.converters.Put(conv)
	r.annots.Merge(annots)
	r.errs = errors.Join(r.errs, err)
	if r.ctx.Err() != nil {
		r.failed = true
	}
}

// shellMetric returns an empty copy of m (no points) in the shell.
func (r *request) shellMetric(rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric) pmetric.Metric {
	r.useShell(rm, sm, at)
	dst := r.shellScope.Metrics().AppendEmpty()
	dst.SetName(m.Name())
	dst.SetDescription(m.Description())
	dst.SetUnit(m.Unit())
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dst.SetEmptyGauge()
	case pmetric.MetricTypeSum:
		s := dst.SetEmptySum()
		s.SetAggregationTemporality(m.Sum().AggregationTemporality())
		s.SetIsMonotonic(m.Sum().IsMonotonic())
	case pmetric.MetricTypeHistogram:
		dst.SetEmptyHistogram().SetAggregationTemporality(m.Histogram().AggregationTemporality())
	case pmetric.MetricTypeSummary:
		dst.SetEmptySummary()
	}
	return dst
}

// translate has the translator convert md into a recorder.
func (r *request) translate(md pmetric.Metrics, settings prw.Settings) ([]recorded, annotations.Annotations, error) {
	r.rec.appends = r.rec.appends[:0]
	conv := r.w.converters.Get().(*prw.PrometheusConverter)
	conv.Reset(&r.rec)
	annots, err := conv.FromMetrics(r.ctx, md, settings)
	conv.Reset(nil)
	r.w.converters.Put(conv)
	return r.rec.appends, annots, err
}

// convertMisses has the translator convert the shell holding the points
// the cache missed. It reports false when the translator warned or erred
// or appended other than want samples; the caller then converts the whole
// metric with the translator, which reproduces exactly what the
// translator alone would have appended and reported.
func (r *request) convertMisses(me *metricEntry, want int) ([]recorded, bool) {
	recs, annots, err := r.translate(r.shell, r.w.partSettings)
	if err != nil || len(annots) > 0 || len(recs) != want {
		if r.ctx.Err() == nil {
			me.slow.Store(true)
		}
		return nil, false
	}
	return recs, true
}

// resolve fills r.entries with the cache entry of each of a metric's n
// points that valid accepts, nil for the others, which it lists in
// r.misses; r.keys holds the keys of the misses, for caching them.
//
// A client sends a metric's points in the same order every time, so the
// entry at the same position in the metric's last request is tried first:
// verifying it is all it costs, no hashing, no map. Other points are
// looked up by key. Either way valid decides, so the position is only a
// guess and never a source of labels.
func (r *request) resolve(me *metricEntry, n int, key func(int) uint64, valid func(int, *seriesEntry) bool) {
	r.entries = slices.Grow(r.entries[:0], n)[:n]
	r.keys = slices.Grow(r.keys[:0], n)[:n]
	var prev []*seriesEntry
	if p := me.last.Load(); p != nil {
		prev = *p
	}
	r.misses = r.misses[:0]
	for i := range n {
		if i < len(prev) && prev[i] != nil && valid(i, prev[i]) {
			r.entries[i] = prev[i]
			continue
		}
		r.entries[i] = nil
		r.keys[i] = key(i)
		r.misses = append(r.misses, i)
	}
	if len(r.misses) == 0 {
		return
	}
	r.c.mu.Lock()
	for _, i := range r.misses {
		r.entries[i], _ = r.c.series.get(r.keys[i])
	}
	r.c.mu.Unlock()
	left := r.misses[:0]
	for _, i := range r.misses {
		if e := r.entries[i]; e != nil && valid(i, e) {
			continue
		}
		r.entries[i] = nil
		left = append(left, i)
	}
	r.misses = left
}

// keepLayout remembers the metric's entries by position for the next
// request; r.entries holds them (nil for points that are not cached).
func (r *request) keepLayout(me *metricEntry) {
	if p := me.last.Load(); p != nil && slices.Equal(*p, r.entries) {
		return
	}
	layout := slices.Clone(r.entries)
	me.last.Store(&layout)
}

// remember caches the entries made in this metric.
func (r *request) remember(me *metricEntry, opts promstorage.AOptions) {
	if len(r.fresh) == 0 {
		return
	}
	opts.Exemplars = nil
	r.c.mu.Lock()
	if me.opts.MetricFamilyName == "" {
		me.opts = opts
	}
	for _, f := range r.fresh {
		r.c.series.put(f.key, f.e)
	}
	r.c.mu.Unlock()
	clear(r.fresh)
	r.fresh = r.fresh[:0]
}

// appendSlot appends one sample of a cached series.
func (r *request) appendSlot(s *slot, st, t int64, v float64, opts *promstorage.AOptions) bool {
	old := s.ref.Load()
	if old != 0 && r.series != nil && s.epoch.Load() != r.epoch {
		// A series the store knows, first written in this generation
		// of the series limiter: tell the limiter it is still active.
		// (Series without a reference go through the appender's own
		// checks.)
		if vi := r.series.Admit(s.hash, s.tenant, r.epoch); vi.Reason != "" {
			_ = r.guard.reject(vi, s.ls, t, *opts)
			return true
		}
		s.epoch.Store(r.epoch)
	}
	ref, err := r.app.Append(promstorage.SeriesRef(old), s.ls, st, t, v, nil, nil, *opts)
	if err != nil {
		r.failed = true
		return false
	}
	if ref != 0 && uint64(ref) != old {
		s.ref.Store(uint64(ref))
	}
	r.n++
	if r.n&127 == 0 && r.ctx.Err() != nil {
		r.errs = errors.Join(r.errs, r.ctx.Err())
		r.failed = true
		return false
	}
	return true
}

// forward appends what the translator made of a missed point, and
// returns the slots for caching it.
func (r *request) forward(recs []recorded, cache bool) ([]slot, bool) {
	var slots []slot
	if cache {
		slots = make([]slot, len(recs))
	}
	for i, a := range recs {
		ref, err := r.app.Append(0, a.ls, a.st, a.t, a.v, a.h, a.fh, a.opts)
		if err != nil {
			r.failed = true
			return nil, false
		}
		if cache {
			slots[i].ls = a.ls
			slots[i].ref.Store(uint64(ref))
			if r.series != nil {
				slots[i].hash, slots[i].tenant = a.ls.Hash(), a.ls.Get(limits.TenantLabel)
				if ref != 0 {
					// The appender has just admitted it.
					slots[i].epoch.Store(r.epoch)
				}
			}
		}
	}
	return slots, true
}

func millis(ts pcommon.Timestamp) int64 { return int64(ts) / 1_000_000 }

func (r *request) numbers(me *metricEntry, rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric, pts pmetric.NumberDataPointSlice) {
	n := pts.Len()
	if n == 0 {
		r.whole(rm, sm, at, m)
		return
	}
	r.resolve(me, n, func(i int) uint64 { return r.c.numberKey(me, pts.At(i)) }, func(i int, e *seriesEntry) bool {
		pt := pts.At(i)
		return e.metric == me && pt.Exemplars().Len() == 0 && sameAttrs(e.attrs, pt.Attributes())
	})
	var recs []recorded
	if len(r.misses) > 0 {
		dst := r.shellMetric(rm, sm, at, m)
		var dps pmetric.NumberDataPointSlice
		if m.Type() == pmetric.MetricTypeGauge {
			dps = dst.Gauge().DataPoints()
		} else {
			dps = dst.Sum().DataPoints()
		}
		for _, i := range r.misses {
			pts.At(i).CopyTo(dps.AppendEmpty())
		}
		var ok bool
		if recs, ok = r.convertMisses(me, len(r.misses)); !ok {
			r.whole(rm, sm, at, m)
			return
		}
	}
	off := 0
	for i, e := range r.entries {
		pt := pts.At(i)
		if e != nil {
			var v float64
			switch pt.ValueType() {
			case pmetric.NumberDataPointValueTypeInt:
				v = float64(pt.IntValue())
			case pmetric.NumberDataPointValueTypeDouble:
				v = pt.DoubleValue()
			}
			if pt.Flags().NoRecordedValue() {
				v = staleNaN
			}
			if !r.appendSlot(&e.slots[0], millis(pt.StartTimestamp()), millis(pt.Timestamp()), v, &me.opts) {
				return
			}
			continue
		}
		cache := pt.Exemplars().Len() == 0
		slots, ok := r.forward(recs[off:off+1], cache)
		if !ok {
			return
		}
		off++
		if cache {
			fresh := &seriesEntry{metric: me, attrs: attrsOf(pt.Attributes()), slots: slots}
			r.fresh = append(r.fresh, freshEntry{r.keys[i], fresh})
			r.entries[i] = fresh
		}
	}
	if len(recs) > 0 {
		r.remember(me, recs[0].opts)
	}
	r.keepLayout(me)
}

// histogramSeries is how many samples the translator appends for a
// classic histogram point without +Inf bounds (those it warns about).
func histogramSeries(pt pmetric.HistogramDataPoint) int {
	n := 2 + min(pt.ExplicitBounds().Len(), pt.BucketCounts().Len())
	if pt.HasSum() {
		n++
	}
	return n
}

func (r *request) histograms(me *metricEntry, rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric) {
	pts := m.Histogram().DataPoints()
	n := pts.Len()
	if n == 0 {
		r.whole(rm, sm, at, m)
		return
	}
	r.resolve(me, n, func(i int) uint64 { return r.c.histogramKey(me, pts.At(i)) }, func(i int, e *seriesEntry) bool {
		pt := pts.At(i)
		return e.metric == me && pt.Exemplars().Len() == 0 && e.sameHistogram(pt) && sameAttrs(e.attrs, pt.Attributes())
	})
	want := 0
	for _, i := range r.misses {
		want += histogramSeries(pts.At(i))
	}
	var recs []recorded
	if len(r.misses) > 0 {
		dps := r.shellMetric(rm, sm, at, m).Histogram().DataPoints()
		for _, i := range r.misses {
			pts.At(i).CopyTo(dps.AppendEmpty())
		}
		var ok bool
		if recs, ok = r.convertMisses(me, want); !ok {
			r.whole(rm, sm, at, m)
			return
		}
	}
	off := 0
	for i, e := range r.entries {
		pt := pts.At(i)
		if e == nil {
			k := histogramSeries(pt)
			cache := pt.Exemplars().Len() == 0
			slots, ok := r.forward(recs[off:off+k], cache)
			if !ok {
				return
			}
			off += k
			if cache {
				fresh := &seriesEntry{
					metric: me, attrs: attrsOf(pt.Attributes()), slots: slots,
					bounds: pt.ExplicitBounds().AsRaw(), nCounts: pt.BucketCounts().Len(), hasSum: pt.HasSum(),
				}
				r.fresh = append(r.fresh, freshEntry{r.keys[i], fresh})
				r.entries[i] = fresh
			}
			continue
		}
		stale := pt.Flags().NoRecordedValue()
		st, t := millis(pt.StartTimestamp()), millis(pt.Timestamp())
		val := func(v float64) float64 {
			if stale {
				return staleNaN
			}
			return v
		}
		s := 0
		if pt.HasSum() {
			if !r.appendSlot(&e.slots[s], st, t, val(pt.Sum()), &me.opts) {
				return
			}
			s++
		}
		count := val(float64(pt.Count()))
		if !r.appendSlot(&e.slots[s], st, t, count, &me.opts) {
			return
		}
		s++
		var cumulative uint64
		counts := pt.BucketCounts()
		for b := range min(pt.ExplicitBounds().Len(), counts.Len()) {
			cumulative += counts.At(b)
			if !r.appendSlot(&e.slots[s], st, t, val(float64(cumulative)), &me.opts) {
				return
			}
			s++
		}
		if !r.appendSlot(&e.slots[s], st, t, count, &me.opts) {
			return
		}
	}
	if len(recs) > 0 {
		r.remember(me, recs[0].opts)
	}
	r.keepLayout(me)
}

func (r *request) summaries(me *metricEntry, rm pmetric.ResourceMetrics, sm pmetric.ScopeMetrics, at [2]int, m pmetric.Metric) {
	pts := m.Summary().DataPoints()
	n := pts.Len()
	if n == 0 {
		r.whole(rm, sm, at, m)
		return
	}
	r.resolve(me, n, func(i int) uint64 { return r.c.summaryKey(me, pts.At(i)) }, func(i int, e *seriesEntry) bool {
		pt := pts.At(i)
		return e.metric == me && e.sameSummary(pt) && sameAttrs(e.attrs, pt.Attributes())
	})
	want := 0
	for _, i := range r.misses {
		want += 2 + pts.At(i).QuantileValues().Len()
	}
	var recs []recorded
	if len(r.misses) > 0 {
		dps := r.shellMetric(rm, sm, at, m).Summary().DataPoints()
		for _, i := range r.misses {
			pts.At(i).CopyTo(dps.AppendEmpty())
		}
		var ok bool
		if recs, ok = r.convertMisses(me, want); !ok {
			r.whole(rm, sm, at, m)
			return
		}
	}
	off := 0
	for i, e := range r.entries {
		pt := pts.At(i)
		qs := pt.QuantileValues()
		if e == nil {
			k := 2 + qs.Len()
			slots, ok := r.forward(recs[off:off+k], true)
			if !ok {
				return
			}
			off += k
			quantiles := make([]float64, qs.Len())
			for q := range qs.Len() {
				quantiles[q] = qs.At(q).Quantile()
			}
			fresh := &seriesEntry{metric: me, attrs: attrsOf(pt.Attributes()), slots: slots, quantiles: quantiles}
			r.fresh = append(r.fresh, freshEntry{r.keys[i], fresh})
			r.entries[i] = fresh
			continue
		}
		stale := pt.Flags().NoRecordedValue()
		st, t := millis(pt.StartTimestamp()), millis(pt.Timestamp())
		val := func(v float64) float64 {
			if stale {
				return staleNaN
			}
			return v
		}
		if !r.appendSlot(&e.slots[0], st, t, val(pt.Sum()), &me.opts) ||
			!r.appendSlot(&e.slots[1], st, t, val(float64(pt.Count())), &me.opts) {
			return
		}
		for q := range qs.Len() {
			if !r.appendSlot(&e.slots[2+q], st, t, val(qs.At(q).Value()), &me.opts) {
				return
			}
		}
	}
	if len(recs) > 0 {
		r.remember(me, recs[0].opts)
	}
	r.keepLayout(me)
}

// targetInfo appends the resource's target_info samples where the
// translator would: from the earliest to the latest timestamp of its
// points, half a lookback delta apart, once per label set and timestamp
// in a request.
func (r *request) targetInfo(res *resourceEntry, earliest, latest pcommon.Timestamp) {
	r.annots.Merge(res.targetAnnots)
	if res.targetErr != nil {
		r.errs = errors.Join(r.errs, res.targetErr)
	}
	if res.target.IsEmpty() {
		return
	}
	lookback := r.w.settings.LookbackDelta
	if lookback == 0 {
		lookback = 5 * time.Minute
	}
	last := latest.AsTime()
	for t := earliest.AsTime(); t.Before(last); t = t.Add(lookback / 2) {
		if !r.appendTarget(res, t.UnixMilli()) {
			return
		}
	}
	r.appendTarget(res, last.UnixMilli())
}

func (r *request) appendTarget(res *resourceEntry, ts int64) bool {
	k := targetKey{res.targetHash, ts}
	if _, ok := r.seenTarget[k]; ok {
		return true
	}
	if r.seenTarget == nil {
		r.seenTarget = map[targetKey]struct{}{}
	}
	r.seenTarget[k] = struct{}{}
	old := res.targetRef.Load()
	ref, err := r.app.Append(promstorage.SeriesRef(old), res.target, 0, ts, 1, nil, nil, res.targetOpts)
	if err != nil {
		r.failed = true
		return false
	}
	if ref != 0 && uint64(ref) != old {
		res.targetRef.Store(uint64(ref))
	}
	return true
}

// timeRange widens [earliest, latest] to the timestamps of m's points, as
// the translator does for target_info.
func timeRange(m pmetric.Metric, earliest, latest pcommon.Timestamp) (pcommon.Timestamp, pcommon.Timestamp) {
	see := func(ts pcommon.Timestamp) {
		earliest, latest = min(earliest, ts), max(latest, ts)
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		for _, p := range m.Gauge().DataPoints().All() {
			see(p.Timestamp())
		}
	case pmetric.MetricTypeSum:
		for _, p := range m.Sum().DataPoints().All() {
			see(p.Timestamp())
		}
	case pmetric.MetricTypeHistogram:
		for _, p := range m.Histogram().DataPoints().All() {
			see(p.Timestamp())
		}
	case pmetric.MetricTypeExponentialHistogram:
		for _, p := range m.ExponentialHistogram().DataPoints().All() {
			see(p.Timestamp())
		}
	case pmetric.MetricTypeSummary:
		for _, p := range m.Summary().DataPoints().All() {
			see(p.Timestamp())
		}
	}
	return earliest, latest
}

// recorded is one Append call of the translator.
type recorded struct {
	ls   labels.Labels
	st   int64
	t    int64
	v    float64
	h    *histogram.Histogram
	fh   *histogram.FloatHistogram
	opts promstorage.AOptions
}

// recorder is an AppenderV2 that keeps what it is given.
type recorder struct{ appends []recorded }

func (r *recorder) Append(_ promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AOptions) (promstorage.SeriesRef, error) {
	r.appends = append(r.appends, recorded{ls: ls, st: st, t: t, v: v, h: h, fh: fh, opts: opts})
	return 0, nil
}

func (*recorder) Commit() error   { return nil }
func (*recorder) Rollback() error { return nil }
