package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

// gatedStore is a real store behind a switch: while down, writes fail the
// way an unreachable backend's do (storage.ErrUnavailable) and nothing is
// written.
type gatedStore struct {
	storage.Store
	down    atomic.Bool
	commits atomic.Int64
}

func (g *gatedStore) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &gatedAppender{AppenderV2: g.Store.AppenderV2(ctx), g: g}
}

func (g *gatedStore) AppendLogs(ctx context.Context, r []storage.LogRecord) error {
	if g.down.Load() {
		return fmt.Errorf("logs: %w", storage.ErrUnavailable)
	}
	return g.Store.AppendLogs(ctx, r)
}

func (g *gatedStore) AppendSpans(ctx context.Context, s []storage.Span) error {
	if g.down.Load() {
		return fmt.Errorf("spans: %w", storage.ErrUnavailable)
	}
	return g.Store.AppendSpans(ctx, s)
}

type gatedAppender struct {
	promstorage.AppenderV2
	g *gatedStore
}

func (a *gatedAppender) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AOptions) (promstorage.SeriesRef, error) {
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (a *gatedAppender) Commit() error {
	if a.g.down.Load() {
		_ = a.AppenderV2.Rollback()
		return fmt.Errorf("commit: %w", storage.ErrUnavailable)
	}
	a.g.commits.Add(1)
	return a.AppenderV2.Commit()
}

// gaugeRequest returns a request of n gauge points of series "bp_gauge"
// with ids first..first+n-1, one point each at ts.
func gaugeRequest(first, n int, ts time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "bp")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("bp_gauge")
	dps := m.SetEmptyGauge().DataPoints()
	for i := range n {
		dp := dps.AppendEmpty()
		dp.Attributes().PutInt("id", int64(first+i))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		dp.SetDoubleValue(float64(first + i))
	}
	return md
}

func postOTLP(t *testing.T, addr string, md pmetric.Metrics) *http.Response {
	t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return postRaw(t, addr, "/v1/metrics", "application/x-protobuf", body)
}

func postRaw(t *testing.T, addr, path, contentType string, body []byte) *http.Response {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestQueueFullPushesBack fills the queue while the store is down: clients
// get 503 with Retry-After over HTTP and Unavailable with RetryInfo over
// gRPC, the queue never holds more than its capacity, and once the store
// is back everything that was accepted is stored, exactly once.
func TestQueueFullPushesBack(t *testing.T) {
	store := &gatedStore{Store: storetest.Embedded(t)}
	store.down.Store(true)
	cfg := allInOneConfig(t)
	cfg.Queue.MaxItems = 200
	cfg.Batch.MinSize = 10
	cfg.Batch.MaxSize = 50
	r := start(t, cfg, Deps{Store: store})

	ts := time.Now().Truncate(time.Millisecond)
	const perRequest = 50
	accepted, next := 0, 0
	var refusal *http.Response
	for range 20 {
		resp := postOTLP(t, r.http, gaugeRequest(next, perRequest, ts))
		next += perRequest
		switch resp.StatusCode {
		case http.StatusOK:
			accepted += perRequest
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			refusal = resp
		default:
			t.Fatalf("unexpected status %s", resp.Status)
		}
		if refusal != nil {
			break
		}
	}
	if refusal == nil {
		t.Fatalf("20 requests of %d points into a queue of %d were all accepted", perRequest, cfg.Queue.MaxItems)
	}
	if got := refusal.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want \"1\" (retry_after 1s)", got)
	}
	if accepted == 0 || accepted > int(cfg.Queue.MaxItems) {
		t.Errorf("accepted %d points, want between 1 and the queue's %d", accepted, cfg.Queue.MaxItems)
	}

	// gRPC clients get Unavailable with a RetryInfo.
	conn, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pmetricotlp.NewGRPCClient(conn).Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(gaugeRequest(next, perRequest, ts)))
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("gRPC export into a full queue: %v, want Unavailable", err)
	}
	var retryInfo *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retryInfo = ri
		}
	}
	if retryInfo == nil || retryInfo.GetRetryDelay().AsDuration() != time.Second {
		t.Errorf("gRPC status details %v, want RetryInfo of 1s", st.Details())
	}
	if q := metricValue(t, r.reg, "aiops_collector_queue_items", map[string]string{"signal": "metrics"}); q > float64(cfg.Queue.MaxItems) || q == 0 {
		t.Errorf("queue holds %v items, want 1..%d", q, cfg.Queue.MaxItems)
	}
	if refused := metricValue(t, r.reg, "aiops_collector_refused_items_total", map[string]string{"signal": "metrics", "reason": "queue_full"}); refused < perRequest {
		t.Errorf("refused_items_total{reason=queue_full} = %v, want >= %d", refused, perRequest)
	}
	if store.commits.Load() != 0 {
		t.Fatalf("%d commits while the store was down", store.commits.Load())
	}

	store.down.Store(false)
	testutil.Eventually(t, 30*time.Second, "accepted points stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("bp_gauge"))
		return n == accepted, fmt.Sprintf("%d of %d", n, accepted)
	})
	// Each accepted point exactly once, with its value.
	for series, samples := range readSeries(t, store, nameIs("bp_gauge")) {
		if len(samples) != 1 {
			t.Errorf("%s: %d samples, want 1", series, len(samples))
		}
	}
	testutil.Eventually(t, 10*time.Second, "queue drained", func() (bool, string) {
		q := metricValue(t, r.reg, "aiops_collector_queue_items", map[string]string{"signal": "metrics"})
		return q == 0, fmt.Sprintf("queue %v", q)
	})
	// The queue has room again.
	if resp := postOTLP(t, r.http, gaugeRequest(next+perRequest, perRequest, ts)); resp.StatusCode != http.StatusOK {
		t.Errorf("after recovery: %s", resp.Status)
	}
}

