package k8s

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Every variant renders with kustomize, decodes strictly into the Kubernetes API
// types and keeps the invariants of check. This is all the validation done here:
// there is no cluster (and no kubectl) on the build machines, so nothing is
// applied or dry-run against an API server.
func TestManifests(t *testing.T) {
	secret, err := readSecretExample(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			m, err := render(v.dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := check(m, v, secret); err != nil {
				t.Fatalf("%s breaks the service's needs:\n%v", v.dir, err)
			}
			c := m.set.Spec.Template.Spec.Containers[0]
			t.Logf("%s: %d replicas, %d services, %d config maps, memory limit %s, grace %ds",
				v.dir, *m.set.Spec.Replicas, len(m.services), len(m.configMaps),
				c.Resources.Limits.Memory().String(), *m.set.Spec.Template.Spec.TerminationGracePeriodSeconds)
		})
	}
}

// The committed Secret example holds placeholders, never a credential: every
// value that is not empty says CHANGE-ME.
func TestSecretExampleHoldsNoSecret(t *testing.T) {
	secret, err := readSecretExample(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) == 0 {
		t.Fatal("no keys in " + secretExample)
	}
	for k, v := range secret {
		if v != "" && !strings.Contains(v, "CHANGE-ME") {
			t.Errorf("%s: %s has a value without CHANGE-ME; the example must not hold a real secret", secretExample, k)
		}
	}
}

