package k8s

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orders-service/configs"
)

// secretName is the Secret the manifests read and README tells the operator to
// create; secretExample documents its keys.
const (
	secretName    = "orders-service"
	secretExample = "secret.example.env"
	// shutdownMargin is what the grace period must hold beyond the preStop
	// sleep and pipeline.shutdown_timeout: HTTP shutdown and closing the clients.
	shutdownMargin = 5 * time.Second
)

// secretEnv are the settings that must come from the Secret, never from a
// ConfigMap or a literal in the manifests.
var secretEnv = []string{
	"ORDERS_POSTGRES_DSN", "ORDERS_POSTGRES_READ_DSN", "ORDERS_API_TOKEN",
	"ORDERS_KAFKA_SASL_PASSWORD", "ORDERS_KAFKA_SSL_KEY_PASSWORD",
}

// variant is one kustomization and what it must provide.
type variant struct {
	dir         string
	minReplicas int32
	// minAvailable is how many pods a voluntary disruption (the PDB) must leave.
	minAvailable int32
}

var variants = []variant{
	{dir: "base", minReplicas: 1, minAvailable: 0},
	{dir: "overlays/replicas", minReplicas: 2, minAvailable: 1},
}

// apiVersions are the kinds the manifests may contain, with their API version.
var apiVersions = map[string]string{
	"StatefulSet":         "apps/v1",
	"Service":             "v1",
	"ConfigMap":           "v1",
	"PodDisruptionBudget": "policy/v1",
}

// manifests is one rendered variant, decoded into the Kubernetes API types.
type manifests struct {
	set        *appsv1.StatefulSet
	services   []*corev1.Service
	configMaps []*corev1.ConfigMap
	pdbs       []*policyv1.PodDisruptionBudget
}

func (m *manifests) deepCopy() *manifests {
	c := &manifests{}
	if m.set != nil {
		c.set = m.set.DeepCopy()
	}
	for _, s := range m.services {
		c.services = append(c.services, s.DeepCopy())
	}
	for _, cm := range m.configMaps {
		c.configMaps = append(c.configMaps, cm.DeepCopy())
	}
	for _, p := range m.pdbs {
		c.pdbs = append(c.pdbs, p.DeepCopy())
	}
	return c
}

// render builds the kustomization in dir (relative to this package) with
// kustomize's library on the real file system and decodes every object.
func render(dir string) (*manifests, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	m := &manifests{}
	for _, r := range res.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		if err := m.decode(doc); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	return m, nil
}

// decode adds one object to m, strictly: an unknown kind, API version or field
// (a typo, a field of another Kubernetes release) is an error.
func (m *manifests) decode(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	want, ok := apiVersions[tm.Kind]
	if !ok {
		return fmt.Errorf("unknown kind %q (the checks know %v)", tm.Kind, sortedKeys(apiVersions))
	}
	if tm.APIVersion != want {
		return fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, want)
	}
	strict := func(into any) error {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		return nil
	}
	switch tm.Kind {
	case "StatefulSet":
		if m.set != nil {
			return errors.New("more than one StatefulSet")
		}
		m.set = &appsv1.StatefulSet{}
		return strict(m.set)
	case "Service":
		s := &corev1.Service{}
		m.services = append(m.services, s)
		return strict(s)
	case "ConfigMap":
		cm := &corev1.ConfigMap{}
		m.configMaps = append(m.configMaps, cm)
		return strict(cm)
	default: // PodDisruptionBudget
		p := &policyv1.PodDisruptionBudget{}
		m.pdbs = append(m.pdbs, p)
		return strict(p)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// readSecretExample returns the keys and example values of the documented Secret.
func readSecretExample(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: not KEY=VALUE: %q", path, line)
		}
		out[k] = v
	}
	return out, sc.Err()
}

// problems collects what check finds.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New(strings.Join(p, "\n"))
}

