package runbook

import (
	"bytes"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/pb33f/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("runbook.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("runbook.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validateYAML(t *testing.T, s *jsonschema.Schema, text string) error {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// TestSchema: the schema takes a good runbook, refuses an unknown key,
// and names exactly the keys the Go types decode (so neither drifts).
func TestSchema(t *testing.T) {
	s := compileSchema(t)
	if err := validateYAML(t, s, good); err != nil {
		t.Fatalf("the schema refuses a good runbook: %v", err)
	}
	if err := validateYAML(t, s, "runbooks:\n  - name: a\n    trigger: {alert: A}\n    target: {service: x}\n    steps: [{action: wait}]\n    stpes: []\n"); err == nil {
		t.Error("the schema takes an unknown key")
	}

	var doc map[string]any
	if err := yaml.Unmarshal(Schema, &doc); err != nil {
		t.Fatal(err)
	}
	defs := doc["$defs"].(map[string]any)
	props := func(def string) []string {
		p := defs[def].(map[string]any)["properties"].(map[string]any)
		var out []string
		for k := range p {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	sub := func(def, key string) []string {
		p := defs[def].(map[string]any)["properties"].(map[string]any)[key].(map[string]any)["properties"].(map[string]any)
		var out []string
		for k := range p {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	for _, c := range []struct {
		name   string
		schema []string
		typ    any
	}{
		{"runbook", props("runbook"), Runbook{}},
		{"trigger", props("trigger"), Trigger{}},
		{"step", props("step"), Step{}},
		{"verify", props("verify"), Verify{}},
		{"safety", props("safety"), Safety{}},
		{"window", props("window"), Window{}},
		{"approval", sub("safety", "approval"), Approval{}},
		{"max_runs", sub("safety", "max_runs"), MaxRuns{}},
		{"blast_radius", sub("safety", "blast_radius"), BlastRadius{}},
		{"condition", sub("trigger", "condition"), Condition{}},
		{"anomaly", sub("trigger", "anomaly"), AnomalyTrigger{}},
		{"forecast", sub("trigger", "forecast"), ForecastTrigger{}},
		{"incident", sub("trigger", "incident"), IncidentTrigger{}},
		{"escalate", sub("runbook", "escalate"), Escalation{}},
	} {
		var keys []string
		for k := range yamlFields(reflect.TypeOf(c.typ)) {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !slices.Equal(keys, c.schema) {
			t.Errorf("%s: schema has %v, the Go type %v", c.name, c.schema, keys)
		}
	}
}
