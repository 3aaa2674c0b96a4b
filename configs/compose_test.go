package configs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeSecrets are what configs/compose-env.sh writes to .env: the stack has
// no default credentials.
var composeSecrets = []string{"ORDERS_API_TOKEN=t", "GRAFANA_ADMIN_PASSWORD=g", "KAFKA_UI_PASSWORD=k"}

// loadCompose loads ../docker-compose.yaml the way `docker compose --profile produce`
// would, with only the secrets as its environment (not the caller's, nor a .env),
// so the file's own defaults apply.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadComposeWith(composeSecrets)
	if err != nil {
		t.Fatalf("load docker-compose.yaml: %v", err)
	}
	return p
}

func loadComposeWith(env []string) (*types.Project, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root),
		cli.WithProfiles([]string{"produce"}),
		cli.WithResolvedPaths(true),
		cli.WithEnv(env),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// The admin tools (Kafka UI, Prometheus, Grafana, Jaeger) listen on 127.0.0.1
// only, and without their secrets in the environment the stack does not start
// (no default password).
func TestComposeAdminToolsLocalAndWithoutDefaultCredentials(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"kafka-ui", "prometheus", "grafana", "jaeger", "postgres", "kafka"} {
		for _, pc := range service(t, p, name).Ports {
			if pc.Published != "" && pc.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %d on %q, want 127.0.0.1 only", name, pc.Target, pc.HostIP)
			}
		}
	}
	g := service(t, p, "grafana").Environment["GF_SECURITY_ADMIN_PASSWORD"]
	if g == nil || *g != "g" {
		t.Errorf("grafana's admin password %v does not come from GRAFANA_ADMIN_PASSWORD", g)
	}
	ui := service(t, p, "kafka-ui").Environment
	if a := ui["AUTH_TYPE"]; a == nil || *a != "LOGIN_FORM" || ui["SPRING_SECURITY_USER_PASSWORD"] == nil || *ui["SPRING_SECURITY_USER_PASSWORD"] != "k" {
		t.Errorf("kafka-ui without a login from KAFKA_UI_PASSWORD: %v", ui)
	}
	for i, secret := range composeSecrets {
		env := slices.Delete(slices.Clone(composeSecrets), i, i+1)
		name, _, _ := strings.Cut(secret, "=")
		if _, err := loadComposeWith(env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s the stack loads (%v): it must not fall back to a default", name, err)
		}
	}
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %q: %v", name, err)
	}
	return s
}

func TestComposeServicesAndPorts(t *testing.T) {
	p := loadCompose(t)
	// service -> container port that must be published on the same host port
	published := map[string]uint32{
		"proxy":      8081, // in front of every orders-service replica
		"kafka":      19092,
		"kafka-ui":   8080,
		"prometheus": 9090,
		"grafana":    3000,
		"jaeger":     16686,
	}
	for name, port := range published {
		s := service(t, p, name)
		if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool {
			return pc.Target == port && pc.Published == strconv.FormatUint(uint64(port), 10)
		}) {
			t.Errorf("%s: port %d not published as %d: %+v", name, port, port, s.Ports)
		}
	}
	pg := service(t, p, "postgres")
	if !slices.ContainsFunc(pg.Ports, func(pc types.ServicePortConfig) bool { return pc.Target == 5432 && pc.Published != "" }) {
		t.Errorf("postgres: 5432 not published: %+v", pg.Ports)
	}
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", pg.Image)
	}
	if k := service(t, p, "kafka"); !strings.HasPrefix(k.Image, "apache/kafka:4.") {
		t.Errorf("kafka image %q, want apache/kafka:4.x", k.Image)
	}

	svc := service(t, p, "orders-service")
	if svc.Build == nil {
		t.Errorf("orders-service is not built from the Dockerfile")
	}
	prod := service(t, p, "produce")
	if !slices.Contains(prod.Profiles, "produce") {
		t.Errorf("produce: profiles %v, want [produce]", prod.Profiles)
	}
	if len(prod.Command) == 0 || prod.Command[0] != "produce" {
		t.Errorf("produce: command %v does not run the produce subcommand", prod.Command)
	}
	if prod.Image != svc.Image {
		t.Errorf("produce image %q differs from the service's %q", prod.Image, svc.Image)
	}
}

func TestComposeHealthchecksAndDependencies(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"kafka", "postgres", "orders-service"} {
		s := service(t, p, name)
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s: no usable healthcheck: %+v", name, s.HealthCheck)
		}
	}
	if hc := service(t, p, "orders-service").HealthCheck; hc != nil && !strings.Contains(strings.Join(hc.Test, " "), "/health") {
		t.Errorf("orders-service healthcheck %v does not hit /health", hc.Test)
	}
	svc := service(t, p, "orders-service")
	for _, dep := range []string{"kafka", "postgres"} {
		d, ok := svc.DependsOn[dep]
		if !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("orders-service must depend on %s being healthy, got %+v", dep, d)
		}
	}
}

// TestComposeScalesService checks what `docker compose up --scale orders-service=N`
// needs: no fixed host port, no fixed container name and no static group member id
// shared by every replica.
func TestComposeScalesService(t *testing.T) {
	p := loadCompose(t)
	svc := service(t, p, "orders-service")
	for _, pc := range svc.Ports {
		if pc.Published != "" {
			t.Errorf("orders-service publishes host port %s (container %d): a second replica could not bind it; publish through the proxy", pc.Published, pc.Target)
		}
	}
	if !slices.Contains(svc.Expose, "8081") {
		t.Errorf("orders-service: expose %v, want 8081 (the proxy and Prometheus reach it there)", svc.Expose)
	}
	if svc.ContainerName != "" {
		t.Errorf("orders-service: container_name %q prevents scaling", svc.ContainerName)
	}
	if v := svc.Environment["ORDERS_KAFKA_INSTANCE_ID"]; v != nil && *v != "" {
		t.Errorf("orders-service: ORDERS_KAFKA_INSTANCE_ID=%q would be the same static member id (and transactional id) in every replica", *v)
	}
}

