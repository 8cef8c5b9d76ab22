package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// createToken runs `aiops token create` on the server's data directory
// and returns the secret.
func createToken(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"token", "create", "--data-dir", dataDir}, args...)
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("aiops %v: exit %d: %s", args, code, stderr.String())
	}
	secret, _, _ := strings.Cut(stdout.String(), "\n")
	return secret
}

// TestServeOTLPTokenAuth runs `aiops serve` with collector.otlp.auth:
// token and sends with the OTel SDK's exporters, as services do: without
// a token and with a read token they are refused (Unauthenticated / 401,
// PermissionDenied / 403), with an ingest token their data is stored,
// under the token's tenant.
func TestServeOTLPTokenAuth(t *testing.T) {
	dataDir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "aiops.yaml")
	if err := os.WriteFile(cfgFile, []byte("collector:\n  otlp:\n    auth: token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServe(t, dataDir, "--config", cfgFile)
	httpAddr := ts.otlpHTTP
	reader := createToken(t, dataDir, "--name", "grafana", "--scopes", "read")
	ingest := createToken(t, dataDir, "--name", "checkout", "--scopes", "ingest", "--tenant", "team-a")

	if code, _ := ts.get(t, "/api/v1/query?query=up", ingest); code != http.StatusForbidden {
		t.Errorf("query API with an ingest token: %d, want 403", code)
	}

	ctx := context.Background()
	data := func(name string) *metricdata.ResourceMetrics {
		return &metricdata.ResourceMetrics{
			Resource: resource.NewSchemaless(attribute.String("service.name", "checkout")),
			ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{{Name: name, Data: metricdata.Gauge[float64]{
				DataPoints: []metricdata.DataPoint[float64]{{Time: time.Now(), Value: 7}},
			}}}}},
		}
	}
	for _, useHTTP := range []bool{false, true} {
		for _, tc := range []struct {
			token, want string
		}{
			{"", map[bool]string{false: "Unauthenticated", true: "401"}[useHTTP]},
			{reader, map[bool]string{false: "PermissionDenied", true: "403"}[useHTTP]},
			{ingest, ""},
		} {
			headers := map[string]string{}
			if tc.token != "" {
				headers["Authorization"] = "Bearer " + tc.token
			}
			var exp interface {
				Export(context.Context, *metricdata.ResourceMetrics) error
				Shutdown(context.Context) error
			}
			var err error
			name := "otlp_auth_grpc"
			if useHTTP {
				name = "otlp_auth_http"
				exp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(httpAddr), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithHeaders(headers),
					otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}))
			} else {
				exp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(ts.grpc), otlpmetricgrpc.WithInsecure(), otlpmetricgrpc.WithHeaders(headers),
					otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}))
			}
			if err != nil {
				t.Fatal(err)
			}
			err = exp.Export(ctx, data(name))
			exp.Shutdown(ctx)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("http=%v with the ingest token: %v", useHTTP, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("http=%v with token %q: %v, want %s", useHTTP, tc.token, err, tc.want)
			}
		}
	}
	for _, q := range []string{`otlp_auth_grpc{job="checkout",tenant="team-a"}`, `otlp_auth_http{job="checkout",tenant="team-a"}`} {
		var got string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && got == ""; time.Sleep(100 * time.Millisecond) {
			got = ts.query(t, q)
		}
		if got != "7" {
			t.Errorf("%s = %q, want 7", q, got)
		}
	}
	if strings.Contains(ts.stderr.String(), ingest) || strings.Contains(ts.stderr.String(), reader) {
		t.Error("a token appears in the log")
	}
	var list bytes.Buffer
	run(ctx, []string{"token", "list", "--data-dir", dataDir}, &list, io.Discard)
	if !strings.Contains(list.String(), "team-a") || !strings.Contains(list.String(), "[ingest]") {
		t.Errorf("token list does not show the ingest token's scope and tenant:\n%s", list.String())
	}
}
