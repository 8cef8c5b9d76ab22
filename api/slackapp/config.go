package slackapp

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/slacknotify"
	"github.com/aiops-dev/aiops/api/auth"
)

// Config is the top-level slack: section: the notifier's keys and those
// of the interactive endpoints.
type Config struct {
	slacknotify.Config `yaml:",inline"`

	// SigningSecretFile holds the app's signing secret. The endpoints
	// under /slack/ are served only when it is set: without it nothing
	// can tell Slack's requests from anyone's.
	SigningSecretFile string `yaml:"signing_secret_file"`
	// AppTokenFile holds an app-level token (xapp-…, scope
	// connections:write): aiops then also takes commands and button
	// presses over Socket Mode, for installations Slack cannot reach.
	AppTokenFile string `yaml:"app_token_file"`
	// TimestampTolerance is how far a request's timestamp may be from
	// now; Slack's guidance, and the most allowed, is 5 minutes.
	TimestampTolerance model.Duration `yaml:"timestamp_tolerance"`
	// MaxRequestBytes bounds a request body; larger ones are refused
	// before their signature is checked.
	MaxRequestBytes int64 `yaml:"max_request_bytes"`

	// Users maps Slack user ids (U…) to aiops identities.
	Users map[string]User `yaml:"users"`
	// UsersByEmail maps the email Slack holds for a user (users.info,
	// scope users:read.email) to an aiops identity; Users wins.
	UsersByEmail map[string]User `yaml:"users_by_email"`
	// DefaultScopes are what a Slack user in neither map may do; none by
	// default, so an unknown user is refused everything.
	DefaultScopes []auth.Scope `yaml:"default_scopes"`
}

// User is an aiops identity for a Slack user.
type User struct {
	// Principal is the name actions are recorded under ("alice").
	Principal string       `yaml:"principal"`
	Scopes    []auth.Scope `yaml:"scopes"`
}

// DefaultConfig is the section switched off, with its defaults.
func DefaultConfig() Config {
	return Config{
		Config:             slacknotify.DefaultConfig(),
		TimestampTolerance: model.Duration(5 * time.Minute),
		MaxRequestBytes:    1 << 20,
	}
}

// Enabled reports whether the section turns the Slack app on.
func (c Config) Enabled() bool {
	return c.BotTokenFile != "" || c.SigningSecretFile != "" || c.AppTokenFile != ""
}

var (
	slackUserID  = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
	emailAddress = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)
)

// Validate reports the first invalid key.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.BotTokenFile == "" {
		return errors.New("slack.bot_token_file: required when the slack section is set: aiops posts and answers with the bot token")
	}
	if err := c.Config.Validate("slack"); err != nil {
		return err
	}
	if c.SigningSecretFile != "" {
		if _, err := slacknotify.ReadSecretFile(c.SigningSecretFile); err != nil {
			return fmt.Errorf("slack.signing_secret_file: %w", err)
		}
	}
	if c.AppTokenFile != "" {
		if _, err := slacknotify.ReadSecretFile(c.AppTokenFile); err != nil {
			return fmt.Errorf("slack.app_token_file: %w", err)
		}
	}
	if t := time.Duration(c.TimestampTolerance); t <= 0 || t > 5*time.Minute {
		return fmt.Errorf("slack.timestamp_tolerance: must be > 0 and at most 5m (a longer window lets a captured request be replayed for longer), got %s", c.TimestampTolerance)
	}
	if c.MaxRequestBytes < 4<<10 || c.MaxRequestBytes > 16<<20 {
		return fmt.Errorf("slack.max_request_bytes: must be between 4096 and 16777216, got %d", c.MaxRequestBytes)
	}
	for id, u := range c.Users {
		if !slackUserID.MatchString(id) {
			return fmt.Errorf("slack.users.%s: not a Slack user id (U… or W…, as users.info shows it)", id)
		}
		if err := u.validate("slack.users." + id); err != nil {
			return err
		}
	}
	for email, u := range c.UsersByEmail {
		if !emailAddress.MatchString(email) {
			return fmt.Errorf("slack.users_by_email: %q is not an email address", email)
		}
		if err := u.validate("slack.users_by_email." + email); err != nil {
			return err
		}
	}
	if err := validScopes("slack.default_scopes", c.DefaultScopes); err != nil {
		return err
	}
	return nil
}

func (u User) validate(key string) error {
	if u.Principal == "" {
		return fmt.Errorf("%s.principal: required", key)
	}
	if len(u.Scopes) == 0 {
		return fmt.Errorf("%s.scopes: required: read, write, execute, approve or admin", key)
	}
	return validScopes(key+".scopes", u.Scopes)
}

func validScopes(key string, scopes []auth.Scope) error {
	for _, s := range scopes {
		switch s {
		// execute and approve are remediation's, as in the REST API.
		case auth.ScopeRead, auth.ScopeWrite, auth.ScopeExecute, auth.ScopeApprove, auth.ScopeAdmin:
		default:
			return fmt.Errorf("%s: unknown scope %q: want read, write, execute, approve or admin", key, s)
		}
	}
	return nil
}
