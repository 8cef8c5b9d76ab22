package runbook

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	promtemplate "github.com/prometheus/prometheus/template"
)

// Data is what templates see: $labels (the trigger's labels), $annotations
// (an alert's annotations), $target (the rendered target), $value (a
// condition's value) and .IncidentID, .Runbook, .ExecutionID.
type Data struct {
	Labels      map[string]string
	Annotations map[string]string
	Target      map[string]string
	Value       float64
	IncidentID  string
	Runbook     string
	ExecutionID string
}

// header gives templates the variables Prometheus's alert templates have,
// and $target.
const header = "{{ $labels := .Labels }}{{ $annotations := .Annotations }}{{ $target := .Target }}{{ $value := .Value }}"

// Renderer expands templates with Prometheus's template functions
// (query, first, value, label, humanize, …) and secret.
type Renderer struct {
	// Query answers the query function; nil makes query fail.
	Query promtemplate.QueryFunc
	// ExternalURL is what pathPrefix and externalURL return.
	ExternalURL *url.URL
}

// Rendered is a template's output twice: Value has secrets' values, for
// the action only; Masked has <secret:name> in their place, for
// everything that is kept or shown.
type Rendered struct {
	Value  string
	Masked string
}

// MaskedSecret is what a secret renders as wherever it may be seen.
func MaskedSecret(name string) string { return "<secret:" + name + ">" }

// Render expands text at time at. secrets may be nil when the runbook
// declares none.
func (r *Renderer) Render(ctx context.Context, name, text string, d Data, at time.Time, secrets *Secrets) (Rendered, error) {
	if !strings.Contains(text, "{{") {
		return Rendered{Value: text, Masked: text}, nil
	}
	masked, err := r.expand(ctx, name, text, d, at, func(n string) (string, error) {
		if _, err := secrets.get(n); err != nil {
			return "", err
		}
		return MaskedSecret(n), nil
	})
	if err != nil {
		return Rendered{}, err
	}
	if !strings.Contains(text, "secret") {
		return Rendered{Value: masked, Masked: masked}, nil
	}
	value, err := r.expand(ctx, name, text, d, at, secrets.get)
	if err != nil {
		return Rendered{}, secrets.redactErr(err)
	}
	return Rendered{Value: value, Masked: masked}, nil
}

func (r *Renderer) expand(ctx context.Context, name, text string, d Data, at time.Time, secret func(string) (string, error)) (string, error) {
	q := r.Query
	if q == nil {
		q = func(context.Context, string, time.Time) (promql.Vector, error) {
			return nil, errors.New("queries are not available here")
		}
	}
	ext := r.ExternalURL
	if ext == nil {
		ext = &url.URL{}
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	if d.Target == nil {
		d.Target = map[string]string{}
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	e := promtemplate.NewTemplateExpander(ctx, header+text, name, d, model.TimeFromUnixNano(at.UnixNano()), q, ext, nil)
	e.Funcs(template.FuncMap{"secret": secret})
	out, err := e.Expand()
	if err != nil {
		return "", fmt.Errorf("template %s: %w", name, unwrapTemplateErr(err))
	}
	return out, nil
}

// unwrapTemplateErr drops Prometheus's "error executing template NAME:"
// prefix, which repeats the name.
func unwrapTemplateErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// CheckTemplate parses a template without running it.
func CheckTemplate(name, text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	e := promtemplate.NewTemplateExpander(context.Background(), header+text, name, Data{}, 0, nil, &url.URL{}, nil)
	e.Funcs(template.FuncMap{"secret": func(string) (string, error) { return "", nil }})
	if err := e.ParseTest(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "template: "))
	}
	return nil
}

// SecretNames returns the names a template reads with {{ secret "…" }},
// as far as they are literal strings.
func SecretNames(text string) []string {
	var out []string
	for rest := text; ; {
		i := strings.Index(rest, "secret")
		if i < 0 {
			return out
		}
		rest = strings.TrimLeft(rest[i+len("secret"):], " ")
		if strings.HasPrefix(rest, `"`) {
			if j := strings.Index(rest[1:], `"`); j >= 0 {
				out = append(out, rest[1:1+j])
			}
		}
	}
}

