package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

type serveCommand struct {
	cmd *kingpin.CmdClause

	configFile     string
	dataDir        string
	httpAddr       string
	storageBackend string
	adminTokenFile string
	logLevel       string
	logFormat      string
}

func newServeCommand(app *kingpin.Application) *serveCommand {
	c := &serveCommand{}
	c.cmd = app.Command("serve", `Run the aiops server: all-in-one on the embedded store by default, or the role the config file names.

Endpoints on --http-addr: the Prometheus-compatible query API under /api/v1/, /metrics (self-metrics),
/healthz (liveness) and /readyz (fails while storage is unreachable). Flags override the config file.`).Default()
	c.cmd.Flag("config", "YAML configuration file (see deploy/examples/). Without it, defaults apply.").PlaceHolder("FILE").StringVar(&c.configFile)
	c.cmd.Flag("data-dir", "Directory of the embedded store and the on-disk queues (config: storage.embedded.data_dir).").PlaceHolder("DIR").StringVar(&c.dataDir)
	c.cmd.Flag("http-addr", "Listen address of the HTTP APIs, /metrics and health probes (config: server.http_addr; default :9090).").PlaceHolder("ADDR").StringVar(&c.httpAddr)
	c.cmd.Flag("storage", "Storage backend (config: storage.backend; default embedded).").EnumVar(&c.storageBackend, BackendEmbedded, BackendClickHouse)
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
	if c.dataDir != "" {
		cfg.Storage.Embedded.DataDir = c.dataDir
	}
	if c.httpAddr != "" {
		cfg.Server.HTTPAddr = c.httpAddr
	}
	if c.storageBackend != "" {
		cfg.Storage.Backend = c.storageBackend
	}
	if c.adminTokenFile != "" {
		cfg.Server.AdminTokenFile = c.adminTokenFile
	}
	return cfg, cfg.Validate()
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
	return serve(ctx, cfg, logger, reg)
}

// component is a long-running part of the server. Run blocks until ctx is
// done, then shuts the component down, flushing what it holds.
type component interface {
	Run(ctx context.Context) error
}

func serve(ctx context.Context, cfg Config, logger *slog.Logger, reg *prometheus.Registry) error {
	store, err := openStore(ctx, cfg.Storage, logger, reg)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("Closing storage failed", "err", err)
		}
	}()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := store.Ready(rctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))

	guard, err := newAuthMiddleware(cfg, store, logger)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Server.HTTPAddr)
	if err != nil {
		return fmt.Errorf("server.http_addr: %w", err)
	}
	srv := &http.Server{Handler: guard.Wrap(mux), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("Serving HTTP", "addr", ln.Addr().String())

	var components []component
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(components)+1)
	for _, comp := range components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := comp.Run(runCtx); err != nil {
				errc <- err
			}
		}()
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("Shutting down")
	case runErr = <-errc:
		logger.Error("Component failed, shutting down", "err", runErr)
	}
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.Server.ShutdownTimeout))
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("HTTP shutdown incomplete", "err", err)
	}
	cancel()
	wg.Wait()
	return runErr
}

func openStore(ctx context.Context, cfg StorageConfig, logger *slog.Logger, reg prometheus.Registerer) (storage.Store, error) {
	switch cfg.Backend {
	case BackendEmbedded:
		s, err := embedded.Open(cfg.Embedded, logger.With("component", "storage"), reg)
		if err != nil {
			return nil, fmt.Errorf("open embedded store: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("storage.backend %q is not available yet", cfg.Backend)
	}
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
