package storeexporter

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// DefaultCacheSeries is how many Prometheus series (label sets) the
// translation cache keeps per generation when translation.cache_series is
// 0; at most twice as many are held at once.
const DefaultCacheSeries = 200_000

// seriesCache remembers what Prometheus's OTLP translator made of each
// OTLP series identity, so that later points of the identity skip it.
//
// Entries are keyed by a hash and verified on every hit against the full
// identity they were made for, so a hash collision costs a translation,
// never a wrong label set. The cache is bounded by generations: entries
// go into the current map; when it holds max series it becomes the old
// one and the one before is dropped; a hit in the old map moves the entry
// to the current one. What is not used for a whole generation is
// forgotten, with no per-entry bookkeeping on the hot path.
type seriesCache struct {
	seed maphash.Seed

	mu        sync.Mutex
	resources generations[*resourceEntry]
	metrics   generations[*metricEntry]
	series    generations[*seriesEntry]
	nextID    uint64
}

func newSeriesCache(maxSeries int) *seriesCache {
	return &seriesCache{
		seed:      maphash.MakeSeed(),
		resources: newGenerations[*resourceEntry](max(maxSeries/4, 64)),
		metrics:   newGenerations[*metricEntry](max(maxSeries, 64)),
		series:    newGenerations[*seriesEntry](max(maxSeries, 64)),
	}
}

func (c *seriesCache) newID() uint64 {
	c.nextID++
	return c.nextID
}

type weighted interface{ weight() int }

// generations is a map bounded by the summed weight of its values.
type generations[V weighted] struct {
	cur, old map[uint64]V
	weight   int
	max      int
	// mask is applied to keys; tests narrow it to force collisions.
	mask uint64
}

func newGenerations[V weighted](max int) generations[V] {
	return generations[V]{cur: map[uint64]V{}, max: max, mask: math.MaxUint64}
}

func (g *generations[V]) get(k uint64) (V, bool) {
	k &= g.mask
	if v, ok := g.cur[k]; ok {
		return v, true
	}
	v, ok := g.old[k]
	if ok {
		delete(g.old, k)
		g.put(k, v)
	}
	return v, ok
}

func (g *generations[V]) put(k uint64, v V) {
	k &= g.mask
	if g.weight >= g.max {
		g.old, g.cur, g.weight = g.cur, make(map[uint64]V, len(g.cur)), 0
	}
	g.cur[k] = v
	g.weight += v.weight()
}

func (g *generations[V]) len() int { return len(g.cur) + len(g.old) }

// attrValue is one OTLP attribute kept for verifying an identity.
type attrValue struct {
	key string
	typ pcommon.ValueType
	str string // Str; the string form of Bytes, Map and Slice
	num uint64 // Int, Double (bits), Bool
}

func attrsOf(m pcommon.Map) []attrValue {
	if m.Len() == 0 {
		return nil
	}
	out := make([]attrValue, 0, m.Len())
	for k, v := range m.All() {
		a := attrValue{key: k, typ: v.Type()}
		switch a.typ {
		case pcommon.ValueTypeStr:
			a.str = v.Str()
		case pcommon.ValueTypeInt:
			a.num = uint64(v.Int())
		case pcommon.ValueTypeDouble:
			a.num = math.Float64bits(v.Double())
		case pcommon.ValueTypeBool:
			if v.Bool() {
				a.num = 1
			}
		case pcommon.ValueTypeEmpty:
		default:
			a.str = v.AsString()
		}
		out = append(out, a)
	}
	return out
}

// sameAttrs reports whether m holds exactly attrs, in the same order. The
// translator sorts attributes, so order does not change its output, but
// comparing in order is cheaper and only ever costs a translation.
func sameAttrs(attrs []attrValue, m pcommon.Map) bool {
	if m.Len() != len(attrs) {
		return false
	}
	i := 0
	for k, v := range m.All() {
		a := &attrs[i]
		i++
		if a.key != k || a.typ != v.Type() {
			return false
		}
		switch a.typ {
		case pcommon.ValueTypeStr:
			if a.str != v.Str() {
				return false
			}
		case pcommon.ValueTypeInt:
			if a.num != uint64(v.Int()) {
				return false
			}
		case pcommon.ValueTypeDouble:
			if a.num != math.Float64bits(v.Double()) {
				return false
			}
		case pcommon.ValueTypeBool:
			if (a.num == 1) != v.Bool() {
				return false
			}
		case pcommon.ValueTypeEmpty:
		default:
			if a.str != v.AsString() {
				return false
			}
		}
	}
	return true
}

func mix(h, x uint64) uint64 {
	h ^= x
	h *= 0x9E3779B97F4A7C15
	return h ^ h>>31
}

func (c *seriesCache) hashString(h uint64, s string) uint64 {
	return mix(h, maphash.String(c.seed, s))
}

func (c *seriesCache) hashAttrs(h uint64, m pcommon.Map) uint64 {
	for k, v := range m.All() {
		h = c.hashString(h, k)
		t := v.Type()
		h = mix(h, uint64(t))
		switch t {
		case pcommon.ValueTypeStr:
			h = c.hashString(h, v.Str())
		case pcommon.ValueTypeInt:
			h = mix(h, uint64(v.Int()))
		case pcommon.ValueTypeDouble:
			h = mix(h, math.Float64bits(v.Double()))
		case pcommon.ValueTypeBool:
			if v.Bool() {
				h = mix(h, 1)
			}
		case pcommon.ValueTypeEmpty:
		default:
			h = c.hashString(h, v.AsString())
		}
	}
	return mix(h, uint64(m.Len()))
}

func hashFloats(h uint64, s pcommon.Float64Slice) uint64 {
	for _, f := range s.All() {
		h = mix(h, math.Float64bits(f))
	}
	return mix(h, uint64(s.Len()))
}

