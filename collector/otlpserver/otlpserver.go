// Package otlpserver is the collector receiver "aiops_otlp": OTLP over
// gRPC and HTTP (protobuf and JSON) into the collector's pipelines, on
// the collector framework's server settings (configgrpc, confighttp:
// authentication extensions, TLS and mTLS, message sizes, timeouts).
//
// It is the framework's OTLP receiver plus what aiops needs of its
// listeners:
//   - partial success: data points that the pipeline refuses (the
//     limits of collector/limits in the ingress processor, a store that
//     refuses samples in a synchronous write) are reported in the
//     answer's partial_success (rejected_data_points, error_message),
//     and as InvalidArgument (HTTP 400) when all of a request's points
//     are refused; the framework's receiver always answers plain success;
//   - answers that say what is wrong with a body (JSON that is not JSON,
//     a protobuf body sent as JSON) instead of HTTP 500;
//   - 403 over HTTP for a credential without the ingest scope (the
//     framework's HTTP server answers 401 to every authentication error);
//   - a bound on open connections per listener and an idle timeout;
//   - the tenant of the client's credential stamped on its data.
package otlpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"google.golang.org/grpc"

	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// Type is the receiver's type name.
const Type = "aiops_otlp"

// Deps are what the receiver takes from the process.
type Deps struct {
	Metrics *obs.Metrics
	Logger  *slog.Logger
}

// NewFactory returns the factory of the aiops_otlp receiver. The metrics,
// logs and traces receivers of one component id share one server.
func NewFactory(d Deps) receiver.Factory {
	if d.Metrics == nil {
		d.Metrics = obs.NewUnregistered()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	f := &factory{deps: d, servers: map[component.ID]*server{}}
	return receiver.NewFactory(component.MustNewType(Type),
		func() component.Config { return defaultConfig() },
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			s, err := f.server(set, cfg)
			if err != nil {
				return nil, err
			}
			s.metrics = next
			return s, nil
		}, component.StabilityLevelBeta),
		receiver.WithLogs(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			s, err := f.server(set, cfg)
			if err != nil {
				return nil, err
			}
			s.logs = next
			return s, nil
		}, component.StabilityLevelBeta),
		receiver.WithTraces(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			s, err := f.server(set, cfg)
			if err != nil {
				return nil, err
			}
			s.traces = next
			return s, nil
		}, component.StabilityLevelBeta),
	)
}

type factory struct {
	deps    Deps
	mu      sync.Mutex
	servers map[component.ID]*server
}

func (f *factory) server(set receiver.Settings, cfg component.Config) (*server, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.servers[set.ID]; s != nil {
		return s, nil
	}
	s := &server{cfg: cfg.(*Config), set: set, deps: f.deps, forget: func() {
		f.mu.Lock()
		delete(f.servers, set.ID)
		f.mu.Unlock()
	}}
	var err error
	for _, tr := range []struct {
		name string
		into **receiverhelper.ObsReport
	}{{"grpc", &s.obsGRPC}, {"http", &s.obsHTTP}} {
		*tr.into, err = receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{ReceiverID: set.ID, Transport: tr.name, ReceiverCreateSettings: set})
		if err != nil {
			return nil, err
		}
	}
	f.servers[set.ID] = s
	return s, nil
}

// server is one aiops_otlp receiver: its listeners and its pipelines.
type server struct {
	cfg    *Config
	set    receiver.Settings
	deps   Deps
	forget func()

	metrics consumer.Metrics
	logs    consumer.Logs
	traces  consumer.Traces

	obsGRPC, obsHTTP *receiverhelper.ObsReport

	startOnce, stopOnce sync.Once
	startErr            error
	grpcServer          *grpc.Server
	httpServer          *http.Server
	wg                  sync.WaitGroup
}

// Start starts the listeners once, for all signals.
func (s *server) Start(ctx context.Context, host component.Host) error {
	s.startOnce.Do(func() {
		if err := s.startGRPC(ctx, host); err != nil {
			s.startErr = fmt.Errorf("otlp grpc: %w", err)
			return
		}
		if err := s.startHTTP(ctx, host); err != nil {
			s.startErr = fmt.Errorf("otlp http: %w", err)
		}
	})
	return s.startErr
}

