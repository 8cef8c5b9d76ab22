package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/clitest"
	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestJaegerCompatibility is the differential test of the trace API: a
// real Jaeger v2 (in-memory storage, its OTLP receiver) and aiops on both
// stores are sent the same spans by the OTel SDK, and every query of
// Jaeger's HTTP API answers the same on all three, up to the orders that
// Jaeger leaves unspecified (of traces in a search, of services,
// operations and dependencies, of spans in a trace) and process ids.
func TestJaegerCompatibility(t *testing.T) {
	jaegerBin := clitest.Jaeger(t)
	jaegerQuery, jaegerOTLP := startJaeger(t, jaegerBin)

	// Fixed dates far back need a retention that keeps them, and a
	// collector.limits.max_age that takes them.
	dir := t.TempDir()
	embCfg := filepath.Join(dir, "embedded.yaml")
	os.WriteFile(embCfg, []byte("storage:\n  embedded:\n    retention: 100y\ncollector:\n  limits:\n    max_age: 876000h\n"), 0o600)
	emb := startServe(t, filepath.Join(dir, "emb"), "--config", embCfg)
	ch := chtest.Start(t)
	chCfg := filepath.Join(dir, "clickhouse.yaml")
	os.WriteFile(chCfg, []byte("storage:\n  backend: clickhouse\n  clickhouse:\n    database: "+ch.NewDatabase(t)+"\n    retention: 0s\ncollector:\n  limits:\n    max_age: 876000h\n"), 0o600)
	chs := startServe(t, filepath.Join(dir, "ch"), "--config", chCfg, "--clickhouse-addr", ch.NativeAddr())

	backends := []struct {
		name, base, token string
	}{
		{"jaeger", "http://" + jaegerQuery, ""},
		{"embedded", "http://" + emb.http, emb.token},
		{"clickhouse", "http://" + chs.http, chs.token},
	}
	traces, errorTraces := sendCompatSpans(t, jaegerOTLP, emb.grpc, chs.grpc)

	get := func(b int, path string) (int, any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, backends[b].base+path, nil)
		if backends[b].token != "" {
			req.Header.Set("Authorization", "Bearer "+backends[b].token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s %s: %d %v: %s", backends[b].name, path, res.StatusCode, err, body)
		}
		return res.StatusCode, v
	}

	// Every trace is whole everywhere before anything is compared.
	for b := range backends {
		testutil.Eventually(t, 60*time.Second, backends[b].name+" has every span", func() (bool, string) {
			for id, n := range traces {
				code, v := get(b, "/api/traces/"+id)
				if code != http.StatusOK {
					return false, fmt.Sprintf("trace %s: %d", id, code)
				}
				if got := len(data(v)[0].(map[string]any)["spans"].([]any)); got != n {
					return false, fmt.Sprintf("trace %s: %d spans of %d", id, got, n)
				}
			}
			return true, ""
		})
	}

	start, end := compatEpoch.Add(-time.Minute), compatEpoch.Add(time.Hour)
	rng := fmt.Sprintf("&start=%d&end=%d", start.UnixMicro(), end.UnixMicro())
	paths := []string{
		"/api/services",
		"/api/services/api/operations",
		"/api/services/db/operations",
		"/api/services/nobody/operations",
		"/api/operations?service=api",
		"/api/operations?service=auth&spanKind=server",
		"/api/operations?service=worker&spanKind=consumer",
		"/api/operations?service=nobody",
		"/api/traces/0123456789abcdef0123456789abcdef",
		"/api/traces?service=api&limit=100" + rng,
		// The spans are sent in time order, so Jaeger's last stored traces
		// are aiops's newest.
		"/api/traces?service=api&limit=5" + rng,
		"/api/traces?service=db&limit=100" + rng,
		"/api/traces?service=api&operation=" + url.QueryEscape("POST /v1/documents") + "&limit=100" + rng,
		"/api/traces?service=api&minDuration=300ms&maxDuration=1500ms&limit=100" + rng,
		"/api/traces?service=api&tags=" + url.QueryEscape(`{"http.response.status_code":"502"}`) + "&limit=100" + rng,
		"/api/traces?service=api&tags=" + url.QueryEscape(`{"host.name":"node-0","sampled":"true"}`) + "&limit=100" + rng,
		"/api/traces?service=api&tags=" + url.QueryEscape(`{"exception.type":"TimeoutError"}`) + "&limit=100" + rng,
		"/api/traces?service=worker&tags=" + url.QueryEscape(`{"error":"false"}`) + "&limit=100" + rng,
		"/api/traces?service=api&limit=100" + fmt.Sprintf("&start=%d&end=%d", compatEpoch.Add(100*time.Second).UnixMicro(), compatEpoch.Add(200*time.Second).UnixMicro()),
		"/api/traces?service=api&operation=nothing&limit=100" + rng,
		fmt.Sprintf("/api/dependencies?endTs=%d&lookback=%d", end.UnixMilli(), time.Duration(end.Sub(start)).Milliseconds()),
	}
	for id := range traces {
		paths = append(paths, "/api/traces/"+id)
	}
	sort.Strings(paths)
	nonEmpty := 0
	for _, p := range paths {
		code, want := get(0, p)
		want = normalizeJaeger(want)
		if code == http.StatusOK && len(data(want)) > 0 {
			nonEmpty++
		} else {
			t.Logf("Jaeger finds nothing for %s (%d)", p, code)
		}
		for b := 1; b < len(backends); b++ {
			gotCode, got := get(b, p)
			if gotCode != code {
				t.Errorf("%s %s: status %d, Jaeger %d", backends[b].name, p, gotCode, code)
				continue
			}
			if code != http.StatusOK {
				continue
			}
			if got = normalizeJaeger(got); !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s differs from Jaeger:\n%s", backends[b].name, p, jsonDiff(got, want))
			}
		}
	}
	// Jaeger's in-memory store reads the tag error=true as a string,
	// whose truth value is false, and so finds only spans with status Ok;
	// its other stores, Grafana and aiops find the spans with status
	// Error (docs/TRACES.md).
	errorSearch := "/api/traces?service=api&tags=" + url.QueryEscape(`{"error":"true"}`) + "&limit=100" + rng
	for b := 1; b < len(backends); b++ {
		code, v := get(b, errorSearch)
		var ids []string
		for _, tr := range data(v) {
			ids = append(ids, tr.(map[string]any)["traceID"].(string))
		}
		sort.Strings(ids)
		if code != http.StatusOK || !slices.Equal(ids, errorTraces) {
			t.Errorf("%s %s: %d %v, want the traces with an error span in api %v", backends[b].name, errorSearch, code, ids, errorTraces)
		}
	}

	if nonEmpty < len(paths)-4 {
		t.Errorf("only %d of %d queries find something in Jaeger; the comparison proves little", nonEmpty, len(paths))
	}
}

