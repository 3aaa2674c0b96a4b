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
	"go.yaml.in/yaml/v3"
)

// loadCompose loads ../docker-compose.yaml the way `docker compose --profile produce`
// would, without the caller's environment, so the file's own defaults apply.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yaml")},
		cli.WithWorkingDirectory(root),
		cli.WithProfiles([]string{"produce"}),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yaml: %v", err)
	}
	return p
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
		"orders-service": 8081,
		"kafka":          19092,
		"kafka-ui":       8080,
		"prometheus":     9090,
		"grafana":        3000,
		"jaeger":         16686,
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

func TestPrometheusScrapesService(t *testing.T) {
	raw, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "orders-service:8081") && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
				return
			}
		}
	}
	t.Fatalf("prometheus.yml has no job scraping orders-service:8081/metrics: %+v", cfg.ScrapeConfigs)
}