func sameFloats(a []float64, s pcommon.Float64Slice) bool {
	if len(a) != s.Len() {
		return false
	}
	for i, f := range s.All() {
		if math.Float64bits(a[i]) != math.Float64bits(f) {
			return false
		}
	}
	return true
}

// resourceEntry is what the translator makes of one resource.
type resourceEntry struct {
	id    uint64
	attrs []attrValue
	// err is set when the translator refuses the resource: it skips all
	// of its metrics and reports err.
	err error
	// target is the target_info label set; empty when the translator
	// makes none for the resource. targetErr and targetAnnots are what
	// making it reported.
	target       labels.Labels
	targetHash   uint64
	targetOpts   promstorage.AOptions
	targetErr    error
	targetAnnots annotations.Annotations
	targetRef    atomic.Uint64
}

func (*resourceEntry) weight() int { return 1 }

// scopeIdentity is the part of a scope that reaches labels when scope
// metadata is promoted.
type scopeIdentity struct {
	name, version, schemaURL string
	attrs                    []attrValue
}

// metricEntry is one metric of one resource (and scope, when promoted).
type metricEntry struct {
	id          uint64
	res         *resourceEntry
	scope       *scopeIdentity
	name        string
	unit        string
	description string
	typ         pmetric.MetricType
	monotonic   bool
	temporality pmetric.AggregationTemporality

	// fast is false for what the cache does not handle: every point goes
	// through the translator.
	fast bool
	// slow is set once the translator warned or erred about a point of
	// the metric: from then on the metric goes through the translator
	// whole, which alone reproduces its warnings and errors exactly.
	slow atomic.Bool
	// opts are the append options of every sample of the metric, set
	// before the first series entry of it is cached.
	opts promstorage.AOptions
	// last holds the entries of the metric's points in its last request,
	// by position (see request.resolve).
	last atomic.Pointer[[]*seriesEntry]
}

func (*metricEntry) weight() int { return 1 }

func (c *seriesCache) sameMetric(e *metricEntry, res *resourceEntry, scope *scopeIdentity, m pmetric.Metric) bool {
	if e.res != res || e.name != m.Name() || e.unit != m.Unit() || e.description != m.Description() || e.typ != m.Type() {
		return false
	}
	mono, temp := metricKind(m)
	if e.monotonic != mono || e.temporality != temp {
		return false
	}
	if (e.scope == nil) != (scope == nil) {
		return false
	}
	if scope != nil {
		s := e.scope
		if s.name != scope.name || s.version != scope.version || s.schemaURL != scope.schemaURL || len(s.attrs) != len(scope.attrs) {
			return false
		}
		for i := range s.attrs {
			if s.attrs[i] != scope.attrs[i] {
				return false
			}
		}
	}
	return true
}

func metricKind(m pmetric.Metric) (monotonic bool, temporality pmetric.AggregationTemporality) {
	switch m.Type() {
	case pmetric.MetricTypeSum:
		return m.Sum().IsMonotonic(), m.Sum().AggregationTemporality()
	case pmetric.MetricTypeHistogram:
		return false, m.Histogram().AggregationTemporality()
	case pmetric.MetricTypeExponentialHistogram:
		return false, m.ExponentialHistogram().AggregationTemporality()
	}
	return false, 0
}

// seriesEntry is one data point identity: the label sets the translator
// made of it, in the order it appends them, with the store's references.
type seriesEntry struct {
	metric *metricEntry
	attrs  []attrValue
	// Histograms: bounds, number of bucket counts and whether a sum is
	// set decide the _bucket, _sum and _count series. Summaries: the
	// quantiles decide the quantile series.
	bounds    []float64
	nCounts   int
	hasSum    bool
	quantiles []float64
	slots     []slot
}

type slot struct {
	ls  labels.Labels
	ref atomic.Uint64
	// With a series limit: the hash of ls and its tenant, and the
	// limiter's generation in which the series was last reported to it
	// (see limits.Series).
	hash   uint64
	tenant string
	epoch  atomic.Uint64
}

func (e *seriesEntry) weight() int { return len(e.slots) }

func (c *seriesCache) numberKey(me *metricEntry, pt pmetric.NumberDataPoint) uint64 {
	return c.hashAttrs(me.id, pt.Attributes())
}

func (c *seriesCache) histogramKey(me *metricEntry, pt pmetric.HistogramDataPoint) uint64 {
	h := c.hashAttrs(me.id, pt.Attributes())
	h = hashFloats(h, pt.ExplicitBounds())
	h = mix(h, uint64(pt.BucketCounts().Len()))
	if pt.HasSum() {
		h = mix(h, 1)
	}
	return h
}

func (c *seriesCache) summaryKey(me *metricEntry, pt pmetric.SummaryDataPoint) uint64 {
	h := c.hashAttrs(me.id, pt.Attributes())
	qs := pt.QuantileValues()
	for i := range qs.Len() {
		h = mix(h, math.Float64bits(qs.At(i).Quantile()))
	}
	return mix(h, uint64(qs.Len()))
}

func (e *seriesEntry) sameHistogram(pt pmetric.HistogramDataPoint) bool {
	return e.hasSum == pt.HasSum() && e.nCounts == pt.BucketCounts().Len() && sameFloats(e.bounds, pt.ExplicitBounds())
}

func (e *seriesEntry) sameSummary(pt pmetric.SummaryDataPoint) bool {
	qs := pt.QuantileValues()
	if qs.Len() != len(e.quantiles) {
		return false
	}
	for i := range qs.Len() {
		if math.Float64bits(qs.At(i).Quantile()) != math.Float64bits(e.quantiles[i]) {
			return false
		}
	}
	return true
}