// compatEpoch is where the spans of the compatibility test start.
var compatEpoch = testutil.Epoch

func data(v any) []any {
	d, _ := v.(map[string]any)["data"].([]any)
	return d
}

// startJaeger runs Jaeger v2 with in-memory storage, an OTLP/gRPC
// receiver and its query API, on free loopback ports; it returns the
// query API's and the receiver's addresses.
func startJaeger(t *testing.T, bin string) (query, otlp string) {
	t.Helper()
	query, otlp = freeport.Addr(t), freeport.Addr(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, query, freeport.Addr(t), otlp)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var log testutil.SyncBuffer
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	testutil.Eventually(t, 60*time.Second, "Jaeger to serve its query API", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("Jaeger exited: %s", log.String())
		default:
		}
		res, err := http.Get("http://" + query + "/api/services")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, res.Status
	})
	return query, otlp
}

// sendCompatSpans sends the same spans to every OTLP/gRPC address with the
// OTel SDK and returns the number of spans of each trace by its id, and
// the ids (sorted) of the traces whose api span has status Error.
// Services call each other; spans carry attributes of every type, events,
// links, error and ok statuses, trace state and a remote parent.
func sendCompatSpans(t *testing.T, addrs ...string) (map[string]int, []string) {
	t.Helper()
	ctx := context.Background()
	var exporters []sdktrace.SpanExporter
	for _, a := range addrs {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(a), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		exporters = append(exporters, exp)
	}
	providers := map[string]*sdktrace.TracerProvider{}
	for i, svc := range []string{"api", "auth", "worker", "db"} {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", svc), attribute.String("host.name", fmt.Sprintf("node-%d", i%2)),
			attribute.Int("k8s.pod.ordinal", i), attribute.String("telemetry.sdk.language", "go")))}
		for _, exp := range exporters {
			opts = append(opts, sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(exp)))
		}
		providers[svc] = sdktrace.NewTracerProvider(opts...)
	}
	t.Cleanup(func() {
		for _, exp := range exporters {
			exp.Shutdown(ctx)
		}
	})
	tracer := func(svc string) trace.Tracer {
		return providers[svc].Tracer(svc+"-lib", trace.WithInstrumentationVersion("1.2."+fmt.Sprint(len(svc))))
	}

	counts := map[string]int{}
	var errorTraces []string
	var links []trace.Link
	for i := range 30 {
		at := compatEpoch.Add(time.Duration(i) * 10 * time.Second)
		ms := func(n int) trace.SpanEndOption {
			return trace.WithTimestamp(at.Add(time.Duration(n) * time.Millisecond))
		}
		parent := ctx
		if i%7 == 3 {
			// A trace continued from a caller we did not see, with its trace state.
			ts, _ := trace.ParseTraceState("vendor=a1,other=b2")
			tid := trace.TraceID{0xab, byte(i)}
			if i == 10 {
				tid = trace.TraceID{8: 0xcd, 15: byte(i)} // a 64-bit id
			}
			parent = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: trace.SpanID{0xee, byte(i)}, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true}))
		}
		names := []string{"GET /v1/sessions", "POST /v1/documents"}
		rctx, root := tracer("api").Start(parent, names[i%2], trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at),
			trace.WithLinks(links...),
			trace.WithAttributes(attribute.String("http.route", names[i%2]), attribute.Int("http.response.status_code", 200),
				attribute.Bool("sampled", i%2 == 0), attribute.Float64("ratio", float64(i)/8), attribute.StringSlice("tags", []string{"a", "b"}),
				attribute.Int64("big", 1<<60+int64(i)), attribute.Int("peer.ipv4", 0x7f000001)))
		links = nil
		n := 1
		actx, auth := tracer("auth").Start(rctx, "POST /validate", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(at.Add(time.Millisecond)),
			trace.WithAttributes(attribute.String("peer.service", "auth")))
		n++
		_, db := tracer("db").Start(actx, []string{"SELECT sessions", "INSERT documents"}[i%2], trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(at.Add(2*time.Millisecond)), trace.WithAttributes(attribute.Int("db.rows", i)))
		n++
		db.SetStatus(codes.Ok, "")
		db.End(ms(4 + i))
		auth.End(ms(10 + i))
		if i%3 != 0 {
			_, w := tracer("worker").Start(rctx, "process documents", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(at.Add(20*time.Millisecond)))
			w.AddEvent("picked", trace.WithTimestamp(at.Add(21*time.Millisecond)), trace.WithAttributes(attribute.Int("queue.depth", i)))
			if i%2 == 0 {
				w.SetStatus(codes.Ok, "")
			}
			w.End(ms(40 + 10*i))
			n++
			if i%4 == 1 {
				links = append(links, trace.Link{SpanContext: w.SpanContext(), Attributes: []attribute.KeyValue{attribute.String("link.kind", "batch")}})
			}
		}
		if i%5 == 0 {
			root.SetAttributes(attribute.Int("http.response.status_code", 502))
			root.AddEvent("exception", trace.WithTimestamp(at.Add(3*time.Millisecond)),
				trace.WithAttributes(attribute.String("exception.type", "TimeoutError"), attribute.Int("attempt", 2)))
			root.SetStatus(codes.Error, "upstream failed")
			errorTraces = append(errorTraces, jaegerTraceIDOf(root.SpanContext().TraceID().String()))
		}
		root.End(ms(50 + 60*i))
		counts[root.SpanContext().TraceID().String()] = n
	}
	for _, tp := range providers {
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(errorTraces)
	return counts, errorTraces
}

