package main

import (
	"context"
	"io"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/aiops-dev/aiops/bench/backtest"
)

type backtestCommand struct {
	cmd *kingpin.CmdClause
	cfg backtest.Config
}

func newBacktestCommand(app *kingpin.Application) *backtestCommand {
	c := &backtestCommand{}
	bt := app.Command("backtest", "Measure the analyzers on generated data with known answers.")
	c.cmd = bt.Command("forecast", "Compare the capacity forecaster with Prometheus's predict_linear on series with known exhaustion times.")
	c.cmd.Flag("window", "Lookback window both forecasters see.").Default("72h").DurationVar(&c.cfg.Window)
	c.cmd.Flag("step", "Sample spacing of the generated series.").Default("5m").DurationVar(&c.cfg.Step)
	c.cmd.Flag("seeds", "Random variants of each scenario.").Default("10").IntVar(&c.cfg.Seeds)
	c.cmd.Flag("horizon", "Horizon of the \"fills within\" question.").Default("24h").DurationVar(&c.cfg.Horizon)
	c.cmd.Flag("tsdb-dir", "Keep the generated TSDB here instead of a temporary directory.").StringVar(&c.cfg.Dir)
	return c
}

func (c *backtestCommand) fullCommand() string { return c.cmd.FullCommand() }

func (c *backtestCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
	start := time.Now()
	rep, err := backtest.Run(ctx, c.cfg)
	if err != nil {
		return err
	}
	if err := rep.Print(stdout); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, "took "+time.Since(start).Round(time.Millisecond).String()+"\n")
	return err
}
