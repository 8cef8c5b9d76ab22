package action

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// ExecConfig configures the exec driver.
type ExecConfig struct {
	// Allowed are the absolute paths of the only commands that may run.
	Allowed []string
	// Env is the commands' whole environment ("K=V"); nothing of aiops's
	// own environment is passed on.
	Env []string
	// Dir is the working directory; empty means /.
	Dir string
}

// Exec runs an allow-listed command with arguments, without a shell: no
// expansion, no pipes, no globbing; an argument is one argument whatever
// it contains.
type Exec struct {
	cfg ExecConfig
}

// maxOutput bounds the output kept of a command.
const maxOutput = 4 << 10

// NewExec returns the exec driver.
func NewExec(c ExecConfig) (*Exec, error) {
	for i, p := range c.Allowed {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("allowed[%d]: must be a clean absolute path, got %q", i, p)
		}
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
	return &Exec{cfg: c}, nil
}

// Do implements Driver.
func (e *Exec) Do(ctx context.Context, c Call) (Result, error) {
	cmd := c.Params.String("command")
	if !slices.Contains(e.cfg.Allowed, cmd) {
		return Result{}, Permanent(fmt.Errorf("command: %q is not allowed (remediation.drivers.exec.allowed)", cmd))
	}
	x := exec.CommandContext(ctx, cmd, c.Params["args"].List...)
	x.Env = append([]string{}, e.cfg.Env...)
	x.Dir = e.cfg.Dir
	var out bytes.Buffer
	w := &capped{buf: &out, max: maxOutput}
	x.Stdout, x.Stderr = w, w
	err := x.Run()
	tail := strings.TrimSpace(out.String())
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return Result{}, fmt.Errorf("%s exited with %d: %s", filepath.Base(cmd), ee.ExitCode(), tail)
		}
		return Result{}, fmt.Errorf("%s: %w", filepath.Base(cmd), err)
	}
	return Result{Outcome: "done", Detail: tail}, nil
}

// capped keeps the first max bytes written and drops the rest.
type capped struct {
	buf *bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
