// Package promapi serves the Prometheus HTTP query API (/api/v1/query,
// /api/v1/query_range, /api/v1/series, ...) over any aiops store.
//
// It is Prometheus's own web/api/v1 package wired to our storage, so
// requests, responses, error types and status codes are Prometheus's byte
// for byte. What aiops has no equivalent for (scrape targets, TSDB admin,
// remote write and OTLP receivers, which live elsewhere in aiops) answers
// with empty results or is switched off. Metric metadata, which Prometheus
// takes from scrape targets, comes from a MetadataSource instead.
//
// Authentication is not handled here; the server puts it in front.
package promapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/grafana/regexp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/features"
	"github.com/prometheus/prometheus/util/notifications"
	v1 "github.com/prometheus/prometheus/web/api/v1"
)

// Prefix is the path under which Handler serves the API.
const Prefix = "/api/v1"

// Prometheus's defaults for its remote read endpoint (/api/v1/read), which
// stays on: it only reads, and lets a Prometheus server federate from aiops.
const (
	remoteReadSampleLimit      = 50_000_000
	remoteReadConcurrencyLimit = 10
	remoteReadMaxBytesInFrame  = 1 << 20
)

// Options are what the API is built from. Storage is required; every other
// field has a working zero value.
type Options struct {
	Config Config
	// Storage answers queries, series, label and remote read requests.
	Storage promstorage.SampleAndChunkQueryable
	// Engine evaluates PromQL. When nil, New builds one from Config and
	// Close closes it. Pass one to share it (and its concurrency limit)
	// with rule evaluation; it must parse with NewParser(Config).
	Engine promql.QueryEngine

	// Metadata answers /api/v1/metadata. When nil the endpoint returns no
	// metadata.
	Metadata MetadataSource
	// Exemplars answers /api/v1/query_exemplars. When nil, Storage is used
	// if it implements promstorage.ExemplarQueryable; otherwise there are
	// no exemplars.
	Exemplars promstorage.ExemplarQueryable
	// TSDB answers /api/v1/status/tsdb and /api/v1/status/tsdb/blocks.
	// When nil, Storage is used if it implements TSDBStatusSource (the
	// embedded store does, through its *tsdb.DB); otherwise those endpoints
	// return an internal error, as they do on a Prometheus agent.
	TSDB TSDBStatusSource

	// Rules and Alertmanagers answer /api/v1/rules, /api/v1/alerts and
	// /api/v1/alertmanagers, for the alerting component to plug in. When
	// nil those endpoints return empty lists.
	Rules         func(context.Context) v1.RulesRetriever
	Alertmanagers func(context.Context) v1.AlertmanagerRetriever

	// BuildInfo is what /api/v1/status/buildinfo reports.
	BuildInfo BuildInfo
	// CORSOrigin is a regular expression (anchored, as Prometheus's
	// --web.cors.origin) of the browser origins allowed to call the API
	// directly. Empty allows none: Grafana proxies its queries server-side.
	CORSOrigin string

	Logger *slog.Logger
	// Registerer receives the engine's and remote read handler's metrics,
	// under Prometheus's names prefixed with "aiops_" (so
	// aiops_prometheus_engine_query_duration_seconds). May be nil.
	Registerer prometheus.Registerer
	// Gatherer is what /api/v1/status/tsdb reads the head chunk count from
	// and /api/v1/status/self_metrics serves. May be nil.
	Gatherer prometheus.Gatherer
}

// TSDBStatusSource is what the TSDB status endpoints need from a store
// backed by a Prometheus TSDB. *tsdb.DB implements it.
type TSDBStatusSource interface {
	Head() *tsdb.Head
	BlockMetas() []tsdb.BlockMeta
}

// API is a Prometheus-compatible query API over one store.
type API struct {
	engine      promql.QueryEngine
	ownedEngine *Engine
	handler     http.Handler
}

