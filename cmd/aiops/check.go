package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// checkCommands check things without running a server: configuration
// files (as promtool check config does for Prometheus), and a running
// server's readiness for container health checks, where no curl exists.
type checkCommands struct {
	config, ready *kingpin.CmdClause

	files   []string
	url     string
	timeout time.Duration
}

func newCheckCommands(app *kingpin.Application) []command {
	c := &checkCommands{}
	chk := app.Command("check", "Check configuration files or a running server.")
	c.config = chk.Command("config", "Load and validate aiops configuration files as serve would, without starting anything. Exits non-zero naming the first invalid key.")
	c.config.Arg("file", "Configuration file.").Required().ExistingFilesVar(&c.files)
	c.ready = chk.Command("ready", "Ask a running server's readiness probe; exits 0 when it answers 200. For HEALTHCHECK in images without a shell.")
	c.ready.Arg("url", "Readiness URL.").Default("http://127.0.0.1:9090/readyz").StringVar(&c.url)
	c.ready.Flag("timeout", "How long to wait for the answer.").Default("5s").DurationVar(&c.timeout)
	return []command{
		commandFunc{c.config, c.runConfig},
		commandFunc{c.ready, c.runReady},
	}
}

func (c *checkCommands) runConfig(_ context.Context, stdout, _ io.Writer) error {
	var errs []error
	for _, f := range c.files {
		cfg, err := LoadConfig(f)
		if err == nil {
			err = cfg.finish()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		fmt.Fprintf(stdout, "%s: valid (role %s, storage %s)\n", f, cfg.Role, cfg.Storage.Backend)
	}
	return errors.Join(errs...)
}

func (c *checkCommands) runReady(ctx context.Context, stdout, _ io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", c.url, resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s", body)
	return nil
}
