// Package remediation is the remediation component of aiops serve: it
// loads and checks the runbooks, builds the action drivers behind their
// circuit breakers, and runs the engine and its REST API.
//
//	incident feed ─▶ engine ─▶ rails ─▶ drivers (workflow engine, Kubernetes, webhook, exec, notify, wait)
//	                   │  ▲                         │
//	   event store ◀───┘  └── PromQL verification ◀─┘ (over the store)
//
// Packages: runbook (the language), match (which runbooks apply), action
// (drivers), engine (executions and rails), api (REST). See
// docs/RUNBOOKS.md and docs/REMEDIATION.md.
package remediation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/api"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

// Deps are what remediation runs on.
type Deps struct {
	// Events keeps executions; Queryable and Engine answer PromQL (share
	// the query API's engine).
	Events    storage.EventStore
	Queryable promstorage.Queryable
	Engine    promql.QueryEngine
	// Parser checks the runbooks' PromQL as the engine parses it.
	Parser parser.Parser
	// Incidents, Feed and FeedHead connect to the incident service
	// (*incident.Manager and its Feed); nil runs on conditions and manual
	// runs only.
	Incidents engine.Incidents
	Feed      engine.Feed
	FeedHead  func() string
	// ExternalURL is what runbook templates' externalURL returns.
	ExternalURL *url.URL
	// Drivers replace drivers by name (tests); nil builds them from the
	// configuration.
	Drivers    map[string]action.Driver
	Clock      engine.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Standby makes this replica a follower that runs remediation only
	// while Lead runs (the lease holder of an HA pair).
	Standby bool
}

// Remediation is the running component.
type Remediation struct {
	standby bool
	eng     *engine.Engine
	api     *api.API
	logger  *slog.Logger
}

// LoadRunbooks reads and validates runbook files; every problem is in
// the error, one a line, as file:line:col.
func LoadRunbooks(files []string, o runbook.ValidateOptions) ([]runbook.Runbook, error) {
	rbs, probs, err := runbook.LoadFiles(files...)
	if err != nil {
		return nil, err
	}
	if len(probs) == 0 {
		probs = runbook.Validate(rbs, o)
	}
	if len(probs) > 0 {
		return nil, fmt.Errorf("runbooks have problems (aiops runbook lint shows the same):\n%w", probs)
	}
	return rbs, nil
}

// New loads the runbooks, builds the drivers and the engine (reading the
// executions in progress from the store) and the API.
func New(ctx context.Context, cfg Config, deps Deps) (*Remediation, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Events == nil || deps.Queryable == nil || deps.Engine == nil {
		return nil, errors.New("remediation: Deps.Events, Deps.Queryable and Deps.Engine are required")
	}
	rbs, err := LoadRunbooks(cfg.RunbookFiles, runbook.ValidateOptions{Parser: deps.Parser})
	if err != nil {
		return nil, fmt.Errorf("remediation.runbook_files: %w", err)
	}
	if len(rbs) == 0 {
		return nil, fmt.Errorf("remediation.runbook_files: %v name no runbook", cfg.RunbookFiles)
	}
	clock := deps.Clock
	if clock == nil {
		clock = realClock{}
	}
	drivers, secrets, err := buildDrivers(cfg, deps, clock)
	if err != nil {
		return nil, err
	}
	if err := checkDrivers(rbs, drivers, cfg); err != nil {
		return nil, err
	}
	registry := action.NewRegistry(drivers)
	breakers := action.NewBreakers(registry, action.BreakerConfig{Failures: cfg.Breaker.Failures,
		OpenFor: time.Duration(cfg.Breaker.OpenFor), Logger: deps.Logger})
	redact := func(s string) string {
		for _, ref := range secrets {
			if v, err := ref.s.Resolve(ref.key); err == nil && v != "" {
				s = strings.ReplaceAll(s, v, "<secret:"+ref.key+">")
			}
		}
		return s
	}
	eng, err := engine.New(ctx, engine.Config{
		Runbooks: rbs, Shadow: cfg.Shadow, MaintenanceWindows: cfg.MaintenanceWindows, MaxRuns: cfg.MaxRuns,
		ConditionInterval: time.Duration(cfg.ConditionInterval), History: time.Duration(cfg.History), ExternalURL: deps.ExternalURL,
		EscalateUnhandled: engine.UnhandledPolicy{After: time.Duration(cfg.EscalateUnhandled.After), Alerts: cfg.EscalateUnhandled.Alerts},
		Standby:           deps.Standby,
	}, engine.Deps{
		Events: deps.Events, Query: engine.PromQuerier{Engine: deps.Engine, Queryable: deps.Queryable}, Actions: breakers,
		Incidents: deps.Incidents, Feed: deps.Feed, FeedHead: deps.FeedHead, Parser: deps.Parser, Redact: redact,
		Clock: clock, Logger: deps.Logger, Registerer: deps.Registerer,
	})
	if err != nil {
		return nil, err
	}
	a, err := api.New(api.Options{Engine: eng, Validate: runbook.ValidateOptions{Parser: deps.Parser}, Logger: deps.Logger, Now: clock.Now})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(rbs))
	for i, rb := range rbs {
		names[i] = rb.Name
	}
	deps.Logger.Info("Remediation ready", "runbooks", strings.Join(names, ","), "drivers", strings.Join(slices.Sorted(maps.Keys(drivers)), ","), "shadow", cfg.Shadow)
	return &Remediation{standby: deps.Standby, eng: eng, api: a, logger: deps.Logger}, nil
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// buildDrivers makes every configured driver. Their secrets are read when
// a call needs them (a missing one is logged now, and fails that call);
// secrets lists them, to keep their values out of what is recorded.
func buildDrivers(cfg Config, deps Deps, clock engine.Clock) (map[string]action.Driver, []secretRef, error) {
	d := cfg.Drivers
	out := map[string]action.Driver{}
	var secrets []secretRef
	secret := func(key string, s Secret) action.Secret {
		if !s.IsSet() {
			return nil
		}
		secrets = append(secrets, secretRef{key, s})
		if _, err := s.Resolve(key); err != nil {
			deps.Logger.Warn("A driver's secret cannot be read now; calls that need it will fail until it can", "err", err)
		}
		return func() (string, error) { return s.Resolve(key) }
	}
	if w := d.Workflow; w != nil {
		drv, err := action.NewWorkflow(action.WorkflowConfig{URL: w.URL, Token: secret("remediation.drivers.workflow.token", w.Token), Timeout: time.Duration(w.Timeout)})
		if err != nil {
			return nil, nil, fmt.Errorf("remediation.drivers.workflow.%w", err)
		}
		out["workflow"] = drv
	}
	if k := d.Kubernetes; k != nil {
		drv, err := action.NewKubernetes(action.KubernetesConfig{Kubeconfig: k.Kubeconfig, Context: k.Context, Namespaces: k.Namespaces})
		if err != nil {
			return nil, nil, fmt.Errorf("remediation.drivers.kubernetes.%w", err)
		}
		out["kubernetes"] = drv
	}
	wh, err := action.NewWebhook(action.WebhookConfig{AllowedURLPrefixes: d.Webhook.AllowedURLPrefixes, MaxAttempts: d.Webhook.MaxAttempts})
	if err != nil {
		return nil, nil, fmt.Errorf("remediation.drivers.webhook.%w", err)
	}
	out["webhook"] = wh
	if len(d.Exec.Allowed) > 0 {
		ex, err := action.NewExec(action.ExecConfig{Allowed: d.Exec.Allowed, Env: d.Exec.Env})
		if err != nil {
			return nil, nil, fmt.Errorf("remediation.drivers.exec.%w", err)
		}
		out["exec"] = ex
	}
	chans := map[string]action.Channel{}
	for _, name := range slices.Sorted(maps.Keys(d.Notify.Channels)) {
		ch := d.Notify.Channels[name]
		key := "remediation.drivers.notify.channels." + name
		chans[name] = action.Channel{URL: secret(key+".url", ch.URL), Token: secret(key+".token", ch.Token)}
	}
	nt, err := action.NewNotify(action.NotifyConfig{Channels: chans})
	if err != nil {
		return nil, nil, fmt.Errorf("remediation.drivers.notify.%w", err)
	}
	out["notify"] = nt
	out["wait"] = action.Wait{Sleep: func(ctx context.Context, d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-clock.After(d):
			return nil
		}
	}}
	for name, drv := range deps.Drivers {
		out[name] = drv
	}
	return out, secrets, nil
}