// Each check reports the breakage it is there for: a rendered variant, broken
// in one way, fails check with a message that names it.
func TestChecksCatchBreakage(t *testing.T) {
	secret, err := readSecretExample(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	rendered := map[string]*manifests{}
	for _, v := range variants {
		if rendered[v.dir], err = render(v.dir); err != nil {
			t.Fatal(err)
		}
	}
	base, replicas := variants[0], variants[1]
	container := func(m *manifests) *corev1.Container { return &m.set.Spec.Template.Spec.Containers[0] }
	env := func(m *manifests, name string) *corev1.EnvVar {
		c := container(m)
		for i := range c.Env {
			if c.Env[i].Name == name {
				return &c.Env[i]
			}
		}
		t.Fatalf("no env %s", name)
		return nil
	}
	configData := func(m *manifests) map[string]string { return m.configMaps[0].Data }
	cases := []struct {
		name   string
		v      variant
		mutate func(m *manifests)
		want   string
	}{
		{"readiness on /health", base, func(m *manifests) { container(m).ReadinessProbe.HTTPGet.Path = "/health" }, "readiness probe path"},
		{"liveness on /ready", base, func(m *manifests) { container(m).LivenessProbe.HTTPGet.Path = "/ready" }, "liveness probe path"},
		{"no liveness probe", base, func(m *manifests) { container(m).LivenessProbe = nil }, "no liveness probe"},
		{"probe on another port", base, func(m *manifests) {
			container(m).ReadinessProbe.HTTPGet.Port = intstr.FromInt32(9090)
		}, "readiness probe port"},
		{"http.addr moved, port not", base, func(m *manifests) { configData(m)["ORDERS_HTTP_ADDR"] = ":9000" }, "no container port 9000"},
		{"grace shorter than the drain", base, func(m *manifests) {
			m.set.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		}, "terminationGracePeriodSeconds"},
		{"longer shutdown timeout in the ConfigMap", base, func(m *manifests) {
			configData(m)["ORDERS_PIPELINE_SHUTDOWN_TIMEOUT"] = "60s"
		}, "pipeline.shutdown_timeout 1m0s"},
		{"no preStop", base, func(m *manifests) { container(m).Lifecycle = nil }, "no preStop hook"},
		{"memory limit under the need", base, func(m *manifests) {
			container(m).Resources.Limits[corev1.ResourceMemory] = resource.MustParse("400Mi")
		}, "memory limit 400Mi"},
		{"cache raised, limit not", replicas, func(m *manifests) {
			configData(m)["ORDERS_CACHE_MAX_BYTES"] = "536870912"
		}, "memory need 744 MiB"},
		{"GOMEMLIMIT set by hand", base, func(m *manifests) {
			container(m).Env = append(container(m).Env, corev1.EnvVar{Name: "GOMEMLIMIT", Value: "400MiB"})
		}, "GOMEMLIMIT (from a literal) is set"},
		{"unknown ORDERS_ variable", base, func(m *manifests) { configData(m)["ORDERS_CACHE_SIZE"] = "1" }, "ORDERS_CACHE_SIZE (from ConfigMap"},
		{"bad value", base, func(m *manifests) { configData(m)["ORDERS_KAFKA_BROKERS"] = "kafka" }, "ORDERS_KAFKA_BROKERS"},
		{"token in the ConfigMap", base, func(m *manifests) {
			configData(m)["ORDERS_API_TOKEN"] = "t0ken"
		}, "ORDERS_API_TOKEN comes from ConfigMap"},
		{"undocumented Secret key", base, func(m *manifests) {
			env(m, "ORDERS_API_TOKEN").ValueFrom.SecretKeyRef.Key = "api-token"
		}, "not a key of the documented Secret"},
		{"another Secret", base, func(m *manifests) {
			env(m, "ORDERS_POSTGRES_DSN").ValueFrom.SecretKeyRef.Name = "db"
		}, "from Secret db key ORDERS_POSTGRES_DSN"},
		{"instance id not the pod name", base, func(m *manifests) {
			env(m, "ORDERS_KAFKA_INSTANCE_ID").ValueFrom.FieldRef.FieldPath = "metadata.uid"
		}, "ORDERS_KAFKA_INSTANCE_ID is not the pod's metadata.name"},
		{"instance id fixed", replicas, func(m *manifests) {
			*env(m, "ORDERS_KAFKA_INSTANCE_ID") = corev1.EnvVar{Name: "ORDERS_KAFKA_INSTANCE_ID", Value: "orders"}
		}, "kafka.instance_id is \"orders\""},
		{"service links on", base, func(m *manifests) { m.set.Spec.Template.Spec.EnableServiceLinks = nil }, "enableServiceLinks"},
		{"PDB selects other pods", replicas, func(m *manifests) {
			m.pdbs[0].Spec.Selector.MatchLabels = map[string]string{"app.kubernetes.io/name": "orders"}
		}, "PodDisruptionBudget orders-service selector"},
		{"PDB lets every pod go", replicas, func(m *manifests) {
			m.pdbs[0].Spec.MaxUnavailable = ptr.To(intstr.FromString("100%"))
		}, "leaves 0 of 3 pods"},
		{"PDB blocks drains", replicas, func(m *manifests) {
			m.pdbs[0].Spec.MaxUnavailable = nil
			m.pdbs[0].Spec.MinAvailable = ptr.To(intstr.FromInt32(3))
		}, "a node drain would block"},
		{"one replica in the overlay", replicas, func(m *manifests) { m.set.Spec.Replicas = ptr.To[int32](1) }, "replicas 1, want >= 2"},
		{"feed off with replicas", replicas, func(m *manifests) { configData(m)["ORDERS_CACHE_FEED"] = "false" }, "cache.feed is off"},
		{"no spread over nodes", replicas, func(m *manifests) {
			m.set.Spec.Template.Spec.TopologySpreadConstraints = nil
		}, "without a topology spread constraint"},
		{"Service selects nothing", base, func(m *manifests) {
			m.services[0].Spec.Selector = map[string]string{"app": "x"}
		}, "does not match the pod labels"},
		{"Service targets a wrong port", base, func(m *manifests) {
			m.services[0].Spec.Ports[0].TargetPort = intstr.FromString("metrics")
		}, "targets container port 0"},
		{"root", base, func(m *manifests) {
			container(m).SecurityContext.RunAsNonRoot = ptr.To(false)
		}, "runAsNonRoot is not true"},
		{"writable root", base, func(m *manifests) {
			container(m).SecurityContext.ReadOnlyRootFilesystem = nil
		}, "readOnlyRootFilesystem"},
		{"capabilities kept", base, func(m *manifests) {
			container(m).SecurityContext.Capabilities.Drop = nil
		}, "capabilities"},
		{"privilege escalation", base, func(m *manifests) {
			container(m).SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
		}, "allowPrivilegeEscalation"},
		{"seccomp unconfined", base, func(m *manifests) {
			m.set.Spec.Template.Spec.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined
		}, "seccompProfile"},
		{"ConfigMap not rendered", base, func(m *manifests) { m.configMaps = nil }, "is not rendered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := rendered[tc.v.dir].deepCopy()
			tc.mutate(m)
			err := check(m, tc.v, secret)
			if err == nil {
				t.Fatalf("check passed; want a problem containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("check reported:\n%v\nwant a problem containing %q", err, tc.want)
			}
		})
	}

	t.Run("documented Secret key not read", func(t *testing.T) {
		more := map[string]string{"ORDERS_KAFKA_SSL_KEY_PASSWORD": ""}
		for k, v := range secret {
			more[k] = v
		}
		err := check(rendered[base.dir].deepCopy(), base, more)
		if err == nil || !strings.Contains(err.Error(), "documented Secret key ORDERS_KAFKA_SSL_KEY_PASSWORD is not read") {
			t.Fatalf("check: %v", err)
		}
	})
}

// Decoding is strict: an unknown field, kind or API version fails.
func TestDecodeIsStrict(t *testing.T) {
	m, err := render("base")
	if err != nil {
		t.Fatal(err)
	}
	good, err := yaml.Marshal(m.set)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&manifests{}).decode(good); err != nil {
		t.Fatalf("the rendered StatefulSet does not decode again: %v", err)
	}
	cases := []struct {
		name, doc, want string
	}{
		{"misspelt field", strings.Replace(string(good), "readinessProbe:", "readynessProbe:", 1), "unknown field"},
		{"field in the wrong place", strings.Replace(string(good), "replicas: 1", "replicas: 1\n  terminationGracePeriodSeconds: 45", 1), "unknown field"},
		{"wrong API version", strings.Replace(string(good), "apiVersion: apps/v1", "apiVersion: apps/v1beta2", 1), "apiVersion"},
		{"unknown kind", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n", "unknown kind"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n", "already set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.doc == string(good) {
				t.Fatal("the case did not change the document")
			}
			err := (&manifests{}).decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
