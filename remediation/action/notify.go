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
	"slices"
	"sort"
	"strings"
	"time"
)

// Channel is where notifications go: an HTTP endpoint taking
// {"text": "…"} (a Slack incoming webhook, a chat bridge, a pager's
// webhook), with an optional bearer token.
type Channel struct {
	URL Secret
	// Token may be nil: no Authorization header.
	Token Secret
}

// NotifyConfig configures the notify driver.
type NotifyConfig struct {
	Channels map[string]Channel
	Client   *http.Client
}

// Notify tells people. The engine records every notification on the
// incident's timeline as well, so a notify step with no channel
// configured still reaches people who look at the incident.
type Notify struct {
	cfg NotifyConfig
}

// NewNotify returns the notify driver.
func NewNotify(c NotifyConfig) (*Notify, error) {
	for name, ch := range c.Channels {
		if ch.URL == nil {
			return nil, fmt.Errorf("channels.%s.url: required", name)
		}
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Notify{cfg: c}, nil
}

// Do implements Driver: the message goes to the named channels, or to all
// of them when none is named.
func (n *Notify) Do(ctx context.Context, c Call) (Result, error) {
	msg := c.Params.String("message")
	if strings.TrimSpace(msg) == "" {
		return Result{}, Permanent(errors.New("message: required"))
	}
	names := c.Params["channels"].List
	if len(names) == 0 {
		for name := range n.cfg.Channels {
			names = append(names, name)
		}
		sort.Strings(names)
	}
	if len(names) == 0 {
		return Result{Outcome: "recorded", Detail: "no notification channel configured; the incident's timeline has the message"}, nil
	}
	var errs []error
	var sent []string
	for _, name := range names {
		ch, ok := n.cfg.Channels[name]
		if !ok {
			errs = append(errs, Permanent(fmt.Errorf("channels: %q is not configured (remediation.drivers.notify.channels)", name)))
			continue
		}
		if err := n.send(ctx, ch, msg); err != nil {
			errs = append(errs, fmt.Errorf("channel %s: %w", name, err))
			continue
		}
		sent = append(sent, name)
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if !slices.ContainsFunc(errs, func(e error) bool { return !errors.Is(e, ErrPermanent) }) {
			err = Permanent(err)
		}
		return Result{}, err
	}
	return Result{Outcome: "sent", Detail: "to " + strings.Join(sent, ", ")}, nil
}

func (n *Notify) send(ctx context.Context, ch Channel, msg string) error {
	raw, err := ch.URL()
	if err != nil {
		return Permanent(fmt.Errorf("url: %w", err))
	}
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Permanent(errors.New("url: not an http(s) URL")) // never echo it: it is a secret
	}
	b, _ := json.Marshal(map[string]string{"text": msg})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, bytes.NewReader(b))
	if err != nil {
		return Permanent(errors.New("url: not a valid request URL"))
	}
	req.Header.Set("Content-Type", "application/json")
	if ch.Token != nil {
		tok, err := ch.Token()
		if err != nil {
			return Permanent(fmt.Errorf("token: %w", err))
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // a webhook URL is itself a secret
		}
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		err := errors.New(resp.Status)
		if retryableStatus(resp.StatusCode) {
			return err
		}
		return Permanent(err)
	}
	return nil
}

// Wait waits on a clock, so that tests with a clock they move need not
// sleep.
type Wait struct {
	// Sleep waits d or until ctx is done.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Do implements Driver.
func (w Wait) Do(ctx context.Context, c Call) (Result, error) {
	d, ok, err := c.Params.Duration("duration")
	if err != nil {
		return Result{}, err
	}
	if !ok || d < 0 {
		return Result{}, Permanent(errors.New("duration: required, >= 0"))
	}
	if err := w.Sleep(ctx, d); err != nil {
		return Result{}, err
	}
	return Result{Outcome: "done", Detail: "waited " + d.String()}, nil
}
