package slackapp

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/api/auth"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// FuzzVerify: whatever the headers and body, verification never panics,
// and passes only a request carrying the body's true signature.
func FuzzVerify(f *testing.F) {
	now := tu.Epoch
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte("command=%2Faiops&text=ack+inc-1&user_id=UALICE")
	f.Add(ts, Sign(secret, now.Unix(), body), body)
	f.Add(ts, "v0=", body)
	f.Add("", "", []byte{})
	f.Add("-99999999999999999999", "v0=zz", body)
	f.Add(ts, "v1="+strings.Repeat("0", 64), body)
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		v, _ := newVerifier(secret, 5*time.Minute, func() time.Time { return now }, "")
		h := http.Header{}
		h.Set("X-Slack-Request-Timestamp", ts)
		h.Set("X-Slack-Signature", sig)
		err := v.verify(context.Background(), h, body)
		if err != nil {
			return
		}
		secs, perr := strconv.ParseInt(ts, 10, 64)
		if perr != nil || sig != Sign(secret, secs, body) {
			t.Fatalf("accepted ts %q sig %q for a body it does not sign", ts, sig)
		}
		if v.verify(context.Background(), h, body) == nil {
			t.Fatal("the same request was accepted twice")
		}
	})
}

// FuzzCommand: any command text gets an answer, never a panic, over the
// real incident service.
func FuzzCommand(f *testing.F) {
	e := newEnv(f)
	inc := e.open("g1", "HighErrorRate")
	for _, s := range []string{
		"", "help", "incidents", "incident " + inc.ID, "ack " + inc.ID + " x", "assign " + inc.ID + " -",
		`silence {alertname="A"} 1h c`, "silence {", "silence " + inc.ID + " 0s", "note " + inc.ID + " " + strings.Repeat("n", 100),
		"query up{", "query sum(rate(x[5m]))", "runbook run", "pause remediation", "approve", "escalate " + inc.ID,
	} {
		f.Add(s)
	}
	admin := auth.Principal{ID: "fuzz", Scopes: []auth.Scope{auth.ScopeAdmin}}
	f.Fuzz(func(t *testing.T, text string) {
		if out := e.app.runCommand(context.Background(), admin, text); out == "" {
			t.Fatalf("no answer to %q", text)
		}
	})
}
