// Package helm_test checks the aiops chart with the real helm (lint and
// template, built from tools/helm) and decodes everything it renders
// strictly with client-go's scheme, so that a misspelt or misplaced field
// fails here rather than in a cluster. The aiops configuration each
// ConfigMap carries is checked by aiops itself.
package helm_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/aiops-dev/aiops/internal/clitest"
)

const chart = "aiops"

// decoder decodes Kubernetes objects strictly: unknown and duplicate
// fields are errors.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}

// decodeAll splits a rendered stream into documents and decodes each.
func decodeAll(dec runtime.Decoder, rendered []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufioReader(rendered))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", gvk, err, doc)
		}
		objs = append(objs, obj)
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for l := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, nil)
}

func helmRun(t *testing.T, helm string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helm, args...)
	// No repositories, caches or plugins of the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out, nil
}

func valuesFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*-values.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("values files: %v %v", files, err)
	}
	return files
}

func TestChartLint(t *testing.T) {
	helm := clitest.Helm(t)
	for _, f := range valuesFiles(t) {
		if out, err := helmRun(t, helm, "lint", "--strict", chart, "-f", f); err != nil {
			t.Errorf("%s: %v", f, err)
		} else if !bytes.Contains(out, []byte("0 chart(s) failed")) {
			t.Errorf("%s: %s", f, out)
		}
	}
}

// rendered is what one values file makes of the chart.
type rendered struct {
	objs []runtime.Object
}

func (r rendered) kinds() []string {
	var ks []string
	for _, o := range r.objs {
		ks = append(ks, fmt.Sprintf("%T", o))
	}
	slices.Sort(ks)
	return slices.Compact(ks)
}

func (r rendered) configMap(name string) *corev1.ConfigMap {
	for _, o := range r.objs {
		if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == name {
			return cm
		}
	}
	return nil
}

// podTemplates returns the pod templates of the Deployments and
// StatefulSets, by workload kind/name.
func (r rendered) podTemplates() map[string]corev1.PodTemplateSpec {
	pts := map[string]corev1.PodTemplateSpec{}
	for _, o := range r.objs {
		switch w := o.(type) {
		case *appsv1.Deployment:
			pts["Deployment/"+w.Name] = w.Spec.Template
		case *appsv1.StatefulSet:
			pts["StatefulSet/"+w.Name] = w.Spec.Template
		}
	}
	return pts
}

// selects reports whether sel matches the pods of some workload.
func (r rendered) selects(sel labels.Selector) bool {
	for _, pt := range r.podTemplates() {
		if sel.Matches(labels.Set(pt.Labels)) {
			return true
		}
	}
	return false
}

func renderChart(t *testing.T, helm, values string, extra ...string) rendered {
	t.Helper()
	args := append([]string{"template", "rel", chart, "--namespace", "observability", "-f", values}, extra...)
	out, err := helmRun(t, helm, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(decoder(t), out)
	if err != nil {
		t.Fatalf("%s: %v", values, err)
	}
	return rendered{objs: objs}
}

// TestChartRenders renders every values file in ci/ and checks what
// comes out: it decodes strictly, each aiops process gets a configuration
// aiops accepts, selectors select, the pods run unprivileged, and the
// RBAC grants the remediation driver its verbs and no more.
func TestChartRenders(t *testing.T) {
	helm := clitest.Helm(t)
	aiops := clitest.Aiops(t)
	want := map[string][]string{
		"all-in-one-values.yaml":  {"*v1.ConfigMap", "*v1.NetworkPolicy", "*v1.PodDisruptionBudget", "*v1.Service", "*v1.ServiceAccount", "*v1.StatefulSet"},
		"scaled-values.yaml":      {"*v1.ConfigMap", "*v1.Deployment", "*v1.NetworkPolicy", "*v1.PodDisruptionBudget", "*v1.Service", "*v1.ServiceAccount", "*v1.ServiceMonitor", "*v1.StatefulSet", "*v2.HorizontalPodAutoscaler"},
		"remediation-values.yaml": {"*v1.ConfigMap", "*v1.NetworkPolicy", "*v1.PodDisruptionBudget", "*v1.Role", "*v1.RoleBinding", "*v1.Service", "*v1.ServiceAccount", "*v1.StatefulSet"},
	}
	for _, values := range valuesFiles(t) {
		t.Run(filepath.Base(values), func(t *testing.T) {
			r := renderChart(t, helm, values)
			if w, ok := want[filepath.Base(values)]; !ok {
				t.Errorf("no expectations for %s", values)
			} else if got := r.kinds(); !slices.Equal(got, w) {
				t.Errorf("kinds %v, want %v", got, w)
			}
			checkPods(t, r, aiops)
			checkSelectors(t, r)
			checkRBAC(t, r)
		})
	}
}

func checkPods(t *testing.T, r rendered, aiops string) {
	t.Helper()
	dir := t.TempDir()
	pts := r.podTemplates()
	if len(pts) == 0 {
		t.Fatal("no workloads rendered")
	}
	for name, pt := range pts {
		sc := pt.Spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: pods may run as root: %+v", name, sc)
		}
		if len(pt.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(pt.Spec.Containers))
		}
		c := pt.Spec.Containers[0]
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem writable", name)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness probe %+v, want /readyz", name, c.ReadinessProbe)
		}
		// The config file the arguments name, from the ConfigMap mounted
		// there, is one aiops accepts.
		i := slices.Index(c.Args, "--config")
		if i < 0 || i+1 >= len(c.Args) {
			t.Fatalf("%s: args %v name no --config", name, c.Args)
		}
		cfgPath := c.Args[i+1]
		var cmName string
		for _, m := range c.VolumeMounts {
			if filepath.Dir(cfgPath) == m.MountPath {
				for _, v := range pt.Spec.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil {
						cmName = v.ConfigMap.Name
					}
				}
			}
		}
		cm := r.configMap(cmName)
		if cm == nil {
			t.Fatalf("%s: no ConfigMap mounted at %s (volume's ConfigMap %q)", name, filepath.Dir(cfgPath), cmName)
		}
		text, ok := cm.Data[filepath.Base(cfgPath)]
		if !ok {
			t.Fatalf("%s: ConfigMap %s has no key %s", name, cm.Name, filepath.Base(cfgPath))
		}
		file := filepath.Join(dir, cm.Name+".yaml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(aiops, "check", "config", file).CombinedOutput(); err != nil {
			t.Errorf("%s: aiops check config: %v\n%s\n%s", name, err, out, text)
		}
		// Every file the configuration names under /etc/aiops/secrets is
		// mounted from a Secret.
		for _, line := range strings.Split(text, "\n") {
			_, p, ok := strings.Cut(line, "/etc/aiops/secrets/")
			if !ok {
				continue
			}
			p = "/etc/aiops/secrets/" + strings.TrimSpace(p)
			if !secretMounted(pt, c, p) {
				t.Errorf("%s: config names %s, which no Secret volume provides", name, p)
			}
		}
	}
}