func (s *server) startGRPC(ctx context.Context, host component.Host) error {
	cfg := s.cfg.GRPC
	if cfg.NetAddr.Endpoint == "" {
		return nil
	}
	if s.cfg.IdleTimeout > 0 {
		ka := configgrpc.NewDefaultKeepaliveServerConfig()
		if k := cfg.Keepalive.Get(); k != nil {
			ka = *k
		}
		params := configgrpc.NewDefaultKeepaliveServerParameters()
		if p := ka.ServerParameters.Get(); p != nil {
			params = *p
		}
		if params.MaxConnectionIdle == 0 {
			params.MaxConnectionIdle = s.cfg.IdleTimeout
		}
		ka.ServerParameters = configoptional.Some(params)
		cfg.Keepalive = configoptional.Some(ka)
	}
	srv, err := cfg.ToServer(ctx, host.GetExtensions(), s.set.TelemetrySettings)
	if err != nil {
		return err
	}
	if s.metrics != nil {
		pmetricotlp.RegisterGRPCServer(srv, &metricsService{s: s})
	}
	if s.logs != nil {
		plogotlp.RegisterGRPCServer(srv, &logsService{s: s})
	}
	if s.traces != nil {
		ptraceotlp.RegisterGRPCServer(srv, &tracesService{s: s})
	}
	ln, err := cfg.NetAddr.Listen(ctx)
	if err != nil {
		return err
	}
	s.grpcServer = srv
	ln = s.limit(ln, "grpc")
	s.deps.Logger.Info("OTLP/gRPC listening", "addr", ln.Addr().String(), "tls", cfg.TLS.HasValue(), "auth", cfg.Auth.HasValue())
	s.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	})
	return nil
}

func (s *server) startHTTP(ctx context.Context, host component.Host) error {
	cfg := s.cfg.HTTP
	if cfg.NetAddr.Endpoint == "" {
		return nil
	}
	if s.cfg.IdleTimeout > 0 {
		ka := confighttp.NewDefaultKeepaliveServerConfig()
		ka.IdleTimeout = s.cfg.IdleTimeout
		cfg.Keepalive = configoptional.Some(ka)
	}
	mux := http.NewServeMux()
	if s.metrics != nil {
		mux.HandleFunc("/v1/metrics", s.handleMetrics)
	}
	if s.logs != nil {
		mux.HandleFunc("/v1/logs", s.handleLogs)
	}
	if s.traces != nil {
		mux.HandleFunc("/v1/traces", s.handleTraces)
	}
	srv, err := cfg.ToServer(ctx, host.GetExtensions(), s.set.TelemetrySettings, mux, confighttp.WithErrorHandler(writeFrameworkError))
	if err != nil {
		return err
	}
	// The limit goes under TLS, so that the server still sees *tls.Conn
	// (for HTTP/2 and the client's certificate).
	ln, err := cfg.NetAddr.Listen(ctx)
	if err != nil {
		return err
	}
	ln = s.limit(ln, "http")
	if t := cfg.TLS.Get(); t != nil {
		tlsCfg, err := t.LoadTLSConfig(ctx)
		if err != nil {
			ln.Close()
			return err
		}
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
		ln = tlsListener(ln, tlsCfg)
	}
	s.httpServer = srv
	s.deps.Logger.Info("OTLP/HTTP listening", "addr", ln.Addr().String(), "tls", cfg.TLS.HasValue(), "auth", cfg.Auth.HasValue())
	s.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			componentstatus.ReportStatus(host, componentstatus.NewFatalErrorEvent(err))
		}
	})
	return nil
}

func (s *server) limit(ln net.Listener, transport string) net.Listener {
	return newLimitListener(ln, s.cfg.MaxConnections, s.deps.Metrics.Connections.WithLabelValues(transport),
		s.deps.Metrics.ConnectionsRefused.WithLabelValues(transport), s.deps.Logger.With("transport", transport))
}

// Shutdown stops the listeners once: requests in flight finish (within
// ctx), then connections close.
func (s *server) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		defer s.forget()
		if s.httpServer != nil {
			err = s.httpServer.Shutdown(ctx)
		}
		if s.grpcServer != nil {
			stopped := make(chan struct{})
			go func() {
				s.grpcServer.GracefulStop()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-ctx.Done():
				s.grpcServer.Stop()
			}
		}
		s.wg.Wait()
	})
	return err
}
