// Package alerting evaluates Prometheus rule files over the aiops store and
// routes the resulting alerts through an embedded Alertmanager.
//
//	rule files ──ruler (prometheus/rules)──▶ alerts ──in process──▶ alertmanager
//	   (recording rules, ALERTS series back into the store)     routing, grouping,
//	                                                            silences, inhibition
//	POST /api/v2/alerts (Prometheus, amtool) ────────────────▶  │
//	                                                            ▼
//	                                     receivers (webhook, Slack, ...) + group sinks
//
// New builds both halves from one Config; the integrator mounts
// APIHandler at /api/v2/ and ReloadHandler at /-/reload, hooks SIGHUP to
// Reload, passes RulesRetriever and AlertmanagerRetriever to the query API,
// and calls Run. See docs/ALERTING.md.
package alerting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/strutil"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/ruler"
)

// RulesStateFile is the keep_firing_for state file under Config.DataDir.
const RulesStateFile = "rules-state.json"

// Deps are what the alerting component runs on.
type Deps struct {
	// Storage is the store rules read and write (a storage.Store).
	Storage interface {
		promstorage.Queryable
		promstorage.AppendableV2
	}
	// Engine evaluates rule expressions: configured as the query API's
	// (promapi.NewEngine), so that rules and queries behave alike, but
	// with slots of its own (promapi.Config.ForRules), so that heavy
	// queries never hold up rule evaluation.
	Engine promql.QueryEngine
	// Parser parses rule expressions; it must accept what Engine accepts
	// (promapi.NewParser(queryConfig), which also bounds what it accepts).
	Parser parser.Parser

	// GroupSinks receive every alert group the Alertmanager dispatches,
	// firing and resolved (see alertmanager.Options.GroupSinks).
	GroupSinks []notify.Notifier
	// Integrations replace Alertmanager integrations by name (see
	// alertmanager.Options.Integrations); webhook_configs already run
	// aiops's webhook notifier.
	Integrations map[string]alertmanager.IntegrationFactory

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Alerting is the running component.
type Alerting struct {
	cfg            Config
	logger         *slog.Logger
	externalURL    *url.URL
	externalLabels model.LabelSet
	am             *alertmanager.Alertmanager
	ruler          *ruler.Ruler

	reloadMu  sync.Mutex
	closeOnce sync.Once
}

// New validates cfg, loads the rule files, the Alertmanager configuration
// and the saved silences, notification log and alert state, and starts
// dispatching. Rules are evaluated once Run is called.
func New(cfg Config, deps Deps) (*Alerting, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Storage == nil || deps.Engine == nil {
		return nil, errors.New("alerting: Deps.Storage and Deps.Engine are required")
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	extURL, err := externalURL(cfg.ExternalURL)
	if err != nil {
		return nil, err
	}
	if _, err := ruler.Expand(cfg.RuleFiles); err != nil {
		return nil, fmt.Errorf("alerting.rule_files%w", err)
	}
	a := &Alerting{cfg: cfg, logger: logger, externalURL: extURL, externalLabels: model.LabelSet{}}
	for k, v := range cfg.ExternalLabels {
		a.externalLabels[model.LabelName(k)] = model.LabelValue(v)
	}

	a.am, err = alertmanager.New(alertmanager.Options{
		ConfigFile:          cfg.AlertmanagerConfigFile,
		DataDir:             cfg.DataDir,
		Retention:           time.Duration(cfg.Retention),
		MaintenanceInterval: time.Duration(cfg.MaintenanceInterval),
		MaxSilences:         cmp.Or(cfg.MaxSilences, -1),
		MaxSilenceSizeBytes: cfg.MaxSilenceSizeBytes,
		ExternalURL:         extURL,
		GroupSinks:          deps.GroupSinks,
		Integrations:        deps.Integrations,
		Cluster: alertmanager.ClusterOptions{
			ListenAddress:    cfg.Cluster.ListenAddress,
			AdvertiseAddress: cfg.Cluster.AdvertiseAddress,
			Peers:            cfg.Cluster.Peers,
			PeerTimeout:      time.Duration(cfg.Cluster.PeerTimeout),
		},
		Logger:     logger.With("component", "alertmanager"),
		Registerer: deps.Registerer,
	})
	if err != nil {
		var se *alertmanager.StateError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("alerting.data_dir: %w", err)
		}
		return nil, fmt.Errorf("alerting.alertmanager_config_file: %w", err)
	}
	a.ruler, err = ruler.New(ruler.Options{
		Files:              cfg.RuleFiles,
		EvaluationInterval: time.Duration(cfg.EvaluationInterval),
		ResendDelay:        time.Duration(cfg.ResendDelay),
		OutageTolerance:    time.Duration(cfg.ForOutageTolerance),
		ForGracePeriod:     time.Duration(cfg.ForGracePeriod),
		ExternalURL:        extURL,
		ExternalLabels:     labels.FromMap(cfg.ExternalLabels),
		StateFile:          filepath.Join(cfg.DataDir, RulesStateFile),
		Storage:            deps.Storage,
		Engine:             deps.Engine,
		Parser:             deps.Parser,
		Notify:             a.notify,
		Logger:             logger.With("component", "ruler"),
		Registerer:         deps.Registerer,
	})
	if err != nil {
		a.am.Close()
		return nil, fmt.Errorf("alerting.rule_files: %w", err)
	}
	return a, nil
}

func externalURL(s string) (*url.URL, error) {
	if s == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "localhost"
		}
		s = "http://" + net.JoinHostPort(host, "9090")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("alerting.external_url: %w", err)
	}
	return u, nil
}

