package slackapp

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"

	"github.com/aiops-dev/aiops/api/promapi"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// TestQueryAnsweredAfterTheCommand: /aiops query checks the expression at
// once, answers within Slack's time, and tells the result afterwards,
// evaluated by the PromQL engine over the store.
func TestQueryAnsweredAfterTheCommand(t *testing.T) {
	e := newEnv(t)
	app := e.store.Appender(context.Background())
	if _, err := app.Append(0, labels.FromStrings("__name__", "up", "job", "api"), e.clock.Now().UnixMilli(), 1); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	engine := promql.NewEngine(promapi.EngineOpts(promapi.DefaultConfig(), tu.Logger(t), nil))
	t.Cleanup(func() { engine.Close() })
	e.app.o.Query = QueryFunc(rules.EngineQueryFunc(engine, e.store))

	if got := e.command("UREADER", `query up{job="api"}`); !strings.Contains(got, "answer follows") {
		t.Fatalf("query: %s", got)
	}
	e.ephemeralFor("UREADER", `{__name__="up", job="api"} 1`)
	if got := e.command("UREADER", `query up{`); !strings.Contains(got, "invalid: query:") {
		t.Fatalf("bad query: %s", got)
	}
	if got := e.command("USTRANGER", "query up"); !strings.Contains(got, "may not query") {
		t.Fatalf("stranger: %s", got)
	}
}
