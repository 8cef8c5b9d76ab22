// Package engine runs the simulated workflow engine: it steps the model,
// applies the faults, judges health, records the ground truth and makes
// the telemetry, and it is what the control API acts on. One lock guards
// it all, so control actions land between steps and a run with the same
// seed and the same actions at the same steps is the same run.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// Config configures an engine.
type Config struct {
	Model  model.Config
	Levels truth.Levels
	// Step is the simulated time one tick covers; the real-time runner
	// ticks once per Step of wall time, and exports once per tick.
	Step time.Duration
	// Faults are injected at the start, each delayed by its Start.
	Faults []chaos.Spec
	// Telemetry, when not nil, makes OTLP telemetry with these options.
	Telemetry *telemetry.Options
	Logger    *slog.Logger
}

// Validate names the first bad setting.
func (c Config) Validate() error {
	var errs []error
	if err := c.Model.Validate("engine."); err != nil {
		errs = append(errs, err)
	}
	if err := c.Levels.Validate("service_levels."); err != nil {
		errs = append(errs, err)
	}
	if c.Step < 10*time.Millisecond || c.Step > 10*time.Minute {
		errs = append(errs, fmt.Errorf("step: must be in [10ms, 10m], got %s", c.Step))
	}
	return errors.Join(errs...)
}

// Engine is a running simulation.
type Engine struct {
	mu     sync.Mutex
	cfg    Config
	sys    *model.System
	chaos  chaos.Chaos
	judge  *truth.Judge
	rec    *truth.Recorder
	tel    *telemetry.Telemetry
	health truth.Health
	logger *slog.Logger
}

// New builds an engine at cfg.Model.Start with the scenario's faults
// scheduled.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sys, err := model.New(cfg.Model)
	if err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, sys: sys, judge: truth.NewJudge(cfg.Levels),
		rec: truth.NewRecorder(cfg.Model.Start, cfg.Model.Seed), logger: cfg.Logger}
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	for k, spec := range cfg.Faults {
		if _, err := e.chaos.Inject(sys, spec, sys.Now()); err != nil {
			return nil, fmt.Errorf("faults[%d]: %w", k, err)
		}
	}
	if cfg.Telemetry != nil {
		opts := *cfg.Telemetry
		if opts.Logger == nil {
			opts.Logger = e.logger
		}
		if e.tel, err = telemetry.New(sys, opts); err != nil {
			return nil, err
		}
	}
	e.health = truth.Health{Healthy: true}
	return e, nil
}

// sink fans the model's requests and jobs out to the judge and the
// telemetry.
type sink struct {
	judge *truth.Judge
	tel   *telemetry.Telemetry
}

func (s sink) Request(r *model.Request) {
	s.judge.Request(r)
	if s.tel != nil {
		s.tel.Request(r)
	}
}

func (s sink) Job(j *model.Job) {
	if s.tel != nil {
		s.tel.Job(j)
	}
}

// Tick advances the simulation by one step and returns that step's
// metrics (nil without telemetry) for Export.
func (e *Engine) Tick(ctx context.Context) ([]*metricdata.ResourceMetrics, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now, step := e.sys.Now(), e.sys.Tick()
	started, ended := e.chaos.Apply(e.sys, now)
	for _, f := range ended {
		e.rec.FaultEnded(now, step, f)
		e.logger.Info("fault ended", "id", f.ID, "fault", f.Fault, "target", f.Target, "reason", f.EndReason)
	}
	for _, f := range started {
		e.rec.FaultStarted(now, step, f)
		e.logger.Info("fault injected", "id", f.ID, "fault", f.Fault, "target", f.Target, "intensity", f.Intensity, "duration", f.Duration)
	}
	var s sink
	s.judge = e.judge
	if e.tel != nil {
		if err := e.tel.Begin(e.cfg.Step); err != nil {
			return nil, err
		}
		s.tel = e.tel
	}
	e.sys.Step(e.cfg.Step, s)
	h := e.judge.Assess(e.sys)
	if h.Healthy != e.health.Healthy {
		e.logger.Info("health changed", "healthy", h.Healthy, "time", e.sys.Now())
	}
	e.health = h
	e.rec.Health(e.sys.Now(), e.sys.Tick(), h)
	if e.tel == nil {
		return nil, nil
	}
	return e.tel.Collect(ctx)
}

// Export sends a tick's metrics and flushes spans and logs. It does not
// hold the engine's lock, so control actions are not held up by the
// network.
func (e *Engine) Export(ctx context.Context, batch []*metricdata.ResourceMetrics) error {
	if e.tel == nil {
		return nil
	}
	return errors.Join(e.tel.Export(ctx, batch), e.tel.Flush(ctx))
}

// Run ticks in real time until ctx is done: the simulated clock is kept
// at the wall clock's pace from the moment Run starts, catching up by
// several ticks at once (at most maxCatchUp) when export was slow.
func (e *Engine) Run(ctx context.Context, wallNow func() time.Time) error {
	const maxCatchUp = 10
	begin := wallNow()
	ticker := time.NewTicker(e.cfg.Step)
	defer ticker.Stop()
	var lastErr string
	for done := 0; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		due := int(wallNow().Sub(begin) / e.cfg.Step)
		for n := 0; done < due && n < maxCatchUp; n++ {
			batch, err := e.Tick(ctx)
			if err == nil {
				// An export gets at most one step: a slow or unreachable
				// aiops loses that step's telemetry, as a real engine's SDK
				// drops what it cannot send, but never holds the engine
				// (and its ground truth) back.
				exportCtx, cancel := context.WithTimeout(ctx, e.cfg.Step)
				err = e.Export(exportCtx, batch)
				cancel()
			}
			if err != nil && ctx.Err() == nil && err.Error() != lastErr {
				e.logger.Warn("telemetry export failed", "err", err)
				lastErr = err.Error()
			} else if err == nil {
				lastErr = ""
			}
			done++
		}
		if due-done > maxCatchUp {
			// Too far behind: let the simulated clock lag rather than spin.
			done = due
		}
	}
}

// RunFor ticks back to back, without waiting for the wall clock, until d
// of simulated time has passed or ctx is done: for benchmarks and for
// replaying a scenario faster than real time. The simulated clock runs
// ahead of the wall clock.
func (e *Engine) RunFor(ctx context.Context, d time.Duration) error {
	end := e.Now().Add(d)
	var lastErr string
	for e.Now().Before(end) && ctx.Err() == nil {
		batch, err := e.Tick(ctx)
		if err == nil {
			err = e.Export(ctx, batch)
		}
		if err != nil && err.Error() != lastErr {
			e.logger.Warn("telemetry export failed", "err", err)
			lastErr = err.Error()
		}
	}
	return nil
}

// Shutdown flushes and stops the telemetry.
func (e *Engine) Shutdown(ctx context.Context) error {
	if e.tel == nil {
		return nil
	}
	return e.tel.Shutdown(ctx)
}

// Timeline returns the ground truth so far.
func (e *Engine) Timeline() truth.Timeline {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rec.Timeline()
}

// Health returns the latest judgement.
func (e *Engine) Health() truth.Health {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.health
}

// Stats returns the telemetry counts (zero without telemetry).
func (e *Engine) Stats() telemetry.Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tel == nil {
		return telemetry.Stats{}
	}
	return e.tel.Stats()
}

// Now returns the simulated time.
func (e *Engine) Now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sys.Now()
}

// Inspect runs f with the model while no step runs, for tests and tools
// that read state the State view does not carry.
func (e *Engine) Inspect(f func(*model.System)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e.sys)
}
