package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/alerting"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/analyzer"
	"github.com/aiops-dev/aiops/analyzer/results/correlate"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/incidents"
	"github.com/aiops-dev/aiops/api/jaeger"
	"github.com/aiops-dev/aiops/api/logs"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/api/slackapp"
	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/internal/selfmon"
	"github.com/aiops-dev/aiops/remediation"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
	"github.com/aiops-dev/aiops/storage/embedded"
)

type serveCommand struct {
	cmd *kingpin.CmdClause

	configFile     string
	dataDir        string
	httpAddr       string
	otlpGRPCAddr   string
	otlpHTTPAddr   string
	storageBackend string
	clickhouseAddr string
	adminTokenFile string
	logLevel       string
	logFormat      string
}

func newServeCommand(app *kingpin.Application) *serveCommand {
	c := &serveCommand{}
	c.cmd = app.Command("serve", `Run the aiops server: all-in-one on the embedded store by default, or the role the config file names.

Roles: all-in-one (OTLP in, store, query API, analyzer, alerting), collector (OTLP in, Kafka out),
ingester (Kafka in, ClickHouse out). Endpoints on --http-addr: the Prometheus-compatible query API
under /api/v1/, the Alertmanager v2 API under /api/v2/, the Slack app under /slack/ (with the slack:
section; Slack-signed, no token), POST /-/reload, /metrics, /healthz
(liveness: the process is healthy) and /readyz (readiness: it can accept data and keep it; it
says "degraded" while it does so without ClickHouse). All but the health probes and /slack/ need a
bearer token (see aiops token --help). Flags override the config file; SIGHUP reloads rules and
the Alertmanager configuration.`).Default()
	c.cmd.Flag("config", "YAML configuration file (see deploy/examples/). Without it, defaults apply.").PlaceHolder("FILE").StringVar(&c.configFile)
	c.cmd.Flag("data-dir", "Directory of the embedded store, the on-disk queue, silences and detector state (config: storage.embedded.data_dir; default ./data).").PlaceHolder("DIR").StringVar(&c.dataDir)
	c.cmd.Flag("http-addr", "Listen address of the HTTP APIs, /metrics and health probes (config: server.http_addr; default :9090).").PlaceHolder("ADDR").StringVar(&c.httpAddr)
	c.cmd.Flag("otlp-grpc-addr", `Listen address of OTLP/gRPC (config: collector.otlp.grpc_endpoint; default 127.0.0.1:4317; "off" disables; other interfaces need collector.otlp.auth).`).PlaceHolder("ADDR").StringVar(&c.otlpGRPCAddr)
	c.cmd.Flag("otlp-http-addr", `Listen address of OTLP/HTTP (config: collector.otlp.http_endpoint; default 127.0.0.1:4318; "off" disables; other interfaces need collector.otlp.auth).`).PlaceHolder("ADDR").StringVar(&c.otlpHTTPAddr)
	c.cmd.Flag("storage", "Storage backend: embedded or clickhouse (config: storage.backend; default embedded).").EnumVar(&c.storageBackend, BackendEmbedded, BackendClickHouse)
	c.cmd.Flag("clickhouse-addr", "ClickHouse native protocol address (config: storage.clickhouse.addresses; default 127.0.0.1:9000).").PlaceHolder("HOST:PORT").StringVar(&c.clickhouseAddr)
	c.cmd.Flag("admin-token-file", "File holding the bootstrap admin token (config: server.admin_token_file). Without it, one is created in <data-dir>/admin.token.").PlaceHolder("FILE").StringVar(&c.adminTokenFile)
	c.cmd.Flag("log.level", "Log level: debug, info, warn or error.").Default("info").EnumVar(&c.logLevel, "debug", "info", "warn", "error")
	c.cmd.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").EnumVar(&c.logFormat, "logfmt", "json")
	return c
}

func (c *serveCommand) fullCommand() string { return c.cmd.FullCommand() }

