package ordershttp_test

import (
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orders-service/modules/kafkaview"
	"github.com/orderflow/orders-service/modules/orders"
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

// TestOpenAPIOrderSchemaMatchesModel checks the Order schema of openapi.yaml (and
// the Delivery, Payment and Item schemas it refers to) against the model: the
// properties are exactly the JSON fields, with the JSON type of the Go field, and
// the required list names the fields whose validate tag says required (plus the
// nested objects, which validation requires through their own fields).
func TestOpenAPIOrderSchemaMatchesModel(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required             []string                  `yaml:"required"`
				AdditionalProperties *bool                     `yaml:"additionalProperties"`
				Properties           map[string]map[string]any `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(ordershttp.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	const refPrefix = "#/components/schemas/"
	timeType := reflect.TypeFor[time.Time]()
	seen := map[reflect.Type]bool{}
	var check func(typ reflect.Type, schemaName string)
	check = func(typ reflect.Type, schemaName string) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		schema, ok := doc.Components.Schemas[schemaName]
		if !ok {
			t.Errorf("openapi.yaml has no schema %s for %s", schemaName, typ)
			return
		}
		if schema.AdditionalProperties == nil || *schema.AdditionalProperties {
			t.Errorf("schema %s: want additionalProperties: false (the decoder rejects unknown fields)", schemaName)
		}
		props := propertySet(schema.Properties)
		var required []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			prop, ok := schema.Properties[name]
			if !ok {
				t.Errorf("field %s.%s (%s) is not a property of schema %s in openapi.yaml", typ.Name(), f.Name, name, schemaName)
				continue
			}
			delete(props, name)
			isObject := f.Type.Kind() == reflect.Struct && f.Type != timeType
			if slices.Contains(strings.Split(f.Tag.Get("validate"), ","), "required") || isObject {
				required = append(required, name)
			}
			switch {
			case f.Type == timeType:
				if prop["type"] != "string" || prop["format"] != "date-time" {
					t.Errorf("%s.%s: want type string, format date-time; got %v", schemaName, name, prop)
				}
			case isObject:
				if prop["$ref"] != refPrefix+f.Type.Name() {
					t.Errorf("%s.%s: want $ref %s%s; got %v", schemaName, name, refPrefix, f.Type.Name(), prop)
				}
				check(f.Type, f.Type.Name())
			case f.Type.Kind() == reflect.Slice:
				items, _ := prop["items"].(map[string]any)
				elem := f.Type.Elem()
				if prop["type"] != "array" || items["$ref"] != refPrefix+elem.Name() {
					t.Errorf("%s.%s: want an array of $ref %s%s; got %v", schemaName, name, refPrefix, elem.Name(), prop)
				}
				check(elem, elem.Name())
			case f.Type.Kind() == reflect.String:
				if prop["type"] != "string" {
					t.Errorf("%s.%s: want type string; got %v", schemaName, name, prop)
				}
			case f.Type.Kind() == reflect.Int64 || f.Type.Kind() == reflect.Int32 || f.Type.Kind() == reflect.Int:
				if prop["type"] != "integer" {
					t.Errorf("%s.%s: want type integer; got %v", schemaName, name, prop)
				}
			default:
				t.Errorf("%s.%s: Go type %s has no JSON type in this test: extend it", schemaName, name, f.Type)
			}
		}
		for name := range props {
			t.Errorf("schema %s in openapi.yaml has property %s, which is no JSON field of %s", schemaName, name, typ)
		}
		got := slices.Clone(schema.Required)
		slices.Sort(got)
		slices.Sort(required)
		if !slices.Equal(got, required) {
			t.Errorf("schema %s: required %v, want %v (the validate:\"required\" fields and the nested objects of %s)", schemaName, got, required, typ)
		}
	}
	check(reflect.TypeFor[orders.Order](), "Order")
}

// propertySet returns the names of the properties as a set.
func propertySet(m map[string]map[string]any) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// TestOpenAPIKafkaViewsMatchTheirAnswers: the letters of GET /api/v1/dlq and the
// members of GET /api/v1/pipeline/group have exactly the properties their
// answers have (kafkaview.Letter's JSON fields and value; kafkaview.Member's).
func TestOpenAPIKafkaViewsMatchTheirAnswers(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal(ordershttp.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	dig := func(v any, keys ...string) any {
		for _, k := range keys {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return v
	}
	answer := []string{"get", "responses", "200", "content", "application/json", "schema", "properties"}
	for _, tc := range []struct {
		path, list string
		typ        reflect.Type
		extra      []string
	}{
		{"/api/v1/dlq", "letters", reflect.TypeFor[kafkaview.Letter](), []string{"value"}},
		{"/api/v1/pipeline/group", "members", reflect.TypeFor[kafkaview.Member](), nil},
	} {
		props, _ := dig(doc, append(append([]string{"paths", tc.path}, answer...), tc.list, "items", "properties")...).(map[string]any)
		var documented, fields []string
		for k := range props {
			documented = append(documented, k)
		}
		for f := range tc.typ.Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				fields = append(fields, name)
			}
		}
		fields = append(fields, tc.extra...)
		slices.Sort(documented)
		slices.Sort(fields)
		if !slices.Equal(documented, fields) {
			t.Errorf("%s %s: openapi.yaml documents %v, the answer has %v", tc.path, tc.list, documented, fields)
		}
	}
}
