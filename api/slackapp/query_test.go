package slackapp

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/api/promapi"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// withQueries gives the app the PromQL engine over the store, for
// instant and range queries, with up{job="api"} written every minute of
// the hour before the clock's now.
func withQueries(t *testing.T, e *env) {
	t.Helper()
	app := e.store.Appender(context.Background())
	for i := 60; i >= 0; i-- {
		ts := e.clock.Now().Add(-time.Duration(i) * time.Minute).UnixMilli()
		if _, err := app.Append(0, labels.FromStrings("__name__", "up", "job", "api"), ts, float64(i%2)); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	engine := promql.NewEngine(promapi.EngineOpts(promapi.DefaultConfig(), tu.Logger(t), nil))
	t.Cleanup(func() { engine.Close() })
	e.app.o.Query = QueryFunc(rules.EngineQueryFunc(engine, e.store))
	e.app.o.QueryRange = func(ctx context.Context, expr string, start, end time.Time, step time.Duration) (promql.Matrix, error) {
		q, err := engine.NewRangeQuery(ctx, e.store, nil, expr, start, end, step)
		if err != nil {
			return nil, err
		}
		defer q.Close()
		res := q.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Matrix()
	}
}

// TestQueryAnsweredWithAChart: /aiops query checks the expression at
// once and acknowledges; the values and a chart of the range follow
// through the command's response_url, the chart a PNG uploaded through
// the files API and shown in the answer, shared with nobody else.
func TestQueryAnsweredWithAChart(t *testing.T) {
	e := newEnv(t)
	withQueries(t, e)

	if got := e.command("UREADER", `query up{job="api"} 30m`); !strings.Contains(got, "answer follows") || !strings.Contains(got, "last 30m") {
		t.Fatalf("query: %s", got)
	}
	r := e.responseFor("UREADER", `{__name__="up", job="api"} 0`)
	if r.Message.ResponseType != "ephemeral" || r.Message.ReplaceOriginal {
		t.Fatalf("answer %+v: want an ephemeral message beside the command", r.Message)
	}
	var img *slack.ImageBlock
	if r.Message.Blocks != nil {
		for _, b := range r.Message.Blocks.BlockSet {
			if ib, ok := b.(*slack.ImageBlock); ok {
				img = ib
			}
		}
	}
	if img == nil || img.SlackFile == nil || !strings.Contains(img.Title.Text, "last 30m") {
		t.Fatalf("answer has no chart of the range: %+v", r.Message.Blocks)
	}
	files := e.slack.Files()
	if len(files) != 1 || files[0].ID != img.SlackFile.ID || files[0].Channel != "" ||
		!bytes.HasPrefix(files[0].Content, []byte("\x89PNG")) {
		t.Fatalf("files %+v: want the chart's PNG, shared in no channel", files)
	}
	if len(e.slack.Ephemerals()) != 0 {
		t.Fatalf("answered through chat.postEphemeral too: %+v", e.slack.Ephemerals())
	}

	// No range: the last hour.
	if got := e.command("UREADER", `rate(up[5m])`); !strings.Contains(got, "Unknown command") {
		t.Fatalf("no subcommand: %s", got)
	}
	if got := e.command("UREADER", `query sum by (job) (up)`); !strings.Contains(got, "last 1h") {
		t.Fatalf("default range: %s", got)
	}
	e.responseFor("UREADER", `{job="api"} 0`)

	for text, want := range map[string]string{
		`query up{`:             "invalid: query:",
		`query up 30d`:          "invalid: range: 30d must be more than 0s and at most 7d",
		`query up{job="api"} x`: "invalid: query:",
		`query rate(up)`:        "expected type range vector",
	} {
		if got := e.command("UREADER", text); !strings.Contains(got, want) {
			t.Errorf("%s: %s, want %q", text, got, want)
		}
	}
	if got := e.command("USTRANGER", "query up"); !strings.Contains(got, "may not query") {
		t.Fatalf("stranger: %s", got)
	}
}

// TestResponseURLFollowedOnlyToSlack: a response_url on another host is
// not followed (whoever sends a request must not make aiops POST
// anywhere): the answer goes through chat.postEphemeral instead.
func TestResponseURLFollowedOnlyToSlack(t *testing.T) {
	e := newEnv(t)
	withQueries(t, e)
	var stolen atomic.Int64
	thief := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { stolen.Add(1) }))
	t.Cleanup(thief.Close)
	for _, u := range []string{
		thief.URL + "/hook",
		"https://hooks.slack.com.evil.example/commands/1",
		"https://user@hooks.slack.com/commands/1",
		"http://hooks.slack.com/commands/1",
		"file:///etc/passwd",
	} {
		if _, ok := e.app.followable(u); ok {
			t.Errorf("%s is followed", u)
		}
	}
	for _, u := range []string{"https://hooks.slack.com/commands/T1/2/abc", e.slack.ResponseURL("x")} {
		if _, ok := e.app.followable(u); !ok {
			t.Errorf("%s is not followed", u)
		}
	}

	code, body := e.post(PathCommands, formType, commandBody("UREADER", `query up{job="api"}`, thief.URL+"/hook"))
	if code != http.StatusOK || !strings.Contains(body, "answer follows") {
		t.Fatalf("%d %s", code, body)
	}
	e.ephemeralFor("UREADER", `{__name__="up", job="api"} 0`)
	e.app.Close()
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the other host got %d requests", n)
	}
	if len(e.slack.Responses()) != 0 {
		t.Fatalf("responses %+v", e.slack.Responses())
	}
}

// TestSlowCommandAnsweredThroughResponseURL: a command that takes longer
// than Slack waits is acknowledged at once, and its answer follows
// through the response_url.
func TestSlowCommandAnsweredThroughResponseURL(t *testing.T) {
	e := newEnv(t)
	e.app.ackWithin = 50 * time.Millisecond
	release := make(chan struct{})
	e.rem.runGate = release
	start := time.Now()
	got := e.command("UADMIN", "runbook run restart-api service=api")
	if !strings.Contains(got, "`/aiops runbook` is taking a while; the answer follows here") {
		t.Fatalf("acknowledgement: %s", got)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("the acknowledgement took %s", waited)
	}
	close(release)
	e.responseFor("UADMIN", "Runbook restart-api started on service=api (execution ex-1)")

	// Quick ones are answered in the acknowledgement.
	if got := e.command("UADMIN", "runbook run restart-api service=db"); !strings.Contains(got, "started on service=db") {
		t.Fatalf("quick command: %s", got)
	}
}
