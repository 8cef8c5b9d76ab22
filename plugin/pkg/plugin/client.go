package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// client calls aiops's HTTP APIs with the data source's token.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// statusError is an answer of aiops other than 200.
type statusError struct {
	Status int
	Path   string
	Msg    string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("aiops answered %d to %s: %s", e.Status, e.Path, e.Msg)
}

// maxBody bounds what one answer may hold; Grafana would not draw more.
const maxBody = 64 << 20

// get reads path (with query) into out.
func (c *client) get(ctx context.Context, path string, q url.Values, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("%s: the answer is larger than %d MiB; narrow the query", path, maxBody>>20)
	}
	if res.StatusCode != http.StatusOK {
		return &statusError{Status: res.StatusCode, Path: path, Msg: errorMessage(body)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// errorMessage finds the message in aiops's error shapes (its REST APIs',
// Prometheus's and Jaeger's).
func errorMessage(body []byte) string {
	var e struct {
		Error  string `json:"error"`
		Errors []struct {
			Msg string `json:"msg"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != "" {
			return e.Error
		}
		if len(e.Errors) > 0 {
			return e.Errors[0].Msg
		}
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return string(body)
}

func isStatus(err error, code int) bool {
	var se *statusError
	return errors.As(err, &se) && se.Status == code
}
