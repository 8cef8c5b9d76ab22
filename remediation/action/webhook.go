package action

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// WebhookConfig configures the webhook driver.
type WebhookConfig struct {
	// AllowedURLPrefixes, when set, are the only URLs requests may go to
	// (a templated URL cannot be steered elsewhere by alert labels).
	AllowedURLPrefixes []string
	// MaxAttempts bounds the attempts of one call (transport errors and
	// 5xx are retried with exponential backoff). Default 3.
	MaxAttempts int
	Client      *http.Client
}

// Webhook sends an HTTP request.
type Webhook struct {
	cfg      WebhookConfig
	prefixes []*url.URL
}

// NewWebhook returns the webhook driver.
func NewWebhook(c WebhookConfig) (*Webhook, error) {
	var prefixes []*url.URL
	for i, p := range c.AllowedURLPrefixes {
		u, err := url.Parse(p)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("allowed_url_prefixes[%d]: must be an absolute URL, got %q", i, p)
		}
		if u.User != nil {
			return nil, fmt.Errorf("allowed_url_prefixes[%d]: must not carry user info", i)
		}
		prefixes = append(prefixes, u)
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Client == nil {
		// A redirect is answered, not followed: it would take the request,
		// its body and headers (a token in X-Api-Key) past the allow-list.
		c.Client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	return &Webhook{cfg: c, prefixes: prefixes}, nil
}

// Do implements Driver. The request carries Idempotency-Key: the call's
// key, the same for every attempt of a step.
func (w *Webhook) Do(ctx context.Context, c Call) (Result, error) {
	raw := c.Params.String("url")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may carry a secret: say what is wrong, not what it is.
		return Result{}, Permanent(errors.New("url: must be an absolute http(s) URL"))
	}
	if len(w.prefixes) > 0 && !allowedURL(u, w.prefixes) {
		return Result{}, Permanent(fmt.Errorf("url: %s://%s%s is not under an allowed prefix (remediation.drivers.webhook.allowed_url_prefixes)", u.Scheme, u.Host, u.Path))
	}
	method := c.Params.String("method")
	if method == "" {
		method = http.MethodPost
	}
	body := c.Params.String("body")
	attempt := func() (Result, error) {
		req, err := http.NewRequestWithContext(ctx, method, raw, strings.NewReader(body))
		if err != nil {
			return Result{}, backoff.Permanent(Permanent(errors.New("request: " + err.Error())))
		}
		for k, v := range c.Params["headers"].Map {
			req.Header.Set(k, v)
		}
		if body != "" && req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.Key != "" {
			req.Header.Set("Idempotency-Key", c.Key)
		}
		resp, err := w.cfg.Client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // *url.Error repeats the URL, which may hold a secret
			}
			return Result{}, fmt.Errorf("%s %s://%s%s: %w", method, u.Scheme, u.Host, u.Path, err)
		}
		defer resp.Body.Close()
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode/100 != 2 {
			err := fmt.Errorf("%s %s://%s%s: %s", method, u.Scheme, u.Host, u.Path, resp.Status)
			if retryableStatus(resp.StatusCode) {
				return Result{}, err
			}
			return Result{}, backoff.Permanent(Permanent(err))
		}
		return Result{Outcome: "sent", Detail: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(snippet)))}, nil
	}
	return backoff.Retry(ctx, attempt,
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 5 * time.Second}),
		backoff.WithMaxTries(uint(w.cfg.MaxAttempts)), backoff.WithMaxElapsedTime(0))
}

// allowedURL reports whether u is under one of the prefixes: the same
// scheme and host (not a string prefix: https://hooks.example.com must
// not admit hooks.example.com.evil.net or hooks.example.com@evil.net),
// no user info, and a path that starts with the prefix's and holds no
// "." or ".." segment, escaped or not (a server would resolve
// /aiops/../admin out of the prefix).
func allowedURL(u *url.URL, prefixes []*url.URL) bool {
	if u.User != nil {
		return false
	}
	p, err := url.PathUnescape(u.EscapedPath())
	if err != nil {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	for _, pre := range prefixes {
		if strings.EqualFold(u.Scheme, pre.Scheme) && strings.EqualFold(u.Host, pre.Host) && strings.HasPrefix(p, pre.Path) {
			return true
		}
	}
	return false
}
