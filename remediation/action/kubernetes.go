package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubernetesConfig configures the Kubernetes driver.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig file; empty uses the in-cluster service
	// account.
	Kubeconfig string
	// Context picks a kubeconfig context; empty uses the current one.
	Context string
	// Namespaces are the only namespaces actions may touch. Required: the
	// RBAC in docs/RUNBOOKS.md grants rights per namespace too.
	Namespaces []string
}

// Kubernetes acts on a cluster through client-go.
type Kubernetes struct {
	client     kubernetes.Interface
	namespaces []string
	now        func() time.Time
}

// RestartedAtAnnotation is what `kubectl rollout restart` sets on a
// workload's pod template to make it roll its pods.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// NewKubernetes connects with c. now stamps rollout restarts when a call
// has no time of its own; nil means time.Now.
func NewKubernetes(c KubernetesConfig) (*Kubernetes, error) {
	var (
		rc  *rest.Config
		err error
	)
	if c.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return NewKubernetesWith(cs, c.Namespaces, nil)
}

// NewKubernetesWith uses an existing client (tests pass client-go's fake
// clientset).
func NewKubernetesWith(client kubernetes.Interface, namespaces []string, now func() time.Time) (*Kubernetes, error) {
	if len(namespaces) == 0 {
		return nil, errors.New("namespaces: name the namespaces runbooks may act in")
	}
	if now == nil {
		now = time.Now
	}
	return &Kubernetes{client: client, namespaces: slices.Clone(namespaces), now: now}, nil
}

// Do implements Driver.
func (k *Kubernetes) Do(ctx context.Context, c Call) (Result, error) {
	p := c.Params
	if err := p.Required("namespace", "name"); err != nil {
		return Result{}, err
	}
	ns, name := p.String("namespace"), p.String("name")
	if !slices.Contains(k.namespaces, ns) {
		return Result{}, Permanent(fmt.Errorf("namespace: %q is not one runbooks may act in (remediation.drivers.kubernetes.namespaces)", ns))
	}
	var (
		res Result
		err error
	)
	switch strings.TrimPrefix(c.Action, "kubernetes.") {
	case "rollout_restart":
		res, err = k.rolloutRestart(ctx, ns, p.String("kind"), name, c.Key)
	case "scale":
		res, err = k.scale(ctx, ns, p.String("kind"), name, p)
	case "patch_hpa":
		res, err = k.patchHPA(ctx, ns, name, p)
	case "delete_pod":
		err = k.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
		res = Result{Outcome: "deleted", Detail: "pod " + ns + "/" + name}
		if apierrors.IsNotFound(err) {
			// Gone already: what the step wanted.
			return Result{Outcome: "unchanged", Detail: "pod " + ns + "/" + name + " not found"}, nil
		}
	default:
		return Result{}, Permanent(fmt.Errorf("unknown kubernetes action %q", c.Action))
	}
	if err != nil {
		return Result{}, classifyKube(err)
	}
	return res, nil
}

// classifyKube marks API refusals permanent; timeouts, conflicts and
// server errors may pass.
func classifyKube(err error) error {
	switch {
	case apierrors.IsNotFound(err), apierrors.IsForbidden(err), apierrors.IsUnauthorized(err),
		apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return Permanent(err)
	}
	return err
}

// rolloutRestart sets the restartedAt annotation as kubectl does. Its
// value comes from the call's key, so an attempt repeated after a crash
// patches the same value again and rolls nothing a second time.
func (k *Kubernetes) rolloutRestart(ctx context.Context, ns, kind, name, key string) (Result, error) {
	stamp := k.now().UTC().Format(time.RFC3339)
	if key != "" {
		stamp = key
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{RestartedAtAnnotation: stamp}}}}})
	opts := metav1.PatchOptions{FieldManager: "aiops-remediation"}
	var err error
	switch kind {
	case "Deployment":
		_, err = k.client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, opts)
	case "StatefulSet":
		_, err = k.client.AppsV1().StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, opts)
	case "DaemonSet":
		_, err = k.client.AppsV1().DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, opts)
	default:
		return Result{}, Permanent(fmt.Errorf("kind: must be Deployment, StatefulSet or DaemonSet, got %q", kind))
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: "started", Detail: fmt.Sprintf("%s %s/%s restartedAt=%s", kind, ns, name, stamp)}, nil
}

// scale sets spec.replicas, held within [min, max]; both bounds are
// required so that a template computing a count can never scale to zero
// or to a thousand.
func (k *Kubernetes) scale(ctx context.Context, ns, kind, name string, p Params) (Result, error) {
	if _, ok, _ := p.Int("min"); !ok {
		return Result{}, Permanent(errors.New("min: required"))
	}
	if _, ok, _ := p.Int("max"); !ok {
		return Result{}, Permanent(errors.New("max: required"))
	}
	n, err := clampedReplicas(p)
	if err != nil {
		return Result{}, err
	}
	var current int32
	switch kind {
	case "Deployment":
		d, err := k.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return Result{}, err
		}
		if d.Spec.Replicas != nil {
			current = *d.Spec.Replicas
		}
	case "StatefulSet":
		s, err := k.client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return Result{}, err
		}
		if s.Spec.Replicas != nil {
			current = *s.Spec.Replicas
		}
	default:
		return Result{}, Permanent(fmt.Errorf("kind: must be Deployment or StatefulSet, got %q", kind))
	}
	detail := fmt.Sprintf("%s %s/%s replicas %d → %d", kind, ns, name, current, n)
	if int(current) == n {
		return Result{Outcome: "unchanged", Detail: detail}, nil
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": n}})
	opts := metav1.PatchOptions{FieldManager: "aiops-remediation"}
	if kind == "Deployment" {
		_, err = k.client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, opts)
	} else {
		_, err = k.client.AppsV1().StatefulSets(ns).Patch(ctx, name, types.MergePatchType, patch, opts)
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: "scaled", Detail: detail}, nil
}

// patchHPA sets minReplicas and/or maxReplicas, refusing min above max.
func (k *Kubernetes) patchHPA(ctx context.Context, ns, name string, p Params) (Result, error) {
	lo, hasLo, err := p.Int("min_replicas")
	if err != nil {
		return Result{}, err
	}
	hi, hasHi, err := p.Int("max_replicas")
	if err != nil {
		return Result{}, err
	}
	if !hasLo && !hasHi {
		return Result{}, Permanent(errors.New("min_replicas or max_replicas: set at least one"))
	}
	hpa, err := k.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Result{}, err
	}
	newLo, newHi := int32(1), hpa.Spec.MaxReplicas
	if hpa.Spec.MinReplicas != nil {
		newLo = *hpa.Spec.MinReplicas
	}
	if hasLo {
		newLo = int32(lo)
	}
	if hasHi {
		newHi = int32(hi)
	}
	if newLo < 1 || newLo > newHi {
		return Result{}, Permanent(fmt.Errorf("min_replicas %d and max_replicas %d: need 1 <= min <= max", newLo, newHi))
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"minReplicas": newLo, "maxReplicas": newHi}})
	if _, err := k.client.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(ctx, name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "aiops-remediation"}); err != nil {
		return Result{}, err
	}
	return Result{Outcome: "patched", Detail: fmt.Sprintf("HorizontalPodAutoscaler %s/%s min %d max %d", ns, name, newLo, newHi)}, nil
}
