package remediation

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// TestConfigValidate: each bad setting is refused naming its key.
func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		yaml, want string
	}{
		{"runbook_files: ['']", "remediation.runbook_files[0]"},
		{"runbook_files: ['[']", "remediation.runbook_files[0]"},
		{"max_runs: {count: 3}", "remediation.max_runs.window"},
		{"max_runs: {count: -1}", "remediation.max_runs.count"},
		{"max_runs: {count: 3, window: 30d}", "longer than remediation.history"},
		{"condition_interval: 0s", "remediation.condition_interval"},
		{"breaker: {failures: 0}", "remediation.breaker.failures"},
		{"escalate_unhandled: {after: 1m, alerts: ['{severity=~\"(\"}']}", "remediation.escalate_unhandled.alerts[0]"},
		{"maintenance_windows: [{days: [sun], start: '2am', duration: 1h}]", "remediation.maintenance_windows[0].start"},
		{"drivers: {workflow: {token: {value: x}}}", "remediation.drivers.workflow.url"},
		{"drivers: {workflow: {url: 'http://x'}}", "remediation.drivers.workflow.token"},
		{"drivers: {workflow: {url: 'http://x', token: {value: a, env: B}}}", "remediation.drivers.workflow.token: set one"},
		{"drivers: {kubernetes: {kubeconfig: k}}", "remediation.drivers.kubernetes.namespaces"},
		{"drivers: {exec: {allowed: [echo]}}", "remediation.drivers.exec.allowed[0]"},
		{"drivers: {notify: {channels: {oncall: {token: {env: T}}}}}", "remediation.drivers.notify.channels.oncall.url"},
		{"drivers: {webhook: {max_attempts: 0}}", "remediation.drivers.webhook.max_attempts"},
	} {
		cfg := DefaultConfig()
		cfg.RunbookFiles = []string{"rb.yml"}
		dec := yaml.NewDecoder(strings.NewReader(c.yaml))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("%s: %v", c.yaml, err)
		}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to name %q", c.yaml, err, c.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestSecretsAreMasked: a configuration printed or dumped never shows a
// secret's value; relative files resolve next to the configuration.
func TestSecretsAreMasked(t *testing.T) {
	s := Secret{Value: "p4ss-w0rd"}
	out, _ := yaml.Marshal(struct{ S Secret }{s})
	if strings.Contains(string(out), "p4ss") || strings.Contains(s.String(), "p4ss") {
		t.Errorf("the value shows: %s %s", out, s)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte("from-file\n"), 0o600)
	cfg := DefaultConfig()
	cfg.RunbookFiles = []string{"runbooks/*.yml"}
	cfg.Drivers.Workflow = &WorkflowConfig{URL: "http://x", Token: Secret{File: "tok"}, Timeout: model.Duration(time.Second)}
	cfg.ResolvePaths(dir)
	if cfg.RunbookFiles[0] != filepath.Join(dir, "runbooks/*.yml") {
		t.Errorf("runbook files %v", cfg.RunbookFiles)
	}
	if v, err := cfg.Drivers.Workflow.Token.Resolve("k"); err != nil || v != "from-file" {
		t.Errorf("token %q %v", v, err)
	}
	if _, err := (Secret{Env: "AIOPS_SURELY_UNSET_VAR"}).Resolve("k"); err == nil || !strings.Contains(err.Error(), "AIOPS_SURELY_UNSET_VAR") {
		t.Errorf("unset env: %v", err)
	}
}
