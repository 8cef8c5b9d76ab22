// Package alertmanager runs Alertmanager inside aiops: routing, grouping,
// silences, inhibition, time intervals, the notification log and the v2 HTTP
// API, all from github.com/prometheus/alertmanager and configured by an
// ordinary Alertmanager configuration file.
//
// What aiops adds:
//
//   - Alerts come in process from the rule evaluator (Put), as well as over
//     POST /api/v2/alerts from Prometheus servers and amtool.
//   - Group sinks: every alert group the dispatcher flushes, for every
//     route, also reaches each notify.Notifier in Options.GroupSinks (the
//     incident manager). A sink is attached to every receiver as one more
//     integration, so it passes through the same pipeline stages as the
//     receiver's own integrations: inhibition and silences, time intervals,
//     deduplication against the notification log (firing, resolved and
//     repeat_interval notifications), and retries. A receiver with no
//     integrations at all still feeds the sinks.
//   - Integrations can be replaced per type (Options.Integrations): aiops's
//     own webhook notifier runs every webhook_configs entry, and the Slack
//     app plugs in the same way.
//
// Silences, the notification log and the alerts are kept in DataDir, and
// loaded on start. Unlike Alertmanager, which writes silences and the
// notification log every MaintenanceInterval and on shutdown, and keeps
// alerts only in memory, every change counts only once it is on disk
// (durable.go): a crash loses no silence, pages nobody twice, and keeps
// the alerts posted to the API.
package alertmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/route"

	"github.com/prometheus/alertmanager/alert"
	amapi "github.com/prometheus/alertmanager/api"
	"github.com/prometheus/alertmanager/cluster"
	"github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/config/receiver"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/alertmanager/eventrecorder"
	"github.com/prometheus/alertmanager/featurecontrol"
	"github.com/prometheus/alertmanager/inhibit"
	"github.com/prometheus/alertmanager/labelset"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/notify"
	amwebhook "github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/provider"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/alertmanager/timeinterval"

	"github.com/aiops-dev/aiops/alerting/webhook"
)

// Snapshot file names under Options.DataDir, the same as Alertmanager's, so
// a data directory can move between the two.
const (
	SilencesFile = "silences"
	NflogFile    = "nflog"
	// AlertsFile holds the alerts (Alertmanager does not keep them).
	AlertsFile = "alerts"
)

// Defaults of the limits in Options.
const (
	DefaultMaxSilences         = 10_000
	DefaultMaxSilenceSizeBytes = 64 << 10
	// MaxSilenceSizeBytes is the largest MaxSilenceSizeBytes: a silence
	// larger than this could not be read back from the snapshot.
	MaxSilenceSizeBytes = maxMessageBytes - 1024
	// MaxAlertsBodyBytes bounds the body of POST /api/v2/alerts.
	MaxAlertsBodyBytes = 32 << 20
)

// SinkIntegration is the integration name group sinks appear under in the
// notification log and in alertmanager_notifications_* metrics; the index
// is the sink's position in Options.GroupSinks.
const SinkIntegration = "aiops_group_sink"

// DefaultConfig is what runs when no configuration file is given: every
// alert grouped by alertname into one receiver without integrations, so
// alerts are listed by the API and reach the group sinks but nobody is
// paged.
const DefaultConfig = `route:
  receiver: default
  group_by: [alertname]
receivers:
  - name: default
`

