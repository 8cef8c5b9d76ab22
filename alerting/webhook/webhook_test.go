package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	amwebhook "github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
)

func groupCtx() context.Context {
	ctx := notify.WithGroupKey(context.Background(), `{}:{alertname="X"}`)
	ctx = notify.WithReceiverName(ctx, "team")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"alertname": "X"})
	return notify.WithNotificationReason(ctx, notify.ReasonFirstNotification)
}

func newNotifier(t *testing.T, conf string) *Notifier {
	t.Helper()
	var c amwebhook.WebhookConfig
	if err := yaml.UnmarshalStrict([]byte(conf), &c); err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.FromGlobs(nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExternalURL, _ = url.Parse("https://aiops.example.com")
	n, err := New(&c, tmpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func alerts(n int) []*alert.Alert {
	var out []*alert.Alert
	for i := range n {
		out = append(out, alert.New(model.Alert{
			Labels:   model.LabelSet{"alertname": "X", "instance": model.LabelValue(rune('a' + i))},
			StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Minute),
		}, time.Now(), false))
	}
	return out
}

func TestPayloadAndTruncation(t *testing.T) {
	var got Message
	var raw map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &got)
		json.Unmarshal(b, &raw)
	}))
	defer srv.Close()
	urlFile := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(urlFile, []byte(srv.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := newNotifier(t, "url_file: "+urlFile+"\nmax_alerts: 2\n")
	if v := n.Notify(groupCtx(), alerts(3)...); v.Err() != nil {
		t.Fatal(v.Err())
	}
	if got.Version != "4" || got.GroupKey != `{}:{alertname="X"}` || got.Receiver != "team" || got.Status != "firing" {
		t.Errorf("message %+v", got)
	}
	if len(got.Alerts) != 2 || got.TruncatedAlerts != 1 || got.ExternalURL != "https://aiops.example.com" {
		t.Errorf("%d alerts, %d truncated, external URL %q", len(got.Alerts), got.TruncatedAlerts, got.ExternalURL)
	}
	for _, key := range []string{"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("payload lacks %q", key)
		}
	}
}

func TestCustomPayload(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	n := newNotifier(t, "url: "+srv.URL+"\npayload:\n  text: '{{ .Status }} {{ .CommonLabels.alertname }}'\n")
	if v := n.Notify(groupCtx(), alerts(1)...); v.Err() != nil {
		t.Fatal(v.Err())
	}
	if got["text"] != "firing X" {
		t.Errorf("custom payload %v", got)
	}
}

func TestVerdicts(t *testing.T) {
	cases := []struct {
		status     int
		retryAfter string
		retry      bool
		delay      time.Duration
	}{
		{200, "", false, 0},
		{204, "", false, 0},
		{429, "7", true, 7 * time.Second},
		{503, "3", true, 3 * time.Second},
		{500, "", true, 0},
		{408, "", true, 0},
		{400, "5", false, 0},
		{401, "", false, 0},
		{404, "", false, 0},
	}
	for _, c := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c.retryAfter != "" {
				w.Header().Set("Retry-After", c.retryAfter)
			}
			w.WriteHeader(c.status)
		}))
		n := newNotifier(t, "url: "+srv.URL+"\n")
		v := n.Notify(groupCtx(), alerts(1)...)
		srv.Close()
		if (v.Err() == nil) != (c.status/100 == 2) || v.ShouldRetry() != c.retry || v.Delay() != c.delay {
			t.Errorf("status %d Retry-After %q: err %v retry %v delay %s, want retry %v delay %s",
				c.status, c.retryAfter, v.Err(), v.ShouldRetry(), v.Delay(), c.retry, c.delay)
		}
	}
	// An HTTP date works too, measured against the server's Date header.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UTC()
		w.Header().Set("Date", now.Format(http.TimeFormat))
		w.Header().Set("Retry-After", now.Add(90*time.Second).Format(http.TimeFormat))
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	v := newNotifier(t, "url: "+srv.URL+"\n").Notify(groupCtx(), alerts(1)...)
	if !v.ShouldRetry() || v.Delay() < 89*time.Second || v.Delay() > 91*time.Second {
		t.Errorf("HTTP-date Retry-After: retry %v delay %s", v.ShouldRetry(), v.Delay())
	}
	// Connection refused is retried.
	srv.Close()
	if v := newNotifier(t, "url: "+srv.URL+"\n").Notify(groupCtx(), alerts(1)...); !v.ShouldRetry() {
		t.Errorf("connection error not retried: %v", v.Err())
	}
}
