package slackapp

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/aiops-dev/aiops/alerting/slacknotify"
)

// SocketMode receives Slack's commands, button presses and events over a
// WebSocket the app opens with its app-level token (xapp-…), for
// installations Slack cannot reach over HTTP. The requests come over a
// connection aiops opened to Slack with that token, so they carry no
// signature; they go to the same handlers as the HTTP endpoints'.
type SocketMode struct {
	app    *App
	client *socketmode.Client
}

// SocketMode returns the app's Socket Mode connection; Run it.
func (a *App) SocketMode(appToken slacknotify.Secret) (*SocketMode, error) {
	if appToken == "" {
		return nil, errors.New("slack socket mode: no app-level token")
	}
	apiURL := a.o.Config.APIURL
	if apiURL == "" {
		apiURL = slacknotify.DefaultAPIURL
	}
	if apiURL[len(apiURL)-1] != '/' {
		apiURL += "/"
	}
	api := slack.New("", slack.OptionAppLevelToken(string(appToken)), slack.OptionAPIURL(apiURL))
	return &SocketMode{app: a, client: socketmode.New(api)}, nil
}

// Run connects, and reconnects, until ctx is done, handling every
// request and acknowledging it (with the answer, for commands).
func (s *SocketMode) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.client.RunContext(ctx) }()
	logger := s.app.logger.With("transport", "socket_mode")
	for {
		select {
		case <-ctx.Done():
			<-runErr
			return nil
		case err := <-runErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("slack socket mode: %w", err)
		case evt := <-s.client.Events:
			switch evt.Type {
			case socketmode.EventTypeConnected:
				logger.Info("Slack Socket Mode connected")
			case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
				logger.Warn("Slack Socket Mode connection failed", "type", evt.Type)
			case socketmode.EventTypeSlashCommand:
				sc, ok := evt.Data.(slack.SlashCommand)
				if !ok || evt.Request == nil {
					continue
				}
				s.ack(ctx, evt.Request.EnvelopeID, s.app.command(ctx, sc))
			case socketmode.EventTypeInteractive:
				cb, ok := evt.Data.(slack.InteractionCallback)
				if !ok || evt.Request == nil {
					continue
				}
				if err := s.app.interaction(ctx, cb); err != nil {
					logger.Warn("Slack interaction refused", "err", err)
				}
				s.ack(ctx, evt.Request.EnvelopeID, nil)
			case socketmode.EventTypeEventsAPI:
				if evt.Request != nil {
					s.ack(ctx, evt.Request.EnvelopeID, nil)
				}
			}
		}
	}
}

func (s *SocketMode) ack(ctx context.Context, envelope string, payload any) {
	if err := s.client.AckCtx(ctx, envelope, payload); err != nil {
		s.app.logger.Warn("Acknowledging a Slack Socket Mode request failed", "envelope", envelope, "err", err)
	}
}
