package collector

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

// gauges is a request of one gauge point per id of metric name at ts.
func gauges(name string, ts time.Time, ids ...int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "guard")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(name)
	dps := m.SetEmptyGauge().DataPoints()
	for _, id := range ids {
		dp := dps.AppendEmpty()
		dp.Attributes().PutStr("id", fmt.Sprint(id))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.SetDoubleValue(float64(id))
	}
	return md
}

// merge appends the resources of the others to md.
func merge(md pmetric.Metrics, others ...pmetric.Metrics) pmetric.Metrics {
	for _, o := range others {
		o.ResourceMetrics().MoveAndAppendTo(md.ResourceMetrics())
	}
	return md
}

func ids(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// exportGRPC sends md with pdata's OTLP/gRPC client, with a bearer token
// if one is given.
func exportGRPC(t testing.TB, addr string, md pmetric.Metrics, token string) (pmetricotlp.ExportResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md))
}

// httpAnswer is an OTLP/HTTP answer: the partial success of a 200, the
// status message otherwise.
type httpAnswer struct {
	code     int
	rejected int64
	msg      string
	header   http.Header
}

// postBody posts body to /v1/metrics and decodes the answer, which is
// protobuf for a protobuf request.
func postBody(t testing.TB, addr, contentType string, body []byte, token string) httpAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/metrics", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := httpAnswer{code: resp.StatusCode, header: resp.Header}
	ct := resp.Header.Get("Content-Type")
	switch {
	case resp.StatusCode == http.StatusOK && ct == "application/x-protobuf":
		r := pmetricotlp.NewExportResponse()
		if err := r.UnmarshalProto(b); err != nil {
			t.Fatalf("answer: %v", err)
		}
		a.rejected, a.msg = r.PartialSuccess().RejectedDataPoints(), r.PartialSuccess().ErrorMessage()
	case resp.StatusCode == http.StatusOK:
		r := pmetricotlp.NewExportResponse()
		if err := r.UnmarshalJSON(b); err != nil {
			t.Fatalf("answer %q: %v", b, err)
		}
		a.rejected, a.msg = r.PartialSuccess().RejectedDataPoints(), r.PartialSuccess().ErrorMessage()
	case ct == "application/x-protobuf":
		var st spb.Status
		if err := proto.Unmarshal(b, &st); err != nil {
			t.Fatalf("status answer: %v", err)
		}
		a.msg = st.GetMessage()
	default:
		a.msg = string(b)
	}
	return a
}

func postMetrics(t testing.TB, addr string, md pmetric.Metrics, token string) httpAnswer {
	t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return postBody(t, addr, "application/x-protobuf", body, token)
}

// TestFuturePointDoesNotStopIngest is issue 12's first finding: one point
// stamped 2h05m ahead moved the embedded TSDB's head, after which every
// later sample of every series was refused as too old while clients heard
// OK. The point is now refused before any store sees it, the client is
// told so in the partial success, and ingest goes on.
func TestFuturePointDoesNotStopIngest(t *testing.T) {
	for _, now := range []time.Time{testutil.Epoch, time.Date(2026, time.December, 31, 23, 50, 0, 0, time.UTC)} {
		t.Run("embedded "+now.Format(time.RFC3339), func(t *testing.T) {
			testFuturePoint(t, now, storetest.Embedded(t))
		})
	}
	t.Run("clickhouse", func(t *testing.T) {
		srv := sharedClickHouse(t)
		testFuturePoint(t, testutil.Epoch, openClickHouseStore(t, chConfig(srv, srv.NewDatabase(t))))
	})
}

