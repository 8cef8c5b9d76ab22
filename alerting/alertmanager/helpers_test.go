package alertmanager

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting/webhook"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// startAM runs an Alertmanager over dir with configuration conf.
func startAM(t *testing.T, dir, conf string, sinks ...notify.Notifier) *Alertmanager {
	t.Helper()
	file := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	am, err := New(Options{
		ConfigFile:          file,
		DataDir:             dir,
		MaintenanceInterval: time.Hour,
		GroupSinks:          sinks,
		Logger:              testutil.Logger(t),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { am.Close() })
	return am
}

// firing returns an alert that started a while ago and is valid for a
// minute, as the rule evaluator sends them.
func firing(ls model.LabelSet, startsAt time.Time) *alert.Alert {
	return alert.New(model.Alert{Labels: ls, StartsAt: startsAt, EndsAt: time.Now().Add(time.Minute)}, time.Now(), false)
}

func resolved(ls model.LabelSet, startsAt time.Time) *alert.Alert {
	return alert.New(model.Alert{Labels: ls, StartsAt: startsAt, EndsAt: time.Now()}, time.Now(), false)
}

// hook is a webhook endpoint that records what it receives and answers
// with the scripted responses, then 200.
type hook struct {
	srv *httptest.Server

	mu       sync.Mutex
	got      []webhook.Message
	attempts []time.Time
	script   []func(http.ResponseWriter)
	notify   chan struct{}
}

func newHook(t *testing.T, script ...func(http.ResponseWriter)) *hook {
	h := &hook{script: script, notify: make(chan struct{}, 100)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.attempts = append(h.attempts, time.Now())
		var respond func(http.ResponseWriter)
		if len(h.script) > 0 {
			respond, h.script = h.script[0], h.script[1:]
		}
		if respond == nil {
			var m webhook.Message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Errorf("webhook body: %v\n%s", err, body)
			}
			h.got = append(h.got, m)
		}
		h.mu.Unlock()
		if respond != nil {
			respond(w)
		}
		h.notify <- struct{}{}
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) messages() []webhook.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhook.Message(nil), h.got...)
}

func (h *hook) attemptTimes() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.attempts...)
}

// sinkCall is one alert group a recording sink received.
type sinkCall struct {
	groupKey    string
	receiver    string
	groupLabels model.LabelSet
	firing      []string // alertnames
	resolved    []string
}

type recordingSink struct {
	mu    sync.Mutex
	calls []sinkCall
}

func (s *recordingSink) Notify(ctx context.Context, alerts ...*alert.Alert) notify.NotifyVerdict {
	key, _ := notify.GroupKey(ctx)
	recv, _ := notify.ReceiverName(ctx)
	gl, _ := notify.GroupLabels(ctx)
	c := sinkCall{groupKey: key, receiver: recv, groupLabels: gl}
	for _, a := range alerts {
		name := string(a.Labels["instance"])
		if a.Resolved() {
			c.resolved = append(c.resolved, name)
		} else {
			c.firing = append(c.firing, name)
		}
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	return notify.Success()
}

func (s *recordingSink) snapshot() []sinkCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkCall(nil), s.calls...)
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }
