package alertmanager

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/clitest"
)

// TestAmtool drives the API with the real amtool, through a bearer-token
// check standing in for aiops's auth middleware, mounted at /api/v2/ on a
// mux as the server does.
func TestAmtool(t *testing.T) {
	bin := clitest.Amtool(t)
	am := startAM(t, t.TempDir(), "route:\n  receiver: default\n  group_by: [alertname]\nreceivers:\n  - name: default\n")

	const token = "s3cret-token"
	mux := http.NewServeMux()
	mux.Handle("/api/v2/", am.Handler())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	httpConf := filepath.Join(dir, "http.yml")
	if err := os.WriteFile(httpConf, []byte("authorization:\n  type: Bearer\n  credentials: "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	amtool := func(wantOK bool, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		// No amtool config from the user's home directory.
		cmd.Env = append(os.Environ(), "HOME="+dir)
		err := cmd.Run()
		if wantOK && err != nil {
			t.Fatalf("amtool %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		if !wantOK && err == nil {
			t.Fatalf("amtool %s succeeded, want failure:\n%s", strings.Join(args, " "), stdout.String())
		}
		return stdout.String()
	}
	base := []string{"--alertmanager.url=" + srv.URL, "--http.config.file=" + httpConf}
	run := func(args ...string) string { return amtool(true, append(base, args...)...) }

	// Without the token the middleware refuses amtool.
	amtool(false, "--alertmanager.url="+srv.URL, "alert", "query")

	run("alert", "add", "alertname=AmtoolTest", "severity=warning", "service=api", "--annotation=summary=hello from amtool")
	run("alert", "add", "alertname=Other", "severity=info")

	type gettableAlert struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		Status      struct {
			State      string   `json:"state"`
			SilencedBy []string `json:"silencedBy"`
		} `json:"status"`
		Receivers []struct {
			Name string `json:"name"`
		} `json:"receivers"`
	}
	queryAlerts := func(args ...string) []gettableAlert {
		t.Helper()
		var out []gettableAlert
		if err := json.Unmarshal([]byte(run(append([]string{"alert", "query", "-o", "json"}, args...)...)), &out); err != nil {
			t.Fatalf("alert query output: %v", err)
		}
		return out
	}
	got := queryAlerts("alertname=AmtoolTest")
	if len(got) != 1 || got[0].Labels["service"] != "api" || got[0].Annotations["summary"] != "hello from amtool" {
		t.Fatalf("alert query: %+v", got)
	}
	if got[0].Status.State != "active" || len(got[0].Receivers) != 1 || got[0].Receivers[0].Name != "default" {
		t.Errorf("alert status %+v receivers %+v", got[0].Status, got[0].Receivers)
	}
	if n := len(queryAlerts()); n != 2 {
		t.Errorf("alert query without matchers: %d alerts, want 2", n)
	}

	id := strings.TrimSpace(run("silence", "add", "alertname=AmtoolTest", "--comment=deploying", "--author=tester", "--duration=1h"))
	if id == "" {
		t.Fatal("silence add printed no id")
	}
	type gettableSilence struct {
		ID       string                 `json:"id"`
		Comment  string                 `json:"comment"`
		Status   struct{ State string } `json:"status"`
		Matchers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"matchers"`
	}
	querySilences := func(args ...string) []gettableSilence {
		t.Helper()
		var out []gettableSilence
		if err := json.Unmarshal([]byte(run(append([]string{"silence", "query", "-o", "json"}, args...)...)), &out); err != nil {
			t.Fatalf("silence query output: %v", err)
		}
		return out
	}
	sils := querySilences()
	if len(sils) != 1 || sils[0].ID != id || sils[0].Comment != "deploying" || sils[0].Status.State != "active" {
		t.Fatalf("silence query: %+v", sils)
	}
	// The silence mutes the alert, and the API says so.
	got = queryAlerts("alertname=AmtoolTest", "--silenced")
	if len(got) != 1 || got[0].Status.State != "suppressed" || len(got[0].Status.SilencedBy) != 1 || got[0].Status.SilencedBy[0] != id {
		t.Fatalf("silenced alert: %+v", got)
	}
	if n := len(queryAlerts("alertname=AmtoolTest")); n != 0 {
		t.Errorf("alert query without --silenced lists %d silenced alerts", n)
	}

	run("silence", "expire", id)
	if sils := querySilences(); len(sils) != 0 {
		t.Errorf("silence still active after expire: %+v", sils)
	}
	sils = querySilences("--expired")
	if len(sils) != 1 || sils[0].ID != id || sils[0].Status.State != "expired" {
		t.Errorf("expired silences: %+v", sils)
	}
	got = queryAlerts("alertname=AmtoolTest")
	if len(got) != 1 || got[0].Status.State != "active" {
		t.Errorf("alert after the silence expired: %+v", got)
	}
}
