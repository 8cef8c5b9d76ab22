// Command workflow-sim is a simulated AI workflow engine for aiops to
// watch and heal: an api gateway, an auth service and Celery-style
// workers with PostgreSQL, Redis, a job queue and LLM providers, whose
// telemetry it sends over OTLP with the OpenTelemetry SDK. A control API
// restarts, scales, trips breakers and injects faults; /timeline is the
// ground truth. See docs/SIMULATOR.md.
//
//	workflow-sim --otlp-endpoint 127.0.0.1:4317 --control-addr :8088 \
//	  --token-file sim.token --scenario deploy/sim/demo.yaml --seed 1 --export-interval 1s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"

	"github.com/aiops-dev/aiops/sim/control"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/scenario"
	"github.com/aiops-dev/aiops/sim/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// flags are the command line.
type flags struct {
	otlpEndpoint   string
	controlAddr    string
	tokenFile      string
	scenarioFile   string
	seed           uint64
	seedSet        bool
	start          string
	exportInterval time.Duration
	traceRatio     float64
	maxTraces      float64
	runFor         time.Duration
	fast           bool
	timelineOut    string
	logLevel       string
}

// validate names the flag of the first problem.
func (f *flags) validate() error {
	var errs []error
	if f.otlpEndpoint != "off" {
		if _, _, err := net.SplitHostPort(f.otlpEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("--otlp-endpoint: want HOST:PORT or off, got %q", f.otlpEndpoint))
		}
	}
	if _, _, err := net.SplitHostPort(f.controlAddr); err != nil {
		errs = append(errs, fmt.Errorf("--control-addr: want [HOST]:PORT, got %q", f.controlAddr))
	}
	if f.tokenFile == "" {
		errs = append(errs, errors.New("--token-file: must be set (the control API's bearer token)"))
	}
	if f.exportInterval < 10*time.Millisecond || f.exportInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("--export-interval: must be in [10ms, 10m], got %s", f.exportInterval))
	}
	if f.traceRatio < 0 || f.traceRatio > 1 {
		errs = append(errs, fmt.Errorf("--trace-ratio: must be in [0, 1], got %v", f.traceRatio))
	}
	if f.maxTraces < 0 {
		errs = append(errs, fmt.Errorf("--max-traces-per-second: must be >= 0, got %v", f.maxTraces))
	}
	if f.runFor < 0 {
		errs = append(errs, fmt.Errorf("--run-for: must be >= 0, got %s", f.runFor))
	}
	if f.fast && f.runFor == 0 {
		errs = append(errs, errors.New("--run-for: must be set with --fast (the simulated time to run)"))
	}
	if f.start != "" && f.start != "now" {
		if _, err := time.Parse(time.RFC3339, f.start); err != nil {
			errs = append(errs, fmt.Errorf("--start: want an RFC 3339 time or now, got %q", f.start))
		}
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("workflow-sim", "A simulated AI workflow engine that sends OpenTelemetry to aiops and takes control actions and faults over HTTP.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	terminated, exitCode := false, 0
	app.Terminate(func(code int) { terminated, exitCode = true, code })
	app.HelpFlag.Short('h')
	var f flags
	app.Flag("otlp-endpoint", `OTLP/gRPC endpoint to send metrics, traces and logs to, or "off".`).Default("127.0.0.1:4317").StringVar(&f.otlpEndpoint)
	app.Flag("control-addr", "Listen address of the control API.").Default(":8088").StringVar(&f.controlAddr)
	app.Flag("token-file", "File holding the control API's bearer token.").PlaceHolder("FILE").StringVar(&f.tokenFile)
	app.Flag("scenario", "Scenario file: engine size, service levels and a timed sequence of faults (see deploy/sim).").PlaceHolder("FILE").StringVar(&f.scenarioFile)
	app.Flag("seed", "Seed of every random draw; overrides the scenario's engine.seed (default 1).").IsSetByUser(&f.seedSet).Uint64Var(&f.seed)
	app.Flag("start", `Simulated time of the first step (RFC 3339), or "now"; overrides the scenario's engine.start.`).Default("").StringVar(&f.start)
	app.Flag("export-interval", "Simulated time per step, and wall time between exports.").Default("5s").DurationVar(&f.exportInterval)
	app.Flag("trace-ratio", "Share of successful requests traced (failed ones always are, within the cap).").Default("0.05").Float64Var(&f.traceRatio)
	app.Flag("max-traces-per-second", "Cap on traces started per simulated second.").Default("50").Float64Var(&f.maxTraces)
	app.Flag("run-for", "Stop after this much time (0: until interrupted); simulated time with --fast.").Default("0s").DurationVar(&f.runFor)
	app.Flag("fast", "Run steps back to back instead of in real time, the simulated clock ahead of the wall clock (benchmarks, replays).").BoolVar(&f.fast)
	app.Flag("timeline-out", "Write the ground-truth timeline as JSON to this file on exit.").PlaceHolder("FILE").StringVar(&f.timelineOut)
	app.Flag("log.level", "Log level: debug, info, warn or error.").Default("info").EnumVar(&f.logLevel, "debug", "info", "warn", "error")
	_, err := app.Parse(args)
	if terminated {
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "workflow-sim: %v\n", err)
		return 2
	}
	if err := f.validate(); err != nil {
		fmt.Fprintf(stderr, "workflow-sim: %v\n", err)
		return 2
	}
	if err := serve(ctx, &f, stderr); err != nil {
		fmt.Fprintf(stderr, "workflow-sim: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, f *flags, stderr io.Writer) error {
	var level slog.Level
	_ = level.UnmarshalText([]byte(f.logLevel))
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	tok, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	if token == "" {
		return fmt.Errorf("--token-file: %s is empty", f.tokenFile)
	}

	sc := scenario.Default()
	if f.scenarioFile != "" {
		if sc, err = scenario.Load(f.scenarioFile); err != nil {
			return err
		}
	}
	cfg := engine.Config{Model: sc.Engine, Levels: sc.ServiceLevels, Step: f.exportInterval, Faults: sc.Specs(), Logger: logger}
	switch {
	case f.seedSet:
		cfg.Model.Seed = f.seed
	case cfg.Model.Seed == 0:
		cfg.Model.Seed = 1
	}
	switch {
	case f.start != "" && f.start != "now":
		cfg.Model.Start, _ = time.Parse(time.RFC3339, f.start)
	case f.start == "now" || cfg.Model.Start.IsZero():
		cfg.Model.Start = time.Now().Truncate(f.exportInterval)
	}
	opts := telemetry.DefaultOptions()
	opts.TraceRatio, opts.MaxTracesPerSecond, opts.Seed = f.traceRatio, f.maxTraces, cfg.Model.Seed
	if f.otlpEndpoint != "off" {
		if err := otlpExporters(ctx, f.otlpEndpoint, &opts); err != nil {
			return err
		}
	}
	cfg.Telemetry = &opts
	eng, err := engine.New(cfg)
	if err != nil {
		return err
	}

	handler, err := control.NewHandler(eng, token, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.controlAddr)
	if err != nil {
		return fmt.Errorf("--control-addr: %w", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("control API stopped", "err", err)
		}
	}()
	logger.Info("workflow-sim running", "control", ln.Addr().String(), "otlp", f.otlpEndpoint, "seed", cfg.Model.Seed,
		"start", cfg.Model.Start, "step", cfg.Step, "faults", len(cfg.Faults))

	var runErr error
	wallStart := time.Now()
	if f.fast {
		runErr = eng.RunFor(ctx, f.runFor)
	} else {
		runCtx := ctx
		if f.runFor > 0 {
			var cancel context.CancelFunc
			runCtx, cancel = context.WithTimeout(ctx, f.runFor)
			defer cancel()
		}
		runErr = eng.Run(runCtx, time.Now)
	}

	shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	if err := eng.Shutdown(shutdown); err != nil {
		logger.Warn("telemetry shutdown", "err", err)
	}
	st := eng.Stats()
	simulated := eng.Now().Sub(cfg.Model.Start)
	logger.Info("workflow-sim stopped", "simulated", simulated, "wall", time.Since(wallStart).Round(time.Millisecond),
		"cpu", cpuTime().Round(time.Millisecond), "requests", st.Requests, "jobs", st.Jobs,
		"points", st.Points, "spans", st.Spans, "logs", st.Logs, "metric_exports", st.Exports)
	if f.timelineOut != "" {
		b, err := json.MarshalIndent(eng.Timeline(), "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.timelineOut, b, 0o644); err != nil {
			return fmt.Errorf("--timeline-out: %w", err)
		}
	}
	return runErr
}

// cpuTime is the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// otlpExporters points the three signals at an OTLP/gRPC endpoint.
// Retries are kept short so that a missing receiver makes the simulated
// clock lag rather than stall.
func otlpExporters(ctx context.Context, endpoint string, opts *telemetry.Options) error {
	var err error
	if opts.Metrics, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(endpoint), otlpmetricgrpc.WithInsecure(),
		otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond, MaxInterval: 5 * time.Second, MaxElapsedTime: 15 * time.Second})); err != nil {
		return fmt.Errorf("--otlp-endpoint: metrics exporter: %w", err)
	}
	if opts.Spans, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure()); err != nil {
		return fmt.Errorf("--otlp-endpoint: trace exporter: %w", err)
	}
	if opts.Logs, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(endpoint), otlploggrpc.WithInsecure()); err != nil {
		return fmt.Errorf("--otlp-endpoint: log exporter: %w", err)
	}
	return nil
}
