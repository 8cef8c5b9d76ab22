package alertmanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"

	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// startReplicas starts n Alertmanagers with the same configuration, as n
// aiops replicas would run them; clustered, they gossip with each other.
func startReplicas(t *testing.T, n int, conf string, clustered bool) []*Alertmanager {
	t.Helper()
	file := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = freeport.Addr(t)
	}
	ams := make([]*Alertmanager, n)
	for i := range ams {
		opts := Options{
			ConfigFile:          file,
			DataDir:             t.TempDir(),
			MaintenanceInterval: time.Hour,
			Logger:              testutil.Logger(t).With("replica", i),
		}
		if clustered {
			var peers []string
			for j, a := range addrs {
				if j != i {
					peers = append(peers, a)
				}
			}
			opts.Cluster = ClusterOptions{ListenAddress: addrs[i], Peers: peers, PeerTimeout: time.Second, PushPullInterval: 5 * time.Second}
		}
		am, err := New(opts)
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { am.Close() })
		ams[i] = am
	}
	return ams
}

// TestClusterNotifiesOnce: two replicas receive the same alerts (each
// evaluates the rules); clustered, the webhook gets each group once, and
// a silence made on one replica reaches the other. Without
// the cluster, the same set-up notifies twice, which is what the test
// would catch.
func TestClusterNotifiesOnce(t *testing.T) {
	for _, clustered := range []bool{false, true} {
		t.Run(fmt.Sprintf("clustered=%v", clustered), func(t *testing.T) {
			h := newHook(t)
			conf := fmt.Sprintf(`
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1h
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
`, h.srv.URL)
			ams := startReplicas(t, 2, conf, clustered)
			if clustered {
				testutil.Eventually(t, 30*time.Second, "the replicas see each other", func() (bool, string) {
					n := ams[0].peer.ClusterSize()
					return n == 2 && ams[1].peer.ClusterSize() == 2, fmt.Sprintf("%d peers", n)
				})
			}
			start := time.Now().Add(-time.Minute)
			for _, am := range ams {
				if err := am.Put(context.Background(), firing(model.LabelSet{"alertname": "DiskFull", "instance": "db-1"}, start)); err != nil {
					t.Fatal(err)
				}
			}
			want := 2
			if clustered {
				want = 1
			}
			testutil.Eventually(t, 30*time.Second, "notified", func() (bool, string) {
				n := len(h.messages())
				return n >= want, fmt.Sprintf("%d notifications", n)
			})
			// The second replica's turn (position 1 × 1 s peer timeout,
			// plus gossip) passes without a second notification.
			time.Sleep(4 * time.Second)
			if n := len(h.messages()); n != want {
				t.Fatalf("%d notifications, want %d", n, want)
			}
			if !clustered {
				return
			}
			sil := &silencepb.Silence{
				Matchers:  []*silencepb.Matcher{{Type: silencepb.Matcher_EQUAL, Name: "instance", Pattern: "db-2"}},
				StartsAt:  timestamppb.Now(),
				EndsAt:    timestamppb.New(time.Now().Add(time.Hour)),
				CreatedBy: "test",
				Comment:   "maintenance",
			}
			if err := ams[0].Silences().Set(context.Background(), sil); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 30*time.Second, "the silence reached the other replica", func() (bool, string) {
				n, err := ams[1].Silences().CountState(context.Background(), silence.SilenceStateActive)
				return err == nil && n == 1, fmt.Sprintf("%d active silences, %v", n, err)
			})
		})
	}
}