// check returns every way m breaks what the service needs, or nil. secret holds
// the documented Secret's keys and example values.
func check(m *manifests, v variant, secret map[string]string) error {
	var p problems
	if m.set == nil {
		p.addf("no StatefulSet")
		return p.err()
	}
	set := m.set
	pod := &set.Spec.Template
	podLabels := labels.Set(pod.Labels)
	replicas := int32(1)
	if set.Spec.Replicas != nil {
		replicas = *set.Spec.Replicas
	}
	if replicas < v.minReplicas {
		p.addf("replicas %d, want >= %d", replicas, v.minReplicas)
	}
	if !matches(set.Spec.Selector, podLabels) {
		p.addf("the StatefulSet's selector does not match its pod labels %v", podLabels)
	}
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "orders-service" {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		p.addf("no container named orders-service")
		return p.err()
	}

	// The configuration the pod would start with, loaded by the service's own loader.
	podName := fmt.Sprintf("%s-%d", set.Name, replicas-1)
	environ := podEnv(&p, m, c, podName, secret)
	cfg, err := configs.Load("", environ)
	if err != nil {
		p.addf("the pod's environment does not load: %v", err)
		return p.err()
	}
	if err := cfg.RequireDSN(); err != nil {
		p.addf("%v", err)
	}
	if cfg.Kafka.InstanceID != podName {
		p.addf("kafka.instance_id is %q, want the pod name %q (static group membership)", cfg.Kafka.InstanceID, podName)
	}
	if replicas > 1 && !cfg.Cache.Feed {
		p.addf("cache.feed is off with %d replicas: the instances' caches would not be coherent", replicas)
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		p.addf("enableServiceLinks must be false: service links add ORDERS_* variables the service rejects")
	}

	// Ports and probes.
	_, portText, err := net.SplitHostPort(cfg.HTTP.Addr)
	httpPort, _ := strconv.Atoi(portText)
	if err != nil || httpPort == 0 {
		p.addf("http.addr %q has no port", cfg.HTTP.Addr)
	}
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return int(cp.ContainerPort) == httpPort }) {
		p.addf("no container port %d (http.addr %s)", httpPort, cfg.HTTP.Addr)
	}
	probe := func(name string, pr *corev1.Probe, paths ...string) {
		if pr == nil {
			p.addf("no %s probe", name)
			return
		}
		if pr.HTTPGet == nil {
			p.addf("%s probe is not an HTTP GET", name)
			return
		}
		if !slices.Contains(paths, pr.HTTPGet.Path) {
			p.addf("%s probe path %q, want %v", name, pr.HTTPGet.Path, paths)
		}
		if got := containerPort(c, pr.HTTPGet.Port); got != httpPort {
			p.addf("%s probe port %s is container port %d, want %d (http.addr %s)", name, pr.HTTPGet.Port.String(), got, httpPort, cfg.HTTP.Addr)
		}
	}
	probe("readiness", c.ReadinessProbe, "/ready")
	probe("liveness", c.LivenessProbe, "/health")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/health", "/ready")
	}

	// Shutdown: endpoints removed (preStop), then SIGTERM, then the drain.
	var preStop time.Duration
	switch l := c.Lifecycle; {
	case l == nil || l.PreStop == nil:
		p.addf("no preStop hook: the pod would get SIGTERM while still in the Service's endpoints")
	case l.PreStop.Sleep != nil:
		preStop = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
	default:
		p.addf("preStop is not a sleep action")
	}
	grace := 30 * time.Second // the Kubernetes default
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	if need := preStop + cfg.Pipeline.ShutdownTimeout + shutdownMargin; grace < need {
		p.addf("terminationGracePeriodSeconds %s < preStop %s + pipeline.shutdown_timeout %s + margin %s",
			grace, preStop, cfg.Pipeline.ShutdownTimeout, shutdownMargin)
	}

	// Memory: the limit holds what the service itself derives from the same settings.
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	switch {
	case !ok:
		p.addf("no memory limit")
	case limit.Value() < cfg.MemoryNeed():
		p.addf("memory limit %s (%d MiB) < the memory need %d MiB (cache.max_bytes %d + 8 x pipeline.max_inflight_bytes %d + 104 MiB)",
			limit.String(), limit.Value()>>20, cfg.MemoryNeed()>>20, cfg.Cache.MaxBytes, cfg.Pipeline.MaxInFlightBytes)
	}
	if req, ok := c.Resources.Requests[corev1.ResourceMemory]; !ok || (limit.Value() > 0 && req.Cmp(limit) > 0) {
		p.addf("memory request %v missing or above the limit %s", c.Resources.Requests.Memory(), limit.String())
	}
	if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
		p.addf("no CPU request")
	}

	checkSecurity(&p, pod, c)

	// Services and the disruption budget select these pods.
	var clusterIP bool
	for _, s := range m.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			p.addf("Service %s selector %v does not match the pod labels %v", s.Name, s.Spec.Selector, podLabels)
		}
		for _, sp := range s.Spec.Ports {
			if got := containerPort(c, sp.TargetPort); got != httpPort {
				p.addf("Service %s port %s targets container port %d, want %d", s.Name, sp.Name, got, httpPort)
			}
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone && (s.Spec.Type == "" || s.Spec.Type == corev1.ServiceTypeClusterIP) {
			clusterIP = true
		}
	}
	if !clusterIP {
		p.addf("no ClusterIP Service for HTTP")
	}
	if !slices.ContainsFunc(m.services, func(s *corev1.Service) bool {
		return s.Name == set.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone
	}) {
		p.addf("serviceName %q is not a rendered headless Service", set.Spec.ServiceName)
	}
	checkDisruption(&p, m.pdbs, podLabels, replicas, v)
	if replicas > 1 && !spreadOverNodes(pod) {
		p.addf("%d replicas without a topology spread constraint or anti-affinity over kubernetes.io/hostname for these pods", replicas)
	}
	return p.err()
}

