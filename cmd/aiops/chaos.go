package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// chaosCommand is `aiops chaos run`: the closed loop measured against the
// simulated workflow engine (docs/BENCHMARKS.md). The harness that runs it
// (bench/chaos) links the simulator and test helpers, which this binary
// must not (deps_test.go), so the command hands its flags to
// `aiops-bench chaos run`, the same code, installed next to aiops by
// `make build`.
type chaosCommand struct {
	cmd *kingpin.CmdClause

	bench     string
	scenarios string
	out       string
	faults    string
	baseline  time.Duration
	step      time.Duration
	seed      uint64
	runs      int
	rules     string
	runbooks  string
	verbose   bool
}

func newChaosCommand(app *kingpin.Application) *chaosCommand {
	c := &chaosCommand{}
	ch := app.Command("chaos", "The closed loop against the simulated workflow engine.")
	c.cmd = ch.Command("run", "Inject every fault of the simulator's catalogue (then a few overlapping pairs) with the shipped rules and runbooks healing it, in simulated time, twice against one aiops; then a healthy baseline. Writes report.md, report.json and a timeline picture per scenario.")
	c.cmd.Flag("scenarios", "Directory of scenario files (YAML) to run instead of the catalogue.").PlaceHolder("DIR").StringVar(&c.scenarios)
	c.cmd.Flag("out", "Directory for the report.").Default("chaos-report").StringVar(&c.out)
	c.cmd.Flag("faults", "Only the scenarios made of these faults, comma-separated.").PlaceHolder("a,b").StringVar(&c.faults)
	c.cmd.Flag("baseline", "Healthy stretch in which no action may run (0 skips it).").Default("30m").DurationVar(&c.baseline)
	c.cmd.Flag("step", "Simulated interval: the simulator's step and the rules' evaluation interval.").Default("5s").DurationVar(&c.step)
	c.cmd.Flag("seed", "The simulator's seed (the baseline's is one more).").Default("7").Uint64Var(&c.seed)
	c.cmd.Flag("runs", "Runs of the scenarios against one aiops, its learning record carried over (0: the baseline alone).").Default("2").IntVar(&c.runs)
	c.cmd.Flag("rules", "Rule files (glob).").Default("deploy/rules/*.yml").StringVar(&c.rules)
	c.cmd.Flag("runbooks", "Runbook files (glob).").Default("deploy/runbooks/*.yml").StringVar(&c.runbooks)
	c.cmd.Flag("verbose", "Log what aiops does.").BoolVar(&c.verbose)
	c.cmd.Flag("bench", "The aiops-bench program (default: next to aiops, else on $PATH).").PlaceHolder("PATH").StringVar(&c.bench)
	return c
}

func (c *chaosCommand) fullCommand() string { return c.cmd.FullCommand() }

// args are aiops-bench's arguments.
func (c *chaosCommand) args() []string {
	args := []string{"chaos", "run", "--out", c.out, "--baseline", c.baseline.String(), "--step", c.step.String(),
		"--seed", strconv.FormatUint(c.seed, 10), "--runs", strconv.Itoa(c.runs), "--rules", c.rules, "--runbooks", c.runbooks}
	if c.scenarios != "" {
		args = append(args, "--scenarios", c.scenarios)
	}
	if c.faults != "" {
		args = append(args, "--faults", c.faults)
	}
	if c.verbose {
		args = append(args, "--verbose")
	}
	return args
}

// benchPath finds aiops-bench: --bench, next to this executable, or on
// $PATH.
func (c *chaosCommand) benchPath() (string, error) {
	if c.bench != "" {
		return c.bench, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "aiops-bench")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("aiops-bench")
	if err != nil {
		return "", errors.New("aiops-bench is neither next to aiops nor on $PATH (make build builds both; or name it with --bench)")
	}
	return p, nil
}

func (c *chaosCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
	if c.runs < 0 {
		return fmt.Errorf("--runs: must be >= 0, got %d", c.runs)
	}
	bin, err := c.benchPath()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, c.args()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Interrupted, the harness is interrupted in turn, so that it stops
	// and removes its stores; killed only if it does not end in time.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	return nil
}
