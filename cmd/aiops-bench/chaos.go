package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/aiops-dev/aiops/bench/chaos"
)

type chaosCommand struct {
	cmd       *kingpin.CmdClause
	cfg       chaos.Config
	faults    string
	scenarios string
	out       string
	rules     string
	runbooks  string
	verbose   bool
}

func newChaosCommand(app *kingpin.Application) *chaosCommand {
	c := &chaosCommand{cfg: chaos.DefaultConfig()}
	ch := app.Command("chaos", "The closed loop against the simulated workflow engine.")
	c.cmd = ch.Command("run", "Inject every fault of the simulator's catalogue (then a few overlapping pairs) with aiops's rules and runbooks healing it, in simulated time; write report.md and report.json.")
	c.cmd.Flag("scenarios", "Directory of scenario files (YAML) to run instead of the catalogue.").PlaceHolder("DIR").StringVar(&c.scenarios)
	c.cmd.Flag("faults", "Only the scenarios made of these faults, comma-separated.").PlaceHolder("a,b").StringVar(&c.faults)
	c.cmd.Flag("baseline", "Healthy stretch in which no action may run (0 skips it).").Default("30m").DurationVar(&c.cfg.Baseline)
	c.cmd.Flag("step", "Simulated interval: the simulator's step and the rules' evaluation interval.").Default("5s").DurationVar(&c.cfg.Step)
	c.cmd.Flag("seed", "The simulator's seed (the baseline's is one more).").Default("7").Uint64Var(&c.cfg.Seed)
	c.cmd.Flag("runs", "Runs of the scenarios against one aiops, its learning record carried over (0: the baseline alone).").Default("2").IntVar(&c.cfg.Runs)
	c.cmd.Flag("rules", "Rule files (glob).").Default("deploy/rules/*.yml").StringVar(&c.rules)
	c.cmd.Flag("runbooks", "Runbook files (glob).").Default("deploy/runbooks/*.yml").StringVar(&c.runbooks)
	c.cmd.Flag("out", "Directory for report.md and report.json.").Default("chaos-report").StringVar(&c.out)
	c.cmd.Flag("verbose", "Log what aiops does.").BoolVar(&c.verbose)
	return c
}

func (c *chaosCommand) fullCommand() string { return c.cmd.FullCommand() }

func (c *chaosCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
	var err error
	if c.cfg.RuleFiles, err = filepath.Glob(c.rules); err != nil || len(c.cfg.RuleFiles) == 0 {
		return fmt.Errorf("--rules: %q matches no file", c.rules)
	}
	if c.cfg.RunbookFiles, err = filepath.Glob(c.runbooks); err != nil || len(c.cfg.RunbookFiles) == 0 {
		return fmt.Errorf("--runbooks: %q matches no file", c.runbooks)
	}
	if c.faults != "" {
		for _, f := range strings.Split(c.faults, ",") {
			c.cfg.Faults = append(c.cfg.Faults, strings.TrimSpace(f))
		}
	}
	if c.cfg.Runs < 0 {
		return fmt.Errorf("--runs: must be >= 0, got %d", c.cfg.Runs)
	}
	if c.cfg.Runs == 0 {
		c.cfg.Scenarios = []chaos.Scenario{}
	}
	if c.scenarios != "" && c.cfg.Runs > 0 {
		if c.cfg.Scenarios, err = chaos.LoadScenarios(c.scenarios); err != nil {
			return err
		}
	}
	if c.verbose {
		c.cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	c.cfg.Progress = func(r chaos.Result) {
		fmt.Fprintf(stdout, "run %d %-32s %-14s correct=%-5v detect=%s first_action=%s recover=%s actions=%d (%.1fs)\n",
			r.Run, r.Name, r.Outcome, r.Correct, fmtSecs(r.DetectSeconds), fmtSecs(r.FirstActionSeconds), fmtSecs(r.RecoverSeconds), r.Actions, r.WallSeconds)
	}
	start := time.Now()
	rep, err := chaos.Run(ctx, c.cfg)
	if err != nil {
		return err
	}
	command := fmt.Sprintf("aiops chaos run --step %s --baseline %s --seed %d --runs %d", c.cfg.Step, c.cfg.Baseline, c.cfg.Seed, c.cfg.Runs)
	if c.faults != "" {
		command += " --faults " + c.faults
	}
	if err := rep.Write(c.out, command); err != nil {
		return err
	}
	for i, s := range rep.Runs {
		fmt.Fprintf(stdout, "run %d: auto-resolved %d/%d fixable (%.0f %%), correctly escalated %d/%d, manual %.0f %%, time to recover median %.0fs p90 %.0fs (from the first alert %.0fs), detect median %.0fs, unhealthy median %.0fs\n",
			i+1, s.AutoResolved, s.Fixable, 100*s.AutoResolvedShare, s.CorrectlyEscalated, s.Unfixable, 100*s.ManualShare, s.MedianRecoverSeconds, s.P90RecoverSeconds, s.MedianDetectToRecoverSeconds, s.MedianDetectSeconds, s.MedianUnhealthySeconds)
	}
	if len(rep.Runs) > 1 {
		fmt.Fprintf(stdout, "later runs no slower: %v %v\n", rep.NoSlower, rep.Slower)
	}
	if b := rep.Baseline; b != nil {
		fmt.Fprintf(stdout, "baseline %s (seed %d): %d actions, alerts %v, healthy %v\n", time.Duration(b.Seconds*float64(time.Second)), c.cfg.Seed+1, b.Actions, b.Alerts, b.Healthy)
	}
	fmt.Fprintf(stdout, "report in %s (took %s)\n", c.out, time.Since(start).Round(time.Second))
	return nil
}

func fmtSecs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0fs", *v)
}