func testFuturePoint(t *testing.T, now time.Time, store storage.Store) {
	clock := testutil.NewClock(now)
	cfg := allInOneConfig(t)
	r := start(t, cfg, Deps{Store: store, Now: clock.Now})

	if _, err := exportGRPC(t, r.grpc, gauges("guard_value", now.Add(-30*time.Second), ids(0, 10)...), ""); err != nil {
		t.Fatal(err)
	}
	ahead := now.Add(2*time.Hour + 5*time.Minute)
	resp, err := exportGRPC(t, r.grpc, merge(gauges("guard_future", ahead, 0), gauges("guard_value", now.Add(-20*time.Second), 0)), "")
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), "too_far_in_future") || !strings.Contains(ps.ErrorMessage(), "2h5m0s ahead") {
		t.Errorf("partial success %d %q, want the future point rejected", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	// Over HTTP too, and a request of future points alone is a 400.
	a := postMetrics(t, r.http, gauges("guard_future", ahead, 1, 2), "")
	if a.code != http.StatusBadRequest || !strings.Contains(a.msg, "all 2 data points refused: too_far_in_future") {
		t.Errorf("future points alone: %d %q, want 400 naming them", a.code, a.msg)
	}
	if _, err := exportGRPC(t, r.grpc, gauges("guard_value", now.Add(-10*time.Second), ids(0, 10)...), ""); err != nil {
		t.Fatal(err)
	}

	want := 10 + 1 + 10
	var got map[string][]sample
	testutil.WaitFor(t, "every normal point stored", 30*time.Second, func() bool {
		got = readSeriesIn(t, store, now.Add(-time.Hour), now.Add(3*time.Hour), nameIs("guard_value"))
		n := 0
		for _, s := range got {
			n += len(s)
		}
		return n == want
	})
	for k, s := range got {
		if last := s[len(s)-1]; last.t != now.Add(-10*time.Second).UnixMilli() {
			t.Errorf("%s: last sample at %s, want the last request's", k, time.UnixMilli(last.t).UTC())
		}
	}
	if fut := readSeriesIn(t, store, now.Add(-time.Hour), now.Add(3*time.Hour), nameIs("guard_future")); len(fut) != 0 {
		t.Errorf("future series stored: %v", seriesNames(fut))
	}
	if n := metricValue(t, r.reg, "aiops_collector_refused_items_total", map[string]string{"reason": "too_far_in_future"}); n != 3 {
		t.Errorf("refused{reason=too_far_in_future} = %v, want 3", n)
	}
	if n := metricValue(t, r.reg, "otelcol_receiver_refused_metric_points_total", nil); n != 3 {
		t.Errorf("otelcol_receiver_refused_metric_points_total = %v, want 3", n)
	}
}

// TestStoreRefusalsReported is issue 11's second finding: points the
// store refuses (older than the embedded TSDB's out-of-order window) were
// acknowledged as full success. They are reported in the partial
// success, counted as refused, and logged once a minute, not per request.
func TestStoreRefusalsReported(t *testing.T) {
	now := testutil.Epoch
	clock := testutil.NewClock(now)
	logs := &testutil.SyncBuffer{}
	store := storetest.Embedded(t)
	r := start(t, allInOneConfig(t), Deps{Store: store, Now: clock.Now, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	if _, err := exportGRPC(t, r.grpc, gauges("refusal_value", now, ids(0, 10)...), ""); err != nil {
		t.Fatal(err)
	}
	// The embedded store takes samples down to 2h (its out-of-order
	// window) behind the newest.
	mixed := merge(gauges("refusal_value", now.Add(-3*time.Hour), ids(0, 5)...), gauges("refusal_value", now.Add(time.Second), ids(5, 10)...))
	resp, err := exportGRPC(t, r.grpc, mixed, "")
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 5 || !strings.Contains(ps.ErrorMessage(), "too_old: 5 data points") {
		t.Errorf("partial success %d %q, want 5 too old", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	a := postMetrics(t, r.http, gauges("refusal_value", now.Add(-4*time.Hour), ids(0, 3)...), "")
	if a.code != http.StatusBadRequest || !strings.Contains(a.msg, "all 3 data points refused: too_old") {
		t.Errorf("too old points alone: %d %q, want 400", a.code, a.msg)
	}
	_, err = exportGRPC(t, r.grpc, gauges("refusal_value", now.Add(-4*time.Hour), 7), "")
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument {
		t.Errorf("too old point alone over gRPC: %v, want InvalidArgument", err)
	}
	n := 0
	for _, s := range readSeriesIn(t, store, now.Add(-5*time.Hour), now.Add(time.Hour), nameIs("refusal_value")) {
		n += len(s)
	}
	if n != 15 {
		t.Errorf("%d samples stored, want 15", n)
	}
	if n := metricValue(t, r.reg, "aiops_collector_refused_items_total", map[string]string{"reason": "too_old"}); n != 9 {
		t.Errorf("refused{reason=too_old} = %v, want 9", n)
	}
	if n := metricValue(t, r.reg, "otelcol_receiver_refused_metric_points_total", nil); n != 9 {
		t.Errorf("otelcol_receiver_refused_metric_points_total = %v, want 9", n)
	}
	if n := strings.Count(logs.String(), "refused metric data points"); n != 1 {
		t.Errorf("%d log lines about refusals in three requests within a minute, want 1:\n%s", n, logs)
	}
	clock.Add(time.Minute)
	exportGRPC(t, r.grpc, gauges("refusal_value", now.Add(-4*time.Hour), 8), "")
	if n := strings.Count(logs.String(), "refused metric data points"); n != 2 {
		t.Errorf("%d log lines after a minute, want 2", n)
	}
}

// bigPoint is a request with one point of metric name with n attributes
// (made with FromRaw: PutStr looks each key up, which is quadratic).
func bigPoint(name string, ts time.Time, n int, value string) pmetric.Metrics {
	md := gauges(name, ts, 0)
	raw := map[string]any{}
	for i := range n {
		raw[fmt.Sprintf("label_%d", i)] = value
	}
	dp := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().At(0)
	if err := dp.Attributes().FromRaw(raw); err != nil {
		panic(err)
	}
	return md
}

// TestHostileMetrics sends what issue 12 found harmful or stored as is:
// 80,000 labels on one series (quadratic in the translator), long label
// values, invalid UTF-8, a protobuf body declared as JSON. Each is
// refused with its reason while the good points of the same request are
// stored.
func TestHostileMetrics(t *testing.T) {
	now := testutil.Epoch
	clock := testutil.NewClock(now)
	store := storetest.Embedded(t)
	cfg := allInOneConfig(t)
	cfg.Limits.MetricNameLengthLimit = 24
	r := start(t, cfg, Deps{Store: store, Now: clock.Now})
	good := func(id int) pmetric.Metrics { return gauges("hostile_good", now, id) }
	id := 0

	for _, tc := range []struct {
		name   string
		bad    pmetric.Metrics
		reason string
	}{
		{"80,000 labels", bigPoint("hostile_labels", now, 80_000, "v"), "label_limit: 1 data point (e.g. metric \"hostile_labels\": 80000 attributes, limit label_limit 128)"},
		{"long label value", bigPoint("hostile_value", now, 1, strings.Repeat("x", 10_000)), "label_value_length: 1 data point"},
		{"metric name not UTF-8", gauges("hostile\xff", now, 1), `invalid_utf8: 1 data point (e.g. metric "hostile\xff": metric name is not valid UTF-8)`},
		{"label value not UTF-8", bigPoint("hostile_utf8", now, 1, "caf\xe9"), `invalid_utf8: 1 data point (e.g. metric "hostile_utf8": value of label "label_0" is not valid UTF-8)`},
		// Within the limit as sent, beyond it as stored with its unit:
		// the translator's output is checked too.
		{"name too long with its unit", func() pmetric.Metrics {
			md := gauges("hostile_name_len_ok", now, 1)
			md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).SetUnit("s")
			return md
		}(), `metric_name_length: 1 data point (e.g. metric "hostile_name_len_ok_seconds": name has 27 bytes`},
	} {
		for _, transport := range []string{"grpc", "http"} {
			id++
			bad := pmetric.NewMetrics()
			tc.bad.CopyTo(bad)
			md := merge(good(id), bad)
			var rejected int64
			var msg string
			if transport == "grpc" {
				resp, err := exportGRPC(t, r.grpc, md, "")
				if err != nil {
					t.Errorf("%s over gRPC: %v", tc.name, err)
					continue
				}
				rejected, msg = resp.PartialSuccess().RejectedDataPoints(), resp.PartialSuccess().ErrorMessage()
			} else {
				a := postMetrics(t, r.http, md, "")
				if a.code != http.StatusOK {
					t.Errorf("%s over HTTP: %d %s", tc.name, a.code, a.msg)
					continue
				}
				rejected, msg = a.rejected, a.msg
			}
			if rejected != 1 || !strings.Contains(msg, tc.reason) {
				t.Errorf("%s over %s: rejected %d, %q; want 1 and %q", tc.name, transport, rejected, msg, tc.reason)
			}
		}
	}
	// Refused alone, over HTTP as JSON: a 400 whose message is readable
	// JSON even though the name it quotes is not UTF-8.
	body, _ := pmetricotlp.NewExportRequestFromMetrics(gauges("bad\xffname", now, 1)).MarshalJSON()
	if a := postBody(t, r.http, "application/json", body, ""); a.code != http.StatusBadRequest || !strings.Contains(a.msg, "invalid_utf8") {
		t.Errorf("invalid UTF-8 alone as JSON: %d %q, want 400 naming invalid_utf8", a.code, a.msg)
	}
	// A protobuf body sent as JSON was a 500 (the error quoted the body,
	// which could not be put into a JSON answer).
	pb, _ := pmetricotlp.NewExportRequestFromMetrics(good(99)).MarshalProto()
	if a := postBody(t, r.http, "application/json", pb, ""); a.code != http.StatusBadRequest || !strings.Contains(a.msg, "it looks like protobuf: send it with Content-Type: application/x-protobuf") {
		t.Errorf("protobuf as JSON: %d %q, want 400 naming the mistake", a.code, a.msg)
	}
	js, _ := pmetricotlp.NewExportRequestFromMetrics(good(98)).MarshalJSON()
	if a := postBody(t, r.http, "application/x-protobuf", js, ""); a.code != http.StatusBadRequest || !strings.Contains(a.msg, "it looks like JSON") {
		t.Errorf("JSON as protobuf: %d %q, want 400 naming the mistake", a.code, a.msg)
	}

	stored := readSeriesIn(t, store, now.Add(-time.Hour), now.Add(time.Hour), labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, "hostile.*"))
	good10 := 0
	for k := range stored {
		if strings.Contains(k, `__name__="hostile_good"`) {
			good10++
		}
	}
	if len(stored) != 10 || good10 != 10 {
		t.Errorf("stored %v, want the 10 good series only", seriesNames(stored))
	}
}

// TestSeriesLimit: beyond collector.limits.max_series new series are
// refused with a reason, while the series that exist go on.
func TestSeriesLimit(t *testing.T) {
	now := testutil.Epoch
	clock := testutil.NewClock(now)
	store := storetest.Embedded(t)
	cfg := allInOneConfig(t)
	cfg.Limits.MaxSeries = 4
	r := start(t, cfg, Deps{Store: store, Now: clock.Now})

	if resp, err := exportGRPC(t, r.grpc, gauges("limited", now, ids(0, 4)...), ""); err != nil || resp.PartialSuccess().RejectedDataPoints() != 0 {
		t.Fatalf("first series: %v %v", resp.PartialSuccess().ErrorMessage(), err)
	}
	resp, err := exportGRPC(t, r.grpc, gauges("limited", now.Add(time.Second), ids(0, 7)...), "")
	if err != nil {
		t.Fatal(err)
	}
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 3 || !strings.Contains(ps.ErrorMessage(), "series_limit: 3 data points") || !strings.Contains(ps.ErrorMessage(), "limit max_series, 4 active") {
		t.Errorf("partial success %d %q, want the 3 new series refused", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if n := metricValue(t, r.reg, "aiops_collector_active_series", nil); n != 4 {
		t.Errorf("active series %v, want 4", n)
	}
	// Two idle generations later the refused ones fit: the old ones
	// were forgotten.
	clock.Add(2 * time.Hour)
	if resp, err := exportGRPC(t, r.grpc, gauges("limited", now.Add(2*time.Hour), ids(4, 7)...), ""); err != nil || resp.PartialSuccess().RejectedDataPoints() != 0 {
		t.Errorf("after the old series went idle: %q %v", resp.PartialSuccess().ErrorMessage(), err)
	}
	got := readSeriesIn(t, store, now.Add(-time.Hour), now.Add(3*time.Hour), nameIs("limited"))
	if len(got) != 7 {
		t.Errorf("%d series stored, want 7: %v", len(got), seriesNames(got))
	}
}