// config loads the file, if any, and lays the flags that were given over it.
func (c *serveCommand) config() (Config, error) {
	cfg := DefaultConfig()
	if c.configFile != "" {
		var err error
		if cfg, err = LoadConfig(c.configFile); err != nil {
			return cfg, err
		}
	}
	for _, f := range []struct {
		flag string
		dst  *string
	}{
		{c.dataDir, &cfg.Storage.Embedded.DataDir},
		{c.httpAddr, &cfg.Server.HTTPAddr},
		{c.otlpGRPCAddr, &cfg.Collector.OTLP.GRPCEndpoint},
		{c.otlpHTTPAddr, &cfg.Collector.OTLP.HTTPEndpoint},
		{c.storageBackend, &cfg.Storage.Backend},
		{c.adminTokenFile, &cfg.Server.AdminTokenFile},
	} {
		if f.flag != "" {
			*f.dst = f.flag
		}
	}
	if c.clickhouseAddr != "" {
		cfg.Storage.ClickHouse.Addresses = []string{c.clickhouseAddr}
	}
	return cfg, cfg.finish()
}

func (c *serveCommand) run(ctx context.Context, _, stderr io.Writer) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	logger := newLogger(stderr, c.logLevel, c.logFormat)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	logger.Info("Starting aiops", "version", versionString(), "role", cfg.Role, "storage", cfg.Storage.Backend)
	if err := privateState(cfg, logger); err != nil {
		return fmt.Errorf("state directories: %w", err)
	}
	return serve(ctx, cfg, logger, reg)
}

// component is a long-running part of the server. Run blocks until ctx is
// done, then shuts the component down, flushing what it holds.
type component interface {
	Run(ctx context.Context) error
}

// server is one aiops process.
type server struct {
	cfg    Config
	logger *slog.Logger
	reg    *prometheus.Registry

	// app serves everything but the health probes; it is set once the
	// store is open and the components are built.
	app   atomic.Pointer[http.Handler]
	ready atomic.Pointer[func(context.Context) error]
	// degraded and healthy are the store's, when it reports them.
	degraded atomic.Pointer[func(context.Context) error]
	healthy  atomic.Pointer[func() error]
}

// degradedReporter is a store that can take and keep writes while part
// of it is down: the ClickHouse store, whose write-ahead log takes
// commits while ClickHouse does not answer.
type degradedReporter interface {
	Degraded(ctx context.Context) error
}

// healthReporter is a store that can fail in a way only a restart
// repairs.
type healthReporter interface {
	Healthy() error
}

func serve(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) error {
	s := &server{cfg: cfg, logger: logger, reg: reg}

	// The listener comes first, so that probes answer (not ready) while
	// the store is still being opened, e.g. while ClickHouse is down.
	ln, err := listenHTTP(cfg.Server)
	if err != nil {
		return err
	}
	srv := newHTTPServer(cfg.Server, http.HandlerFunc(s.serveHTTP), reg)
	httpErr := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			httpErr <- fmt.Errorf("http server: %w", err)
		}
	}()
	logger.Info("Serving HTTP", "addr", ln.Addr().String())
	defer func() {
		shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.Server.ShutdownTimeout))
		defer stop()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			logger.Warn("HTTP shutdown incomplete", "err", err)
		}
	}()

	var store storage.Store
	if cfg.Role != RoleCollector {
		if store, err = openStoreRetrying(ctx, cfg.Storage, logger, reg); err != nil {
			return err
		}
		defer func() {
			if err := store.Close(); err != nil {
				logger.Error("Closing storage failed", "err", err)
			}
		}()
	}

	comps, closeAll, err := s.build(ctx, store)
	if err != nil {
		return err
	}
	defer closeAll()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(comps))
	for _, comp := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := comp.Run(runCtx); err != nil {
				errc <- err
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("Shutting down")
	case runErr = <-errc:
		logger.Error("Component failed, shutting down", "err", runErr)
	case runErr = <-httpErr:
		logger.Error("HTTP server failed, shutting down", "err", runErr)
	}
	// Components stop (the collector flushing into the store) before the
	// store closes, in the deferred calls above.
	cancel()
	wg.Wait()
	return runErr
}

