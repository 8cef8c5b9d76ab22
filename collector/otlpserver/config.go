package otlpserver

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/confighttp"
)

// Config configures the aiops_otlp receiver. Authentication (configauth,
// e.g. the aiops_auth extension), TLS and mTLS (configtls), message sizes
// and the HTTP timeouts are the collector framework's server settings.
type Config struct {
	// GRPC is the OTLP/gRPC server; an empty endpoint turns it off.
	GRPC configgrpc.ServerConfig `mapstructure:"grpc"`
	// HTTP is the OTLP/HTTP server; an empty endpoint turns it off.
	HTTP confighttp.ServerConfig `mapstructure:"http"`
	// MaxConnections bounds the open connections of each listener:
	// connections beyond it are closed as soon as they are accepted. 0
	// means no bound.
	MaxConnections int `mapstructure:"max_connections"`
	// IdleTimeout closes a connection that has carried no request for
	// this long: HTTP keep-alive connections, and gRPC connections
	// without RPCs (the server's MaxConnectionIdle). 0 keeps them open.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
}

// Validate is called by the collector when it loads the configuration.
func (c *Config) Validate() error {
	if c.GRPC.NetAddr.Endpoint == "" && c.HTTP.NetAddr.Endpoint == "" {
		return errors.New("grpc::endpoint: at least one of the gRPC and HTTP endpoints must be set")
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("max_connections: must be >= 0, got %d", c.MaxConnections)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle_timeout: must be >= 0, got %s", c.IdleTimeout)
	}
	return nil
}

func defaultConfig() *Config {
	// No endpoint by default: a configuration names what it listens
	// on (an empty endpoint cannot be told from an unset one).
	g := configgrpc.NewDefaultServerConfig()
	g.MaxRecvMsgSizeMiB = 16
	h := confighttp.NewDefaultServerConfig()
	h.MaxRequestBodySize = 16 << 20
	h.ReadHeaderTimeout = 10 * time.Second
	h.ReadTimeout = time.Minute
	h.WriteTimeout = 2 * time.Minute
	return &Config{GRPC: g, HTTP: h, MaxConnections: 2048, IdleTimeout: 2 * time.Minute}
}
