package main

import (
	"context"
	"errors"
	"io"

	"github.com/alecthomas/kingpin/v2"
)

type serveCommand struct {
	cmd *kingpin.CmdClause
}

func newServeCommand(app *kingpin.Application) *serveCommand {
	c := &serveCommand{}
	c.cmd = app.Command("serve", "Run the aiops server (all-in-one by default, or the role its config names).").Default()
	return c
}

func (c *serveCommand) fullCommand() string { return c.cmd.FullCommand() }

func (c *serveCommand) run(ctx context.Context, stdout, stderr io.Writer) error {
	return errors.New("not implemented yet")
}