// Options configure an Alertmanager.
type Options struct {
	// ConfigFile is an Alertmanager configuration file; empty runs
	// DefaultConfig.
	ConfigFile string
	// DataDir holds the silence and notification log snapshots.
	DataDir string
	// Retention is how long expired silences and notification log entries
	// are kept (Alertmanager's --data.retention).
	Retention time.Duration
	// MaintenanceInterval is how often silences and the notification log
	// are garbage collected and snapshotted to DataDir.
	MaintenanceInterval time.Duration
	// AlertGCInterval is how often resolved alerts are dropped from memory.
	AlertGCInterval time.Duration
	// ExternalURL is where users reach aiops; it becomes .ExternalURL in
	// notification templates (links back to the alert list and silences).
	ExternalURL *url.URL
	// APITimeout bounds one v2 API request; 0 means none.
	APITimeout time.Duration
	// MaxSilences bounds the silences kept, expired ones included
	// (Alertmanager's --silences.max-silences); 0 means
	// DefaultMaxSilences, -1 no limit.
	MaxSilences int
	// MaxSilenceSizeBytes bounds one silence (its matchers, comment and
	// author), on every API (--silences.max-silence-size-bytes); 0
	// means DefaultMaxSilenceSizeBytes. At most MaxSilenceSizeBytes.
	MaxSilenceSizeBytes int

	// GroupSinks receive every alert group the dispatcher flushes, firing
	// and resolved, with the group key, receiver name and group labels in
	// the context (notify.GroupKey, notify.ReceiverName,
	// notify.GroupLabels). A sink returning a retryable verdict is retried
	// like any integration.
	GroupSinks []notify.Notifier
	// Integrations replace Alertmanager's integration of the same name for
	// every entry of the matching <name>_configs list ("webhook" for
	// webhook_configs, "slack" for slack_configs, ...). Entries here are
	// merged over the defaults, which run webhook_configs through
	// aiops's webhook notifier; a nil factory restores Alertmanager's own
	// integration.
	Integrations map[string]IntegrationFactory

	// Cluster makes this Alertmanager one of several replicas that
	// notify once between them; the zero value runs alone.
	Cluster ClusterOptions

	Logger *slog.Logger
	// Registerer receives Alertmanager's metrics, prefixed "aiops_" (so
	// aiops_alertmanager_notifications_total). May be nil.
	Registerer prometheus.Registerer
}

// IntegrationFactory builds the notifier for one entry of a receiver's
// <name>_configs list.
type IntegrationFactory func(Integration) (notify.Notifier, error)

// Integration is what an IntegrationFactory gets to build from.
type Integration struct {
	// Receiver is the receiver's name and Index the entry's position in
	// its <Name>_configs list.
	Receiver string
	Name     string
	Index    int
	// Config is the entry: *webhook.WebhookConfig for "webhook",
	// *slack.SlackConfig for "slack", and so on (the types of
	// github.com/prometheus/alertmanager/notify/<name>).
	Config any
	// Template expands the configuration's notification templates.
	Template *template.Template
	Logger   *slog.Logger
}

// DefaultIntegrations are the integrations aiops runs in place of
// Alertmanager's own.
func DefaultIntegrations() map[string]IntegrationFactory {
	return map[string]IntegrationFactory{
		"webhook": func(i Integration) (notify.Notifier, error) {
			c, ok := i.Config.(*amwebhook.WebhookConfig)
			if !ok {
				return nil, fmt.Errorf("webhook: unexpected configuration type %T", i.Config)
			}
			return webhook.New(c, i.Template, i.Logger)
		},
	}
}