type secretRef struct {
	key string
	s   Secret
}

// checkDrivers refuses runbooks whose actions have no driver, or which
// notify channels that do not exist: better at start than in an outage.
func checkDrivers(rbs []runbook.Runbook, drivers map[string]action.Driver, cfg Config) error {
	var errs []error
	for _, rb := range rbs {
		for i, s := range append(slices.Clone(rb.Steps), rb.Rollback...) {
			d := action.DriverOf(s.Action)
			if _, ok := drivers[d]; !ok {
				errs = append(errs, fmt.Errorf("%s:%d: runbook %s step %d uses %s, but remediation.drivers.%s is not configured",
					rb.Source.File, rb.Source.Line, rb.Name, i+1, s.Action, d))
			}
			if s.Action == "notify" {
				for _, c := range s.Params["channels"].List {
					if _, ok := cfg.Drivers.Notify.Channels[c]; !ok && !strings.Contains(c, "{{") {
						errs = append(errs, fmt.Errorf("%s:%d: runbook %s notifies channel %q, which remediation.drivers.notify.channels does not have",
							rb.Source.File, rb.Source.Line, rb.Name, c))
					}
				}
			}
		}
		for _, c := range rb.Escalate.Notify {
			if _, ok := cfg.Drivers.Notify.Channels[c]; !ok {
				errs = append(errs, fmt.Errorf("%s:%d: runbook %s escalates to channel %q, which remediation.drivers.notify.channels does not have",
					rb.Source.File, rb.Source.Line, rb.Name, c))
			}
		}
	}
	return errors.Join(errs...)
}

// Run runs the engine until ctx is done; with Deps.Standby it does
// nothing until Lead.
func (r *Remediation) Run(ctx context.Context) error {
	if !r.standby {
		return r.eng.Run(ctx)
	}
	<-ctx.Done()
	return nil
}

// Lead reloads the engine's state from the store and runs it until ctx
// is done (Deps.Standby: this replica holds the lease).
func (r *Remediation) Lead(ctx context.Context) error { return r.eng.Lead(ctx) }

// Mount registers the REST API on mux.
func (r *Remediation) Mount(mux *http.ServeMux) { r.api.Mount(mux) }

// Scope tells which scope a request to the remediation API needs; ok is
// false for other paths.
func (r *Remediation) Scope(req *http.Request) (auth.Scope, bool) { return r.api.Scope(req) }

// Engine returns the engine, for tools that drive it directly.
func (r *Remediation) Engine() *engine.Engine { return r.eng }
