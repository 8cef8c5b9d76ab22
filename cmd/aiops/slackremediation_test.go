package main

import (
	"fmt"
	"maps"
	"net/http"
	"testing"

	"github.com/aiops-dev/aiops/remediation/engine"
)

func TestParseTarget(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"service=api":                       {"service": "api"},
		"service=api,instance=api-0":        {"service": "api", "instance": "api-0"},
		"service=api instance=api-0":        {"service": "api", "instance": "api-0"},
		`{service="api", instance="api-0"}`: {"service": "api", "instance": "api-0"},
		"api":                               nil,
		"service=":                          nil,
		"":                                  nil,
		"{}":                                nil,
		"=api":                              nil,
	} {
		got, err := parseTarget(in)
		if want == nil {
			if err == nil {
				t.Errorf("parseTarget(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, want) {
			t.Errorf("parseTarget(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestEngineErrorStatus(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		text   string
	}{
		{fmt.Errorf("%w: execution ex-1", engine.ErrNotFound), http.StatusNotFound, "not found: execution ex-1"},
		{fmt.Errorf("%w: bob is not an approver of r", engine.ErrForbidden), http.StatusForbidden, "bob is not an approver of r"},
		{fmt.Errorf("%w: execution ex-1 is running, not waiting for approval", engine.ErrConflict), http.StatusConflict, "execution ex-1 is running, not waiting for approval"},
		{&engine.RefusedError{Rail: "kill_switch", Reason: "engaged"}, http.StatusConflict, "refused by kill_switch: engaged"},
		{fmt.Errorf("disk full"), http.StatusInternalServerError, "disk full"},
	} {
		e := remediationErr(c.err).(engineError)
		if e.HTTPStatus() != c.status || e.Error() != c.text {
			t.Errorf("%v: %d %q, want %d %q", c.err, e.HTTPStatus(), e.Error(), c.status, c.text)
		}
	}
}