func (o *Options) defaults() error {
	if o.DataDir == "" {
		return errors.New("alertmanager: Options.DataDir is required")
	}
	if o.Retention <= 0 {
		o.Retention = 120 * time.Hour
	}
	if o.MaintenanceInterval <= 0 {
		o.MaintenanceInterval = 15 * time.Minute
	}
	if o.AlertGCInterval <= 0 {
		o.AlertGCInterval = 30 * time.Minute
	}
	switch {
	case o.MaxSilences == 0:
		o.MaxSilences = DefaultMaxSilences
	case o.MaxSilences < 0:
		o.MaxSilences = 0
	}
	if o.MaxSilenceSizeBytes == 0 {
		o.MaxSilenceSizeBytes = DefaultMaxSilenceSizeBytes
	}
	if o.MaxSilenceSizeBytes < 0 || o.MaxSilenceSizeBytes > MaxSilenceSizeBytes {
		return fmt.Errorf("alertmanager: Options.MaxSilenceSizeBytes: must be in (0, %d], got %d", MaxSilenceSizeBytes, o.MaxSilenceSizeBytes)
	}
	if o.ExternalURL == nil {
		o.ExternalURL = &url.URL{Scheme: "http", Host: "localhost:9090"}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	integrations := DefaultIntegrations()
	for name, f := range o.Integrations {
		if _, ok := receiverConfigs(&config.Receiver{}, name); !ok {
			return fmt.Errorf("alertmanager: Options.Integrations: Alertmanager has no %s_configs", name)
		}
		if f == nil {
			delete(integrations, name)
			continue
		}
		integrations[name] = f
	}
	o.Integrations = integrations
	return nil
}

// Alertmanager is one embedded Alertmanager. Build it with New, stop it
// with Close.
type Alertmanager struct {
	opts   Options
	logger *slog.Logger

	alerts            *mem.Alerts
	saved             *durableAlerts
	silences          *Silences
	silencer          *silence.Silencer
	nflog             *durableNflog
	api               *amapi.API
	handler           http.Handler
	pipelineBuilder   *notify.PipelineBuilder
	dispatcherMetrics *dispatch.DispatcherMetrics
	recorder          eventrecorder.Recorder
	// peer is this replica in the cluster; nil without one.
	peer      *cluster.Peer
	startTime time.Time

	stopc chan struct{}
	wg    sync.WaitGroup

	// mu serialises Apply and Close; the pointers below are read without it.
	mu         sync.Mutex
	closed     bool
	conf       atomic.Pointer[config.Config]
	route      atomic.Pointer[dispatch.Route]
	dispatcher atomic.Pointer[dispatch.Dispatcher]
	inhibitor  atomic.Pointer[inhibit.Inhibitor]
}

// New loads the snapshots in opts.DataDir and the configuration, and starts
// dispatching.
func New(opts Options) (*Alertmanager, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	conf, err := LoadConfig(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("alertmanager: data dir: %w", &StateError{File: opts.DataDir, Err: err})
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg = prometheus.WrapRegistererWithPrefix("aiops_", reg)
	logger := opts.Logger
	flags := featurecontrol.NoopFlags{}

	am := &Alertmanager{
		opts:              opts,
		logger:            logger,
		recorder:          eventrecorder.NopRecorder(),
		startTime:         time.Now(),
		stopc:             make(chan struct{}),
		pipelineBuilder:   notify.NewPipelineBuilder(reg, flags, eventrecorder.NopRecorder()),
		dispatcherMetrics: dispatch.NewDispatcherMetrics(false, reg, flags),
	}

	nflogFile := filepath.Join(opts.DataDir, NflogFile)
	snap, err := loadReadable(nflogFile, logger)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: notification log: %w", err)
	}
	nl, err := nflog.New(nflog.Options{
		SnapshotReader: snap,
		Retention:      opts.Retention,
		Logger:         logger.With("component", "nflog"),
		Metrics:        reg,
	})
	if err != nil {
		return nil, fmt.Errorf("alertmanager: notification log: %w", &StateError{File: nflogFile, Err: err})
	}
	am.nflog = &durableNflog{log: nl, file: newSnapshotFile(nflogFile, true, nl.Snapshot, logger)}

	silencesFile := filepath.Join(opts.DataDir, SilencesFile)
	if snap, err = loadReadable(silencesFile, logger); err != nil {
		return nil, fmt.Errorf("alertmanager: silences: %w", err)
	}
	sils, err := silence.New(silence.Options{
		SnapshotReader: snap,
		Retention:      opts.Retention,
		Limits: silence.Limits{
			MaxSilences:         func() int { return opts.MaxSilences },
			MaxSilenceSizeBytes: func() int { return opts.MaxSilenceSizeBytes },
		},
		Logger:        logger.With("component", "silences"),
		Metrics:       reg,
		EventRecorder: am.recorder,
	})
	if err != nil {
		return nil, fmt.Errorf("alertmanager: silences: %w", &StateError{File: silencesFile, Err: err})
	}
	am.silences = &Silences{Silences: sils, file: newSnapshotFile(silencesFile, true, sils.Snapshot, logger)}
	// The periodic maintenance garbage collects, and writes through the
	// same files as every change, one write at a time.
	am.wg.Go(func() {
		nl.Maintenance(opts.MaintenanceInterval, nflogFile, am.stopc, func() (int64, error) {
			if _, err := nl.GC(); err != nil {
				return 0, err
			}
			return am.nflog.file.Save()
		})
	})
	am.wg.Go(func() {
		sils.Maintenance(opts.MaintenanceInterval, silencesFile, am.stopc, func() (int64, error) {
			if _, err := sils.GC(); err != nil {
				return 0, err
			}
			return am.silences.file.Save()
		})
	})

	if opts.Cluster.Enabled() {
		opts.Cluster.defaults()
		am.opts.Cluster = opts.Cluster
		if am.peer, err = joinCluster(opts.Cluster, nl, sils, logger, reg); err != nil {
			am.stopMaintenance()
			return nil, err
		}
	}
	am.silencer = silence.NewSilencer(sils, logger, am.recorder)
	am.alerts, err = mem.NewAlerts(context.Background(), opts.AlertGCInterval, 0, am.silencer, logger, am.recorder, reg, flags)
	if err != nil {
		am.stopMaintenance()
		return nil, fmt.Errorf("alertmanager: alert store: %w", err)
	}
	am.saved = newDurableAlerts(am.alerts, filepath.Join(opts.DataDir, AlertsFile), logger.With("component", "alerts"))
	if err := am.saved.load(); err != nil {
		am.closeStores()
		return nil, fmt.Errorf("alertmanager: alerts: %w", err)
	}
	am.wg.Go(func() {
		t := time.NewTicker(refreshInterval)
		defer t.Stop()
		for {
			select {
			case <-am.stopc:
				am.saved.close()
				return
			case <-t.C:
				am.saved.refresh()
			}
		}
	})

	requestDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alertmanager_http_request_duration_seconds",
		Help:    "Latency of Alertmanager API requests.",
		Buckets: prometheus.DefBuckets,
	}, []string{"handler", "method", "code"})
	if err := reg.Register(requestDuration); err != nil {
		am.closeStores()
		return nil, fmt.Errorf("alertmanager: register metrics: %w", err)
	}
	am.api, err = amapi.New(amapi.Options{
		Alerts:          am.saved,
		Silences:        sils,
		Timeout:         opts.APITimeout,
		Logger:          logger.With("component", "api"),
		Registry:        reg,
		RequestDuration: requestDuration,
		GroupFunc: func(ctx context.Context, rf func(*dispatch.Route) bool, af dispatch.AlertFilter) (dispatch.AlertGroups, map[model.Fingerprint][]string, error) {
			return am.dispatcher.Load().Groups(ctx, rf, af)
		},
	})
	if err != nil {
		am.closeStores()
		return nil, fmt.Errorf("alertmanager: api: %w", err)
	}
	am.handler = &savingHandler{
		next:           am.api.Register(route.New(), "/"),
		silences:       am.silences.file,
		maxSilenceBody: 4*int64(opts.MaxSilenceSizeBytes) + 64<<10,
		maxAlertsBody:  MaxAlertsBodyBytes,
	}

	if err := am.Apply(conf); err != nil {
		am.closeStores()
		return nil, err
	}
	return am, nil
}

