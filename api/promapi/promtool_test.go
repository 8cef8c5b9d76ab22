package promapi

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/clitest"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// TestPromtool runs Prometheus's own CLI client against the API: what it
// reads back must be what was ingested.
func TestPromtool(t *testing.T) {
	bin := clitest.Promtool(t)
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)
	start, end := unix(fixtureStart), unix(fixtureEnd)

	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}

	cases := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "instant, promql format",
			args: []string{"query", "instant", srv.URL, "http_requests_total", "--time=" + end},
			want: `http_requests_total{instance="a:8080", job="api", method="GET", status="200"} => 400 @[1700000600]` + "\n" +
				`http_requests_total{instance="b:8080", job="api", method="POST", status="500"} => 40 @[1700000600]` + "\n",
		},
		{
			name: "instant, json format",
			args: []string{"query", "instant", "-o", "json", srv.URL, "sum by (job) (rate(http_requests_total[1m]))", "--time=" + end},
			want: `[{"metric":{"job":"api"},"value":[1700000600,"0.7333333333333333"]}]` + "\n",
		},
		{
			name: "range",
			args: []string{"query", "range", "-o", "json", srv.URL, `process_resident_memory_bytes`, "--start=1700000540", "--end=" + end, "--step=30s"},
			want: `[{"metric":{"__name__":"process_resident_memory_bytes","instance":"a:8080","job":"api"},` +
				`"values":[[1700000540,"1036000"],[1700000570,"1038000"],[1700000600,"1040000"]]}]` + "\n",
		},
		{
			name: "series",
			args: []string{"query", "series", "-o", "json", srv.URL, "--match=http_requests_total", "--start=" + start, "--end=" + end},
			want: `[{"__name__":"http_requests_total","instance":"a:8080","job":"api","method":"GET","status":"200"},` +
				`{"__name__":"http_requests_total","instance":"b:8080","job":"api","method":"POST","status":"500"}]` + "\n",
		},
		{
			name: "labels",
			args: []string{"query", "labels", srv.URL, "__name__", "--start=" + start, "--end=" + end},
			want: "http_requests_total\nprocess_resident_memory_bytes\n",
		},
		{
			name: "labels with match",
			args: []string{"query", "labels", "-o", "json", srv.URL, "status", "--match=http_requests_total", "--start=" + start, "--end=" + end},
			want: `["200","500"]` + "\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(c.args...); got != c.want {
				t.Errorf("promtool %s:\n got %q\nwant %q", strings.Join(c.args, " "), got, c.want)
			}
		})
	}

	// promtool reports the API's error and fails.
	cmd := exec.Command(bin, "query", "instant", srv.URL, "sum(http_requests_total")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad_data") || !strings.Contains(string(out), "unclosed left parenthesis") {
		t.Errorf("promtool on bad PromQL: err=%v output=%s", err, out)
	}
}