// New builds the API. Close it when done.
func New(opts Options) (*API, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Storage == nil {
		return nil, errors.New("promapi: Options.Storage is required")
	}
	cors := "^(?:)$" // matches only the empty Origin, i.e. no cross-origin caller
	if opts.CORSOrigin != "" {
		cors = "^(?:" + opts.CORSOrigin + ")$"
	}
	corsRE, err := regexp.Compile(cors)
	if err != nil {
		return nil, fmt.Errorf("promapi: CORS origin %q: %w", opts.CORSOrigin, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var reg prometheus.Registerer
	if opts.Registerer != nil {
		reg = prometheus.WrapRegistererWithPrefix("aiops_", opts.Registerer)
	}
	heap := newHeapGuard(opts.Config.MaxHeapMiB, logger.With("component", "query api"), reg)
	gatherer := opts.Gatherer
	if gatherer == nil {
		gatherer = prometheus.NewRegistry()
	}

	featureRegistry := features.NewRegistry()
	promParser := NewParser(opts.Config)
	a := &API{engine: opts.Engine}
	if a.engine == nil {
		eo := EngineOpts(opts.Config, logger.With("component", "query engine"), reg)
		eo.FeatureRegistry = featureRegistry
		a.ownedEngine = newEngine(opts.Config, eo)
		a.engine = a.ownedEngine
	}

	exemplars := opts.Exemplars
	if exemplars == nil {
		if eq, ok := opts.Storage.(promstorage.ExemplarQueryable); ok {
			exemplars = eq
		} else {
			exemplars = noExemplars{}
		}
	}
	var tsdbStats v1.TSDBAdminStats = noTSDB{}
	switch {
	case opts.TSDB != nil:
		tsdbStats = tsdbStatus{opts.TSDB}
	default:
		if s, ok := opts.Storage.(TSDBStatusSource); ok {
			tsdbStats = tsdbStatus{s}
		}
	}
	rulesRetriever := opts.Rules
	if rulesRetriever == nil {
		rulesRetriever = func(context.Context) v1.RulesRetriever { return noRules{} }
	}
	amRetriever := opts.Alertmanagers
	if amRetriever == nil {
		amRetriever = func(context.Context) v1.AlertmanagerRetriever { return noAlertmanagers{} }
	}

	startTime := time.Now()
	cfg := opts.Config
	bi := opts.BuildInfo
	api := v1.NewAPI(
		a.engine,
		opts.Storage,
		nil, // no appender: remote write and OTLP receivers are off; OTLP enters through the collector
		exemplars,
		func(context.Context) v1.ScrapePoolsRetriever { return noTargets{} },
		func(context.Context) v1.TargetRetriever { return noTargets{} },
		amRetriever,
		func() config.Config { return config.DefaultConfig },
		map[string]string{
			"query.timeout":                       cfg.Timeout.String(),
			"query.max_samples":                   strconv.Itoa(cfg.MaxSamples),
			"query.lookback_delta":                cfg.LookbackDelta.String(),
			"query.max_concurrency":               strconv.Itoa(cfg.MaxConcurrency),
			"query.subquery_step":                 cfg.SubqueryStep.String(),
			"query.experimental_promql":           strconv.FormatBool(cfg.ExperimentalPromQL),
			"query.use_start_timestamps":          strconv.FormatBool(cfg.UseStartTimestamps),
			"query.max_length":                    strconv.Itoa(cfg.MaxLength),
			"query.max_depth":                     strconv.Itoa(cfg.MaxDepth),
			"query.max_subquery_steps":            strconv.FormatInt(cfg.MaxSubquerySteps, 10),
			"query.max_concurrency_per_principal": strconv.Itoa(cfg.MaxConcurrencyPerPrincipal),
			"query.rules_max_concurrency":         strconv.Itoa(cfg.RulesMaxConcurrency),
			"query.max_heap_mib":                  strconv.Itoa(int(heap.limit >> 20)),
		},
		v1.GlobalURLOptions{},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		tsdbStats,
		"",    // no TSDB directory: snapshots are an admin API, which is off
		false, // admin APIs
		false, // experimental search API
		0,
		logger.With("component", "query api"),
		rulesRetriever,
		remoteReadSampleLimit,
		remoteReadConcurrencyLimit,
		remoteReadMaxBytesInFrame,
		false, // not an agent
		corsRE,
		func() (v1.RuntimeInfo, error) { return runtimeInfo(startTime), nil },
		&v1.PrometheusVersion{
			Version:   bi.Version,
			Revision:  bi.Revision,
			Branch:    bi.Branch,
			BuildUser: bi.BuildUser,
			BuildDate: bi.BuildDate,
			GoVersion: bi.GoVersion,
		},
		func() []notifications.Notification { return []notifications.Notification{} },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		gatherer,
		reg,
		nil,   // default stats renderer
		false, // remote write receiver
		nil,
		false, false, false, // OTLP receiver, delta conversion, native delta
		time.Duration(cfg.LookbackDelta),
		false, // type and unit labels
		false, // append metadata
		nil,   // Prometheus's status codes
		featureRegistry,
		v1.OpenAPIOptions{Version: bi.Version},
		promParser,
		false, // query cost limits
		time.Duration(cfg.Timeout),
	)

	router := route.New()
	api.Register(router.WithPrefix(Prefix))

	// Prometheus's /metadata handler reads scrape targets; ours asks the
	// store. The router keeps answering every other method on that path
	// (405, CORS preflight) as Prometheus does.
	metadata := metadataHandler(opts.Metadata, corsRE, logger)
	remoteRead := boundRemoteRead(cfg.MaxLength, router)
	a.handler = heap.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == Prefix+"/metadata":
			metadata.ServeHTTP(w, r)
		case r.Method == http.MethodPost && r.URL.Path == Prefix+"/read":
			remoteRead.ServeHTTP(w, r)
		default:
			router.ServeHTTP(w, r)
		}
	}))
	return a, nil
}