// podEnv returns the environment the container starts with: envFrom, then env
// (env wins in Kubernetes, but setting one name twice is reported). Every name
// must be a configuration variable; secrets must come from the documented Secret.
func podEnv(p *problems, m *manifests, c *corev1.Container, podName string, secret map[string]string) []string {
	known := map[string]bool{}
	for _, n := range configs.EnvNames() {
		known[n] = true
	}
	values := map[string]string{}
	set := func(name, value, from string) {
		switch {
		case name == "GOMEMLIMIT":
			p.addf("GOMEMLIMIT (from %s) is set: the service derives its Go memory limit itself (configs.Config.GoMemoryLimit)", from)
		case !known[name]:
			p.addf("%s (from %s) is not a configuration variable (configs.EnvNames)", name, from)
		}
		if slices.Contains(secretEnv, name) && !strings.HasPrefix(from, "Secret ") {
			p.addf("%s comes from %s, want the Secret %s", name, from, secretName)
		}
		if _, dup := values[name]; dup {
			p.addf("%s is set twice", name)
		}
		values[name] = value
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			p.addf("envFrom other than a ConfigMap: name the Secret's keys one by one")
			continue
		}
		i := slices.IndexFunc(m.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == ef.ConfigMapRef.Name })
		if i < 0 {
			p.addf("envFrom ConfigMap %q is not rendered", ef.ConfigMapRef.Name)
			continue
		}
		for _, k := range sortedKeys(m.configMaps[i].Data) {
			set(k, m.configMaps[i].Data[k], "ConfigMap "+ef.ConfigMapRef.Name)
		}
	}
	for _, e := range c.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			set(e.Name, e.Value, "a literal")
		case vf.FieldRef != nil:
			if vf.FieldRef.FieldPath != "metadata.name" {
				p.addf("%s from field %s: only metadata.name (the pod name) is checked", e.Name, vf.FieldRef.FieldPath)
			}
			set(e.Name, podName, "the pod's metadata.name")
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			val, documented := secret[ref.Key]
			if ref.Name != secretName || !documented {
				p.addf("%s from Secret %s key %s: not a key of the documented Secret %s (%s)", e.Name, ref.Name, ref.Key, secretName, secretExample)
			}
			set(e.Name, val, "Secret "+ref.Name)
		default:
			p.addf("%s: unsupported valueFrom", e.Name)
		}
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "ORDERS_KAFKA_INSTANCE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		p.addf("ORDERS_KAFKA_INSTANCE_ID is not the pod's metadata.name (static group membership)")
	}
	for _, k := range sortedKeys(secret) {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Key == k
		}) {
			p.addf("the documented Secret key %s is not read by the container", k)
		}
	}
	out := make([]string, 0, len(values))
	for _, k := range sortedKeys(values) {
		out = append(out, k+"="+values[k])
	}
	return out
}