// LoadConfig reads and validates an Alertmanager configuration file; an
// empty path yields DefaultConfig. Errors name the file.
func LoadConfig(path string) (*config.Config, error) {
	if path == "" {
		conf, err := config.Load(DefaultConfig)
		if err != nil {
			return nil, fmt.Errorf("alertmanager: built-in configuration: %w", err)
		}
		return conf, nil
	}
	conf, err := config.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return conf, nil
}

// Reload reads the configuration file again and applies it. When the file
// is invalid the error names it and the running configuration stays.
func (am *Alertmanager) Reload(ctx context.Context) error {
	conf, err := LoadConfig(am.opts.ConfigFile)
	if err != nil {
		return err
	}
	return am.Apply(conf)
}

// Apply builds everything conf asks for and swaps it in. Nothing running is
// touched until every fallible step has succeeded, so a failed Apply leaves
// the previous configuration in place. Alerts, silences and the
// notification log carry over; aggregation groups are rebuilt from the
// alerts, and the notification log keeps them from notifying again.
func (am *Alertmanager) Apply(conf *config.Config) error {
	am.mu.Lock()
	defer am.mu.Unlock()
	if am.closed {
		return errors.New("alertmanager: closed")
	}

	tmpl, err := template.FromGlobs(conf.Templates)
	if err != nil {
		return fmt.Errorf("alertmanager: templates: %w", err)
	}
	tmpl.ExternalURL = am.opts.ExternalURL

	routes := dispatch.NewRoute(conf.Route, nil)
	used := map[string]bool{}
	routes.Walk(func(r *dispatch.Route) { used[r.RouteOpts.Receiver] = true })
	receivers := make(map[string][]notify.Integration, len(used))
	for _, rcv := range conf.Receivers {
		if !used[rcv.Name] {
			continue
		}
		integrations, err := am.buildReceiver(rcv, tmpl)
		if err != nil {
			return fmt.Errorf("alertmanager: receiver %q: %w", rcv.Name, err)
		}
		receivers[rcv.Name] = integrations
	}
	intervals := make(map[string][]timeinterval.TimeInterval, len(conf.MuteTimeIntervals)+len(conf.TimeIntervals))
	for _, ti := range conf.MuteTimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}
	for _, ti := range conf.TimeIntervals {
		intervals[ti.Name] = ti.TimeIntervals
	}
	intervener := timeinterval.NewIntervener(intervals)

	// From here on nothing fails.
	if old := am.inhibitor.Load(); old != nil {
		old.Stop()
	}
	if old := am.dispatcher.Load(); old != nil {
		old.Stop()
	}
	inhibitor := inhibit.NewInhibitor(am.alerts, conf.InhibitRules, am.logger, am.recorder)
	wait, peer := func() time.Duration { return 0 }, notify.Peer(nil)
	if am.peer != nil {
		// The replica at position n waits n peer timeouts, so the one
		// before it has notified and gossiped that it has.
		wait = func() time.Duration { return time.Duration(am.peer.Position()) * am.opts.Cluster.PeerTimeout }
		peer = am.peer
	}
	pipeline := am.pipelineBuilder.New(receivers, wait, inhibitor, am.silencer, intervener, am.nflog, peer)
	am.api.Update(conf, func(ctx context.Context, ls labelset.LabelSet) {
		am.inhibitor.Load().Mutes(ctx, ls)
		am.silencer.Mutes(ctx, ls)
	})
	d := dispatch.NewDispatcher(am.alerts, routes, pipeline, intervener, notifyTimeout,
		30*time.Second, nil, am.logger, am.recorder, am.dispatcherMetrics, tmpl)

	// The inhibitor must know the current alerts before the dispatcher
	// flushes any group, or an inhibited alert could notify.
	go inhibitor.Run()
	inhibitor.WaitForLoading()
	am.inhibitor.Store(inhibitor)
	go d.Run(am.startTime)
	d.WaitForLoading()
	am.dispatcher.Store(d)
	am.route.Store(routes)
	am.conf.Store(conf)
	am.logger.Info("alertmanager configuration applied", "file", am.opts.ConfigFile, "receivers", len(receivers))
	return nil
}

