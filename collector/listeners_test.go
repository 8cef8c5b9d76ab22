package collector

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/collector/tokenauth"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// staticAuth is a fixed set of credentials. (cmd/aiops tests the same
// with the API's token store.)
type staticAuth map[string]tokenauth.Principal

func (s staticAuth) AuthenticateIngest(_ context.Context, cred string) (tokenauth.Principal, error) {
	p, ok := s[cred]
	if !ok {
		return tokenauth.Principal{}, tokenauth.Unauthenticated(errors.New("unknown API token"))
	}
	return p, nil
}

var testCreds = staticAuth{
	"reader-token": {ID: "reader", MayIngest: false},
	"ingest-token": {ID: "ingest", MayIngest: true},
	"team-a-token": {ID: "a", MayIngest: true, Tenant: "team-a"},
	"team-b-token": {ID: "b", MayIngest: true, Tenant: "team-b"},
}

// sdkExporter is an OTel SDK metric exporter, the client users run.
type sdkExporter interface {
	Export(context.Context, *metricdata.ResourceMetrics) error
	Shutdown(context.Context) error
}

func newSDKExporter(t *testing.T, addr string, useHTTP bool, headers map[string]string, tlsCfg *tls.Config) sdkExporter {
	t.Helper()
	ctx := context.Background()
	var exp sdkExporter
	var err error
	if useHTTP {
		opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpoint(addr), otlpmetrichttp.WithHeaders(headers), otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false})}
		if tlsCfg != nil {
			opts = append(opts, otlpmetrichttp.WithTLSClientConfig(tlsCfg))
		} else {
			opts = append(opts, otlpmetrichttp.WithInsecure())
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	} else {
		opts := []otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithHeaders(headers), otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false})}
		if tlsCfg != nil {
			opts = append(opts, otlpmetricgrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		} else {
			opts = append(opts, otlpmetricgrpc.WithInsecure())
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exp.Shutdown(context.Background()) })
	return exp
}

// sdkGauges is what the SDK exports for n gauge series at ts, the last
// attribute set by the client, as an attacker would, to tenant.
func sdkGauges(name string, ts time.Time, n int, tenant string) *metricdata.ResourceMetrics {
	g := metricdata.Gauge[float64]{}
	for i := range n {
		attrs := []attribute.KeyValue{attribute.Int("id", i)}
		if tenant != "" {
			attrs = append(attrs, attribute.String("tenant", tenant))
		}
		g.DataPoints = append(g.DataPoints, metricdata.DataPoint[float64]{Attributes: attribute.NewSet(attrs...), Time: ts, Value: float64(i)})
	}
	return &metricdata.ResourceMetrics{
		Resource:     resource.NewSchemaless(attribute.String("service.name", "authz")),
		ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{{Name: name, Data: g}}}},
	}
}

