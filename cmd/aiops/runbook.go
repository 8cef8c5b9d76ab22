package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/aiops-dev/aiops/remediation/match"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// runbookCommands are `aiops runbook lint|test|run|kill-switch`: lint and
// test work on files alone (test queries a running aiops only when told
// where); run and kill-switch go through a running aiops's API.
type runbookCommands struct {
	lint, test, run, kill *kingpin.CmdClause

	files  []string
	file   string
	alert  string
	at     string
	name   string
	target []string
	dryRun bool
	action string
	reason string
	server serverFlags
}

// serverFlags reach a running aiops.
type serverFlags struct {
	url       string
	tokenFile string
}

func (f *serverFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("url", "Base URL of the aiops API.").Default("http://localhost:9090").StringVar(&f.url)
	cmd.Flag("token-file", "File holding an API token (else $AIOPS_TOKEN): read scope to query, execute to run, admin to release the kill switch.").PlaceHolder("FILE").StringVar(&f.tokenFile)
}

func (f *serverFlags) token() (string, error) {
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("AIOPS_TOKEN"); t != "" {
		return t, nil
	}
	return "", errors.New("no token: give --token-file or set AIOPS_TOKEN")
}

func newRunbookCommands(app *kingpin.Application) []command {
	c := &runbookCommands{}
	rb := app.Command("runbook", "Check, try and run remediation runbooks (see docs/RUNBOOKS.md).")
	c.lint = rb.Command("lint", "Check runbook files: every problem as file:line:col (unknown keys, bad PromQL, bad matchers, unknown actions, no verify, unsafe settings). Exits 1 on any.")
	c.lint.Arg("files", "Runbook files or globs.").Required().StringsVar(&c.files)

	c.test = rb.Command("test", "Show which runbook an alert triggers, its target and every step rendered. Nothing runs; queries go to --url only when --query is given.")
	c.test.Arg("file", "Runbook file or glob.").Required().StringVar(&c.file)
	c.test.Flag("alert", "The alert, as JSON: an Alertmanager webhook payload, an alert object ({\"labels\": …, \"annotations\": …}) or a map of labels.").Required().PlaceHolder("ALERT.json").StringVar(&c.alert)
	c.test.Flag("at", "Time to render at (RFC 3339); default now.").StringVar(&c.at)
	query := c.test.Flag("query", "Evaluate preconditions and template queries on the aiops at --url.").Bool()
	c.test.Flag("url", "Base URL of the aiops API, for --query.").Default("http://localhost:9090").StringVar(&c.server.url)
	c.test.Flag("token-file", "File holding a read token, for --query (else $AIOPS_TOKEN).").PlaceHolder("FILE").StringVar(&c.server.tokenFile)

	c.run = rb.Command("run", "Run a runbook by hand through a running aiops (execute scope). The safety rails apply.")
	c.run.Arg("name", "Runbook name.").Required().StringVar(&c.name)
	c.run.Flag("target", "Target label, repeatable: --target service=api.").Required().PlaceHolder("LABEL=VALUE").StringsVar(&c.target)
	c.run.Flag("dry-run", "Decide and render the plan; record and do nothing.").BoolVar(&c.dryRun)
	c.server.register(c.run)

	c.kill = rb.Command("kill-switch", "Engage (execute scope) or release (admin scope) the global kill switch, or show it.")
	c.kill.Arg("action", "engage, release or status.").Required().EnumVar(&c.action, "engage", "release", "status")
	c.kill.Flag("reason", "Why; required to engage.").StringVar(&c.reason)
	c.server.register(c.kill)

	return []command{
		commandFunc{c.lint, c.runLint},
		commandFunc{c.test, func(ctx context.Context, stdout, stderr io.Writer) error { return c.runTest(ctx, stdout, *query) }},
		commandFunc{c.run, c.runRun},
		commandFunc{c.kill, c.runKill},
	}
}

// errLint makes lint exit 1 without printing more.
var errLint = errors.New("lint found problems")

func (c *runbookCommands) runLint(_ context.Context, stdout, _ io.Writer) error {
	rbs, probs, err := runbook.LoadFiles(c.files...)
	if err != nil {
		return err
	}
	if len(probs) == 0 {
		probs = runbook.Validate(rbs, runbook.ValidateOptions{})
	}
	probs.Sort()
	for _, p := range probs {
		fmt.Fprintln(stdout, p)
	}
	if len(probs) > 0 {
		fmt.Fprintf(stdout, "%d problems\n", len(probs))
		return errLint
	}
	fmt.Fprintf(stdout, "%d runbooks OK\n", len(rbs))
	return nil
}