// notifyTimeout bounds one flush of a group, retries included, as
// Alertmanager does: the group_interval, but at least notify.MinTimeout.
func notifyTimeout(d time.Duration) time.Duration {
	return max(d, notify.MinTimeout)
}

// buildReceiver returns the integrations of one receiver: Alertmanager's
// own for the types not overridden, ours for the rest, then the sinks.
func (am *Alertmanager) buildReceiver(rcv config.Receiver, tmpl *template.Template) ([]notify.Integration, error) {
	stock := rcv
	for name := range am.opts.Integrations {
		v, _ := receiverConfigs(&stock, name)
		v.SetZero()
	}
	integrations, err := receiver.BuildReceiverIntegrations(stock, tmpl, am.logger)
	if err != nil {
		return nil, err
	}
	for name, factory := range am.opts.Integrations {
		v, _ := receiverConfigs(&rcv, name)
		for i := range v.Len() {
			c := v.Index(i).Interface()
			rs, ok := c.(notify.ResolvedSender)
			if !ok {
				return nil, fmt.Errorf("%s_configs[%d]: %T has no send_resolved", name, i, c)
			}
			n, err := factory(Integration{
				Receiver: rcv.Name, Name: name, Index: i, Config: c, Template: tmpl,
				Logger: am.logger.With("integration", name, "receiver", rcv.Name),
			})
			if err != nil {
				return nil, fmt.Errorf("%s_configs[%d]: %w", name, i, err)
			}
			integrations = append(integrations, notify.NewIntegration(n, rs, name, i, rcv.Name))
		}
	}
	for i, sink := range am.opts.GroupSinks {
		integrations = append(integrations, notify.NewIntegration(sink, sendResolved{}, SinkIntegration, i, rcv.Name))
	}
	return integrations, nil
}

