package main

import (
	"context"
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// commandFunc adapts a clause and a function to command.
type commandFunc struct {
	clause *kingpin.CmdClause
	fn     func(ctx context.Context, stdout, stderr io.Writer) error
}

func (c commandFunc) fullCommand() string { return c.clause.FullCommand() }
func (c commandFunc) run(ctx context.Context, stdout, stderr io.Writer) error {
	return c.fn(ctx, stdout, stderr)
}

// storeFlags locate the store for commands that work on it directly.
type storeFlags struct {
	configFile string
	dataDir    string
}

func (f *storeFlags) register(cmd *kingpin.CmdClause) {
	cmd.Flag("config", "The server's configuration file, to find its store.").PlaceHolder("FILE").StringVar(&f.configFile)
	cmd.Flag("data-dir", "Data directory of the embedded store (overrides the config).").PlaceHolder("DIR").StringVar(&f.dataDir)
}

func (f *storeFlags) config() (StorageConfig, error) {
	cfg := DefaultConfig()
	if f.configFile != "" {
		var err error
		if cfg, err = LoadConfig(f.configFile); err != nil {
			return cfg.Storage, err
		}
	}
	if f.dataDir != "" {
		cfg.Storage.Embedded.DataDir = f.dataDir
	}
	return cfg.Storage, cfg.Storage.Validate()
}

// openEvents opens only the event store, which can be done while a
// server runs on the same store: for the embedded backend its records
// database, for ClickHouse a connection of its own without the
// write-ahead log (the server's log is the server's; events are written
// to ClickHouse directly in any case) and without the sample cache.
func (f *storeFlags) openEvents(ctx context.Context) (storage.EventStore, func(), error) {
	cfg, err := f.config()
	if err != nil {
		return nil, nil, err
	}
	switch cfg.Backend {
	case BackendEmbedded:
		r, err := embedded.OpenRecords(cfg.Embedded)
		if err != nil {
			return nil, nil, err
		}
		return r, func() { r.Close() }, nil
	case BackendClickHouse:
		chCfg := cfg.ClickHouse
		chCfg.WAL.Mode, chCfg.WAL.Dir = clickhouse.WALOff, ""
		chCfg.SampleCacheMiB = 0
		s, err := clickhouse.Open(ctx, chCfg, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("open clickhouse store: %w", err)
		}
		return s, func() { s.Close() }, nil
	default:
		return nil, nil, fmt.Errorf("storage.backend %q is not available yet", cfg.Backend)
	}
}
