package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/clitest"
	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// dashboard is what the test reads of a provisioned dashboard.
type dashboard struct {
	UID         string  `json:"uid"`
	Title       string  `json:"title"`
	Panels      []panel `json:"panels"`
	Annotations struct {
		List []struct {
			Datasource datasource `json:"datasource"`
			Target     target     `json:"target"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name       string     `json:"name"`
			Type       string     `json:"type"`
			Datasource datasource `json:"datasource"`
			Definition string     `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	Targets    []target   `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	RefID      string     `json:"refId"`
	Datasource datasource `json:"datasource"`
	Expr       string     `json:"expr"`
	QueryType  string     `json:"queryType"`
}

// pluginQueryTypes are the query types the aiops data source answers
// (plugin/pkg/plugin).
var pluginQueryTypes = map[string]bool{"incidents": true, "annotations": true, "runbooks": true, "anomalies": true,
	"forecasts": true, "logs": true, "traces": true, "serviceGraph": true}

// substitute replaces Grafana's variables the way Grafana would for the
// test's range: every service and instance, a one-minute rate interval.
func substitute(expr string) string {
	return strings.NewReplacer("$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m", "$service", ".+", "$instance", ".+").Replace(expr)
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob("../../dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want := strings.TrimSuffix(filepath.Base(f), ".json"); d.UID != want {
			t.Errorf("%s: uid %q, want the file's name %q", f, d.UID, want)
		}
		out[f] = d
	}
	return out
}

// serveAiops runs the aiops binary, `aiops serve` on an embedded store,
// with the shipped rules and self-monitoring every second, so that the
// dashboard of aiops itself has its series. It returns the HTTP and
// OTLP/gRPC addresses and the admin token.
func serveAiops(t *testing.T) (httpAddr, otlp, token string) {
	t.Helper()
	bin := clitest.Aiops(t)
	dir := t.TempDir()
	rules, err := filepath.Abs("../../deploy/rules/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath, dataDir := filepath.Join(dir, "aiops.yaml"), filepath.Join(dir, "data")
	cfg := fmt.Sprintf("self_monitoring:\n  interval: 1s\nalerting:\n  rule_files: [%q]\n  evaluation_interval: 1s\ncollector:\n  batch:\n    flush_timeout: 50ms\n", rules)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, otlp = freeport.Addr(t), freeport.Addr(t)
	logFile, err := os.Create(filepath.Join(dir, "aiops.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath, "--data-dir", dataDir, "--http-addr", httpAddr,
		"--otlp-grpc-addr", otlp, "--otlp-http-addr", freeport.Addr(t), "--log.level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("aiops log:\n%s", b)
		}
	})
	testutil.WaitFor(t, "aiops to be ready", 120*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("aiops exited before it was ready")
		default:
		}
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return httpAddr, otlp, strings.TrimSpace(string(b))
}

// queryRange asks aiops's Prometheus-compatible API for expr over
// [start, end] and says whether any series has a point.
func queryRange(httpAddr, token, expr string, start, end time.Time) (bool, error) {
	v := url.Values{"query": {expr}, "start": {strconv.FormatInt(start.Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {"5"}}
	req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Values     []json.RawMessage `json:"values"`
				Histograms []json.RawMessage `json:"histograms"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return false, fmt.Errorf("query_range: HTTP %d: %w", res.StatusCode, err)
	}
	if body.Status != "success" {
		return false, fmt.Errorf("query_range: HTTP %d: %s", res.StatusCode, body.Error)
	}
	for _, r := range body.Data.Result {
		if len(r.Values)+len(r.Histograms) > 0 {
			return true, nil
		}
	}
	return false, nil
}

// TestDashboards feeds `aiops serve` from the workflow-engine simulator
// (with short faults, so that error series exist) and runs every PromQL
// query of every provisioned dashboard, variables substituted, through
// aiops's query API: each parses and returns data. aiops writes its own
// metrics into its store (self_monitoring), which the dashboard of aiops
// itself reads. Queries for the aiops data source name a query type the
// plugin answers.
func TestDashboards(t *testing.T) {
	dashboards := loadDashboards(t)
	httpAddr, endpoint, token := serveAiops(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	scenarioFile := filepath.Join(dir, "scenario.yaml")
	os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600)
	os.WriteFile(scenarioFile, []byte(`
engine:
  trough_ratio: 1
faults:
  - {fault: llm_outage, target: openai, intensity: 1, duration: 3s}
  - {fault: bad_config, target: api-1, intensity: 0.5, duration: 3s}
`), 0o600)
	begin := time.Now().Add(-time.Minute)
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{
		"--otlp-endpoint", endpoint, "--control-addr", "127.0.0.1:0", "--token-file", tokenFile,
		"--scenario", scenarioFile, "--seed", "3", "--export-interval", "200ms", "--run-for", "5s", "--log.level", "warn",
	}, &bytes.Buffer{}, &stderr); code != 0 {
		t.Fatalf("workflow-sim exited with %d:\n%s", code, stderr.String())
	}

	p := parser.NewParser(promapi.ParserOptions(promapi.DefaultConfig()))
	hasData := func(expr string) (bool, error) {
		return queryRange(httpAddr, token, expr, begin, time.Now().Add(time.Minute))
	}

	queries := 0
	for file, d := range dashboards {
		for _, a := range d.Annotations.List {
			if a.Datasource.Type == "aiops-aiops-datasource" && !pluginQueryTypes[a.Target.QueryType] {
				t.Errorf("%s: annotation query type %q is not one the plugin answers", file, a.Target.QueryType)
			}
		}
		for _, v := range d.Templating.List {
			if v.Type == "query" && !strings.HasPrefix(v.Definition, "label_values(") {
				t.Errorf("%s: variable %s: %q is not a label_values query", file, v.Name, v.Definition)
			}
		}
		for _, pn := range d.Panels {
			if pn.Type == "row" {
				continue
			}
			if len(pn.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, pn.Title)
			}
			for _, tg := range pn.Targets {
				ds := tg.Datasource
				if ds.Type == "" {
					ds = pn.Datasource
				}
				switch ds.Type {
				case "aiops-aiops-datasource":
					if !pluginQueryTypes[tg.QueryType] {
						t.Errorf("%s: panel %q: query type %q is not one the plugin answers", file, pn.Title, tg.QueryType)
					}
				case "prometheus":
					expr := substitute(tg.Expr)
					if _, err := p.ParseExpr(expr); err != nil {
						t.Errorf("%s: panel %q %s: %v", file, pn.Title, tg.RefID, err)
						continue
					}
					queries++
					var last error
					testutil.Eventually(t, 30*time.Second, d.Title+": "+pn.Title+" returns data", func() (bool, string) {
						ok, err := hasData(expr)
						if last = err; err != nil {
							return true, ""
						}
						return ok, expr
					})
					if last != nil {
						t.Errorf("%s: panel %q: %v", file, pn.Title, last)
					}
				default:
					t.Errorf("%s: panel %q: data source type %q", file, pn.Title, ds.Type)
				}
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d PromQL queries in the dashboards", queries)
	}
}