func secretMounted(pt corev1.PodTemplateSpec, c corev1.Container, path string) bool {
	for _, m := range c.VolumeMounts {
		if filepath.Dir(path) != m.MountPath {
			continue
		}
		for _, v := range pt.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path == filepath.Base(path) {
					// A Secret readable by others is refused by aiops
					// (admin token) or a leak (passwords).
					return v.Secret.DefaultMode != nil && *v.Secret.DefaultMode&0o077 == 0
				}
			}
		}
	}
	return false
}

func checkSelectors(t *testing.T, r rendered) {
	t.Helper()
	sel := func(ls *metav1.LabelSelector) labels.Selector {
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	deployments := map[string]bool{}
	for _, o := range r.objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			deployments[d.Name] = true
		}
	}
	for _, o := range r.objs {
		switch o := o.(type) {
		case *corev1.Service:
			if !r.selects(labels.SelectorFromSet(o.Spec.Selector)) {
				t.Errorf("Service %s selects no pods", o.Name)
			}
		case *policyv1.PodDisruptionBudget:
			if !r.selects(sel(o.Spec.Selector)) {
				t.Errorf("PodDisruptionBudget %s selects no pods", o.Name)
			}
		case *networkingv1.NetworkPolicy:
			if !r.selects(sel(&o.Spec.PodSelector)) {
				t.Errorf("NetworkPolicy %s selects no pods", o.Name)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if o.Spec.ScaleTargetRef.Kind != "Deployment" || !deployments[o.Spec.ScaleTargetRef.Name] {
				t.Errorf("HorizontalPodAutoscaler %s scales %+v, not a rendered Deployment", o.Name, o.Spec.ScaleTargetRef)
			}
		case *monitoringv1.ServiceMonitor:
			if o.Spec.Endpoints[0].Authorization == nil {
				t.Errorf("ServiceMonitor %s scrapes /metrics without a token", o.Name)
			}
		}
	}
}

// The remediation driver restarts (patches) and scales workloads; it
// needs nothing else.
var allowedRules = map[string][]string{
	"deployments":        {"get", "list", "watch", "patch"},
	"statefulsets":       {"get", "list", "watch", "patch"},
	"deployments/scale":  {"get", "update", "patch"},
	"statefulsets/scale": {"get", "update", "patch"},
}

func checkRBAC(t *testing.T, r rendered) {
	t.Helper()
	for _, o := range r.objs {
		switch o := o.(type) {
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding:
			t.Errorf("cluster-wide RBAC rendered: %T", o)
		case *rbacv1.Role:
			if o.Namespace == "" {
				t.Errorf("Role %s has no namespace", o.Name)
			}
			for _, rule := range o.Rules {
				if !slices.Equal(rule.APIGroups, []string{"apps"}) {
					t.Errorf("Role %s: API groups %v", o.Name, rule.APIGroups)
				}
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						if !slices.Contains(allowedRules[res], v) {
							t.Errorf("Role %s grants %s on %s", o.Name, v, res)
						}
					}
				}
			}
		case *rbacv1.RoleBinding:
			if len(o.Subjects) != 1 || o.Subjects[0].Kind != "ServiceAccount" || o.Subjects[0].Namespace != "observability" {
				t.Errorf("RoleBinding %s binds %+v, want the release's service account", o.Name, o.Subjects)
			}
		}
	}
}

// TestChartRefusesBadValues: values that cannot work fail the render with
// a message naming the key, rather than deploying something broken.
func TestChartRefusesBadValues(t *testing.T) {
	helm := clitest.Helm(t)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{[]string{"mode=scaled"}, "adminToken.existingSecret"},
		{[]string{"mode=cluster"}, "mode: must be allInOne or scaled"},
		{[]string{"remediation.kubernetes.enabled=true"}, "remediation.kubernetes.namespaces"},
		{[]string{"serviceMonitor.enabled=true"}, "serviceMonitor.tokenSecret.name"},
	} {
		args := []string{"template", "rel", chart}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		_, err := helmRun(t, helm, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--set %v: %v, want an error naming %q", c.set, err, c.want)
		}
	}
}

// TestDecoderIsStrict: the decoder the tests above rely on refuses a
// misspelt field, so their passing means something.
func TestDecoderIsStrict(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\nspec:\n  replica: 2\n"
	if _, err := decodeAll(decoder(t), []byte(doc)); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("misspelt field decoded: %v", err)
	}
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
