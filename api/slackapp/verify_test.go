package slackapp

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	tu "github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

func signedHeader(ts int64, body []byte) http.Header {
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	h.Set("X-Slack-Signature", Sign(secret, ts, body))
	return h
}

// TestReplayRefusedAcrossRestart: the replay memory outlives the
// process. Found from outside: a signed /aiops note sent to aiops serve,
// aiops killed and started again, the same bytes sent again: noted twice.
func TestReplayRefusedAcrossRestart(t *testing.T) {
	clock := tu.NewClock(tu.Epoch)
	path := filepath.Join(t.TempDir(), "slack", seenFile)
	v, err := newVerifier(secret, 5*time.Minute, clock.Now, path)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("text=expires")
	if err := v.verify(context.Background(), signedHeader(clock.Now().Unix(), old), old); err != nil {
		t.Fatal(err)
	}
	clock.Add(4 * time.Minute)
	body := []byte("command=%2Faiops&text=note+inc-1+once")
	h := signedHeader(clock.Now().Unix(), body)
	if err := v.verify(context.Background(), h, body); err != nil {
		t.Fatal(err)
	}
	v.close()

	// Restarted a minute later: the first request has left the window,
	// the second has not.
	clock.Add(time.Minute + 2*time.Second)
	v2, err := newVerifier(secret, 5*time.Minute, clock.Now, path)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.close()
	var r *refusal
	if err := v2.verify(context.Background(), h, body); !errors.As(err, &r) || r.reason != reasonReplayed {
		t.Fatalf("replay after restart: %v, want refused as replayed", err)
	}
	if len(v2.seen) != 1 {
		t.Errorf("after restart the memory holds %d signatures, want 1 (the expired one dropped)", len(v2.seen))
	}
	other := []byte("command=%2Faiops&text=help")
	if err := v2.verify(context.Background(), signedHeader(clock.Now().Unix(), other), other); err != nil {
		t.Fatalf("a new request after restart: %v", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) || strings.Contains(string(raw), string(body)) {
		t.Fatal("the replay memory holds the secret or a body")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replay memory mode: %v %v", fi, err)
	}
}

// TestReplayRefusedByTheOtherReplica: in an HA pair both replicas answer
// /slack/; a request one accepted is refused by the other. Found from
// outside: a signed /aiops runbook run sent to the leader, the leader
// killed, the same bytes sent to the new leader: run again (only a
// cooldown rail stopped it).
func TestReplayRefusedByTheOtherReplica(t *testing.T) {
	clock := tu.NewClock(tu.Epoch)
	store := storetest.Embedded(t)
	a, err := newVerifier(secret, 5*time.Minute, clock.Now, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newVerifier(secret, 5*time.Minute, clock.Now, "")
	if err != nil {
		t.Fatal(err)
	}
	a.shared, b.shared = store, store
	ctx := context.Background()
	body := []byte("command=%2Faiops&text=runbook+run+x+service%3Dapi")
	h := signedHeader(clock.Now().Unix(), body)
	if err := a.verify(ctx, h, body); err != nil {
		t.Fatal(err)
	}
	clock.Add(30 * time.Second)
	var r *refusal
	if err := b.verify(ctx, h, body); !errors.As(err, &r) || r.reason != reasonReplayed {
		t.Fatalf("replay to the other replica: %v, want refused as replayed", err)
	}
	other := []byte("command=%2Faiops&text=help")
	if err := b.verify(ctx, signedHeader(clock.Now().Unix(), other), other); err != nil {
		t.Fatalf("a new request on the other replica: %v", err)
	}
}
