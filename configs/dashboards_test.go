package configs

import (
	"encoding/json"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
)

// The checks here are static: that the Grafana and Prometheus files are
// well-formed and wired to each other and to docker-compose.yaml. Whether every
// metric they name is exported is checked against a running service by
// app/observability_test.go.

// grafanaDashboard is the part of a Grafana dashboard model the checks read.
type grafanaDashboard struct {
	UID    string         `json:"uid"`
	Title  string         `json:"title"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func TestGrafanaDashboardIsWellFormed(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/datasources.yml", &ds)
	promUIDs := map[string]bool{}
	for _, d := range ds.Datasources {
		if d.Type == "prometheus" {
			promUIDs[d.UID] = true
		}
	}
	if len(promUIDs) == 0 {
		t.Fatal("datasources.yml provisions no Prometheus datasource")
	}

	raw, err := os.ReadFile("grafana/dashboards/orders.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("orders.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q: both are required for stable links", d.UID, d.Title)
	}
	ids := map[int]string{}
	var rows []string
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if other, dup := ids[p.ID]; dup || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or also used by %q", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps panel %q at (%d,%d)", p.Title, other, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Datasource == nil || !promUIDs[p.Datasource.UID] {
			t.Errorf("panel %q: datasource %+v is not the provisioned Prometheus datasource", p.Title, p.Datasource)
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description (operators read it as the panel's help)", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q has an empty expression or a missing/duplicate refId", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	for _, want := range []string{"Instances", "Ingestion pipeline", "Database", "HTTP API", "Cache"} {
		if !slices.Contains(rows, want) {
			t.Errorf("dashboard lacks the %q row (rows: %v)", want, rows)
		}
	}
}

func TestComposeProvisionsDashboardsAndRules(t *testing.T) {
	p := loadCompose(t)
	// target path inside the container -> source path relative to the repository root
	mounted := func(svc string) map[string]string {
		out := map[string]string{}
		for _, v := range service(t, p, svc).Volumes {
			if v.Type == types.VolumeTypeBind {
				out[v.Target] = v.Source
			}
		}
		return out
	}

	graf := mounted("grafana")
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/dashboards.yml", &prov)
	if len(prov.Providers) == 0 {
		t.Fatal("dashboards.yml has no provider")
	}
	for _, pr := range prov.Providers {
		src, ok := graf[pr.Options.Path]
		if pr.Type != "file" || !ok {
			t.Errorf("grafana: dashboard provider path %q (type %q) is not a bind mount (mounts: %v)", pr.Options.Path, pr.Type, graf)
			continue
		}
		if _, err := os.Stat(path.Join(src, "orders.json")); err != nil {
			t.Errorf("grafana: the provider's directory does not hold orders.json: %v", err)
		}
	}
	if src, ok := graf["/etc/grafana/provisioning"]; !ok || !strings.HasSuffix(src, "configs/grafana/provisioning") {
		t.Errorf("grafana: configs/grafana/provisioning is not mounted at /etc/grafana/provisioning (mounts: %v)", graf)
	}

	prom := mounted("prometheus")
	var cfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	if len(cfg.RuleFiles) == 0 {
		t.Fatal("prometheus.yml names no rule_files")
	}
	for _, rf := range cfg.RuleFiles {
		target := rf
		if !path.IsAbs(rf) {
			target = path.Join("/etc/prometheus", rf) // relative to the mounted prometheus.yml
		}
		src, ok := prom[target]
		if !ok {
			t.Errorf("prometheus: rule file %s (%s in the container) is not mounted (mounts: %v)", rf, target, prom)
			continue
		}
		if _, err := os.Stat(src); err != nil {
			t.Errorf("prometheus: rule file source: %v", err)
		}
	}
}

func TestAlertRulesCarryRunbooks(t *testing.T) {
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "prometheus/alerts.yml", &rules)
	anchor := regexp.MustCompile(`^README\.md#([a-z0-9-]+): \S`)
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			if r.For == "" {
				t.Errorf("%s: no `for:` duration", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description annotations are required", r.Alert)
			}
			m := anchor.FindStringSubmatch(r.Annotations["runbook"])
			if m == nil || m[1] != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook %q must start with README.md#%s: and a hint", r.Alert, r.Annotations["runbook"], strings.ToLower(r.Alert))
			}
		}
	}
	for _, want := range []string{
		"OrdersServiceDown", "OrdersNoInstanceUp", "OrdersPipelineNotReady", "OrdersConsumerLagGrowing", "OrdersDLQRateHigh", "OrdersHTTPLatencyHigh",
		"OrdersCacheFeedLagging", "OrdersReplicaDown", "OrdersReplicaBehind", // several instances
	} {
		if !seen[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}
