package otlpserver

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// limitListener closes connections beyond max as soon as it accepts
// them, so that a client holding many connections cannot exhaust the
// process's file descriptors (which the store and the HTTP API need
// too). Refusing at once rather than leaving connections in the accept
// queue tells clients to back off instead of hanging them.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	gauge   prometheus.Gauge
	refused prometheus.Counter
	logger  *slog.Logger
	lastLog atomic.Int64 // unix nanoseconds
}

func newLimitListener(ln net.Listener, max int, gauge prometheus.Gauge, refused prometheus.Counter, logger *slog.Logger) net.Listener {
	return &limitListener{Listener: ln, max: int64(max), gauge: gauge, refused: refused, logger: logger}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max > 0 && l.open.Load() >= l.max {
			c.Close()
			l.refused.Inc()
			// One line a minute at most: the point is not to be
			// flooded.
			now := time.Now().UnixNano()
			if last := l.lastLog.Load(); now-last > int64(time.Minute) && l.lastLog.CompareAndSwap(last, now) {
				l.logger.Warn("OTLP connection limit reached; closing new connections", "max_connections", l.max, "remote", c.RemoteAddr().String())
			}
			continue
		}
		l.open.Add(1)
		l.gauge.Inc()
		return &limitConn{Conn: c, l: l}, nil
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.gauge.Dec()
	})
	return err
}

func tlsListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }
