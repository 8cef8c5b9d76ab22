package action

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Param types.
const (
	TypeString   = "string"
	TypeInt      = "int"
	TypeFloat    = "float"
	TypeBool     = "bool"
	TypeDuration = "duration"
	TypeList     = "list"
	TypeMap      = "map"
)

// ParamSpec describes one parameter of an action.
type ParamSpec struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Required bool     `json:"required"`
	Enum     []string `json:"enum,omitempty"`
	Doc      string   `json:"doc"`
}

// Spec describes an action: what lint checks steps against and what the
// API lists.
type Spec struct {
	Name   string      `json:"name"`
	Doc    string      `json:"doc"`
	Params []ParamSpec `json:"params"`
	// Mutating actions change the system; notify and wait do not.
	Mutating bool `json:"mutating"`
}

// Param returns the parameter spec by name.
func (s Spec) Param(name string) (ParamSpec, bool) {
	i := slices.IndexFunc(s.Params, func(p ParamSpec) bool { return p.Name == name })
	if i < 0 {
		return ParamSpec{}, false
	}
	return s.Params[i], true
}

// CheckValue checks a literal (untemplated) scalar against the type.
func (p ParamSpec) CheckValue(v string) error {
	v = strings.TrimSpace(v)
	var err error
	switch p.Type {
	case TypeInt:
		_, err = strconv.Atoi(v)
	case TypeFloat:
		_, err = strconv.ParseFloat(v, 64)
	case TypeBool:
		_, err = strconv.ParseBool(v)
	case TypeDuration:
		_, err = time.ParseDuration(v)
	}
	if err != nil {
		return fmt.Errorf("must be %s, got %q", map[string]string{TypeInt: "an integer", TypeFloat: "a number",
			TypeBool: "true or false", TypeDuration: "a duration such as 30s"}[p.Type], v)
	}
	if len(p.Enum) > 0 && !slices.Contains(p.Enum, v) {
		return fmt.Errorf("must be one of %s, got %q", strings.Join(p.Enum, ", "), v)
	}
	return nil
}

func str(name, doc string) ParamSpec {
	return ParamSpec{Name: name, Type: TypeString, Required: true, Doc: doc}
}
func opt(p ParamSpec) ParamSpec { p.Required = false; return p }
func typed(p ParamSpec, t string) ParamSpec {
	p.Type = t
	return p
}

var (
	pService  = str("service", "the service's name, as the control API names it")
	pInstance = str("instance", "the instance's id")
	pNS       = str("namespace", "the Kubernetes namespace")
	pName     = str("name", "the object's name")
)

// Catalogue lists every action of every driver, by name.
func Catalogue() map[string]Spec {
	specs := []Spec{
		// The workflow engine's control API (sim/control's routes).
		{Name: "workflow.restart_service", Mutating: true, Doc: "rolling restart of a service, one instance at a time",
			Params: []ParamSpec{pService}},
		{Name: "workflow.restart_instance", Mutating: true, Doc: "restart one instance; it is rescheduled on a fresh node",
			Params: []ParamSpec{pService, pInstance}},
		{Name: "workflow.scale", Mutating: true, Doc: "set a service's replicas, clamped to [min, max] when given",
			Params: []ParamSpec{pService, typed(str("replicas", "the number of instances"), TypeInt),
				opt(typed(str("min", "the least replicas to set"), TypeInt)), opt(typed(str("max", "the most replicas to set"), TypeInt))}},
		{Name: "workflow.rollback", Mutating: true, Doc: "roll a service back to its previous version",
			Params: []ParamSpec{pService}},
		{Name: "workflow.rate_limit", Mutating: true, Doc: "limit a route's requests per client (0 removes the limit)",
			Params: []ParamSpec{pService, str("route", `the route, e.g. "POST /v1/auth/login"`),
				typed(str("per_client_rps", "requests per second per client"), TypeFloat)}},
		{Name: "workflow.trip_breaker", Mutating: true, Doc: "open a circuit breaker",
			Params: []ParamSpec{str("breaker", "the breaker's name")}},
		{Name: "workflow.reset_breaker", Mutating: true, Doc: "close a circuit breaker",
			Params: []ParamSpec{str("breaker", "the breaker's name")}},
		{Name: "workflow.set_flag", Mutating: true, Doc: "set a feature flag",
			Params: []ParamSpec{str("flag", "the flag's name"), typed(str("enabled", "the flag's new value"), TypeBool)}},
		{Name: "workflow.expand_volume", Mutating: true, Doc: "add capacity to a volume",
			Params: []ParamSpec{str("volume", "the volume's name"), typed(str("add_bytes", "bytes to add"), TypeInt)}},
		{Name: "workflow.clean_volume", Mutating: true, Doc: "remove what a volume keeps needlessly",
			Params: []ParamSpec{str("volume", "the volume's name")}},

		// Kubernetes through client-go.
		{Name: "kubernetes.rollout_restart", Mutating: true, Doc: "restart a workload's pods the way kubectl rollout restart does",
			Params: []ParamSpec{pNS, {Name: "kind", Type: TypeString, Required: true, Enum: []string{"Deployment", "StatefulSet", "DaemonSet"}, Doc: "the workload's kind"}, pName}},
		{Name: "kubernetes.scale", Mutating: true, Doc: "scale a Deployment or StatefulSet, clamped to [min, max]",
			Params: []ParamSpec{pNS, {Name: "kind", Type: TypeString, Required: true, Enum: []string{"Deployment", "StatefulSet"}, Doc: "the workload's kind"}, pName,
				typed(str("replicas", "the replicas wanted"), TypeInt),
				typed(str("min", "the least replicas to set"), TypeInt), typed(str("max", "the most replicas to set"), TypeInt)}},
		{Name: "kubernetes.patch_hpa", Mutating: true, Doc: "set a HorizontalPodAutoscaler's minReplicas and/or maxReplicas",
			Params: []ParamSpec{pNS, pName, opt(typed(str("min_replicas", "the new minReplicas"), TypeInt)), opt(typed(str("max_replicas", "the new maxReplicas"), TypeInt))}},
		{Name: "kubernetes.delete_pod", Mutating: true, Doc: "delete one pod by name (its controller replaces it)",
			Params: []ParamSpec{pNS, pName}},

		// Generic.
		{Name: "webhook", Mutating: true, Doc: "an HTTP request, retried with backoff on 5xx and transport errors",
			Params: []ParamSpec{str("url", "the URL"), opt(ParamSpec{Name: "method", Type: TypeString, Enum: []string{"GET", "POST", "PUT", "PATCH", "DELETE"}, Doc: "the method; POST by default"}),
				opt(typed(str("headers", "request headers"), TypeMap)), opt(str("body", "the request body"))}},
		{Name: "exec", Mutating: true, Doc: "run an allow-listed command with arguments, without a shell",
			Params: []ParamSpec{str("command", "the command's path; it must be in remediation.drivers.exec.allowed"), opt(typed(str("args", "the arguments"), TypeList))}},
		{Name: "notify", Doc: "tell people: a note on the incident and a message to the channels",
			Params: []ParamSpec{str("message", "the message"), opt(typed(str("channels", "channel names from remediation.drivers.notify.channels; all when empty"), TypeList))}},
		{Name: "wait", Doc: "wait, e.g. for a change to take effect before the next step",
			Params: []ParamSpec{typed(str("duration", "how long"), TypeDuration)}},
	}
	out := make(map[string]Spec, len(specs))
	for _, s := range specs {
		out[s.Name] = s
	}
	return out
}

// Names returns the catalogue's action names, sorted.
func Names() []string {
	c := Catalogue()
	out := make([]string, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
