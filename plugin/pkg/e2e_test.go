package main

import (
	"context"
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

	"github.com/grafana/grafana-plugin-sdk-go/backend/grpcplugin"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/plugin/pkg/plugin"
)

// TestPluginAsGrafanaRunsIt builds the plugin and aiops, starts aiops
// (on each store, with a rule that opens an incident), sends it a trace and
// its log line with the OTel SDK, and starts the plugin binary the way
// Grafana does: go-plugin's handshake, then CheckHealth, QueryData and
// CallResource over gRPC. The frames are checked by name, type and value.
func TestPluginAsGrafanaRunsIt(t *testing.T) {
	dir := t.TempDir()
	aiopsBin, pluginBin := filepath.Join(dir, "aiops"), filepath.Join(dir, "gpx_aiops")
	build(t, "../..", aiopsBin, "./cmd/aiops") // aiops's module root, from plugin/pkg
	build(t, ".", pluginBin, ".")

	t.Run("embedded", func(t *testing.T) {
		checkPlugin(t, pluginBin, startAiops(t, aiopsBin, t.TempDir(), ""))
	})
	t.Run("clickhouse", func(t *testing.T) {
		ch := chtest.Start(t)
		// The addresses are in the file, which `aiops token create` reads too.
		store := "storage:\n  backend: clickhouse\n  clickhouse:\n    database: " + ch.NewDatabase(t) + "\n    addresses: [" + ch.NativeAddr() + "]\n"
		checkPlugin(t, pluginBin, startAiops(t, aiopsBin, t.TempDir(), store))
	})
}

