package slackapp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// answer is what a command or a button tells the user who used it.
type answer struct {
	text   string
	blocks []slack.Block
}

// origin is where a command or button press came from, for answers that
// follow later.
type origin struct {
	channel, user string
	// responseURL is the request's response_url when aiops may follow
	// it (followable), else empty.
	responseURL string
}

type originKey struct{}

func withOrigin(ctx context.Context, o origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

func originFrom(ctx context.Context) (origin, bool) {
	o, ok := ctx.Value(originKey{}).(origin)
	return o, ok && (o.responseURL != "" || o.channel != "" && o.user != "")
}

// slackHooksHost is where Slack's response URLs point
// (https://hooks.slack.com/commands/…, /actions/…).
const slackHooksHost = "hooks.slack.com"

// followable returns raw when aiops may POST an answer to it: an https
// URL on Slack's hooks host, or one on the host of slack.api_url (a
// stand-in, or a proxy in front of Slack). A request's response_url is
// otherwise a URL of the sender's choosing, and following it would let
// whoever can send a request make aiops POST anywhere. The request is
// signed, but a leaked signing secret must not become that, too.
func (a *App) followable(raw string) (string, bool) {
	if raw == "" {
		return "", true
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	if u.Scheme == "https" && strings.EqualFold(u.Host, slackHooksHost) {
		return raw, true
	}
	if api, err := url.Parse(a.o.Config.APIURL); err == nil && api.Host != "" &&
		u.Scheme == api.Scheme && strings.EqualFold(u.Host, api.Host) {
		return raw, true
	}
	return "", false
}

// originOf is the origin of a request, its response_url checked; one
// aiops may not follow is logged and left out (the answer then goes
// through chat.postEphemeral).
func (a *App) originOf(channel, user, responseURL string) origin {
	o := origin{channel: channel, user: user}
	u, ok := a.followable(responseURL)
	if !ok {
		a.commands.WithLabelValues("response_url", "refused").Inc()
		a.logger.Warn("A Slack request's response_url is neither Slack's nor slack.api_url's host; not followed", "user", user)
	}
	o.responseURL = u
	return o
}

// errNotFollowed says that a redirect from a response URL was not
// followed: it could lead anywhere.
var errNotFollowed = errors.New("a response_url redirects; not followed")

// newResponseClient is the HTTP client answers are posted to response
// URLs with: bounded, and never following a redirect.
func newResponseClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errNotFollowed },
	}
}

// deliver sends an answer that follows a request: to its response_url
// (as Slack documents: a JSON POST, response_type ephemeral) when it
// has one aiops may follow, else, or when that fails (a response URL
// takes five answers within 30 minutes), as an ephemeral message from
// the bot. It returns whether the user was told.
func (a *App) deliver(ctx context.Context, o origin, ans answer) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if o.responseURL != "" {
		msg := &slack.WebhookMessage{ResponseType: slack.ResponseTypeEphemeral, Text: ans.text}
		if len(ans.blocks) > 0 {
			msg.Blocks = &slack.Blocks{BlockSet: ans.blocks}
		}
		err := slack.PostWebhookCustomHTTPContext(ctx, o.responseURL, a.hc, msg)
		if err == nil {
			return true
		}
		a.logger.Warn("Answering through a Slack response_url failed; trying chat.postEphemeral", "user", o.user, "err", err)
	}
	if o.channel == "" || o.user == "" {
		return false
	}
	opts := []slack.MsgOption{slack.MsgOptionText(ans.text, false)}
	if len(ans.blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(ans.blocks...))
	}
	if _, err := a.o.Slack.PostEphemeralContext(ctx, o.channel, o.user, opts...); err != nil {
		a.logger.Warn("Sending a Slack answer failed", "user", o.user, "err", err)
		return false
	}
	return true
}