// TestQueueSurvivesRestart accepts data while the store is down, stops the
// collector, and starts a new one on the same queue directory with the
// store up: the data arrives.
func TestQueueSurvivesRestart(t *testing.T) {
	store := &gatedStore{Store: storetest.Embedded(t)}
	store.down.Store(true)
	cfg := allInOneConfig(t)
	cfg.Batch.MinSize = 10
	r := start(t, cfg, Deps{Store: store})

	ts := time.Now().Truncate(time.Millisecond)
	for i := range 5 {
		if resp := postOTLP(t, r.http, gaugeRequest(100*i, 100, ts)); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	r.stop(t)
	if n := countSamples(t, store, nameIs("bp_gauge")); n != 0 {
		t.Fatalf("%d samples stored while the store was down", n)
	}

	store.down.Store(false)
	cfg.OTLP.GRPCEndpoint, cfg.OTLP.HTTPEndpoint = freeAddr(t), freeAddr(t)
	start(t, cfg, Deps{Store: store})
	testutil.Eventually(t, 30*time.Second, "queued points stored after restart", func() (bool, string) {
		n := countSamples(t, store, nameIs("bp_gauge"))
		return n == 500, fmt.Sprintf("%d of 500", n)
	})
}

// TestMalformedOTLP: bad requests get 400 / InvalidArgument naming the
// problem, nothing of them is stored, and the collector keeps serving.
func TestMalformedOTLP(t *testing.T) {
	store := storetest.Embedded(t)
	r := start(t, allInOneConfig(t), Deps{Store: store})

	// Not protobuf at all.
	resp, body := postRawBody(t, r.http, "/v1/metrics", "application/x-protobuf", []byte("\xff\xff\xff garbage"))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("garbage protobuf: %s, want 400", resp.Status)
	}
	if len(body) == 0 {
		t.Errorf("garbage protobuf: empty error body")
	}
	// Broken JSON.
	resp, _ = postRawBody(t, r.http, "/v1/metrics", "application/json", []byte(`{"resourceMetrics": [`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("broken JSON: %s, want 400", resp.Status)
	}

	// Well-formed protobuf that breaks the data model: a histogram whose
	// bucket counts do not match its bounds.
	bad := pmetric.NewMetrics()
	m := bad.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("broken_histogram")
	h := m.SetEmptyHistogram()
	h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := h.DataPoints().AppendEmpty()
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	dp.ExplicitBounds().FromRaw([]float64{1, 2, 3})
	dp.BucketCounts().FromRaw([]uint64{1, 1})
	dp.SetCount(2)
	pb, _ := pmetricotlp.NewExportRequestFromMetrics(bad).MarshalProto()
	resp, body = postRawBody(t, r.http, "/v1/metrics", "application/x-protobuf", pb)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bucket mismatch over HTTP: %s, want 400", resp.Status)
	}
	if !bytes.Contains(body, []byte("2 bucket counts for 3 explicit bounds")) || !bytes.Contains(body, []byte("broken_histogram")) {
		t.Errorf("bucket mismatch over HTTP: body %q does not name the problem", body)
	}

	conn, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pmetricotlp.NewGRPCClient(conn)
	_, err = client.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(bad))
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !bytes.Contains([]byte(st.Message()), []byte("bucket counts")) {
		t.Errorf("bucket mismatch over gRPC: %v, want InvalidArgument naming the bucket counts", err)
	}

	// Unspecified temporality on a sum.
	noTemp := pmetric.NewMetrics()
	sm := noTemp.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	sm.SetName("no_temporality")
	sm.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(1)
	_, err = client.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(noTemp))
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !bytes.Contains([]byte(st.Message()), []byte("no_temporality")) {
		t.Errorf("unspecified temporality: %v, want InvalidArgument naming the metric", err)
	}

	// Spans without ids.
	resp, body = postRawBody(t, r.http, "/v1/traces", "application/json",
		[]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"orphan","traceId":"","spanId":""}]}]}]}`))
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("trace_id is empty")) {
		t.Errorf("span without ids: %s %q, want 400 naming trace_id", resp.Status, body)
	}

	// The collector still serves good data.
	if _, err := client.Export(context.Background(), pmetricotlp.NewExportRequestFromMetrics(gaugeRequest(0, 10, time.Now()))); err != nil {
		t.Fatalf("good request after bad ones: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "good data stored", func() (bool, string) {
		n := countSamples(t, store, nameIs("bp_gauge"))
		return n == 10, fmt.Sprintf("%d of 10", n)
	})
	if n := countSamples(t, store, nameIs("broken_histogram_bucket")); n != 0 {
		t.Errorf("%d samples of the rejected histogram stored", n)
	}
	if got := metricValue(t, r.reg, "aiops_collector_refused_items_total", map[string]string{"reason": "invalid"}); got < 3 {
		t.Errorf("refused_items_total{reason=invalid} = %v, want >= 3", got)
	}
}

func postRawBody(t *testing.T, addr, path, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

var _ = errors.New