// Run evaluates rules until ctx is done, then stops evaluation, closes the
// Alertmanager and writes the final snapshots.
func (a *Alerting) Run(ctx context.Context) error {
	err := a.ruler.Run(ctx)
	a.Close()
	return err
}

// Close stops rule evaluation and the Alertmanager and writes the
// snapshots; use it when Run was never called. Close after Run is a no-op.
func (a *Alerting) Close() error {
	var err error
	a.closeOnce.Do(func() { err = errors.Join(a.ruler.Close(), a.am.Close()) })
	return err
}

// Reload re-reads the rule files and the Alertmanager configuration file.
// Both are checked before either is applied: when one is invalid the error
// names the file, line and reason, and everything keeps running as before.
// Alert state, silences and the notification log carry over.
func (a *Alerting) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	amConf, amErr := alertmanager.LoadConfig(a.cfg.AlertmanagerConfigFile)
	files, err := ruler.Expand(a.cfg.RuleFiles)
	if err != nil {
		err = fmt.Errorf("alerting.rule_files%w", err)
	} else {
		err = ruler.CheckFiles(files, a.rulerParser())
	}
	if err := errors.Join(amErr, err); err != nil {
		return fmt.Errorf("configuration not reloaded, the previous one keeps running: %w", err)
	}
	if err := a.am.Apply(amConf); err != nil {
		return fmt.Errorf("configuration not reloaded, the previous one keeps running: %w", err)
	}
	return a.ruler.Reload(ctx)
}

func (a *Alerting) rulerParser() parser.Parser { return a.ruler.Parser() }

// ReloadHandler serves POST (or PUT) /-/reload as Prometheus does: 200 when
// the configuration was reloaded, 500 with the reason when it was refused.
func (a *Alerting) ReloadHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "only POST or PUT requests allowed", http.StatusMethodNotAllowed)
			return
		}
		if err := a.Reload(r.Context()); err != nil {
			a.logger.Error("reload failed", "err", err)
			http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

// APIHandler serves the Alertmanager v2 API; mount it at /api/v2/.
func (a *Alerting) APIHandler() http.Handler { return a.am.Handler() }

// Alertmanager is the embedded Alertmanager: alerts, silences, ListAlerts.
func (a *Alerting) Alertmanager() *alertmanager.Alertmanager { return a.am }

// Ruler is the rule evaluator.
func (a *Alerting) Ruler() *ruler.Ruler { return a.ruler }

// RulesRetriever is promapi.Options.Rules: /api/v1/rules and /api/v1/alerts.
func (a *Alerting) RulesRetriever(context.Context) v1.RulesRetriever { return a.ruler.Manager() }

// AlertmanagerRetriever is promapi.Options.Alertmanagers:
// /api/v1/alertmanagers lists the embedded one.
func (a *Alerting) AlertmanagerRetriever(context.Context) v1.AlertmanagerRetriever {
	return amRetriever{a.externalURL.JoinPath("/api/v2/alerts")}
}

type amRetriever struct{ u *url.URL }

func (r amRetriever) Alertmanagers() []*url.URL        { return []*url.URL{r.u} }
func (r amRetriever) DroppedAlertmanagers() []*url.URL { return nil }

// notify is the rules' NotifyFunc: it hands alerts to the embedded
// Alertmanager as Prometheus's notifier would send them, with the same
// StartsAt, EndsAt and generator URL.
func (a *Alerting) notify(ctx context.Context, expr string, alerts ...*rules.Alert) {
	if len(alerts) == 0 {
		return
	}
	genURL := a.externalURL.String() + strutil.TableLinkForExpression(expr)
	now := time.Now()
	out := make([]*alert.Alert, 0, len(alerts))
	for _, ra := range alerts {
		ma := model.Alert{
			Labels:       make(model.LabelSet, ra.Labels.Len()+len(a.externalLabels)),
			Annotations:  make(model.LabelSet, ra.Annotations.Len()),
			StartsAt:     ra.FiredAt,
			EndsAt:       ra.ValidUntil,
			GeneratorURL: genURL,
		}
		if !ra.ResolvedAt.IsZero() {
			ma.EndsAt = ra.ResolvedAt
		}
		ra.Labels.Range(func(l labels.Label) {
			if l.Value != "" {
				ma.Labels[model.LabelName(l.Name)] = model.LabelValue(l.Value)
			}
		})
		for k, v := range a.externalLabels {
			if _, ok := ma.Labels[k]; !ok {
				ma.Labels[k] = v
			}
		}
		ra.Annotations.Range(func(l labels.Label) {
			ma.Annotations[model.LabelName(l.Name)] = model.LabelValue(l.Value)
		})
		if err := alert.Validate(&ma); err != nil {
			a.logger.Warn("dropping invalid alert", "labels", ma.Labels, "err", err)
			continue
		}
		out = append(out, alert.New(ma, now, false))
	}
	if err := a.am.Put(ctx, out...); err != nil {
		a.logger.Error("handing alerts to the alertmanager failed", "alerts", len(out), "err", err)
	}
}