// build creates the role's components and mounts their HTTP handlers.
func (s *server) build(ctx context.Context, store storage.Store) (comps []component, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	// scopes says which scope a component's own routes need, before
	// accessPolicy's general rule.
	var scopes []func(*http.Request) (auth.Scope, bool)
	// Error returns set closeAll to nil, so the cleanup keeps its own copy.
	cleanup := closeAll
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	cfg, logger := s.cfg, s.logger

	var events storage.EventStore
	if store != nil {
		events = store
	}
	// The credentials guard the HTTP APIs and, with collector.otlp.auth:
	// token, OTLP.
	guard, err := newAuthMiddleware(ctx, cfg, events, logger.With("component", "auth"), s.reg)
	if err != nil {
		return nil, nil, err
	}

	col, err := collector.New(cfg.Collector, collector.Deps{Store: store, Logger: logger, Registerer: s.reg, Authenticator: ingestAuth{guard.Auth}})
	if err != nil {
		return nil, nil, err
	}
	comps = append(comps, col)

	mux := http.NewServeMux()
	var slackMux *http.ServeMux
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))

	readyChecks := []func(context.Context) error{func(context.Context) error {
		select {
		case <-col.Started():
			return nil
		default:
			return errors.New("collector not started")
		}
	}}
	if store != nil {
		readyChecks = append(readyChecks, store.Ready)
		if d, ok := store.(degradedReporter); ok {
			f := d.Degraded
			s.degraded.Store(&f)
		}
		if h, ok := store.(healthReporter); ok {
			f := h.Healthy
			s.healthy.Store(&f)
		}
	}
	readyChecks = append(readyChecks, col.Ready)

	// aiops's own metrics, into its own store (collector role: no store).
	if store != nil && cfg.SelfMonitoring.Enabled() {
		rec, err := selfmon.New(cfg.SelfMonitoring, selfmon.Deps{Gatherer: s.reg, Appendable: store,
			Instance: selfInstance(cfg.Server.HTTPAddr), Logger: logger.With("component", "selfmon"), Registerer: s.reg})
		if err != nil {
			return nil, nil, err
		}
		comps = append(comps, rec)
	}

	if cfg.Role == RoleAllInOne {
		engine, ruleEngine, err := newQueryEngines(cfg.Query, logger, s.reg)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { engine.Close(); ruleEngine.Close() })

		// In an HA pair, incidents and remediation start as followers and
		// act while this replica holds the lease; the analyzer scores
		// its share of the series.
		var ha *haNode
		if cfg.HA.Enabled() {
			if ha, err = newHANode(cfg.HA, store, logger, s.reg); err != nil {
				return nil, nil, err
			}
		}

		if cfg.analyzerEnabled() {
			deps := analyzer.Deps{
				Queryable:  store,
				Appendable: store,
				Events:     store,
				Logger:     logger.With("component", "analyzer"),
				Registerer: s.reg,
			}
			if ha != nil {
				deps.Shard = ha.owns
			}
			an, err := analyzer.New(cfg.Analyzer, deps)
			if err != nil {
				return nil, nil, err
			}
			comps = append(comps, an)
		}

		// Incidents rank root causes over the store the analyzer writes
		// its anomalies to, whether it runs here, elsewhere or not at all.
		inc, err := incident.New(ctx, cfg.Incidents, incident.Deps{
			Events:     store,
			RootCauses: correlate.StoreRanker{Events: store, Spans: store, Logger: logger.With("component", "root-causes")},
			Logger:     logger.With("component", "incidents"),
			Registerer: s.reg,
			Standby:    ha != nil,
		})
		if err != nil {
			return nil, nil, err
		}
		comps = append(comps, inc)
		if ha != nil {
			ha.inc = inc
			comps = append(comps, ha)
		}

		al, err := alerting.New(cfg.Alerting, alerting.Deps{
			Storage:    store,
			Engine:     ruleEngine,
			Parser:     promapi.NewParser(cfg.Query),
			GroupSinks: []notify.Notifier{inc},
			Logger:     logger,
			Registerer: s.reg,
		})
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { al.Close() })
		comps = append(comps, al)
		s.watchSIGHUP(al)

		opts := promapi.Options{
			Config:        cfg.Query,
			Storage:       store,
			Engine:        engine,
			Rules:         al.RulesRetriever,
			Alertmanagers: al.AlertmanagerRetriever,
			BuildInfo:     promapi.BinaryBuildInfo(version),
			Logger:        logger.With("component", "query-api"),
			Registerer:    s.reg,
			Gatherer:      s.reg,
		}
		if md, ok := store.(promapi.MetadataSource); ok {
			opts.Metadata = md
		}
		api, err := promapi.New(opts)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { api.Close() })
		mux.Handle(promapi.Prefix+"/", api.Handler())
		mux.Handle("/api/v2/", al.APIHandler())
		mux.Handle("/-/reload", al.ReloadHandler())

		silencer := incident.NewSilencer(al.Alertmanager().Silences(), inc, nil)
		incAPI, err := incidents.New(incidents.Options{
			Incidents:    inc,
			Alertmanager: al.Alertmanager(),
			Silences:     silencer,
			Events:       store,
			Queryable:    store,
			Logger:       logger.With("component", "incidents-api"),
		})
		if err != nil {
			return nil, nil, err
		}
		// Its patterns are more specific than the query API's "/api/v1/".
		incAPI.Mount(mux)

		traceAPI, err := jaeger.New(jaeger.Options{Config: cfg.Traces, Spans: store, Logger: logger.With("component", "trace-api")})
		if err != nil {
			return nil, nil, err
		}
		traceAPI.Mount(mux)
		logAPI, err := logs.New(logs.Options{Config: cfg.Logs, Records: store, Logger: logger.With("component", "logs-api")})
		if err != nil {
			return nil, nil, err
		}
		logAPI.Mount(mux)

		// Remediation comes before Slack, which approves and runs runbooks
		// through it.
		var rem *remediation.Remediation
		if cfg.Remediation.Enabled() {
			extURL, err := url.Parse(cfg.Alerting.ExternalURL)
			if err != nil {
				return nil, nil, fmt.Errorf("alerting.external_url: %w", err)
			}
			rem, err = remediation.New(ctx, cfg.Remediation, remediation.Deps{
				Events: store, Queryable: store, Engine: ruleEngine,
				Parser:    promapi.NewParser(cfg.Query),
				Incidents: inc, Feed: inc.Feed(incident.FeedOptions{Logger: logger}), FeedHead: inc.FeedHead,
				ExternalURL: extURL,
				Logger:      logger.With("component", "remediation"),
				Registerer:  s.reg,
				Standby:     ha != nil,
			})
			if err != nil {
				return nil, nil, err
			}
			comps = append(comps, rem)
			if ha != nil {
				ha.rem = rem
			}
			rem.Mount(mux)
			scopes = append(scopes, rem.Scope)
		}

		if cfg.Slack.Enabled() {
			query := slackapp.QueryFunc(rules.EngineQueryFunc(engine, store))
			slackComps, slackApp, err := s.buildSlack(inc, silencer, store, rem, query, rangeQueryFunc(engine, store), ha)
			if err != nil {
				return nil, nil, err
			}
			comps = append(comps, slackComps...)
			if slackApp != nil {
				closers = append(closers, slackApp.Close)
			}
			if slackApp != nil && cfg.Slack.SigningSecretFile != "" {
				// Slack's requests carry Slack's signature, not an aiops
				// token: the app checks them itself, outside the guard.
				slackMux = http.NewServeMux()
				if err := slackApp.Mount(slackMux); err != nil {
					return nil, nil, err
				}
			}
		}
	}

	guard.Policy = withScopes(scopes, guard.Policy)
	app := guard.Wrap(mux)
	if slackMux != nil {
		top := http.NewServeMux()
		top.Handle("/slack/", slackMux)
		top.Handle("/", app)
		app = top
	}
	s.app.Store(&app)
	ready := func(ctx context.Context) error {
		for _, check := range readyChecks {
			if err := check(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	s.ready.Store(&ready)
	return comps, closeAll, nil
}

// sharedSeen is where an HA pair's replicas share the Slack signatures
// they accepted; nil for a single aiops.
func sharedSeen(ha *haNode, events storage.EventStore) slackapp.SeenEvents {
	if ha == nil {
		return nil
	}
	return events
}

// buildSlack builds the Slack notifier and, when a signing secret or an
// app-level token is configured, the app answering commands and buttons
// (over /slack/, Socket Mode, or both). With remediation (rem not nil),
// the app approves, denies and runs runbooks through its engine, and
// executions waiting for approval are asked about in their incidents'
// threads; without it, those commands answer that it is not configured.
// In an HA pair (ha not nil) the notifier keeps its state in the store's
// events and, with the approval requests, runs only while this replica
// holds the lease; the app answers on every replica.
func (s *server) buildSlack(inc *incident.Manager, silencer *incident.Silencer, events storage.EventStore, rem *remediation.Remediation, query slackapp.QueryFunc, queryRange slacknotify.QueryRangeFunc, ha *haNode) ([]component, *slackapp.App, error) {
	cfg, logger := s.cfg.Slack, s.logger.With("component", "slack")
	token, err := slacknotify.ReadSecretFile(cfg.BotTokenFile)
	if err != nil {
		return nil, nil, fmt.Errorf("slack.bot_token_file: %w", err)
	}
	notifier, err := slacknotify.New(cfg.Config, slacknotify.Deps{
		Incidents: inc, Feed: inc.Feed(incident.FeedOptions{Logger: logger}), Head: inc.FeedHead,
		BotToken: token, Logger: logger, Registerer: s.reg, QueryRange: queryRange, Events: events,
		// The button is answered by the app, with the engine's runbooks.
		OfferRunbooks: rem != nil && (cfg.SigningSecretFile != "" || cfg.AppTokenFile != ""),
		Journal:       journalOf(ha, events),
	})
	if err != nil {
		return nil, nil, err
	}
	var comps, termed []component
	// leaderOnly runs c during the terms of the lease in an HA pair,
	// always otherwise.
	leaderOnly := func(c component) {
		if ha != nil {
			termed = append(termed, c)
		} else {
			comps = append(comps, c)
		}
	}
	// Given to the HA node once all is built: on an error nothing runs.
	built := func() {
		if ha != nil {
			ha.termed = append(ha.termed, termed...)
		}
	}
	leaderOnly(notifier)
	if cfg.SigningSecretFile == "" && cfg.AppTokenFile == "" {
		logger.Warn("Neither slack.signing_secret_file nor slack.app_token_file is set: incidents are posted to Slack, but commands and buttons are not answered")
		built()
		return comps, nil, nil
	}
	fail := func(err error) ([]component, *slackapp.App, error) {
		notifier.Close()
		return nil, nil, err
	}
	var secret slacknotify.Secret
	if cfg.SigningSecretFile != "" {
		if secret, err = slacknotify.ReadSecretFile(cfg.SigningSecretFile); err != nil {
			return fail(fmt.Errorf("slack.signing_secret_file: %w", err))
		}
	}
	var remedy slackapp.Remediation = slackapp.NoRemediation{}
	if rem != nil {
		remedy = slackRemediation{rem.Engine()}
		// Asked only where someone can press the buttons.
		leaderOnly(newApprovalWatcher(notifier, rem.Engine(), logger.With("component", "slack-approvals")))
	}
	app, err := slackapp.New(slackapp.Options{
		Config: cfg, SigningSecret: secret, Incidents: inc, Silences: silencer,
		Remediation: remedy, Slack: notifier.Client(),
		Query: query, QueryRange: queryRange, Events: events, QueryTimeout: time.Duration(s.cfg.Query.Timeout),
		Auditor: &auth.EventAuditor{Events: events, Logger: logger}, Logger: logger, Registerer: s.reg,
		SharedSeen: sharedSeen(ha, events),
	})
	if err != nil {
		return fail(err)
	}
	if cfg.AppTokenFile != "" {
		appToken, err := slacknotify.ReadSecretFile(cfg.AppTokenFile)
		if err != nil {
			return fail(fmt.Errorf("slack.app_token_file: %w", err))
		}
		sm, err := app.SocketMode(appToken)
		if err != nil {
			return fail(err)
		}
		comps = append(comps, sm)
	}
	logger.Info("Slack app ready", "channel", cfg.Channel, "http", cfg.SigningSecretFile != "", "socket_mode", cfg.AppTokenFile != "", "remediation", rem != nil, "ha", ha != nil)
	built()
	return comps, app, nil
}

// journalOf is where the Slack notifier of an HA pair keeps its state:
// the store, which the next holder of the lease reads; nil (a file) for
// a node alone.
func journalOf(ha *haNode, events storage.EventStore) storage.EventStore {
	if ha == nil {
		return nil
	}
	return events
}

// rangeQueryFunc evaluates range queries on the engine over q, for the
// charts the Slack notifier and /aiops query draw.
func rangeQueryFunc(engine promql.QueryEngine, q promstorage.Queryable) slacknotify.QueryRangeFunc {
	return func(ctx context.Context, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
		qry, err := engine.NewRangeQuery(ctx, q, nil, expr, start, end, step)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Matrix()
	}
}

// newQueryEngines returns the engine of the query API and the one rules
// are evaluated with: the same configuration, but slots of their own, so
// that queries, however heavy, never delay rule evaluation and alerts.
// Their metrics (prometheus_engine_*) carry engine="query" or "rules".
func newQueryEngines(cfg promapi.Config, logger *slog.Logger, reg prometheus.Registerer) (api, rules *promapi.Engine, err error) {
	api, err = promapi.NewEngine(cfg, logger.With("component", "query-engine"),
		prometheus.WrapRegistererWith(prometheus.Labels{"engine": "query"}, reg))
	if err != nil {
		return nil, nil, err
	}
	rules, err = promapi.NewEngine(cfg.ForRules(), logger.With("component", "rule-engine"),
		prometheus.WrapRegistererWith(prometheus.Labels{"engine": "rules"}, reg))
	if err != nil {
		api.Close()
		return nil, nil, err
	}
	return api, rules, nil
}

// serveHTTP answers the health probes itself and hands everything else
// to the application once it is built.
//
// /healthz (liveness) fails only when the process cannot recover without
// a restart. /readyz (readiness) succeeds while aiops can accept data
// and keep it: the collector listens and the store takes writes (the
// embedded store has room on its disk and a whole log; the ClickHouse
// store's write-ahead log is not full, whether or not ClickHouse
// answers, which the body then calls degraded).
func (s *server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		if h := s.healthy.Load(); h != nil {
			if err := (*h)(); err != nil {
				http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
		return
	case "/readyz":
		ready := s.ready.Load()
		if ready == nil {
			http.Error(w, "not ready: starting", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := (*ready)(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if d := s.degraded.Load(); d != nil {
			if err := (*d)(ctx); err != nil {
				io.WriteString(w, "ready, degraded: "+err.Error()+"\n")
				return
			}
		}
		io.WriteString(w, "ready\n")
		return
	}
	app := s.app.Load()
	if app == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "aiops is starting", http.StatusServiceUnavailable)
		return
	}
	(*app).ServeHTTP(w, r)
}

// watchSIGHUP reloads rules and the Alertmanager configuration on SIGHUP,
// as Prometheus and Alertmanager do.
func (s *server) watchSIGHUP(al *alerting.Alerting) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := al.Reload(context.Background()); err != nil {
				s.logger.Error("Reload on SIGHUP failed", "err", err)
				continue
			}
			s.logger.Info("Reloaded rules and Alertmanager configuration")
		}
	}()
}

// openStoreRetrying opens the store. ClickHouse may be down when aiops
// starts: with the ClickHouse store's write-ahead log (the all-in-one
// role's default) the store opens at once and takes writes into the log,
// connecting in the background (/readyz says degraded meanwhile);
// without it, opening is tried again with backoff, /readyz failing
// meanwhile.
func openStoreRetrying(ctx context.Context, cfg StorageConfig, logger *slog.Logger, reg prometheus.Registerer) (storage.Store, error) {
	logger = logger.With("component", "storage")
	switch cfg.Backend {
	case BackendEmbedded:
		s, err := embedded.Open(cfg.Embedded, logger, reg)
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		return s, nil
	case BackendClickHouse:
		var lastErr error
		s, err := backoff.Retry(ctx, func() (storage.Store, error) {
			s, err := clickhouse.Open(ctx, cfg.ClickHouse, logger, clickhouse.WithRegisterer(reg), clickhouse.WithDeferredConnect())
			if err != nil && !errors.Is(err, storage.ErrUnavailable) {
				return nil, backoff.Permanent(err)
			}
			lastErr = err
			return s, err
		},
			// Until it is reachable or aiops stops: no time limit.
			backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: time.Second, Multiplier: 2, MaxInterval: 30 * time.Second}),
			backoff.WithMaxElapsedTime(0),
			backoff.WithNotify(func(err error, wait time.Duration) {
				logger.Warn("ClickHouse unreachable; retrying", "in", wait, "err", err)
			}))
		if err != nil && ctx.Err() != nil && lastErr != nil {
			err = lastErr // say why it never opened, not only that aiops stopped
		}
		if err != nil {
			return nil, fmt.Errorf("open clickhouse store: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("storage.backend: unknown backend %q", cfg.Backend)
}

// selfInstance is the instance label of aiops's own series: the host and
// the port of the listener that serves /metrics, as a Prometheus
// scraping this node would name it.
func selfInstance(httpAddr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil || port == "" {
		return host
	}
	return net.JoinHostPort(host, port)
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level)) // kingpin has checked the value
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
