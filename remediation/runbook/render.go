package runbook

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/remediation/action"
)

// RenderTarget renders the runbook's target from the trigger's data and
// checks it (CheckTarget).
func (r *Renderer) RenderTarget(ctx context.Context, rb *Runbook, d Data, at time.Time) (map[string]string, error) {
	out := make(map[string]string, len(rb.Target))
	for _, k := range sortedKeys(rb.Target) {
		v, err := r.Render(ctx, "target."+k, rb.Target[k], d, at, nil)
		if err != nil {
			return nil, err
		}
		out[k] = strings.TrimSpace(v.Masked)
	}
	if err := CheckTarget(out); err != nil {
		return nil, err
	}
	return out, nil
}

// wildcards are values that would mean "everything" to some system.
var wildcards = []string{"*", ".*", ".+", "all", "any", "<no value>"}

// CheckTarget refuses a target that is empty, has an empty value or one
// that reads as a wildcard: a run acts on something named, never on
// "everything".
func CheckTarget(t map[string]string) error {
	if len(t) == 0 {
		return fmt.Errorf("target: empty; a run must name what it acts on")
	}
	for _, k := range sortedKeys(t) {
		v := strings.TrimSpace(t[k])
		switch {
		case v == "":
			return fmt.Errorf("target.%s: rendered empty; a run must name what it acts on", k)
		case slices.Contains(wildcards, strings.ToLower(v)):
			return fmt.Errorf("target.%s: %q would match everything", k, v)
		}
	}
	return nil
}

// TargetKey is a target's canonical form, "k1=v1,k2=v2", sorted by label.
func TargetKey(t map[string]string) string {
	keys := sortedKeys(t)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + t[k]
	}
	return strings.Join(parts, ",")
}

// Overlaps reports whether two targets may be the same thing: one's
// labels are a subset of the other's ({service=api} and
// {service=api, instance=api-0}). Runs on overlapping targets exclude
// each other.
func Overlaps(a, b map[string]string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// RenderedStep is a step with its parameters rendered: Params for the
// action, Masked for everything recorded or shown.
type RenderedStep struct {
	Index  int
	Name   string
	Action string
	Params action.Params
	Masked action.Params
	// Verify is the verification's expression rendered (queries never
	// carry secrets); empty without a verify.
	Verify string
}

// RenderStep renders one step (steps[i], or rollback[i] when rollback).
func (r *Renderer) RenderStep(ctx context.Context, rb *Runbook, s Step, field string, d Data, at time.Time, secrets *Secrets) (RenderedStep, error) {
	out := RenderedStep{Name: s.Name, Action: s.Action, Params: action.Params{}, Masked: action.Params{}}
	for _, name := range sortedKeys(s.Params) {
		p := s.Params[name]
		f := field + ".params." + name
		switch p.Kind {
		case KindList:
			var vals, masks []string
			for i, t := range p.List {
				v, err := r.Render(ctx, fmt.Sprintf("%s[%d]", f, i), t, d, at, secrets)
				if err != nil {
					return out, err
				}
				vals, masks = append(vals, v.Value), append(masks, v.Masked)
			}
			out.Params[name], out.Masked[name] = action.Value{List: vals}, action.Value{List: masks}
		case KindMap:
			vals, masks := map[string]string{}, map[string]string{}
			keys := make([]string, 0, len(p.Map))
			for k := range p.Map {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v, err := r.Render(ctx, f+"."+k, p.Map[k], d, at, secrets)
				if err != nil {
					return out, err
				}
				vals[k], masks[k] = v.Value, v.Masked
			}
			out.Params[name], out.Masked[name] = action.Value{Map: vals}, action.Value{Map: masks}
		default:
			v, err := r.Render(ctx, f, p.Str, d, at, secrets)
			if err != nil {
				return out, err
			}
			out.Params[name], out.Masked[name] = action.Value{Str: strings.TrimSpace(v.Value)}, action.Value{Str: strings.TrimSpace(v.Masked)}
		}
	}
	if s.Verify != nil {
		v, err := r.Render(ctx, field+".verify.expr", s.Verify.Expr, d, at, nil)
		if err != nil {
			return out, err
		}
		out.Verify = v.Masked
	}
	return out, nil
}

// RenderGuard renders a precondition or blast radius expression.
func (r *Renderer) RenderGuard(ctx context.Context, field, expr string, d Data, at time.Time) (string, error) {
	v, err := r.Render(ctx, field, expr, d, at, nil)
	if err != nil {
		return "", err
	}
	return v.Masked, nil
}

// FormatParams writes masked parameters as "k=v k2=[a b]" for logs and
// timelines.
func FormatParams(p action.Params) map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		switch {
		case v.List != nil:
			out[k] = "[" + strings.Join(v.List, " ") + "]"
		case v.Map != nil:
			keys := sortedKeys(v.Map)
			kv := make([]string, len(keys))
			for i, mk := range keys {
				kv[i] = mk + ":" + v.Map[mk]
			}
			out[k] = "{" + strings.Join(kv, " ") + "}"
		default:
			out[k] = v.Str
		}
	}
	return out
}
