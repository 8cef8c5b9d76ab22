package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// AuditRecord says who did what, when. It never holds the credential or
// the request body.
type AuditRecord struct {
	Time      time.Time `json:"time"`
	Principal string    `json:"principal"`
	Name      string    `json:"name"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Status    int       `json:"status"`
	Remote    string    `json:"remote"`
	// Reason is why a refused request was refused (a Reason constant);
	// empty for requests that were let through.
	Reason string `json:"reason,omitempty"`
	// Unrecorded is how many requests the same client had refused since
	// the last record of a refusal: refusals are recorded once a minute
	// per client at most.
	Unrecorded int `json:"unrecorded,omitempty"`
}

// Auditor records write actions and refused requests.
type Auditor interface {
	Audit(ctx context.Context, rec AuditRecord)
}

// EventAuditor keeps audit records as "audit" events in the event store.
type EventAuditor struct {
	Events storage.EventStore
	Logger *slog.Logger
}

// Audit implements Auditor. A record that cannot be stored is logged in
// full instead, so that it is not lost.
func (a *EventAuditor) Audit(ctx context.Context, rec AuditRecord) {
	payload, _ := json.Marshal(rec)
	id, err := randomString(10)
	if err == nil {
		err = a.Events.AppendEvents(context.WithoutCancel(ctx), []storage.Event{{
			ID:      fmt.Sprintf("audit-%d-%s", rec.Time.UnixNano(), id),
			Time:    rec.Time,
			Kind:    "audit",
			Subject: rec.Principal,
			Labels:  auditLabels(rec),
			Payload: payload,
		}})
	}
	if err != nil {
		a.Logger.Error("Storing audit record failed", "record", string(payload), "err", err)
	}
}

func auditLabels(rec AuditRecord) map[string]string {
	l := map[string]string{"method": rec.Method, "path": rec.Path, "status": strconv.Itoa(rec.Status)}
	if rec.Reason != "" {
		l["reason"] = rec.Reason
	}
	return l
}
