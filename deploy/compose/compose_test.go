// Package compose_test checks the compose stack (compose.yaml) the way
// docker compose and podman compose read it: through compose-go, the
// library both use.
package compose_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/aiops-dev/aiops/internal/clitest"
)

func load(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml")}},
		Environment: env,
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("aiops", true)
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	return p
}

// TestComposeStack: the file passes the compose schema and consistency
// checks, holds the whole stack, and every aiops process in it starts
// from a configuration that aiops itself accepts.
func TestComposeStack(t *testing.T) {
	p := load(t, map[string]string{"AIOPS_ADMIN_TOKEN": "x", "AIOPS_GRAFANA_TOKEN": "y"})

	want := []string{"clickhouse", "collector", "grafana", "ingester", "kafka", "query", "workflow-sim"}
	if got := p.ServiceNames(); !slices.Equal(sorted(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	if r := p.Services["ingester"].Deploy; r == nil || r.Replicas == nil || *r.Replicas < 2 {
		t.Errorf("ingester: want at least two replicas sharing the partitions, got %+v", r)
	}

	aiops := clitest.Aiops(t)
	for _, name := range []string{"collector", "ingester", "query"} {
		s := p.Services[name]
		if s.Image != "aiops:dev" {
			t.Errorf("%s: image %q, want the default aiops:dev", name, s.Image)
		}
		if s.HealthCheck == nil || !slices.Contains(s.HealthCheck.Test, "ready") {
			t.Errorf("%s: health check %v, want aiops check ready", name, s.HealthCheck)
		}
		if len(s.Secrets) != 1 || s.Secrets[0].Mode == nil || *s.Secrets[0].Mode&0o077 != 0 {
			t.Errorf("%s: the admin token secret must be mounted private (aiops refuses it otherwise): %+v", name, s.Secrets)
		}
		// The config file the command names, found through the bind
		// mount that provides it.
		i := slices.Index(s.Command, "--config")
		if i < 0 || i+1 >= len(s.Command) {
			t.Fatalf("%s: command %v names no --config", name, s.Command)
		}
		file := hostPath(t, s, s.Command[i+1])
		out, err := exec.Command(aiops, "check", "config", file).CombinedOutput()
		if err != nil {
			t.Errorf("%s: aiops check config %s: %v\n%s", name, file, err, out)
		}
	}
	for _, name := range []string{"ingester", "query"} {
		if _, ok := p.Services[name].DependsOn["clickhouse"]; !ok {
			t.Errorf("%s does not wait for clickhouse", name)
		}
	}
	g := p.Services["grafana"]
	var plugin, dashboards bool
	for _, v := range g.Volumes {
		plugin = plugin || strings.HasPrefix(v.Target, "/var/lib/grafana/plugins/")
		dashboards = dashboards || v.Target == "/etc/grafana/provisioning"
	}
	if !plugin || !dashboards {
		t.Errorf("grafana: plugin mounted %v, provisioning mounted %v; want both", plugin, dashboards)
	}
}

// TestComposeStackImageOverride: the images come from the environment,
// as the file's header says.
func TestComposeStackImageOverride(t *testing.T) {
	p := load(t, map[string]string{"AIOPS_IMAGE": "registry.example/aiops:1.2.3"})
	for _, name := range []string{"collector", "ingester", "query"} {
		if got := p.Services[name].Image; got != "registry.example/aiops:1.2.3" {
			t.Errorf("%s: image %q", name, got)
		}
	}
}

// hostPath maps a path inside service s's container to the host file a
// bind mount provides.
func hostPath(t *testing.T, s types.ServiceConfig, inContainer string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if rel, err := filepath.Rel(v.Target, inContainer); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.Join(v.Source, rel)
		}
	}
	t.Fatalf("%s: no bind mount provides %s", s.Name, inContainer)
	return ""
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