// Secrets holds a run's secret values, read from their references. It
// never prints them.
type Secrets struct {
	values map[string]string
}

// SecretSource reads references; the zero value reads the process's
// environment and files.
type SecretSource struct {
	Getenv   func(string) (string, bool)
	ReadFile func(string) ([]byte, error)
}

// Resolve reads every reference. An unset variable, an unreadable or
// empty file is an error that names the secret, never its value.
func (src SecretSource) Resolve(refs map[string]SecretRef) (*Secrets, error) {
	getenv, readFile := src.Getenv, src.ReadFile
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if readFile == nil {
		readFile = os.ReadFile
	}
	s := &Secrets{values: map[string]string{}}
	for name, ref := range refs {
		var v string
		switch {
		case ref.Env != "":
			val, ok := getenv(ref.Env)
			if !ok || val == "" {
				return nil, fmt.Errorf("secret %q: environment variable %s is not set", name, ref.Env)
			}
			v = val
		case ref.File != "":
			b, err := readFile(ref.File)
			if err != nil {
				return nil, fmt.Errorf("secret %q: read %s: %w", name, ref.File, errors.Unwrap(err))
			}
			v = strings.TrimRight(string(b), "\r\n")
			if v == "" {
				return nil, fmt.Errorf("secret %q: file %s is empty", name, ref.File)
			}
		default:
			return nil, fmt.Errorf("secret %q: neither env nor file is set", name)
		}
		s.values[name] = v
	}
	return s, nil
}

// NewSecrets holds the given values (for tests and for drivers' own
// secrets).
func NewSecrets(values map[string]string) *Secrets {
	s := &Secrets{values: map[string]string{}}
	for k, v := range values {
		s.values[k] = v
	}
	return s
}

func (s *Secrets) get(name string) (string, error) {
	if s != nil {
		if v, ok := s.values[name]; ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("secret %q is not declared in the runbook's secrets", name)
}

// Redact replaces every secret value in text by its mask. Longer values
// go first, so a secret containing another is masked whole.
func (s *Secrets) Redact(text string) string {
	if s == nil || len(s.values) == 0 {
		return text
	}
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(s.values[names[i]]) > len(s.values[names[j]]) })
	for _, n := range names {
		if v := s.values[n]; v != "" {
			text = strings.ReplaceAll(text, v, MaskedSecret(n))
		}
	}
	return text
}

// redactErr returns an error whose message has no secret values.
func (s *Secrets) redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := s.Redact(msg); red != msg {
		return errors.New(red)
	}
	return err
}

// RedactErr is redactErr for callers outside the package.
func (s *Secrets) RedactErr(err error) error { return s.redactErr(err) }

// String never shows values.
func (s *Secrets) String() string {
	if s == nil {
		return "secrets[]"
	}
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		names = append(names, n)
	}
	sort.Strings(names)
	return "secrets[" + strings.Join(names, ",") + "]"
}

// TargetRefs returns the target labels a template reads as $target.NAME,
// in order of appearance, so that lint can name one the runbook's target
// does not define (it would render empty, and a step act on that). A
// template that does not parse returns nothing: CheckTemplate reports it.
func TargetRefs(text string) []string {
	if !strings.Contains(text, "$target") {
		return nil
	}
	t := parse.New("refs")
	t.Mode = parse.SkipFuncCheck
	if _, err := t.Parse(header+text, "", "", map[string]*parse.Tree{}); err != nil || t.Root == nil {
		return nil
	}
	var out []string
	var walk func(n parse.Node)
	branch := func(b *parse.BranchNode) {
		walk(b.Pipe)
		walk(b.List)
		walk(b.ElseList)
	}
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case nil:
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.ChainNode:
			walk(n.Node)
		case *parse.IfNode:
			branch(&n.BranchNode)
		case *parse.RangeNode:
			branch(&n.BranchNode)
		case *parse.WithNode:
			branch(&n.BranchNode)
		case *parse.TemplateNode:
			walk(n.Pipe)
		case *parse.VariableNode:
			if len(n.Ident) >= 2 && n.Ident[0] == "$target" {
				out = append(out, n.Ident[1])
			}
		}
	}
	walk(t.Root)
	return out
}
