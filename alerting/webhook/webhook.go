// Package webhook delivers alert groups to an HTTP endpoint in the
// Alertmanager webhook format (payload version "4").
//
// It is what a `webhook_configs` entry of the Alertmanager configuration
// runs in aiops, in place of Alertmanager's own webhook integration. The
// payload and every field of the entry (url, url_file, http_config,
// max_alerts, timeout, payload, send_resolved) mean the same; what differs
// is how failures are classified:
//
//   - 2xx is success;
//   - 429 Too Many Requests, 408 Request Timeout and every 5xx are retried,
//     and when the response carries Retry-After (seconds or an HTTP date)
//     the next attempt waits at least that long;
//   - any other status is permanent and not retried.
//
// Alertmanager's integration treats 429 as permanent and ignores
// Retry-After. The retries themselves, with exponential backoff between
// attempts, are run by Alertmanager's notification pipeline (its retry
// stage), which waits max(backoff, Retry-After) before the next attempt and
// gives up when the group's notification deadline passes.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	amwebhook "github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
)

// Version is the payload version Alertmanager's webhook receivers expect.
const Version = "4"

// maxErrorBody bounds how much of a failed response's body goes into the
// error, so a chatty endpoint cannot flood the logs.
const maxErrorBody = 1 << 10

// Message is the JSON body of one notification: Alertmanager's webhook
// payload.
type Message struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// Notifier sends notifications for one webhook_configs entry.
type Notifier struct {
	conf   *amwebhook.WebhookConfig
	tmpl   *template.Template
	logger *slog.Logger
	client *http.Client
	now    func() time.Time
}

// New returns a notifier for conf. tmpl expands templated URLs and custom
// payloads; logger may be nil.
func New(conf *amwebhook.WebhookConfig, tmpl *template.Template, logger *slog.Logger, httpOpts ...commoncfg.HTTPClientOption) (*Notifier, error) {
	if conf == nil {
		return nil, errors.New("webhook: no configuration")
	}
	if err := conf.Validate(); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	httpConf := commoncfg.DefaultHTTPClientConfig
	if conf.HTTPConfig != nil {
		httpConf = *conf.HTTPConfig
	}
	client, err := notify.NewClientWithTracing(httpConf, "webhook", httpOpts...)
	if err != nil {
		return nil, fmt.Errorf("webhook: http_config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{conf: conf, tmpl: tmpl, logger: logger, client: client, now: time.Now}, nil
}

// Notify sends one notification for alerts. The verdict tells the pipeline
// whether and when to try again.
func (n *Notifier) Notify(ctx context.Context, alerts ...*alert.Alert) notify.NotifyVerdict {
	var truncated uint64
	if max := n.conf.MaxAlerts; max > 0 && uint64(len(alerts)) > max {
		truncated = uint64(len(alerts)) - max
		alerts = alerts[:max]
	}
	key, err := notify.ExtractGroupKey(ctx)
	if err != nil {
		return notify.Unrecoverable(err, notify.MissingContextReason)
	}
	data := notify.GetTemplateData(ctx, n.tmpl, alerts, n.logger)
	msg := &Message{Data: data, Version: Version, GroupKey: key.String(), TruncatedAlerts: truncated}

	body, err := n.body(msg)
	if err != nil {
		return notify.Unrecoverable(err, notify.TemplateErrorReason)
	}
	url, reason, err := n.url(data)
	if err != nil {
		return notify.Unrecoverable(err, reason)
	}

	if n.conf.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, n.conf.Timeout, fmt.Errorf("webhook timeout %s reached", n.conf.Timeout))
		defer cancel()
	}
	resp, err := notify.PostJSON(ctx, n.client, url, bytes.NewReader(body))
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = fmt.Errorf("%w: %w", err, cause)
		}
		// Connection errors and timeouts are worth another attempt; the
		// URL may hold a secret, so it is left out of the error.
		return notify.Retry(0, notify.RedactURL(err), notify.RequestErrorReason)
	}
	defer notify.Drain(resp)
	return n.verdict(resp)
}

// verdict classifies a response.
func (n *Notifier) verdict(resp *http.Response) notify.NotifyVerdict {
	if resp.StatusCode/100 == 2 {
		return notify.Success()
	}
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	err := fmt.Errorf("webhook: unexpected status %d", resp.StatusCode)
	if s := strings.TrimSpace(string(detail)); s != "" {
		err = fmt.Errorf("%w: %s", err, s)
	}
	reason := notify.GetFailureReasonFromStatusCode(resp.StatusCode)
	if !Retryable(resp.StatusCode) {
		return notify.Unrecoverable(err, reason)
	}
	wait := notify.ParseRetryAfter(resp.Header, n.now())
	if wait > 0 {
		n.logger.Warn("webhook asked to retry later", "status", resp.StatusCode, "retry_after", wait)
	}
	return notify.Retry(wait, err, reason)
}

// Retryable reports whether a response status is worth another attempt.
func Retryable(status int) bool {
	return status/100 == 5 || status == http.StatusTooManyRequests || status == http.StatusRequestTimeout
}

// body encodes msg, or the configured custom payload expanded against it.
func (n *Notifier) body(msg *Message) ([]byte, error) {
	if n.conf.Payload == nil {
		b, err := json.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("webhook: encode payload: %w", err)
		}
		return b, nil
	}
	var tmplErr error
	expand := notify.TmplText(n.tmpl, msg.Data, &tmplErr)
	custom, err := template.DeepCopyWithTemplate(n.conf.Payload, func(s string) (string, error) {
		return expand(s), tmplErr
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: expand payload: %w", err)
	}
	b, err := json.Marshal(custom)
	if err != nil {
		return nil, fmt.Errorf("webhook: encode payload: %w", err)
	}
	return b, nil
}

// url returns the endpoint: the url, or the contents of url_file, both
// expanded as templates.
func (n *Notifier) url(data *template.Data) (string, notify.Reason, error) {
	raw := string(n.conf.URL)
	if raw == "" {
		b, err := os.ReadFile(n.conf.URLFile)
		if err != nil {
			return "", notify.FileReadErrorReason, fmt.Errorf("webhook: read url_file: %w", err)
		}
		raw = strings.TrimSpace(string(b))
	}
	var tmplErr error
	u := notify.TmplText(n.tmpl, data, &tmplErr)(raw)
	if tmplErr != nil {
		// The template error could quote the URL, which may hold a secret.
		return "", notify.TemplateErrorReason, errors.New("webhook: url template failed to expand")
	}
	if u == "" {
		return "", notify.ConfigErrorReason, errors.New("webhook: url is empty after expansion")
	}
	return u, notify.DefaultReason, nil
}