// testAlert reads an alert: an Alertmanager webhook payload (the first
// alert), an alert object, or plain labels.
func testAlert(raw []byte) (labels, annotations map[string]string, err error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, nil, fmt.Errorf("--alert: not a JSON object: %w", err)
	}
	type alertObj struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	switch {
	case probe["alerts"] != nil:
		var p struct{ Alerts []alertObj }
		if err := json.Unmarshal(raw, &p); err != nil || len(p.Alerts) == 0 {
			return nil, nil, fmt.Errorf("--alert: a webhook payload without alerts")
		}
		return p.Alerts[0].Labels, p.Alerts[0].Annotations, nil
	case probe["labels"] != nil:
		var a alertObj
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, nil, fmt.Errorf("--alert: %w", err)
		}
		return a.Labels, a.Annotations, nil
	}
	var ls map[string]string
	if err := json.Unmarshal(raw, &ls); err != nil {
		return nil, nil, fmt.Errorf("--alert: neither a payload, an alert nor labels: %w", err)
	}
	return ls, nil, nil
}

func (c *runbookCommands) runTest(ctx context.Context, stdout io.Writer, query bool) error {
	rbs, probs, err := runbook.LoadFiles(c.file)
	if err != nil {
		return err
	}
	if len(probs) == 0 {
		probs = runbook.Validate(rbs, runbook.ValidateOptions{})
	}
	if len(probs) > 0 {
		return fmt.Errorf("the runbooks have problems (aiops runbook lint):\n%w", probs)
	}
	raw, err := os.ReadFile(c.alert)
	if err != nil {
		return fmt.Errorf("--alert: %w", err)
	}
	ls, ann, err := testAlert(raw)
	if err != nil {
		return err
	}
	if ls["alertname"] == "" {
		return errors.New("--alert: the alert has no alertname label")
	}
	at := time.Now()
	if c.at != "" {
		if at, err = time.Parse(time.RFC3339, c.at); err != nil {
			return fmt.Errorf("--at: %w", err)
		}
	}
	r := &runbook.Renderer{}
	if query {
		q, err := c.remoteQuery()
		if err != nil {
			return err
		}
		r.Query = q
	}
	ptrs := make([]*runbook.Runbook, len(rbs))
	for i := range rbs {
		ptrs[i] = &rbs[i]
	}
	set, err := match.New(ptrs)
	if err != nil {
		return err
	}
	cands := set.Match(match.Signal{Kind: runbook.TriggerAlert, Name: ls["alertname"], Labels: ls})
	if len(cands) == 0 {
		fmt.Fprintf(stdout, "no runbook matches %s%v\n", ls["alertname"], sortedLabels(ls))
		return nil
	}
	for _, rb := range cands {
		fmt.Fprintf(stdout, "runbook %s (%s:%d)\n", rb.Name, rb.Source.File, rb.Source.Line)
		d := runbook.Data{Labels: ls, Annotations: ann, Runbook: rb.Name}
		target, err := r.RenderTarget(ctx, rb, d, at)
		if err != nil {
			fmt.Fprintf(stdout, "  target: refused: %v\n\n", err)
			continue
		}
		d.Target = target
		fmt.Fprintf(stdout, "  target: %s\n", runbook.TargetKey(target))
		for i, g := range rb.Preconditions {
			expr, err := r.RenderGuard(ctx, fmt.Sprintf("preconditions[%d]", i), g.Expr, d, at)
			state := "not evaluated (add --query)"
			switch {
			case err != nil:
				state = "error: " + err.Error()
			case query:
				v, qerr := r.Query(ctx, expr, at)
				switch {
				case qerr != nil:
					state = "error: " + qerr.Error()
				case len(v) == 0 || len(v) == 1 && v[0].Metric.IsEmpty() && v[0].F == 0:
					state = "does not hold"
				default:
					state = "holds"
				}
			}
			fmt.Fprintf(stdout, "  precondition %q: %s\n    %s\n", g.Name, state, oneLine(expr))
		}
		masked := map[string]string{}
		for n := range rb.Secrets {
			masked[n] = runbook.MaskedSecret(n)
		}
		for i, s := range rb.Steps {
			rs, err := r.RenderStep(ctx, rb, s, fmt.Sprintf("steps[%d]", i), d, at, runbook.NewSecrets(masked))
			if err != nil {
				fmt.Fprintf(stdout, "  step %d %s: %v\n", i+1, s.Action, err)
				continue
			}
			fmt.Fprintf(stdout, "  step %d %q: %s %v (on failure: %s)\n", i+1, s.Name, s.Action, runbook.FormatParams(rs.Masked), rb.FailureMode(i))
			if rs.Verify != "" {
				fmt.Fprintf(stdout, "    verify for %s within %s: %s\n", s.Verify.For, s.Verify.Within, oneLine(rs.Verify))
			}
		}
		for i, s := range rb.Rollback {
			rs, err := r.RenderStep(ctx, rb, s, fmt.Sprintf("rollback[%d]", i), d, at, runbook.NewSecrets(masked))
			if err == nil {
				fmt.Fprintf(stdout, "  rollback %d: %s %v\n", i+1, s.Action, runbook.FormatParams(rs.Masked))
			}
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func sortedLabels(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, ls[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// remoteQuery evaluates queries with the Prometheus API client against
// a running aiops.
func (c *runbookCommands) remoteQuery() (func(context.Context, string, time.Time) (promql.Vector, error), error) {
	tok, err := c.server.token()
	if err != nil {
		return nil, err
	}
	client, err := promapi.NewClient(promapi.Config{Address: c.server.url, RoundTripper: bearer{tok, http.DefaultTransport}})
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	api := promv1.NewAPI(client)
	return func(ctx context.Context, q string, at time.Time) (promql.Vector, error) {
		v, _, _, err := api.Query(ctx, q, at)
		if err != nil {
			return nil, err
		}
		var out promql.Vector
		switch v := v.(type) {
		case model.Vector:
			for _, s := range v {
				b := labels.NewBuilder(labels.EmptyLabels())
				for k, val := range s.Metric {
					b.Set(string(k), string(val))
				}
				out = append(out, promql.Sample{Metric: b.Labels(), T: int64(s.Timestamp), F: float64(s.Value)})
			}
		case *model.Scalar:
			out = promql.Vector{{T: int64(v.Timestamp), F: float64(v.Value)}}
		default:
			return nil, fmt.Errorf("%s: not a vector or a scalar", q)
		}
		return out, nil
	}, nil
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// call sends a JSON request to the remediation API and decodes the
// answer into out; an error answer is returned as an error.
func (f *serverFlags) call(ctx context.Context, method, path string, body, out any) error {
	tok, err := f.token()
	if err != nil {
		return err
	}
	u, err := url.JoinPath(f.url, path)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The server answers within its record timeout; a server that does
	// not answer at all must not hang the command.
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
			Rail  string `json:"rail"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			if e.Rail != "" {
				return fmt.Errorf("%s (rail %s)", e.Error, e.Rail)
			}
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	return json.Unmarshal(raw, out)
}

func (c *runbookCommands) runRun(ctx context.Context, stdout, _ io.Writer) error {
	target := map[string]string{}
	for _, kv := range c.target {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--target: want LABEL=VALUE, got %q", kv)
		}
		target[k] = v
	}
	var out json.RawMessage
	if err := c.server.call(ctx, http.MethodPost, "/api/v1/runbooks/"+url.PathEscape(c.name)+"/run",
		map[string]any{"target": target, "dry_run": c.dryRun}, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

func (c *runbookCommands) runKill(ctx context.Context, stdout, _ io.Writer) error {
	var out json.RawMessage
	var err error
	switch c.action {
	case "status":
		err = c.server.call(ctx, http.MethodGet, "/api/v1/remediation/kill_switch", nil, &out)
	case "engage":
		if strings.TrimSpace(c.reason) == "" {
			return errors.New("--reason: say why remediation stops")
		}
		err = c.server.call(ctx, http.MethodPost, "/api/v1/remediation/kill_switch/engage", map[string]string{"reason": c.reason}, &out)
	case "release":
		err = c.server.call(ctx, http.MethodPost, "/api/v1/remediation/kill_switch/release", map[string]string{"reason": c.reason}, &out)
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
