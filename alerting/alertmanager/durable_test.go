package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"

	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// Environment of the Alertmanager child process.
const (
	envChildAddr   = "AIOPS_TEST_AM_CHILD" // where it serves the v2 API and /metrics
	envChildDir    = "AIOPS_TEST_AM_DIR"
	envChildConfig = "AIOPS_TEST_AM_CONFIG"
)

// TestAlertmanagerChildProcess is not a test: it is the Alertmanager
// that TestKilledKeepsEveryChange starts (and kills) as a separate
// process.
func TestAlertmanagerChildProcess(t *testing.T) {
	addr := os.Getenv(envChildAddr)
	if addr == "" {
		return
	}
	reg := prometheus.NewRegistry()
	am, err := New(Options{
		ConfigFile:          os.Getenv(envChildConfig),
		DataDir:             os.Getenv(envChildDir),
		MaintenanceInterval: time.Hour,
		Logger:              testutil.Logger(t),
		Registerer:          reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v2/", am.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Fatal(http.ListenAndServe(addr, mux))
}

// child is an Alertmanager running in another process.
type child struct {
	t    *testing.T
	url  string
	cmd  *exec.Cmd
	done chan error
}

func startChild(t *testing.T, dir, config string) *child {
	t.Helper()
	addr := freeport.Addr(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestAlertmanagerChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChildAddr+"="+addr, envChildDir+"="+dir, envChildConfig+"="+config)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{t: t, url: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(c.kill)
	testutil.WaitFor(t, "the child Alertmanager to serve", 60*time.Second, func() bool {
		resp, err := http.Get(c.url + "/api/v2/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return c
}

// kill sends SIGKILL: nothing runs on the way out.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Kill()
	<-c.done
}

func (c *child) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// metric is the sum of a metric's samples in the child's /metrics.
func (c *child) metric(name string) float64 {
	resp, err := http.Get(c.url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return -1
	}
	var sum float64
	for _, m := range fams[name].GetMetric() {
		sum += metricValue(m)
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

type apiSilence struct {
	ID       string `json:"id,omitempty"`
	Matchers []struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual bool   `json:"isEqual"`
	} `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
}

func newSilence(alertname, comment string) apiSilence {
	s := apiSilence{StartsAt: time.Now(), EndsAt: time.Now().Add(time.Hour), CreatedBy: "test", Comment: comment}
	s.Matchers = append(s.Matchers, struct {
		Name    string `json:"name"`
		Value   string `json:"value"`
		IsRegex bool   `json:"isRegex"`
		IsEqual bool   `json:"isEqual"`
	}{Name: "alertname", Value: alertname, IsEqual: true})
	return s
}

func (c *child) postSilence(s apiSilence) string {
	c.t.Helper()
	status, body := c.do(http.MethodPost, "/api/v2/silences", s)
	if status != http.StatusOK {
		c.t.Fatalf("POST /api/v2/silences: %d %s", status, body)
	}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatal(err)
	}
	return out.SilenceID
}

func (c *child) silenceStates() map[string]string {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/api/v2/silences", nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET /api/v2/silences: %d %s", status, body)
	}
	var sils []apiSilence
	if err := json.Unmarshal(body, &sils); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range sils {
		out[s.ID] = s.Status.State
	}
	return out
}

func (c *child) alertnames() []string {
	c.t.Helper()
	status, body := c.do(http.MethodGet, "/api/v2/alerts", nil)
	if status != http.StatusOK {
		c.t.Fatalf("GET /api/v2/alerts: %d %s", status, body)
	}
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(body, &alerts); err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, a := range alerts {
		out = append(out, a.Labels["alertname"])
	}
	return out
}

// TestKilledKeepsEveryChange kills an Alertmanager (SIGKILL, so no
// snapshot is written on the way out) right after it acknowledged a
// silence, the expiry of another, posted alerts and a notification: the
// next one started on its data dir has the silence, the expiry and the
// alerts, and does not page again for the group it had notified.
func TestKilledKeepsEveryChange(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	config := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := writeFile(config, fmt.Sprintf(`
route:
  receiver: hook
  group_by: [alertname]%s
receivers:
  - name: hook
    webhook_configs:
      - url: %s
`, fastRoute, h.srv.URL)); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, dir, config)

	kept := c.postSilence(newSilence("Muted", "kept"))
	expired := c.postSilence(newSilence("Other", "expired"))
	if status, body := c.do(http.MethodDelete, "/api/v2/silence/"+expired, nil); status != http.StatusOK {
		t.Fatalf("DELETE silence: %d %s", status, body)
	}
	// Posted as amtool posts them: once, ending in an hour.
	alerts := []map[string]any{
		{"labels": map[string]string{"alertname": "Paged", "instance": "a"}, "startsAt": time.Now().Add(-time.Minute), "endsAt": time.Now().Add(time.Hour)},
		{"labels": map[string]string{"alertname": "Muted", "instance": "a"}, "startsAt": time.Now().Add(-time.Minute), "endsAt": time.Now().Add(time.Hour)},
	}
	if status, body := c.do(http.MethodPost, "/api/v2/alerts", alerts); status != http.StatusOK {
		t.Fatalf("POST /api/v2/alerts: %d %s", status, body)
	}
	testutil.WaitFor(t, "the page for Paged", 10*time.Second, func() bool { return len(h.messages()) == 1 })
	// The notification counts once it is in the notification log, which
	// the pipeline writes just after sending it (a kill in between sends
	// it again: at least once); the log was empty before.
	testutil.WaitFor(t, "the notification to be logged", 10*time.Second, func() bool {
		fi, err := os.Stat(filepath.Join(dir, NflogFile))
		return err == nil && fi.Size() > 0
	})
	c.kill()

	c = startChild(t, dir, config)
	states := c.silenceStates()
	if states[kept] != "active" {
		t.Errorf("silence created before the kill: %q after it, want active", states[kept])
	}
	if states[expired] != "expired" {
		t.Errorf("silence expired before the kill: %q after it, want expired", states[expired])
	}
	names := c.alertnames()
	if !strings.Contains(strings.Join(names, ","), "Paged") || !strings.Contains(strings.Join(names, ","), "Muted") {
		t.Errorf("alerts after the kill: %v, want Paged and Muted", names)
	}
	// Once the group has been flushed again (its notification log
	// looked up), nobody was paged twice.
	testutil.WaitFor(t, "the group to be flushed after the restart", 10*time.Second, func() bool {
		return c.metric("aiops_alertmanager_nflog_queries_total") >= 1
	})
	if n := len(h.messages()); n != 1 {
		t.Errorf("%d pages, want 1: the restarted Alertmanager paged again for a group it had notified", n)
	}
}

// TestSilenceSizeLimit: a silence over alerting.max_silence_size_bytes
// is refused by the v2 API (and a body far over it before it is read),
// so no silence that cannot be read back is ever saved; an Alertmanager
// still starts on a snapshot that an older aiops wrote with one, leaving
// only that one out.
func TestSilenceSizeLimit(t *testing.T) {
	dir := t.TempDir()
	h := newHook(t)
	conf := fmt.Sprintf("route:\n  receiver: hook\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: %s\n", h.srv.URL)
	am := startAM(t, dir, conf)
	srv := &http.Server{Handler: am.Handler()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := &child{t: t, url: "http://" + ln.Addr().String()}

	for _, size := range []int{DefaultMaxSilenceSizeBytes + 1, 5 << 20} {
		s := newSilence("Big", strings.Repeat("x", size))
		status, body := c.do(http.MethodPost, "/api/v2/silences", s)
		if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
			t.Errorf("POST a silence with a %d-byte comment: %d %.200s, want 400 or 413", size, status, body)
		}
	}
	ok := c.postSilence(newSilence("Small", "fine"))
	if err := am.Close(); err != nil {
		t.Fatal(err)
	}

	// An older aiops saved a silence too large to read back.
	big := &silencepb.MeshSilence{Silence: &silencepb.Silence{
		Id:        "too-big",
		Matchers:  []*silencepb.Matcher{{Type: silencepb.Matcher_EQUAL, Name: "alertname", Pattern: "Big"}},
		StartsAt:  timestamppb.Now(),
		EndsAt:    timestamppb.New(time.Now().Add(time.Hour)),
		UpdatedAt: timestamppb.Now(),
		Comment:   strings.Repeat("x", 5<<20),
	}, ExpiresAt: timestamppb.New(time.Now().Add(time.Hour))}
	f, err := os.OpenFile(filepath.Join(dir, SilencesFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := protodelim.MarshalTo(f, big); err != nil {
		t.Fatal(err)
	}
	f.Close()

	am2 := startAM(t, dir, conf)
	if got, err := am2.Silences().QueryOne(context.Background(), silence.QIDs(ok)); err != nil || got.Comment != "fine" {
		t.Errorf("silence saved before: %v, %v", got, err)
	}
	if _, err := am2.Silences().QueryOne(context.Background(), silence.QIDs("too-big")); err == nil {
		t.Error("the silence too large to read back was loaded")
	}
}

// TestPostedAlertEndingWhileDownResolves: an alert posted once (as
// amtool posts) that ends while aiops is down is resolved when aiops
// starts again, so that the group sinks (incidents) hear it resolve
// instead of waiting for an alert that no longer exists; one that has
// not ended is still there.
func TestPostedAlertEndingWhileDownResolves(t *testing.T) {
	dir := t.TempDir()
	conf := "route:\n  receiver: r\n  group_by: [alertname]" + fastRoute + "\nreceivers:\n  - name: r\n"
	sink := &recordingSink{}
	am := startAM(t, dir, conf, sink)
	ends := time.Now().Add(2 * time.Second)
	short := model.LabelSet{"alertname": "Short", "instance": "s"}
	long := model.LabelSet{"alertname": "Long", "instance": "l"}
	if err := am.Put(context.Background(),
		alert.New(model.Alert{Labels: short, StartsAt: time.Now().Add(-time.Minute), EndsAt: ends}, time.Now(), false),
		alert.New(model.Alert{Labels: long, StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour)}, time.Now(), false),
	); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "both groups to fire", 10*time.Second, func() bool { return len(sink.snapshot()) == 2 })
	if err := am.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the short alert's end to pass while down", 10*time.Second, func() bool { return time.Now().After(ends) })

	sink2 := &recordingSink{}
	am2 := startAM(t, dir, conf, sink2)
	testutil.WaitFor(t, "the short alert's group to resolve", 10*time.Second, func() bool {
		for _, c := range sink2.snapshot() {
			if len(c.resolved) == 1 && c.resolved[0] == "s" {
				return true
			}
		}
		return false
	})
	if _, err := am2.Alerts().Get(long.Fingerprint()); err != nil {
		t.Errorf("the alert that has not ended is gone after the restart: %v", err)
	}
}

// TestAlertsFileTornLine: the alerts file is a log that a crash may leave
// with a torn last line; it is skipped, the alerts before it load, and
// the file is rewritten with the alerts held.
func TestAlertsFileTornLine(t *testing.T) {
	dir := t.TempDir()
	conf := "route:\n  receiver: r\nreceivers:\n  - name: r\n"
	am := startAM(t, dir, conf)
	a := model.LabelSet{"alertname": "A"}
	for range 3 { // three lines of one alert, as resends with new annotations
		if err := am.Put(context.Background(), alert.New(model.Alert{Labels: a, StartsAt: time.Now().Add(-time.Minute), EndsAt: time.Now().Add(time.Hour),
			Annotations: model.LabelSet{"n": model.LabelValue(time.Now().String())}}, time.Now(), false)); err != nil {
			t.Fatal(err)
		}
	}
	am.Close()
	path := filepath.Join(dir, AlertsFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"labels":{"alertname":"B"},"startsAt":"2025-`)
	f.Close()

	am2 := startAM(t, dir, conf)
	if _, err := am2.Alerts().Get(a.Fingerprint()); err != nil {
		t.Fatalf("alert before the torn line: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != 1 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("alerts file after loading has %d lines, want the one alert held:\n%s", n, b)
	}
}