// receiverConfigs returns the <name>_configs list of rcv (a slice of
// pointers to that integration's config type), found by its YAML key so
// that every integration Alertmanager knows can be overridden.
func receiverConfigs(rcv *config.Receiver, name string) (reflect.Value, bool) {
	v := reflect.ValueOf(rcv).Elem()
	t := v.Type()
	key := name + "_configs"
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == key && t.Field(i).Type.Kind() == reflect.Slice {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// sendResolved makes group sinks see resolved notifications too.
type sendResolved struct{}

func (sendResolved) SendResolved() bool { return true }

// Put hands alerts to the dispatcher, as POST /api/v2/alerts does. Alerts
// must be valid (alert.Validate) and carry StartsAt and EndsAt.
func (am *Alertmanager) Put(ctx context.Context, alerts ...*alert.Alert) error {
	return am.saved.Put(ctx, alerts...)
}

// Handler serves the Alertmanager v2 API. Mount it at /api/v2/ on the main
// listener: it expects the full request path (/api/v2/alerts, ...).
func (am *Alertmanager) Handler() http.Handler { return am.handler }

// Alerts is the alert store behind the API: every alert received and not
// yet garbage collected.
func (am *Alertmanager) Alerts() provider.Alerts { return am.alerts }

// Silences is the silence store: Query, Set (create or update) and
// Expire, the last two returning once the change is on disk.
func (am *Alertmanager) Silences() *Silences { return am.silences }

// Config is the configuration in force.
func (am *Alertmanager) Config() *config.Config { return am.conf.Load() }

// Close stops dispatching and writes the final silence, notification log
// and alerts snapshots.
func (am *Alertmanager) Close() error {
	am.mu.Lock()
	if am.closed {
		am.mu.Unlock()
		return nil
	}
	am.closed = true
	am.mu.Unlock()
	if i := am.inhibitor.Load(); i != nil {
		i.Stop()
	}
	if d := am.dispatcher.Load(); d != nil {
		d.Stop()
	}
	am.api.Shutdown()
	if am.peer != nil {
		if err := am.peer.Leave(10 * time.Second); err != nil {
			am.logger.Warn("Alertmanager cluster: leaving failed", "err", err)
		}
	}
	am.closeStores()
	return nil
}

func (am *Alertmanager) closeStores() {
	if am.alerts != nil {
		am.alerts.Close()
	}
	am.stopMaintenance()
}

// stopMaintenance ends the maintenance loops, which write their final
// snapshots as they stop.
func (am *Alertmanager) stopMaintenance() {
	select {
	case <-am.stopc:
	default:
		close(am.stopc)
	}
	am.wg.Wait()
}
