// Command aiops is the whole aiops backend in one binary. By default
// `aiops serve` runs everything in one process on an embedded store; the
// same binary runs as a collector, an ingester or another role when its
// configuration says so. Benchmarks and evaluations are another program,
// cmd/aiops-bench: this one links no harness or test code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
)

// command is one subcommand. Each registers its flags on the application
// when it is created and runs when selected.
type command interface {
	// fullCommand is the name kingpin reports when the command is selected,
	// e.g. "serve" or "token create".
	fullCommand() string
	run(ctx context.Context, stdout, stderr io.Writer) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("aiops", "Observability and AIOps backend: OpenTelemetry in, anomalies, forecasts, alerts and runbooks out.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// --help and --version end parsing through Terminate; remember that
	// instead of exiting, so run stays testable.
	terminated, exitCode := false, 0
	app.Terminate(func(code int) { terminated, exitCode = true, code })
	app.HelpFlag.Short('h')
	app.Version(versionString())

	cmds := []command{newServeCommand(app)}
	cmds = append(cmds, newTokenCommands(app)...)
	cmds = append(cmds, newRunbookCommands(app)...)
	cmds = append(cmds, newCheckCommands(app)...)
	cmds = append(cmds, newChaosCommand(app))

	selected, err := app.Parse(args)
	if terminated {
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "aiops: %v\n", err)
		return 2
	}
	for _, c := range cmds {
		if c.fullCommand() == selected {
			if err := c.run(ctx, stdout, stderr); err != nil {
				if !errors.Is(err, errLint) {
					fmt.Fprintf(stderr, "aiops %s: %v\n", selected, err)
				}
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "aiops: command %q has no implementation\n", selected)
	return 2
}