// Handler serves the API at Prefix (/api/v1/...). Mount it on the server's
// mux as mux.Handle(promapi.Prefix+"/", api.Handler()).
func (a *API) Handler() http.Handler { return a.handler }

// Engine is the engine the API evaluates queries with.
func (a *API) Engine() promql.QueryEngine { return a.engine }

// Close releases the engine New built. An engine passed in Options is
// left open.
func (a *API) Close() error {
	if a.ownedEngine != nil {
		return a.ownedEngine.Close()
	}
	return nil
}

func runtimeInfo(start time.Time) v1.RuntimeInfo {
	ri := v1.RuntimeInfo{
		StartTime:           start,
		ServerTime:          time.Now(),
		ReloadConfigSuccess: true,
		LastConfigTime:      start,
		GoroutineCount:      runtime.NumGoroutine(),
		GOMAXPROCS:          runtime.GOMAXPROCS(0),
		GOMEMLIMIT:          debug.SetMemoryLimit(-1),
		GOGC:                os.Getenv("GOGC"),
		GODEBUG:             os.Getenv("GODEBUG"),
	}
	ri.CWD, _ = os.Getwd()
	ri.Hostname, _ = os.Hostname()
	return ri
}

// noTargets stands in for Prometheus's scrape manager: aiops receives
// metrics over OTLP and scrapes nothing.
type noTargets struct{}

func (noTargets) ScrapePools() []string                       { return []string{} }
func (noTargets) TargetsActive() map[string][]*scrape.Target  { return map[string][]*scrape.Target{} }
func (noTargets) TargetsDropped() map[string][]*scrape.Target { return map[string][]*scrape.Target{} }
func (noTargets) TargetsDroppedCounts() map[string]int        { return map[string]int{} }
func (noTargets) ScrapePoolConfig(string) (*config.ScrapeConfig, error) {
	return nil, errors.New("aiops has no scrape pools: metrics arrive over OTLP")
}

type noAlertmanagers struct{}

func (noAlertmanagers) Alertmanagers() []*url.URL        { return nil }
func (noAlertmanagers) DroppedAlertmanagers() []*url.URL { return nil }

type noRules struct{}

func (noRules) RuleGroups() []*rules.Group           { return nil }
func (noRules) AlertingRules() []*rules.AlertingRule { return nil }

type noExemplars struct{}

func (noExemplars) ExemplarQuerier(context.Context) (promstorage.ExemplarQuerier, error) {
	return noExemplars{}, nil
}

func (noExemplars) Select(int64, int64, ...[]*labels.Matcher) ([]exemplar.QueryResult, error) {
	return []exemplar.QueryResult{}, nil
}

var errNoTSDB = errors.New("not available: this storage is not a Prometheus TSDB")

// noTSDB answers the TSDB status endpoints for stores without a TSDB.
type noTSDB struct{}

func (noTSDB) CleanTombstones() error                                         { return errNoTSDB }
func (noTSDB) Delete(context.Context, int64, int64, ...*labels.Matcher) error { return errNoTSDB }
func (noTSDB) Snapshot(string, bool) error                                    { return errNoTSDB }
func (noTSDB) Stats(string, int) (*tsdb.Stats, error)                         { return nil, errNoTSDB }
func (noTSDB) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return tsdb.WALReplayStatus{}, errNoTSDB
}
func (noTSDB) BlockMetas() ([]tsdb.BlockMeta, error) { return nil, errNoTSDB }

var errAdminDisabled = errors.New("admin APIs disabled")

// tsdbStatus serves the read-only TSDB status endpoints from a TSDB. The
// admin operations are unreachable (the admin API is off) and refuse.
type tsdbStatus struct{ db TSDBStatusSource }

func (tsdbStatus) CleanTombstones() error { return errAdminDisabled }
func (tsdbStatus) Delete(context.Context, int64, int64, ...*labels.Matcher) error {
	return errAdminDisabled
}
func (tsdbStatus) Snapshot(string, bool) error { return errAdminDisabled }

func (s tsdbStatus) Stats(statsByLabelName string, limit int) (*tsdb.Stats, error) {
	return s.db.Head().Stats(statsByLabelName, limit), nil
}

// WALReplayStatus reports a finished replay: the stores open their TSDB,
// replaying its WAL, before the API exists.
func (tsdbStatus) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return tsdb.WALReplayStatus{}, nil
}

func (s tsdbStatus) BlockMetas() ([]tsdb.BlockMeta, error) { return s.db.BlockMetas(), nil }