// TestComposeProxy checks the load balancer in front of the replicas: it publishes the
// service's port, waits for a healthy replica, mounts its configuration, and that
// configuration resolves the orders-service name at run time through Docker's DNS and
// skips a replica that fails.
func TestComposeProxy(t *testing.T) {
	p := loadCompose(t)
	px := service(t, p, "proxy")
	if !strings.HasPrefix(px.Image, "nginx:1.27") {
		t.Errorf("proxy image %q, want nginx:1.27-alpine (upstream `resolve` needs nginx >= 1.27.3)", px.Image)
	}
	if d, ok := px.DependsOn["orders-service"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("proxy must depend on orders-service being healthy, got %+v", px.DependsOn)
	}
	if px.HealthCheck == nil || !strings.Contains(strings.Join(px.HealthCheck.Test, " "), "/health") {
		t.Errorf("proxy: healthcheck %+v does not hit /health through the proxy", px.HealthCheck)
	}
	conf := ""
	for _, v := range px.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == "/etc/nginx/nginx.conf" {
			conf = v.Source
		}
	}
	if conf == "" || !strings.HasSuffix(conf, filepath.Join("configs", "nginx", "nginx.conf")) {
		t.Fatalf("proxy: configs/nginx/nginx.conf is not mounted at /etc/nginx/nginx.conf (volumes: %+v)", px.Volumes)
	}
	raw, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	// Directives, comments dropped, whitespace collapsed.
	var directives []string
	for _, line := range strings.Split(string(raw), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.Join(strings.Fields(line), " "); line != "" {
			directives = append(directives, line)
		}
	}
	has := func(prefix string) bool {
		return slices.ContainsFunc(directives, func(d string) bool { return strings.HasPrefix(d, prefix) })
	}
	for _, want := range []struct{ prefix, why string }{
		{"listen 8081;", "the published port"},
		{"resolver 127.0.0.11 ", "Docker's DNS, so scaled replicas are found"},
		{"zone ", "a shared zone, required by `resolve`"},
		{"server orders-service:8081 resolve", "the app service, re-resolved at run time"},
		{"proxy_pass http://orders_service;", "the upstream group"},
		{"proxy_next_upstream error timeout", "a refusing or silent replica is skipped"},
	} {
		if !has(want.prefix) {
			t.Errorf("nginx.conf: no directive starting %q (%s)", want.prefix, want.why)
		}
	}
}

func TestComposeServiceEnvIsContract(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"orders-service", "produce"} {
		s := service(t, p, name)
		seen := 0
		for k, v := range s.Environment {
			if !strings.HasPrefix(k, "ORDERS_") {
				continue
			}
			seen++
			if !slices.Contains(EnvNames(), k) {
				t.Errorf("%s: %s is not a config variable (configs.EnvNames)", name, k)
			}
			if v == nil || *v == "" {
				t.Errorf("%s: %s has no value", name, k)
			}
		}
		if seen == 0 {
			t.Errorf("%s: no ORDERS_* variables set", name)
		}
	}
	env := service(t, p, "orders-service").Environment
	for k, want := range map[string]string{
		"ORDERS_KAFKA_BROKERS": "kafka:9092",
		"ORDERS_HTTP_ADDR":     ":8081",
	} {
		if v := env[k]; v == nil || *v != want {
			t.Errorf("orders-service: %s = %v, want %q", k, v, want)
		}
	}
	if v := env["ORDERS_POSTGRES_DSN"]; v == nil || !strings.Contains(*v, "@postgres:5432/") {
		t.Errorf("orders-service: ORDERS_POSTGRES_DSN %v does not point at the postgres service", v)
	}
}

func TestComposeMountedConfigsExist(t *testing.T) {
	p := loadCompose(t)
	mounts := 0
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			mounts++
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: bind mount source %s: %v", s.Name, v.Source, err)
			}
		}
	}
	if mounts == 0 {
		t.Fatal("no bind-mounted configs (prometheus, grafana) found")
	}
}

// TestPrometheusScrapesService checks that Prometheus scrapes every replica: the
// orders-service job discovers the service's A records (one per replica) instead of
// naming one host, and its name is the job the alert rules and the dashboard select.
func TestPrometheusScrapesService(t *testing.T) {
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
			DNSSDConfigs []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	found := false
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				if strings.HasPrefix(tg, "orders-service:") || strings.HasPrefix(tg, "proxy:") {
					t.Errorf("job %s: static target %s scrapes one replica (or a different one each time); use dns_sd_configs", sc.JobName, tg)
				}
			}
		}
		for _, sd := range sc.DNSSDConfigs {
			if !slices.Contains(sd.Names, "orders-service") {
				continue
			}
			found = true
			if sc.JobName != "orders-service" {
				t.Errorf("the job discovering orders-service is %q; rules and dashboard select job=\"orders-service\"", sc.JobName)
			}
			if sd.Type != "A" || sd.Port != 8081 {
				t.Errorf("job %s: dns_sd type %q port %d, want A and 8081", sc.JobName, sd.Type, sd.Port)
			}
			if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
				t.Errorf("job %s: metrics_path %q, want /metrics", sc.JobName, sc.MetricsPath)
			}
		}
	}
	if !found {
		t.Fatalf("prometheus.yml has no dns_sd_configs job discovering every orders-service replica: %+v", cfg.ScrapeConfigs)
	}
}
