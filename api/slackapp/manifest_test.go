package slackapp

import (
	"net/url"
	"os"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestShippedManifestMatchesEndpoints keeps deploy/slack/manifest.yaml
// pointing at the paths the app serves, with the scopes it calls with.
func TestShippedManifestMatchesEndpoints(t *testing.T) {
	b, err := os.ReadFile("../../deploy/slack/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Features struct {
			SlashCommands []struct {
				Command, URL string
			} `yaml:"slash_commands"`
		}
		OAuthConfig struct {
			Scopes struct{ Bot []string }
		} `yaml:"oauth_config"`
		Settings struct {
			Interactivity struct {
				IsEnabled  bool   `yaml:"is_enabled"`
				RequestURL string `yaml:"request_url"`
			}
		}
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	path := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" {
			t.Errorf("%q is not an https URL", raw)
			return ""
		}
		return u.Path
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/aiops" || path(m.Features.SlashCommands[0].URL) != PathCommands {
		t.Errorf("slash commands %+v, want /aiops at %s", m.Features.SlashCommands, PathCommands)
	}
	if !m.Settings.Interactivity.IsEnabled || path(m.Settings.Interactivity.RequestURL) != PathInteractions {
		t.Errorf("interactivity %+v, want %s", m.Settings.Interactivity, PathInteractions)
	}
	for _, s := range []string{"chat:write", "commands", "files:write", "users:read", "users:read.email"} {
		if !slices.Contains(m.OAuthConfig.Scopes.Bot, s) {
			t.Errorf("bot scopes %v lack %s", m.OAuthConfig.Scopes.Bot, s)
		}
	}
}
