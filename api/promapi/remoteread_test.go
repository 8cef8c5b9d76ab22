package promapi

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// TestRemoteReadBoundsMatchers reads with Prometheus's own remote read
// client: an ordinary selector is answered, one whose matchers are longer
// than query.max_length is refused.
func TestRemoteReadBoundsMatchers(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)
	u, err := url.Parse(srv.URL + "/api/v1/read")
	if err != nil {
		t.Fatal(err)
	}
	client, err := remote.NewReadClient("test", &remote.ClientConfig{URL: &config_util.URL{URL: u}, Timeout: model.Duration(time.Minute), ChunkedReadLimit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	read := func(value string) (int, error) {
		ss, err := client.Read(context.Background(), &prompb.Query{
			StartTimestampMs: fixtureStart.UnixMilli(),
			EndTimestampMs:   fixtureEnd.UnixMilli(),
			Matchers: []*prompb.LabelMatcher{
				{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "http_requests_total"},
				{Type: prompb.LabelMatcher_RE, Name: "instance", Value: value},
			},
		}, true)
		if err != nil {
			return 0, err
		}
		n := 0
		for ss.Next() {
			n++
		}
		return n, ss.Err()
	}
	if n, err := read("a:8080|b:8080"); err != nil || n != 2 {
		t.Fatalf("ordinary remote read: %d series, %v; want 2", n, err)
	}
	long := strings.Repeat("x|", DefaultConfig().MaxLength/2) + "a:8080"
	if _, err := read(long); err == nil || !strings.Contains(err.Error(), "query.max_length") {
		t.Errorf("remote read with a %d-byte regular expression: %v, want a refusal naming query.max_length", len(long), err)
	}
}
