// Command aiops-bench runs the benchmarks and evaluations behind
// docs/BENCHMARKS.md and docs/ANALYZER.md: ingest, query and alerting
// benchmarks on the embedded store and on ClickHouse, the NAB scorer and
// the forecast backtest. It is a separate program so that the aiops binary
// links none of this harness code (nor the testing package some of it
// needs).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
)

// version is set at link time by the Makefile (-X main.version=...).
var version = "dev"

// command is one subcommand. Each registers its flags on the application
// when it is created and runs when selected.
type command interface {
	// fullCommand is the name kingpin reports when the command is selected,
	// e.g. "ingest" or "backtest forecast".
	fullCommand() string
	run(ctx context.Context, stdout, stderr io.Writer) error
}

// commandFunc adapts a clause and a function to command.
type commandFunc struct {
	clause *kingpin.CmdClause
	fn     func(ctx context.Context, stdout, stderr io.Writer) error
}

func (c commandFunc) fullCommand() string { return c.clause.FullCommand() }
func (c commandFunc) run(ctx context.Context, stdout, stderr io.Writer) error {
	return c.fn(ctx, stdout, stderr)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("aiops-bench", "Benchmarks and evaluations of aiops (docs/BENCHMARKS.md, docs/ANALYZER.md); medians over several runs.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// --help and --version end parsing through Terminate; remember that
	// instead of exiting, so run stays testable.
	terminated, exitCode := false, 0
	app.Terminate(func(code int) { terminated, exitCode = true, code })
	app.HelpFlag.Short('h')
	app.Version("aiops-bench " + version)

	cmds := newBenchCommands(app)
	cmds = append(cmds, newNABCommand(app), newBacktestCommand(app), newChaosCommand(app))

	selected, err := app.Parse(args)
	if terminated {
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "aiops-bench: %v\n", err)
		return 2
	}
	for _, c := range cmds {
		if c.fullCommand() == selected {
			if err := c.run(ctx, stdout, stderr); err != nil {
				fmt.Fprintf(stderr, "aiops-bench %s: %v\n", selected, err)
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "aiops-bench: command %q has no implementation\n", selected)
	return 2
}
