package slackapp

import (
	"context"
	"errors"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/auth"
)

// Remediation is what the Slack app asks of the remediation engine:
// approving or denying an execution waiting for approval, starting a
// runbook by hand, and the global kill switch. The engine decides who
// may approve (the runbook's approvers); an error it returns is shown to
// the user as it is, and audited with the status its HTTPStatus() int
// method gives, if it has one (as the REST API would answer).
//
// The scopes are the REST API's: approve and deny need approve, a manual
// run and pausing need execute, resuming needs admin.
type Remediation interface {
	Approve(ctx context.Context, executionID string, by auth.Principal) error
	Deny(ctx context.Context, executionID string, by auth.Principal, reason string) error
	// Run runs a runbook by hand on a target, for incidentID when the
	// run was chosen on an incident's message ("" for none).
	Run(ctx context.Context, runbook, target, incidentID string, by auth.Principal) (executionID string, err error)
	Pause(ctx context.Context, by auth.Principal) error
	Resume(ctx context.Context, by auth.Principal) error
	// Runbooks are the runbooks that match inc's alerts, with the targets
	// they would act on (the "Run runbook…" button); it only reads.
	Runbooks(ctx context.Context, inc incident.Incident) ([]RunbookMatch, error)
}

// ErrNoRemediation is returned by NoRemediation.
var ErrNoRemediation = errors.New("remediation is not configured on this aiops server")

// NoRemediation answers every remediation request with ErrNoRemediation:
// what a server without the remediation engine wires in.
type NoRemediation struct{}

func (NoRemediation) Approve(context.Context, string, auth.Principal) error { return ErrNoRemediation }
func (NoRemediation) Deny(context.Context, string, auth.Principal, string) error {
	return ErrNoRemediation
}
func (NoRemediation) Run(context.Context, string, string, string, auth.Principal) (string, error) {
	return "", ErrNoRemediation
}
func (NoRemediation) Pause(context.Context, auth.Principal) error  { return ErrNoRemediation }
func (NoRemediation) Resume(context.Context, auth.Principal) error { return ErrNoRemediation }
func (NoRemediation) Runbooks(context.Context, incident.Incident) ([]RunbookMatch, error) {
	return nil, ErrNoRemediation
}
