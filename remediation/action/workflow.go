package action

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WorkflowConfig configures the workflow engine driver: its control API
// (served by cmd/workflow-sim, see docs/SIMULATOR.md).
type WorkflowConfig struct {
	// URL is the control API's base URL, e.g. http://127.0.0.1:8088.
	URL string
	// Token reads the control API's bearer token.
	Token Secret
	// Client makes the requests; nil means a client with Timeout.
	Client *http.Client
	// Timeout bounds one request when the step's own timeout is longer.
	Timeout time.Duration
}

// Workflow acts on the workflow engine through its control API.
type Workflow struct {
	base   *url.URL
	token  Secret
	client *http.Client
}

// NewWorkflow returns the workflow engine driver.
func NewWorkflow(c WorkflowConfig) (*Workflow, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url: must be an http(s) URL, got %q", c.URL)
	}
	if c.Token == nil {
		return nil, errors.New("token: required: the control API's bearer token")
	}
	client := c.Client
	if client == nil {
		timeout := c.Timeout
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		client = &http.Client{Timeout: timeout}
	}
	return &Workflow{base: u, token: c.Token, client: client}, nil
}

// Do implements Driver.
func (w *Workflow) Do(ctx context.Context, c Call) (Result, error) {
	p := c.Params
	// Each parameter in the path is one segment: escaped, and never "."
	// or "..", which a router or proxy cleaning the path would resolve to
	// another resource (an instance named ".." restarting its service).
	// Targets come from labels that services send, so these are data.
	var segErr error
	esc := func(v string) string {
		if v == "." || v == ".." {
			segErr = errors.Join(segErr, fmt.Errorf("%q is not a name the control API can address", v))
		}
		return url.PathEscape(v)
	}
	var (
		method = http.MethodPost
		path   string
		body   any
	)
	switch strings.TrimPrefix(c.Action, "workflow.") {
	case "restart_service":
		if err := p.Required("service"); err != nil {
			return Result{}, err
		}
		path = "/services/" + esc(p.String("service")) + "/restart"
	case "restart_instance":
		if err := p.Required("service", "instance"); err != nil {
			return Result{}, err
		}
		path = "/services/" + esc(p.String("service")) + "/instances/" + esc(p.String("instance")) + "/restart"
	case "scale":
		if err := p.Required("service"); err != nil {
			return Result{}, err
		}
		n, err := clampedReplicas(p)
		if err != nil {
			return Result{}, err
		}
		path, body = "/services/"+esc(p.String("service"))+"/scale", map[string]int{"replicas": n}
	case "rollback":
		if err := p.Required("service"); err != nil {
			return Result{}, err
		}
		path = "/services/" + esc(p.String("service")) + "/rollback"
	case "rate_limit":
		if err := p.Required("service", "route"); err != nil {
			return Result{}, err
		}
		rps, ok, err := p.Float("per_client_rps")
		if err != nil || !ok {
			return Result{}, Permanent(errors.Join(err, errors.New("per_client_rps: required")))
		}
		method, path = http.MethodPut, "/services/"+esc(p.String("service"))+"/rate-limit"
		body = map[string]any{"route": p.String("route"), "per_client_rps": rps}
	case "trip_breaker", "reset_breaker":
		if err := p.Required("breaker"); err != nil {
			return Result{}, err
		}
		verb := "trip"
		if strings.HasSuffix(c.Action, "reset_breaker") {
			verb = "reset"
		}
		path = "/breakers/" + esc(p.String("breaker")) + "/" + verb
	case "set_flag":
		if err := p.Required("flag"); err != nil {
			return Result{}, err
		}
		on, ok, err := p.Bool("enabled")
		if err != nil || !ok {
			return Result{}, Permanent(errors.Join(err, errors.New("enabled: required")))
		}
		method, path, body = http.MethodPut, "/flags/"+esc(p.String("flag")), map[string]bool{"enabled": on}
	case "expand_volume":
		if err := p.Required("volume"); err != nil {
			return Result{}, err
		}
		n, ok, err := p.Int("add_bytes")
		if err != nil || !ok || n <= 0 {
			return Result{}, Permanent(errors.Join(err, fmt.Errorf("add_bytes: must be > 0")))
		}
		path, body = "/volumes/"+esc(p.String("volume"))+"/expand", map[string]int{"add_bytes": n}
	case "clean_volume":
		if err := p.Required("volume"); err != nil {
			return Result{}, err
		}
		path = "/volumes/" + esc(p.String("volume")) + "/clean"
	default:
		return Result{}, Permanent(fmt.Errorf("unknown workflow action %q", c.Action))
	}
	if segErr != nil {
		return Result{}, Permanent(fmt.Errorf("%s: %w", c.Action, segErr))
	}
	return w.call(ctx, method, path, body)
}

// clampedReplicas is the replicas parameter held within [min, max].
func clampedReplicas(p Params) (int, error) {
	n, ok, err := p.Int("replicas")
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, Permanent(errors.New("replicas: required"))
	}
	lo, hasLo, err := p.Int("min")
	if err != nil {
		return 0, err
	}
	hi, hasHi, err := p.Int("max")
	if err != nil {
		return 0, err
	}
	if hasLo && hasHi && lo > hi {
		return 0, Permanent(fmt.Errorf("min: %d is above max %d", lo, hi))
	}
	if hasLo {
		n = max(n, lo)
	}
	if hasHi {
		n = min(n, hi)
	}
	if n < 0 {
		return 0, Permanent(fmt.Errorf("replicas: must be >= 0, got %d", n))
	}
	return n, nil
}

func (w *Workflow) call(ctx context.Context, method, path string, body any) (Result, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Result{}, Permanent(err)
		}
		rd = bytes.NewReader(b)
	}
	// path is escaped already: it goes in RawPath, so that a "/" or "%"
	// escaped in a name reaches the server as written, not escaped twice.
	u := *w.base
	escaped := strings.TrimRight(w.base.EscapedPath(), "/") + path
	dec, err := url.PathUnescape(escaped)
	if err != nil {
		return Result{}, Permanent(fmt.Errorf("%s %s: %w", method, path, err))
	}
	u.Path, u.RawPath = dec, escaped
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return Result{}, Permanent(err)
	}
	tok, err := w.token()
	if err != nil {
		return Result{}, Permanent(fmt.Errorf("the control API's token: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL carries no secret; the token is in a header.
		return Result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ans struct {
		Outcome    string `json:"outcome"`
		Error      string `json:"error"`
		Field      string `json:"field"`
		FreedBytes *int64 `json:"freed_bytes"`
	}
	_ = json.Unmarshal(raw, &ans)
	if resp.StatusCode/100 != 2 {
		msg := ans.Error
		if msg == "" {
			msg = strings.TrimSpace(string(raw))
		}
		err := fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
		if retryableStatus(resp.StatusCode) {
			return Result{}, err
		}
		return Result{}, Permanent(err)
	}
	res := Result{Outcome: ans.Outcome}
	if res.Outcome == "" {
		res.Outcome = "done"
	}
	if ans.FreedBytes != nil {
		res.Detail = "freed " + strconv.FormatInt(*ans.FreedBytes, 10) + " bytes"
	}
	return res, nil
}

// retryableStatus reports whether an HTTP status may change on retry.
func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}
