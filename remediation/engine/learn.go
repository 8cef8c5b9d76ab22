package engine

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/internal/stats"
	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// learning keeps, per runbook and alert, how runs went: attempts (runs
// that acted and ended), successes and the time each success took to
// recover. It is folded from the executions, so it survives restarts
// (as far back as Config.History).
type learning struct {
	mu   sync.Mutex
	recs map[[2]string]*record
	seen map[string]bool
}

type record struct {
	attempts, successes int
	// recover holds the last maxRecoveries recovery times, oldest first.
	recover  []float64
	sum      float64
	verified int
}

const maxRecoveries = 100

func newLearning() *learning {
	return &learning{recs: map[[2]string]*record{}, seen: map[string]bool{}}
}

// learnKey is (runbook, alert name); runs not started by an alert count
// under their trigger's kind.
func learnKey(x *Execution) [2]string {
	name := x.Trigger.Alertname
	if name == "" {
		name = x.Trigger.Kind
	}
	return [2]string{x.Runbook, name}
}

// observe counts a finished live execution that acted, once.
func (l *learning) observe(x *Execution) {
	if !x.State.Terminal() || x.Mode != runbook.ModeLive || !x.acted() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[x.ID] {
		return
	}
	l.seen[x.ID] = true
	k := learnKey(x)
	r := l.recs[k]
	if r == nil {
		r = &record{}
		l.recs[k] = r
	}
	r.attempts++
	if x.State == StateSucceeded {
		r.successes++
		r.verified++
		r.sum += x.RecoverSeconds
		r.recover = append(r.recover, x.RecoverSeconds)
		if len(r.recover) > maxRecoveries {
			r.recover = r.recover[len(r.recover)-maxRecoveries:]
		}
	}
}

// Record implements match.Records.
func (l *learning) Record(rb, alertname string) match.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.recs[[2]string{rb, alertname}]
	if r == nil {
		return match.Record{}
	}
	return match.Record{Attempts: r.attempts, Successes: r.successes, MedianRecover: time.Duration(stats.Median(r.recover) * float64(time.Second))}
}

// RecordOf is a runbook's record for one alert, for the API.
type RecordOf struct {
	Runbook   string `json:"runbook"`
	Alertname string `json:"alertname"`
	Attempts  int    `json:"attempts"`
	Successes int    `json:"successes"`
	// SuccessRatio is successes / attempts; Score the ratio with one
	// success and one failure assumed, which ranks runbooks.
	SuccessRatio          float64   `json:"success_ratio"`
	Score                 float64   `json:"score"`
	MedianRecoverSeconds  float64   `json:"median_recover_seconds"`
	LastRecoveriesSeconds []float64 `json:"last_recoveries_seconds"`
}

// Records lists every record.
func (e *Engine) Records() []RecordOf {
	l := e.stats
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []RecordOf
	for k, r := range l.recs {
		out = append(out, RecordOf{Runbook: k[0], Alertname: k[1], Attempts: r.attempts, Successes: r.successes,
			SuccessRatio: float64(r.successes) / float64(r.attempts), Score: match.Record{Attempts: r.attempts, Successes: r.successes}.Score(),
			MedianRecoverSeconds: stats.Median(r.recover), LastRecoveriesSeconds: slices.Clone(r.recover)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Runbook != out[j].Runbook {
			return out[i].Runbook < out[j].Runbook
		}
		return out[i].Alertname < out[j].Alertname
	})
	return out
}

// metrics are the engine's self-metrics.
type metrics struct {
	decisions   *prometheus.CounterVec
	actions     *prometheus.CounterVec
	escalations *prometheus.CounterVec
	storeErrors prometheus.Counter
	state       *stateCollector
}

func newMetrics(e *Engine) metrics {
	return metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aiops_remediation_decisions_total",
			Help: "Decisions on runbooks a signal matched: started, or refused by a safety rail (rail label)."}, []string{"runbook", "decision", "rail"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aiops_remediation_actions_total",
			Help: "Action attempts by result (ok, error)."}, []string{"action", "result"}),
		escalations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aiops_remediation_escalations_total",
			Help: "Runs that handed the problem to people."}, []string{"runbook"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "aiops_remediation_store_errors_total",
			Help: "Execution events the store did not take (retried)."}),
		state: &stateCollector{e: e},
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.decisions, m.actions, m.escalations, m.storeErrors, m.state} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("remediation: register metrics: %w", err)
		}
	}
	return nil
}

// stateCollector exports what is folded from the executions: the
// learning record per runbook and alert, executions by state, the kill
// switch.
type stateCollector struct{ e *Engine }

var (
	descAttempts = prometheus.NewDesc("aiops_runbook_attempts_total",
		"Runs of a runbook for an alert that acted and ended.", []string{"runbook", "alertname"}, nil)
	descSuccesses = prometheus.NewDesc("aiops_runbook_successes_total",
		"Runs whose verification held.", []string{"runbook", "alertname"}, nil)
	descRatio = prometheus.NewDesc("aiops_runbook_success_ratio",
		"Successes / attempts.", []string{"runbook", "alertname"}, nil)
	descRecover = prometheus.NewDesc("aiops_runbook_recovery_seconds",
		"Time from a run's start to its verification holding, over its last successes.", []string{"runbook", "alertname"}, nil)
	descExecutions = prometheus.NewDesc("aiops_remediation_executions",
		"Executions known (the last History), by state.", []string{"state"}, nil)
	descKill = prometheus.NewDesc("aiops_remediation_kill_switch_engaged",
		"1 while the kill switch is engaged.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAttempts, descSuccesses, descRatio, descRecover, descExecutions, descKill} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.e.stats
	l.mu.Lock()
	for k, r := range l.recs {
		ch <- prometheus.MustNewConstMetric(descAttempts, prometheus.CounterValue, float64(r.attempts), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(descSuccesses, prometheus.CounterValue, float64(r.successes), k[0], k[1])
		ch <- prometheus.MustNewConstMetric(descRatio, prometheus.GaugeValue, float64(r.successes)/float64(r.attempts), k[0], k[1])
		ch <- prometheus.MustNewConstSummary(descRecover, uint64(r.verified), r.sum, map[float64]float64{0.5: stats.Median(r.recover)}, k[0], k[1])
	}
	l.mu.Unlock()
	c.e.mu.RLock()
	counts := map[State]int{}
	for _, x := range c.e.execs {
		counts[x.State]++
	}
	kill := c.e.kill.Engaged
	c.e.mu.RUnlock()
	for _, s := range []State{StatePendingApproval, StateRunning, StateVerifying, StateRollingBack, StateSucceeded,
		StateRolledBack, StateEscalated, StateCancelled, StateDenied, StateShadowed} {
		ch <- prometheus.MustNewConstMetric(descExecutions, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	v := 0.0
	if kill {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(descKill, prometheus.GaugeValue, v)
}
