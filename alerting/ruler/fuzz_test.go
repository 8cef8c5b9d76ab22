package ruler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// FuzzCheckFiles feeds any text to the rule file check, as a rule file
// pushed by a config management tool: it must not panic, and a file it
// refuses is refused with the file's name.
func FuzzCheckFiles(f *testing.F) {
	shipped, _ := filepath.Glob("../../deploy/rules/*.yml")
	for _, s := range shipped {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n",
		"groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(x)\n        labels: {a: '{{ .Value }}'}\n",
		"groups: [{name: g, interval: 0s, rules: [{alert: A, expr: '1', for: -1m}]}]\n",
		"groups:\n- name: g\n  rules:\n  - alert: Monster\n    expr: 1" + strings.Repeat("+1", 300) + "\n",
		"groups: &a [*a]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	file := filepath.Join(f.TempDir(), "rules.yml")
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckFiles([]string{file}, p); err != nil && !strings.Contains(err.Error(), file) {
			t.Fatalf("refusal does not name the file: %v", err)
		}
	})
}