// TestOTLPTokenAuth: with collector.otlp.auth: token, OTLP clients need a
// credential with the ingest scope, over gRPC and HTTP, and a tenant on
// the credential is stamped on the data and limits its series.
func TestOTLPTokenAuth(t *testing.T) {
	now := testutil.Epoch
	clock := testutil.NewClock(now)
	store := storetest.Embedded(t)
	cfg := allInOneConfig(t)
	cfg.OTLP.Auth = AuthToken
	cfg.Limits.MaxSeriesPerTenant = 3
	r := start(t, cfg, Deps{Store: store, Now: clock.Now, Authenticator: testCreds})

	for _, useHTTP := range []bool{false, true} {
		addr, transport := r.grpc, "grpc"
		if useHTTP {
			addr, transport = r.http, "http"
		}
		for _, tc := range []struct {
			token string
			want  string // in the SDK's error; "" is success
		}{
			{"", map[bool]string{false: "Unauthenticated", true: "401"}[useHTTP]},
			{"not-a-token", map[bool]string{false: "Unauthenticated", true: "401"}[useHTTP]},
			{"reader-token", map[bool]string{false: "PermissionDenied", true: "403"}[useHTTP]},
			{"ingest-token", ""},
		} {
			headers := map[string]string{}
			if tc.token != "" {
				headers["Authorization"] = "Bearer " + tc.token
			}
			err := newSDKExporter(t, addr, useHTTP, headers, nil).Export(context.Background(), sdkGauges("authz_"+transport, now, 1, ""))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%s with %q: %v", transport, tc.token, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%s with %q: %v, want an error with %q", transport, tc.token, err, tc.want)
			}
		}
	}
	// The exact codes, from pdata's gRPC client and a plain HTTP client.
	for token, want := range map[string]codes.Code{"": codes.Unauthenticated, "reader-token": codes.PermissionDenied, "ingest-token": codes.OK} {
		_, err := exportGRPC(t, r.grpc, gauges("authz_exact", now, 1), token)
		if st, _ := status.FromError(err); st.Code() != want {
			t.Errorf("gRPC with %q: %v, want %s", token, err, want)
		}
	}
	for token, want := range map[string]int{"": 401, "reader-token": 403, "ingest-token": 200} {
		if a := postMetrics(t, r.http, gauges("authz_exact", now, 1), token); a.code != want {
			t.Errorf("HTTP with %q: %d %s, want %d", token, a.code, a.msg, want)
		} else if want == 401 && a.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	}
	if n := metricValue(t, r.reg, "aiops_collector_auth_failures_total", map[string]string{"reason": "forbidden"}); n != 4 {
		t.Errorf("auth_failures{reason=forbidden} = %v, want 4", n)
	}

	// Tenants: team-a claims to be team-b in its data and gets team-a;
	// each tenant may have 3 series.
	claim := gauges("tenanted", now, ids(0, 3)...)
	for _, dp := range claim.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Gauge().DataPoints().All() {
		dp.Attributes().PutStr("tenant", "team-b")
	}
	if resp, err := exportGRPC(t, r.grpc, claim, "team-a-token"); err != nil || resp.PartialSuccess().RejectedDataPoints() != 0 {
		t.Fatalf("team-a's series: %q %v", resp.PartialSuccess().ErrorMessage(), err)
	}
	resp, err := exportGRPC(t, r.grpc, gauges("tenanted", now.Add(time.Second), ids(0, 5)...), "team-a-token")
	if err != nil || resp.PartialSuccess().RejectedDataPoints() != 2 || !strings.Contains(resp.PartialSuccess().ErrorMessage(), `limit max_series_per_tenant of tenant "team-a"`) {
		t.Errorf("team-a's fourth and fifth series: %d %q %v, want 2 refused", resp.PartialSuccess().RejectedDataPoints(), resp.PartialSuccess().ErrorMessage(), err)
	}
	if resp, err := exportGRPC(t, r.grpc, gauges("tenanted", now, ids(0, 3)...), "team-b-token"); err != nil || resp.PartialSuccess().RejectedDataPoints() != 0 {
		t.Errorf("team-b's series: %q %v", resp.PartialSuccess().ErrorMessage(), err)
	}
	tenants := map[string]int{}
	for k := range readSeriesIn(t, store, now.Add(-time.Hour), now.Add(time.Hour), nameIs("tenanted")) {
		switch {
		case strings.Contains(k, `tenant="team-a"`):
			tenants["team-a"]++
		case strings.Contains(k, `tenant="team-b"`):
			tenants["team-b"]++
		default:
			t.Errorf("series without a tenant: %s", k)
		}
	}
	if tenants["team-a"] != 3 || tenants["team-b"] != 3 {
		t.Errorf("series per tenant %v, want 3 each", tenants)
	}
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir and returns their paths and a client TLS config
// (with or without the client certificate).
func writeCerts(t *testing.T, dir string) (certFile, keyFile, caFile string, client func(withCert bool) *tls.Config) {
	t.Helper()
	now := time.Now() // certificates are checked against the real clock
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "aiops test CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, ip net.IP) (*ecdsa.PrivateKey, []byte) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "aiops test"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return k, der
	}
	writePEM := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvKey, srvDER := issue(2, x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	srvKeyDER, _ := x509.MarshalECPrivateKey(srvKey)
	cliKey, cliDER := issue(3, x509.ExtKeyUsageClientAuth, nil)
	certFile, keyFile = writePEM("server.crt", "CERTIFICATE", srvDER), writePEM("server.key", "EC PRIVATE KEY", srvKeyDER)
	caFile = writePEM("ca.crt", "CERTIFICATE", caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return certFile, keyFile, caFile, func(withCert bool) *tls.Config {
		c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if withCert {
			c.Certificates = []tls.Certificate{{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}}
		}
		return c
	}
}

// TestOTLPMutualTLS serves OTLP over TLS with client certificates
// required: the SDK with a certificate gets through on both protocols,
// without one it does not, and neither does plain text.
func TestOTLPMutualTLS(t *testing.T) {
	cfg := allInOneConfig(t)
	certFile, keyFile, caFile, client := writeCerts(t, t.TempDir())
	cfg.OTLP.TLS = OTLPTLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	r := start(t, cfg, Deps{Store: storetest.Embedded(t)})
	now := time.Now()
	for _, useHTTP := range []bool{false, true} {
		addr := r.grpc
		if useHTTP {
			addr = r.http
		}
		if err := newSDKExporter(t, addr, useHTTP, nil, client(true)).Export(context.Background(), sdkGauges("mtls", now, 1, "")); err != nil {
			t.Errorf("http=%v with a client certificate: %v", useHTTP, err)
		}
		if err := newSDKExporter(t, addr, useHTTP, nil, client(false)).Export(context.Background(), sdkGauges("mtls", now, 1, "")); err == nil {
			t.Errorf("http=%v without a client certificate: accepted", useHTTP)
		}
		if err := newSDKExporter(t, addr, useHTTP, nil, nil).Export(context.Background(), sdkGauges("mtls", now, 1, "")); err == nil {
			t.Errorf("http=%v in plain text: accepted", useHTTP)
		}
	}
}

// TestOTLPConnectionLimits: connections beyond max_connections are closed
// at once and counted; idle ones are closed after idle_timeout.
func TestOTLPConnectionLimits(t *testing.T) {
	cfg := allInOneConfig(t)
	cfg.OTLP.MaxConnections = 2
	cfg.OTLP.IdleTimeout = 300 * time.Millisecond
	r := start(t, cfg, Deps{Store: storetest.Embedded(t)})

	dial := func() net.Conn {
		c, err := net.Dial("tcp", r.http)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	a, b := dial(), dial()
	testutil.WaitFor(t, "two connections open", 10*time.Second, func() bool {
		return metricValue(t, r.reg, "aiops_collector_otlp_connections", map[string]string{"transport": "http"}) == 2
	})
	third := dial()
	testutil.WaitFor(t, "the third connection closed", 10*time.Second, func() bool { return closed(third) })
	if n := metricValue(t, r.reg, "aiops_collector_otlp_connections_refused_total", map[string]string{"transport": "http"}); n != 1 {
		t.Errorf("refused connections %v, want 1", n)
	}

	// A keep-alive connection that served a request closes once idle;
	// then there is room again.
	req := "POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
	if _, err := a.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(a), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("request on the kept connection: %v %v", resp, err)
	}
	testutil.WaitFor(t, "the idle connection closed by the server", 10*time.Second, func() bool { return closed(a) })
	b.Close()
	testutil.WaitFor(t, "room for new connections", 10*time.Second, func() bool {
		return metricValue(t, r.reg, "aiops_collector_otlp_connections", map[string]string{"transport": "http"}) == 0
	})
	if resp := postMetrics(t, r.http, gauges("conn", time.Now(), 1), ""); resp.code != http.StatusOK {
		t.Errorf("request after the limit freed: %d %s", resp.code, resp.msg)
	}

	// gRPC connections without RPCs are closed after the idle timeout.
	if _, err := exportGRPC(t, r.grpc, gauges("conn", time.Now(), 2), ""); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "gRPC connections closed", 10*time.Second, func() bool {
		return metricValue(t, r.reg, "aiops_collector_otlp_connections", map[string]string{"transport": "grpc"}) == 0
	})
}

