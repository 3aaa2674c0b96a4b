package ordershttp_test

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orders-service/modules/orders/ordershttp"
)

// normPath turns fiber (":uid") and OpenAPI ("{order_uid}") parameters into "{}".
var paramRE = regexp.MustCompile(`:[A-Za-z0-9_]+|\{[A-Za-z0-9_]+\}`)

func normPath(p string) string { return paramRE.ReplaceAllString(p, "{}") }

// TestOpenAPICoversRoutes checks that every route the service registers is
// documented and every documented operation is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(ordershttp.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			fields, _ := op.(map[string]any)
			if _, ok := fields["responses"]; !ok {
				t.Errorf("%s %s documents no responses", method, p)
			}
			documented[strings.ToUpper(method)+" "+normPath(p)] = true
		}
	}

	s := newServer(t, ordershttp.Options{APIToken: testToken})
	served := map[string]bool{}
	for _, r := range s.app.GetRoutes(true) {
		if r.Method == "HEAD" { // fiber adds HEAD for every GET
			continue
		}
		served[r.Method+" "+normPath(r.Path)] = true
	}
	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes not in openapi.yaml: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("openapi.yaml documents routes that are not served: %v", extra)
	}
	if len(served) < 14 {
		t.Errorf("only %d routes registered: %v", len(served), served)
	}
}
