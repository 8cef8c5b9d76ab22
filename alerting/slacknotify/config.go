package slacknotify

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api/"

// Config is what the notifier needs of the top-level slack: section.
// Keys in errors are named from prefix ("slack").
type Config struct {
	// BotTokenFile holds the bot token (xoxb-…) the messages are posted
	// with. The notifier is off when it is empty.
	BotTokenFile string `yaml:"bot_token_file"`
	// APIURL is Slack's Web API; a test points it at a stand-in.
	APIURL string `yaml:"api_url"`
	// Channel is where an incident's message goes unless Channels names
	// a channel for the incident's receiver (its Alertmanager route).
	Channel  string            `yaml:"channel"`
	Channels map[string]string `yaml:"channels"`
	// ExternalURL is how people reach aiops; links in messages start
	// with it.
	ExternalURL string `yaml:"external_url"`
	// StateDir keeps the message of each incident and the feed position
	// the notifier has handled, so that a restart neither posts a
	// duplicate nor loses a change. Default <data dir>/slack.
	StateDir string `yaml:"state_dir"`
	// MessageRetention is how long the message of a resolved incident
	// is remembered: an incident that reopens within it continues its
	// message, one that reopens later gets a new one. It bounds the
	// state (StateDir), which otherwise grows with every incident.
	MessageRetention model.Duration `yaml:"message_retention"`
	// Delivery bounds the retries of one Slack call.
	Delivery DeliveryConfig `yaml:"delivery"`
}

// DeliveryConfig says how hard a Slack call is tried. A 429 waits for
// its Retry-After and does not count as an attempt; errors Slack calls
// transient (5xx, timeouts, connection failures) are retried with
// exponential backoff up to MaxAttempts; the rest fail at once.
type DeliveryConfig struct {
	MaxAttempts int            `yaml:"max_attempts"`
	MinBackoff  model.Duration `yaml:"min_backoff"`
	MaxBackoff  model.Duration `yaml:"max_backoff"`
	// Timeout bounds one HTTP call to Slack.
	Timeout model.Duration `yaml:"timeout"`
}

// DefaultConfig is the notifier switched off, with its defaults.
func DefaultConfig() Config {
	return Config{
		APIURL:           DefaultAPIURL,
		MessageRetention: model.Duration(30 * 24 * time.Hour),
		Delivery: DeliveryConfig{
			MaxAttempts: 8,
			MinBackoff:  model.Duration(time.Second),
			MaxBackoff:  model.Duration(time.Minute),
			Timeout:     model.Duration(10 * time.Second),
		},
	}
}

// Enabled reports whether the section turns the notifier on.
func (c Config) Enabled() bool { return c.BotTokenFile != "" }

// Validate reports the first invalid key, named under prefix.
func (c Config) Validate(prefix string) error {
	if !c.Enabled() {
		return nil
	}
	key := func(k string) string { return prefix + "." + k }
	if err := checkSecretFile(c.BotTokenFile); err != nil {
		return fmt.Errorf("%s: %w", key("bot_token_file"), err)
	}
	u, err := url.Parse(c.APIURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: must be an http(s) URL, got %q", key("api_url"), c.APIURL)
	}
	if c.ExternalURL != "" {
		if u, err := url.Parse(c.ExternalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: must be an http(s) URL, got %q", key("external_url"), c.ExternalURL)
		}
	}
	if err := checkChannel(c.Channel); err != nil {
		return fmt.Errorf("%s: %w", key("channel"), err)
	}
	for recv, ch := range c.Channels {
		if recv == "" {
			return fmt.Errorf("%s: a receiver name must not be empty", key("channels"))
		}
		if err := checkChannel(ch); err != nil {
			return fmt.Errorf("%s: %w", key("channels."+recv), err)
		}
	}
	if c.MessageRetention < model.Duration(time.Hour) {
		return fmt.Errorf("%s: must be at least 1h (an incident resolved and reopened within it continues its message), got %s", key("message_retention"), c.MessageRetention)
	}
	d := c.Delivery
	switch {
	case d.MaxAttempts < 1:
		return fmt.Errorf("%s: must be >= 1, got %d", key("delivery.max_attempts"), d.MaxAttempts)
	case d.MinBackoff <= 0:
		return fmt.Errorf("%s: must be > 0, got %s", key("delivery.min_backoff"), d.MinBackoff)
	case d.MaxBackoff < d.MinBackoff:
		return fmt.Errorf("%s: must be >= delivery.min_backoff (%s), got %s", key("delivery.max_backoff"), d.MinBackoff, d.MaxBackoff)
	case d.Timeout <= 0:
		return fmt.Errorf("%s: must be > 0, got %s", key("delivery.timeout"), d.Timeout)
	}
	return nil
}

// checkChannel accepts a channel id (C0123…) or name (#incidents); it
// must be given, as a message with nowhere to go is a silent loss.
func checkChannel(ch string) error {
	switch {
	case ch == "":
		return errors.New("must name a channel (an id such as C0123ABCD, or #name)")
	case strings.ContainsAny(ch, " \t\n,"):
		return fmt.Errorf("%q is not a channel id or name", ch)
	}
	return nil
}

// checkSecretFile makes sure a secret file can be read without reading
// it into an error.
func checkSecretFile(path string) error {
	_, err := ReadSecretFile(path)
	return err
}

// Secret is a credential read from a file. Its String and MarshalYAML
// mask it, so that logging a config or an error never shows it.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<secret>"
}

// MarshalYAML masks the value.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// ReadSecretFile reads a secret from path, trimming surrounding white
// space. Errors name the file, never its content.
func ReadSecretFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("read %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(s, "\n\r\t ") {
		return "", fmt.Errorf("%s holds more than one word; it must hold the secret alone", path)
	}
	return Secret(s), nil
}
