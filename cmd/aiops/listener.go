package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
)

// listenHTTP opens the main HTTP listener. Beyond server.max_connections
// open connections it accepts no more until one closes: new ones wait in
// the kernel's backlog, and the file descriptors the store, the OTLP
// listeners and compaction need stay free.
func listenHTTP(cfg ServerConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("server.http_addr: %w", err)
	}
	return netutil.LimitListener(ln, cfg.MaxConnections), nil
}

// newHTTPServer returns the main HTTP server with the timeouts of cfg:
// headers must arrive within read_header_timeout and the whole request
// within read_timeout; the answer must be written within write_timeout
// (longer than query.timeout, which bounds the slowest answer); a
// keep-alive connection idle for idle_timeout is closed. Open connections
// are counted in aiops_http_open_connections.
func newHTTPServer(cfg ServerConfig, h http.Handler, reg prometheus.Registerer) *http.Server {
	open := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aiops_http_open_connections",
		Help: "Connections open on the main HTTP listener (at most server.max_connections).",
	})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aiops_http_max_connections",
		Help: "server.max_connections: connections the main HTTP listener keeps open at most.",
	})
	limit.Set(float64(cfg.MaxConnections))
	if reg != nil {
		reg.MustRegister(open, limit)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Duration(cfg.ReadHeaderTimeout),
		ReadTimeout:       time.Duration(cfg.ReadTimeout),
		WriteTimeout:      time.Duration(cfg.WriteTimeout),
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Inc()
			case http.StateClosed, http.StateHijacked:
				open.Dec()
			}
		},
	}
}