// containerPort resolves a probe's or Service's port (a number or a port name)
// to the container's port number; 0 if it names no port.
func containerPort(c *corev1.Container, port intstr.IntOrString) int {
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func matches(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && s.Matches(set)
}

// checkSecurity: non-root, read-only root file system, no capabilities, no
// privilege escalation, the runtime's default seccomp profile.
func checkSecurity(p *problems, pod *corev1.PodTemplateSpec, c *corev1.Container) {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	nonRoot := psc.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if !isTrue(nonRoot) {
		p.addf("runAsNonRoot is not true")
	}
	if uid := sc.RunAsUser; (uid != nil && *uid == 0) || (uid == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		p.addf("runs as uid 0")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		p.addf("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.addf("allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.addf("privileged")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		p.addf("capabilities: want drop [ALL] and nothing added")
	}
	seccomp := psc.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.addf("seccompProfile is not RuntimeDefault")
	}
}

// checkDisruption: one PDB selecting these pods that leaves v.minAvailable of
// them through a voluntary disruption and still lets a drain evict one.
func checkDisruption(p *problems, pdbs []*policyv1.PodDisruptionBudget, podLabels labels.Set, replicas int32, v variant) {
	if len(pdbs) != 1 {
		p.addf("%d PodDisruptionBudgets, want 1", len(pdbs))
		return
	}
	pdb := pdbs[0]
	if !matches(pdb.Spec.Selector, podLabels) {
		p.addf("PodDisruptionBudget %s selector does not match the pod labels %v", pdb.Name, podLabels)
	}
	var available int32
	switch {
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(replicas), true)
		if err != nil {
			p.addf("PodDisruptionBudget maxUnavailable: %v", err)
			return
		}
		available = replicas - int32(n)
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable == nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(replicas), true)
		if err != nil {
			p.addf("PodDisruptionBudget minAvailable: %v", err)
			return
		}
		available = int32(n)
	default:
		p.addf("PodDisruptionBudget: want exactly one of minAvailable and maxUnavailable")
		return
	}
	if available < v.minAvailable {
		p.addf("PodDisruptionBudget leaves %d of %d pods during a disruption, want >= %d (ingestion keeps running)", available, replicas, v.minAvailable)
	}
	if available >= replicas {
		p.addf("PodDisruptionBudget allows no eviction of %d pods: a node drain would block", replicas)
	}
}

// spreadOverNodes reports whether the pods are kept apart by node: a
// DoNotSchedule topology spread constraint or a pod anti-affinity on
// kubernetes.io/hostname that selects them.
func spreadOverNodes(pod *corev1.PodTemplateSpec) bool {
	set := labels.Set(pod.Labels)
	for _, tsc := range pod.Spec.TopologySpreadConstraints {
		if tsc.TopologyKey == corev1.LabelHostname && tsc.MaxSkew == 1 && tsc.WhenUnsatisfiable == corev1.DoNotSchedule &&
			matches(tsc.LabelSelector, set) {
			return true
		}
	}
	if a := pod.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if t.TopologyKey == corev1.LabelHostname && matches(t.LabelSelector, set) {
				return true
			}
		}
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if w.PodAffinityTerm.TopologyKey == corev1.LabelHostname && matches(w.PodAffinityTerm.LabelSelector, set) {
				return true
			}
		}
	}
	return false
}
