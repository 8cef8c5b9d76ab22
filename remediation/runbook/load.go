package runbook

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a runbook file, where it is.
type Problem struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	// Runbook names the runbook, when the problem is inside one.
	Runbook string `json:"runbook,omitempty"`
	// Field is the path of the offending key ("steps[1].verify.expr").
	Field string `json:"field,omitempty"`
	// Class groups problems: syntax, unknown_key, type, required,
	// promql, matcher, template, action, verify, unsafe, duplicate, value.
	Class   string `json:"class"`
	Message string `json:"message"`
}

// Problem classes.
const (
	ClassSyntax     = "syntax"
	ClassUnknownKey = "unknown_key"
	ClassType       = "type"
	ClassRequired   = "required"
	ClassPromQL     = "promql"
	ClassMatcher    = "matcher"
	ClassTemplate   = "template"
	ClassAction     = "action"
	ClassVerify     = "verify"
	ClassUnsafe     = "unsafe"
	ClassDuplicate  = "duplicate"
	ClassValue      = "value"
)

func (p Problem) String() string {
	where := fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	if p.Field != "" {
		return fmt.Sprintf("%s: %s: %s (%s)", where, p.Field, p.Message, p.Class)
	}
	return fmt.Sprintf("%s: %s (%s)", where, p.Message, p.Class)
}

// Problems is a list of problems; as an error it lists them one a line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by file and position.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// MaxFileBytes bounds a runbook file.
const MaxFileBytes = 1 << 20

// LoadFiles reads runbook files (globs are expanded, as rule files are)
// and returns their runbooks. Structural problems (syntax, unknown keys,
// wrong types) are returned as Problems and leave the file's runbooks out;
// Validate checks the rest.
func LoadFiles(patterns ...string) ([]Runbook, Problems, error) {
	var (
		all   []Runbook
		probs Problems
	)
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil {
			return nil, nil, fmt.Errorf("runbook files %q: %w", pat, err)
		}
		if len(files) == 0 && !strings.ContainsAny(pat, "*?[") {
			files = []string{pat} // a missing file is an error below, not silence
		}
		for _, f := range files {
			b, err := readFile(f)
			if err != nil {
				return nil, nil, err
			}
			rbs, ps := Parse(f, b)
			all = append(all, rbs...)
			probs = append(probs, ps...)
		}
	}
	return all, probs, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("runbook file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("runbook file %s: %w", name, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("runbook file %s: larger than %d bytes", name, MaxFileBytes)
	}
	return b, nil
}

// Parse reads one runbook file's content. name is what problems say the
// file is.
func Parse(name string, content []byte) ([]Runbook, Problems) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(content))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Problems{syntaxProblem(name, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, Problems{syntaxProblem(name, err)}
		}
		return nil, Problems{{File: name, Line: line, Column: 1, Class: ClassSyntax, Message: "one YAML document per runbook file"}}
	}
	w := &walker{file: name, positions: map[string]Position{}, lines: strings.Split(string(content), "\n")}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w.walk(root, reflect.TypeOf(File{}), "")
	if len(w.probs) > 0 {
		w.attribute(root)
		return nil, w.probs
	}
	var f File
	if err := root.Decode(&f); err != nil {
		return nil, Problems{syntaxProblem(name, err)}
	}
	for i := range f.Runbooks {
		prefix := fmt.Sprintf("runbooks[%d]", i)
		src := Source{File: name, positions: map[string]Position{}}
		src.Line, src.Column = w.pos(prefix).Line, w.pos(prefix).Column
		if p, ok := w.positions[prefix+".name"]; ok {
			src.Line, src.Column = p.Line, p.Column
		}
		for k, p := range w.positions {
			if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
				src.positions[rest] = p
			}
		}
		f.Runbooks[i].Source = src
	}
	return f.Runbooks, nil
}

// syntaxProblem turns a YAML error ("yaml: line 3: …") into a problem at
// that line.
func syntaxProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ":"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, strings.TrimSpace(tail)
			}
		}
	}
	return Problem{File: file, Line: line, Column: 1, Class: ClassSyntax, Message: msg}
}

