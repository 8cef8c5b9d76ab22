package incidents

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

var selectorParser = parser.NewParser(parser.Options{})

// parseTime reads an RFC 3339 time or Unix seconds, as Prometheus's API
// does; empty gives def.
func parseTime(field, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, badField(field, "must be an RFC 3339 time or Unix seconds, got %q", s)
}

func parseDuration(field, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	// Prometheus durations ("1d", "2w") too.
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, badField(field, "must be a duration such as 90s, 15m or 24h, got %q", s)
}

func parseLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badField("limit", "must be an integer from 1 to %d, got %q", MaxLimit, s)
	}
	return n, nil
}

// parseSelectors reads match[] parameters: Prometheus series selectors,
// any of which may match. With forAlerts, a metric name stands for the
// alertname, as in Prometheus's ALERTS series.
func parseSelectors(r *http.Request, forAlerts bool) ([][]*labels.Matcher, error) {
	var out [][]*labels.Matcher
	for _, s := range r.URL.Query()["match[]"] {
		ms, err := selectorParser.ParseMetricSelector(s)
		if err != nil {
			return nil, badField("match[]", "%q: %v", s, err)
		}
		if forAlerts {
			for i, m := range ms {
				if m.Name == labels.MetricName {
					ms[i] = labels.MustNewMatcher(m.Type, "alertname", m.Value)
				}
			}
		}
		out = append(out, ms)
	}
	return out, nil
}

// listParam reads a parameter given repeatedly or comma-separated.
func listParam(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func boolParam(r *http.Request, name string, def bool) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, badField(name, "must be true or false, got %q", s)
	}
	return b, nil
}

// Cursors are opaque to clients: a version tag, a time and an id,
// base64url encoded. The tag lets the format change without old cursors
// being misread.
func encodeCursor(kind string, t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "1:" + strconv.FormatInt(t.UnixNano(), 10) + ":" + id))
}

func decodeCursor(kind, s string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		rest, ok := strings.CutPrefix(string(raw), kind+"1:")
		if ok {
			ts, id, ok := strings.Cut(rest, ":")
			if n, err := strconv.ParseInt(ts, 10, 64); ok && err == nil && id != "" {
				return time.Unix(0, n).UTC(), id, nil
			}
		}
	}
	return time.Time{}, "", badField("cursor", "not a cursor this endpoint returned")
}

// parseIfMatch reads the version in If-Match ("5", W/"5", 5); 0 when the
// header is absent or "*".
func parseIfMatch(r *http.Request) (uint64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	v := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, badField("If-Match", "must be an ETag this API returned, such as \"3\", got %s", h)
	}
	return n, nil
}

func etag(version uint64) string { return fmt.Sprintf("%q", strconv.FormatUint(version, 10)) }
