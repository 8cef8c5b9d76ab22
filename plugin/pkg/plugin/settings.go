package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// ID is the plugin id of plugin.json.
const ID = "aiops-aiops-datasource"

// Settings are a data source instance's configuration: the URL in the
// data source's URL field (or jsonData.url), the token in
// secureJsonData.token, which Grafana keeps encrypted and hands to the
// backend only.
type Settings struct {
	URL     *url.URL
	Token   string
	Timeout time.Duration
}

type jsonData struct {
	URL string `json:"url"`
	// TimeoutSeconds bounds each request to aiops (default 30).
	TimeoutSeconds int `json:"timeoutSeconds"`
}

// LoadSettings reads and checks the instance settings; errors name the
// field at fault, as the config editor shows them.
func LoadSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var jd jsonData
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &jd); err != nil {
			return Settings{}, fmt.Errorf("jsonData: %w", err)
		}
	}
	raw := s.URL
	if raw == "" {
		raw = jd.URL
	}
	if raw == "" {
		return Settings{}, errors.New("url: the aiops URL is not set (e.g. http://aiops:9090)")
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Settings{}, fmt.Errorf("url: %q is not an http(s) URL with a host", raw)
	}
	out := Settings{URL: u, Token: s.DecryptedSecureJSONData["token"], Timeout: 30 * time.Second}
	if jd.TimeoutSeconds < 0 {
		return Settings{}, fmt.Errorf("jsonData.timeoutSeconds: must be >= 0, got %d", jd.TimeoutSeconds)
	}
	if jd.TimeoutSeconds > 0 {
		out.Timeout = time.Duration(jd.TimeoutSeconds) * time.Second
	}
	return out, nil
}