// jaegerTraceIDOf is a trace id as Jaeger's JSON writes it: 16 digits
// when the high half is zero.
func jaegerTraceIDOf(id string) string {
	if strings.HasPrefix(id, "0000000000000000") {
		return id[16:]
	}
	return id
}

// normalizeJaeger makes an answer comparable: processes inlined into
// their spans (ids are arbitrary), and lists whose order Jaeger does not
// define sorted.
func normalizeJaeger(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	d, _ := m["data"].([]any)
	for _, item := range d {
		tr, ok := item.(map[string]any)
		if !ok {
			continue
		}
		procs, _ := tr["processes"].(map[string]any)
		spans, _ := tr["spans"].([]any)
		for _, s := range spans {
			sp := s.(map[string]any)
			sp["process"] = procs[sp["processID"].(string)]
			delete(sp, "processID")
		}
		delete(tr, "processes")
		sortByJSON(spans)
	}
	sortByJSON(d)
	return m
}

func sortByJSON(items []any) {
	keys := make([]string, len(items))
	for i, it := range items {
		b, _ := json.Marshal(it)
		keys[i] = string(b)
	}
	sort.Sort(byKeys{items, keys})
}

type byKeys struct {
	items []any
	keys  []string
}

func (b byKeys) Len() int           { return len(b.items) }
func (b byKeys) Less(i, j int) bool { return b.keys[i] < b.keys[j] }
func (b byKeys) Swap(i, j int) {
	b.items[i], b.items[j] = b.items[j], b.items[i]
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
}

// jsonDiff lists the paths where got and want differ, at most 10.
func jsonDiff(got, want any) string {
	var out []string
	var walk func(path string, g, w any)
	walk = func(path string, g, w any) {
		if len(out) >= 10 {
			return
		}
		switch wv := w.(type) {
		case map[string]any:
			gv, ok := g.(map[string]any)
			if !ok {
				out = append(out, fmt.Sprintf("%s: got %s, want %s", path, short(g), short(w)))
				return
			}
			keys := map[string]bool{}
			for k := range wv {
				keys[k] = true
			}
			for k := range gv {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				walk(path+"."+k, gv[k], wv[k])
			}
		case []any:
			gv, ok := g.([]any)
			if !ok || len(gv) != len(wv) {
				out = append(out, fmt.Sprintf("%s: got %s, want %s", path, short(g), short(w)))
				return
			}
			for i := range wv {
				walk(fmt.Sprintf("%s[%d]", path, i), gv[i], wv[i])
			}
		default:
			if !reflect.DeepEqual(g, w) {
				out = append(out, fmt.Sprintf("%s: got %s, want %s", path, short(g), short(w)))
			}
		}
	}
	walk("", got, want)
	return strings.Join(out, "\n")
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