// walker checks a YAML tree against the Go types it decodes into: every
// key must be a field, every scalar must parse as its field's type. It
// records where each field's value starts.
type walker struct {
	file      string
	lines     []string
	positions map[string]Position
	probs     Problems
}

func (w *walker) pos(path string) Position { return w.positions[path] }

// position is where n's value starts, and how its content is laid out.
func (w *walker) position(n *yaml.Node) Position {
	p := Position{Line: n.Line, Column: n.Column}
	switch {
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		p.quote = 1
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 && n.Line < len(w.lines):
		next := w.lines[n.Line] // the line after the indicator, 0-based
		p.block = len(next) - len(strings.TrimLeft(next, " "))
	}
	return p
}

func (w *walker) add(n *yaml.Node, path, class, msg string) {
	w.probs = append(w.probs, Problem{File: w.file, Line: n.Line, Column: n.Column, Field: path, Class: class, Message: msg})
}

var (
	durationType = reflect.TypeOf(model.Duration(0))
	paramType    = reflect.TypeOf(Param{})
)

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		w.positions[path] = w.position(n)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, ClassType, "must be a duration such as 30s or 5m")
			return
		}
		if _, err := model.ParseDuration(n.Value); err != nil {
			w.add(n, path, ClassType, fmt.Sprintf("must be a duration such as 30s or 5m, got %q", n.Value))
		}
		return
	case t == paramType:
		switch n.Kind {
		case yaml.ScalarNode:
		case yaml.SequenceNode:
			w.walk(n, reflect.TypeOf([]string(nil)), path)
		case yaml.MappingNode:
			w.walk(n, reflect.TypeOf(map[string]string(nil)), path)
		default:
			w.add(n, path, ClassType, "must be a string, a list of strings or a map of strings")
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, ClassType, "must be a mapping")
			return
		}
		fields := yamlFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := join(path, k.Value)
			if seen[k.Value] {
				w.add(k, sub, ClassDuplicate, fmt.Sprintf("key %q appears twice", k.Value))
				continue
			}
			seen[k.Value] = true
			f, ok := fields[k.Value]
			if !ok {
				w.add(k, sub, ClassUnknownKey, fmt.Sprintf("unknown key %q%s", k.Value, suggest(k.Value, fields)))
				continue
			}
			w.walk(v, f, sub)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, ClassType, "must be a list")
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, ClassType, "must be a mapping")
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := join(path, k.Value)
			if seen[k.Value] {
				w.add(k, sub, ClassDuplicate, fmt.Sprintf("key %q appears twice", k.Value))
				continue
			}
			seen[k.Value] = true
			w.walk(v, t.Elem(), sub)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, ClassType, "must be a string")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, ClassType, "must be true or false")
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			w.add(n, path, ClassType, fmt.Sprintf("must be true or false, got %q", n.Value))
		}
	case reflect.Int:
		var v int
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			w.add(n, path, ClassType, fmt.Sprintf("must be an integer, got %q", n.Value))
		}
	case reflect.Float64:
		var v float64
		if n.Kind != yaml.ScalarNode || n.Decode(&v) != nil {
			w.add(n, path, ClassType, fmt.Sprintf("must be a number, got %q", n.Value))
		}
	}
}

// attribute fills in the runbook name of problems found inside one.
func (w *walker) attribute(root *yaml.Node) {
	names := map[string]string{}
	if root.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != "runbooks" || root.Content[i+1].Kind != yaml.SequenceNode {
				continue
			}
			for j, rb := range root.Content[i+1].Content {
				for k := 0; k+1 < len(rb.Content); k += 2 {
					if rb.Content[k].Value == "name" {
						names[fmt.Sprintf("runbooks[%d]", j)] = rb.Content[k+1].Value
					}
				}
			}
		}
	}
	for i, p := range w.probs {
		prefix, rest, ok := strings.Cut(p.Field, "].")
		if !ok {
			continue
		}
		if name, ok := names[prefix+"]"]; ok {
			w.probs[i].Runbook, w.probs[i].Field = name, rest
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps a struct's YAML keys to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// suggest proposes the known key closest to a misspelt one.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
