package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Protocols a benchmark client speaks.
const (
	ProtocolGRPC = "grpc" // OTLP/gRPC
	ProtocolHTTP = "http" // OTLP/HTTP with protobuf bodies
)

// exporter sends encoded OTLP metrics export requests, one at a time per
// caller, as an OTel SDK's or Collector's exporter does.
type exporter interface {
	// export sends one request; errPushedBack wraps a refusal the client
	// should retry later (Unavailable, 429, 503).
	export(ctx context.Context, body []byte) error
	close() error
}

var errPushedBack = errors.New("pushed back")

type grpcExporter struct{ conn *grpc.ClientConn }

func newGRPCExporter(addr string) (*grpcExporter, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	return &grpcExporter{conn: conn}, nil
}

func (e *grpcExporter) export(ctx context.Context, body []byte) error {
	var reply []byte
	err := e.conn.Invoke(ctx, "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", &body, &reply)
	if c := status.Code(err); c == codes.Unavailable || c == codes.ResourceExhausted {
		return fmt.Errorf("%w: %w", errPushedBack, err)
	}
	return err
}

func (e *grpcExporter) close() error { return e.conn.Close() }

type httpExporter struct {
	url    string
	client *http.Client
}

func newHTTPExporter(url string) *httpExporter {
	return &httpExporter{url: url, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

func (e *httpExporter) export(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable,
		resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusGatewayTimeout:
		return fmt.Errorf("%w: %s", errPushedBack, resp.Status)
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
}

func (e *httpExporter) close() error {
	e.client.CloseIdleConnections()
	return nil
}

// sendAll has one client per sender send its requests in order, one at
// a time, retrying push-backs after 50 ms as an OTLP client does. It
// returns how many requests were pushed back, and the first other error.
func sendAll(ctx context.Context, exp exporter, requests [][][]byte) (int64, error) {
	var refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(requests))
	for k := range requests {
		wg.Go(func() {
			for i := range requests[k] {
				for {
					err := exp.export(ctx, requests[k][i])
					if err == nil {
						break
					}
					if !errors.Is(err, errPushedBack) || ctx.Err() != nil {
						errs <- fmt.Errorf("sender %d, request %d: %w", k, i, err)
						return
					}
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return refused.Load(), err
	default:
		return refused.Load(), nil
	}
}