// TestReadyWhileMemoryLimiterRefuses: when the memory limiter refuses
// data, the collector says so to readiness, and is ready again once it
// has stopped refusing.
func TestReadyWhileMemoryLimiterRefuses(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch)
	cfg := allInOneConfig(t)
	// A limit no process fits under: every request is refused.
	cfg.MemoryLimiter = MemoryLimiterConfig{CheckInterval: 100 * time.Millisecond, LimitMiB: 2, SpikeLimitMiB: 1}
	r := start(t, cfg, Deps{Store: storetest.Embedded(t), Now: clock.Now})
	if err := r.Ready(context.Background()); err != nil {
		t.Fatalf("before any refusal: %v", err)
	}
	// The limiter measures every check interval.
	testutil.WaitFor(t, "the memory limiter refusing", 10*time.Second, func() bool {
		_, err := exportGRPC(t, r.grpc, gauges("mem", testutil.Epoch, 1), "")
		st, _ := status.FromError(err)
		return st.Code() == codes.Unavailable
	})
	if err := r.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "memory limiter is refusing data") {
		t.Errorf("Ready = %v, want the memory limiter named", err)
	}
	clock.Add(time.Minute)
	if err := r.Ready(context.Background()); err != nil {
		t.Errorf("a minute after the last refusal: %v", err)
	}
}