// checkPlugin runs the plugin against srv and checks every call.
func checkPlugin(t *testing.T, pluginBin string, srv aiops) {
	traceID := sendTelemetry(t, srv.otlp)

	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{ProtocolVersion: grpcplugin.ProtocolVersion,
			MagicCookieKey: grpcplugin.MagicCookieKey, MagicCookieValue: grpcplugin.MagicCookieValue},
		VersionedPlugins: map[int]goplugin.PluginSet{grpcplugin.ProtocolVersion: {
			"diagnostics": &grpcplugin.DiagnosticsGRPCPlugin{},
			"resource":    &grpcplugin.ResourceGRPCPlugin{},
			"data":        &grpcplugin.DataGRPCPlugin{},
		}},
		Cmd:              exec.Command(pluginBin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Managed:          false,
		Stderr:           io.Discard,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: io.Discard}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("go-plugin handshake: %v", err)
	}
	dispense := func(name string) any {
		raw, err := rpc.Dispense(name)
		if err != nil {
			t.Fatalf("dispense %s: %v", name, err)
		}
		return raw
	}
	diag := dispense("diagnostics").(grpcplugin.DiagnosticsClient)
	dataClient := dispense("data").(grpcplugin.DataClient)
	resources := dispense("resource").(grpcplugin.ResourceClient)
	ctx := context.Background()

	// Grafana tells the plugin that settings changed by their update
	// time; each context here may differ from the one before.
	var updated int64
	pctx := func(url, token string) *pluginv2.PluginContext {
		updated++
		return &pluginv2.PluginContext{OrgId: 1, PluginId: plugin.ID,
			DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{Id: 1, Uid: "aiops-uid", Name: "aiops", Url: url,
				JsonData: []byte(`{"timeoutSeconds":10}`), DecryptedSecureJsonData: map[string]string{"token": token},
				LastUpdatedMS: updated}}
	}
	health := func(url, token string) (pluginv2.CheckHealthResponse_HealthStatus, string) {
		t.Helper()
		res, err := diag.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pctx(url, token)})
		if err != nil {
			t.Fatalf("CheckHealth: %v", err)
		}
		return res.Status, res.Message
	}
	base := "http://" + srv.http
	if st, msg := health(base, srv.token); st != pluginv2.CheckHealthResponse_OK {
		t.Errorf("health with the admin token: %v %s", st, msg)
	}
	closed := "http://" + closedAddr(t)
	cases := []struct{ url, token, want string }{
		{closed, srv.token, "unreachable"},
		{base, "not-a-token", "refused the token"},
		{base, "", "asks for a token"},
		{base, srv.ingestToken, "lacks the read scope"},
	}
	for _, tc := range cases {
		if st, msg := health(tc.url, tc.token); st != pluginv2.CheckHealthResponse_ERROR || !strings.Contains(msg, tc.want) {
			t.Errorf("health of %s with token %q: %v %q, want an error saying %q", tc.url, tc.token, st, msg, tc.want)
		}
	}

	now := time.Now()
	// run runs one query; it returns the frames or the query's error.
	run := func(queryType, model string) (data.Frames, string) {
		t.Helper()
		res, err := dataClient.QueryData(ctx, &pluginv2.QueryDataRequest{PluginContext: pctx(base, srv.token),
			Queries: []*pluginv2.DataQuery{{RefId: "A", QueryType: queryType, Json: []byte(model), MaxDataPoints: 500, IntervalMS: 1000,
				TimeRange: &pluginv2.TimeRange{FromEpochMS: now.Add(-time.Hour).UnixMilli(), ToEpochMS: now.Add(time.Hour).UnixMilli()}}}})
		if err != nil {
			t.Fatalf("QueryData %s: %v", queryType, err)
		}
		r := res.Responses["A"]
		if r.Error != "" {
			return nil, r.Error
		}
		frames, err := data.UnmarshalArrowFrames(r.Frames)
		if err != nil {
			t.Fatalf("QueryData %s: frames: %v", queryType, err)
		}
		return frames, ""
	}
	query := func(queryType, model string) data.Frames {
		t.Helper()
		frames, msg := run(queryType, model)
		if msg != "" {
			t.Fatalf("QueryData %s: %s", queryType, msg)
		}
		return frames
	}
	queryOr := func(queryType, model string) data.Frames {
		frames, _ := run(queryType, model)
		return frames
	}
	fieldNames := func(f *data.Frame) string {
		var names []string
		for _, fl := range f.Fields {
			names = append(names, fl.Name+":"+fl.Type().ItemTypeString())
		}
		return strings.Join(names, " ")
	}

	// The rule's incident, as a table and as annotations.
	var incidents data.Frames
	waitFor(t, "the incident to be served", func() bool {
		incidents = query(plugin.QueryIncidents, `{}`)
		return len(incidents) == 1 && incidents[0].Rows() == 1
	})
	inc := incidents[0]
	if got := fieldNames(inc); got != "id:string title:string status:string severity:string service:string opened:time.Time resolved:*time.Time firing alerts:int64 assignee:string" {
		t.Errorf("incident fields: %s", got)
	}
	if v, _ := inc.Fields[4].ConcreteAt(0); v != "checkout" || len(inc.Fields[0].Config.Links) != 1 {
		t.Errorf("incident service %v, links %v", v, inc.Fields[0].Config)
	}
	ann := query(plugin.QueryAnnotations, `{"service":"checkout"}`)
	if len(ann) != 1 || ann[0].Rows() != 1 || fieldNames(ann[0]) != "time:time.Time timeEnd:time.Time title:string text:string tags:string" {
		t.Errorf("annotations: %v", ann)
	}
	// The runbook the rule's alert triggers, its run listed by the
	// runbooks query, kept by a filter naming it and left out by another.
	runs := func(model string) int {
		t.Helper()
		rb := query(plugin.QueryRunbooks, model)
		if len(rb) != 1 || fieldNames(rb[0]) != "incident:string run:string runbook:string started:*time.Time finished:*time.Time outcome:string message:string" {
			t.Fatalf("runbook runs of %s: %v", model, rb)
		}
		return rb[0].Rows()
	}
	waitFor(t, "the runbook run to be served", func() bool { return runs(`{}`) == 1 })
	if rb := query(plugin.QueryRunbooks, `{"runbook":"page-checkout"}`); rb[0].Rows() != 1 {
		t.Errorf("runs of page-checkout: %v", rb)
	} else if v, _ := rb[0].Fields[2].ConcreteAt(0); v != "page-checkout" {
		t.Errorf("the run's runbook: %v", v)
	}
	if n := runs(`{"runbook":"restart-checkout"}`); n != 0 {
		t.Errorf("runs of a runbook that did not run: %d rows", n)
	}

	// The log line, with its link to the trace.
	var logs data.Frames
	waitFor(t, "the log line to be served", func() bool {
		logs = query(plugin.QueryLogs, `{"service":"shop","minSeverity":"error"}`)
		return len(logs) == 1 && logs[0].Rows() == 1
	})
	lf := logs[0]
	if got := fieldNames(lf); got != "timestamp:time.Time body:string severity:string id:string labels:json.RawMessage traceID:string" {
		t.Errorf("log fields: %s", got)
	}
	if lf.Meta == nil || lf.Meta.Type != data.FrameTypeLogLines {
		t.Errorf("log frame meta %+v", lf.Meta)
	}
	if body, _ := lf.Fields[1].ConcreteAt(0); body != "payment declined" {
		t.Errorf("log body %v", body)
	}
	if id, _ := lf.Fields[5].ConcreteAt(0); id != traceID {
		t.Errorf("log trace id %v, want %s", id, traceID)
	}
	if links := lf.Fields[5].Config.Links; len(links) != 1 || links[0].Internal == nil || links[0].Internal.DatasourceUID != "aiops-uid" {
		t.Errorf("trace link %+v", lf.Fields[5].Config)
	}

	// The trace and the service graph.
	var tf data.Frames
	waitFor(t, "the trace to be served", func() bool {
		tf = queryOr(plugin.QueryTraces, fmt.Sprintf(`{"traceId":%q}`, traceID))
		return len(tf) == 1 && tf[0].Rows() == 2
	})
	if got := fieldNames(tf[0]); !strings.HasPrefix(got, "traceID:string spanID:string parentSpanID:string operationName:string serviceName:string") {
		t.Errorf("trace fields: %s", got)
	}
	ops := map[string]string{}
	for i := range tf[0].Rows() {
		op, _ := tf[0].Fields[3].ConcreteAt(i)
		svc, _ := tf[0].Fields[4].ConcreteAt(i)
		ops[op.(string)] = svc.(string)
	}
	if ops["POST /orders"] != "shop" || ops["charge"] != "payments" {
		t.Errorf("trace spans by operation: %v", ops)
	}
	graph := query(plugin.QueryServiceGraph, `{}`)
	if len(graph) != 2 || graph[0].Name != "nodes" || graph[1].Name != "edges" || graph[1].Rows() != 1 {
		t.Fatalf("service graph %v", graph)
	}
	if src, _ := graph[1].Fields[1].ConcreteAt(0); src != "shop" {
		t.Errorf("edge source %v", src)
	}
	if an := query(plugin.QueryAnomalies, `{}`); len(an) == 0 || an[0].Fields[0].Name != "time" {
		t.Errorf("anomalies %v", an)
	}
	if fc := query(plugin.QueryForecasts, `{}`); len(fc) != 1 || fc[0].Name != "forecasts" {
		t.Errorf("forecasts %v", fc)
	}

	// A query that cannot run says why, without failing the others.
	res, err := dataClient.QueryData(ctx, &pluginv2.QueryDataRequest{PluginContext: pctx(base, srv.token),
		Queries: []*pluginv2.DataQuery{
			{RefId: "bad", QueryType: "nonsense", Json: []byte(`{}`), TimeRange: &pluginv2.TimeRange{FromEpochMS: 0, ToEpochMS: 1}},
			{RefId: "trace", QueryType: plugin.QueryTraces, Json: []byte(`{"traceId":"zz"}`), TimeRange: &pluginv2.TimeRange{FromEpochMS: 0, ToEpochMS: 1}},
			{RefId: "ok", QueryType: plugin.QueryIncidents, Json: []byte(`{}`), TimeRange: &pluginv2.TimeRange{FromEpochMS: now.Add(-time.Hour).UnixMilli(), ToEpochMS: now.Add(time.Hour).UnixMilli()}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Responses["bad"]; !strings.Contains(r.Error, "unknown query type") || r.Status != http.StatusBadRequest {
		t.Errorf("an unknown query type: %d %q", r.Status, r.Error)
	}
	if r := res.Responses["trace"]; !strings.Contains(r.Error, "traceId") {
		t.Errorf("a bad trace id: %q", r.Error)
	}
	if r := res.Responses["ok"]; r.Error != "" {
		t.Errorf("the good query beside them: %q", r.Error)
	}

	// The query editor's look-ups.
	// Grafana hands the plugin the path below /resources and the URL
	// with its query.
	resource := func(path string) (int, string) {
		t.Helper()
		stream, err := resources.CallResource(ctx, &pluginv2.CallResourceRequest{PluginContext: pctx(base, srv.token), Path: strings.SplitN(path, "?", 2)[0], Method: http.MethodGet, Url: path})
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		code := 0
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("CallResource %s: %v", path, err)
			}
			if r.Code != 0 {
				code = int(r.Code)
			}
			body.Write(r.Body)
		}
		return code, body.String()
	}
	if code, body := resource("services"); code != 200 || body != `["payments","shop"]` {
		t.Errorf("services: %d %s", code, body)
	}
	if code, body := resource("operations?service=shop"); code != 200 || body != `["POST /orders"]` {
		t.Errorf("operations: %d %s", code, body)
	}
	// The only series stored are aiops's own (self-monitoring, every
	// second here): the look-up answers their job once the first write
	// has landed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := resource("label-values?label=job")
		if code == 200 && body == `["aiops"]` {
			break
		}
		if time.Now().After(deadline) || code != 200 || body != "[]" {
			t.Errorf("label values: %d %s, want [\"aiops\"]", code, body)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := resource("label-values?label=no_such_label"); code != 200 || body != "[]" {
		t.Errorf("label values of a label nothing has: %d %s", code, body)
	}
	if code, body := resource("runbooks"); code != 200 || body != `["page-checkout"]` {
		t.Errorf("runbooks: %d %s", code, body)
	}
	if code, _ := resource("label-values"); code != 400 {
		t.Errorf("label values without a label: %d, want 400", code)
	}
	if code, _ := resource("nothing"); code != 404 {
		t.Errorf("an unknown resource: %d", code)
	}
}

func build(t *testing.T, dir, out, pkg string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s in %s: %v\n%s", pkg, dir, err, b)
	}
}

type aiops struct {
	http, otlp, token, ingestToken string
}

// startAiops runs `aiops serve` (on the embedded store, or as the store
// configuration says) with a rule that fires at once, so that an incident
// opens, and a runbook that its alert runs.
func startAiops(t *testing.T, bin, dir, store string) aiops {
	t.Helper()
	rules := filepath.Join(dir, "rules.yml")
	write(t, rules, "groups:\n  - name: e2e\n    interval: 500ms\n    rules:\n      - alert: CheckoutDown\n        expr: vector(1)\n        labels: {severity: critical, service: checkout}\n        annotations: {summary: checkout is down}\n")
	am := filepath.Join(dir, "alertmanager.yml")
	write(t, am, "route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: oncall\n")
	// A runbook the alert triggers; its one step waits and verifies at once.
	runbooks := filepath.Join(dir, "runbooks.yml")
	write(t, runbooks, "runbooks:\n  - name: page-checkout\n    trigger: {alert: CheckoutDown}\n    target: {service: checkout}\n    steps:\n      - action: wait\n        params: {duration: 10ms}\n        verify: {expr: vector(1), for: 0s, within: 10s}\n")
	cfg := filepath.Join(dir, "aiops.yaml")
	write(t, cfg, store+"alerting:\n  rule_files: ["+rules+"]\n  alertmanager_config_file: "+am+"\n  evaluation_interval: 500ms\nremediation:\n  runbook_files: ["+runbooks+"]\nself_monitoring:\n  interval: 1s\n")
	data := filepath.Join(dir, "data")
	a := aiops{http: freeAddr(t), otlp: freeAddr(t)}
	cmd := exec.Command(bin, "serve", "--config", cfg, "--data-dir", data, "--http-addr", a.http,
		"--otlp-grpc-addr", a.otlp, "--otlp-http-addr", freeAddr(t))
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	waitFor(t, "aiops to be ready", func() bool {
		res, err := http.Get("http://" + a.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	a.token = strings.TrimSpace(string(b))
	out, err := exec.Command(bin, "token", "create", "--config", cfg, "--data-dir", data, "--name", "otlp-only", "--scopes", "ingest").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("token create: %v\n%s", err, stderr)
	}
	a.ingestToken = strings.SplitN(string(out), "\n", 2)[0]
	return a
}

// sendTelemetry sends a two-service trace and an error log line inside
// it; it returns the trace id.
func sendTelemetry(t *testing.T, otlp string) string {
	t.Helper()
	ctx := context.Background()
	texp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	lexp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(otlp), otlploggrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	provider := func(svc string) *sdktrace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithSyncer(texp),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", svc))))
	}
	shop, payments := provider("shop"), provider("payments")
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(lexp)),
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", "shop"))))
	sctx, root := shop.Tracer("shop").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	_, child := payments.Tracer("payments").Start(sctx, "charge", trace.WithSpanKind(trace.SpanKindServer))
	var rec otellog.Record
	rec.SetTimestamp(time.Now())
	rec.SetSeverity(otellog.SeverityError)
	rec.SetSeverityText("ERROR")
	rec.SetBody(attribute.StringValue("payment declined"))
	lp.Logger("shop").Emit(sctx, rec)
	child.End()
	root.End()
	for _, err := range []error{shop.ForceFlush(ctx), payments.ForceFlush(ctx), lp.ForceFlush(ctx)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return root.SpanContext().TraceID().String()
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string { return freeAddr(t) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
