package systest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// scrape is a parsed Prometheus text exposition.
type scrape struct {
	types   map[string]string // family name -> counter, gauge, histogram, ...
	samples map[string][]sample
}

type sample struct {
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"`)
)

func parseScrape(t *testing.T, text string) scrape {
	t.Helper()
	s := scrape{types: map[string]string{}, samples: map[string][]sample{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			s.types[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("/metrics: bad value in %q: %v", line, err)
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		s.samples[m[1]] = append(s.samples[m[1]], sample{labels: labels, value: v})
	}
	return s
}

// sum adds the samples of name whose labels include every pair of match.
//
// A match value starting with "~" is an anchored regular expression.
func (s scrape) sum(name string, match map[string]string) (total float64, n int) {
	for _, x := range s.samples[name] {
		ok := true
		for k, v := range match {
			if re, isRE := strings.CutPrefix(v, "~"); isRE {
				ok = ok && regexp.MustCompile("^(?:"+re+")$").MatchString(x.labels[k])
			} else if x.labels[k] != v {
				ok = false
			}
		}
		if ok {
			total += x.value
			n++
		}
	}
	return total, n
}

// describe says what a missing sample name is, to make a failure actionable.
func (s scrape) describe(name string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if typ, ok := s.types[base]; ok {
				return fmt.Sprintf("family %s is a %s without series yet", base, typ)
			}
		}
	}
	if typ := s.types[name]; typ == "histogram" || typ == "summary" {
		return fmt.Sprintf("%s is a %s: query %s_bucket, _sum or _count", name, typ, name)
	}
	return "not exported"
}

// promqlNonMetric are PromQL keywords that look like identifiers but are not
// followed by "(" (functions and aggregations always are).
var promqlNonMetric = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true,
}

var (
	promqlString   = regexp.MustCompile("\"(?:\\\\.|[^\"\\\\])*\"|'(?:\\\\.|[^'\\\\])*'|`[^`]*`")
	promqlNameEq   = regexp.MustCompile(`__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
	promqlBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	promqlBrackets = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`(?i)\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlVariable = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promqlToken    = regexp.MustCompile(`\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[a-zA-Z]*|\.\d+|[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// promqlMetricNames returns the metric names an expression selects: identifiers
// that are not functions, aggregations, keywords, label names, durations or
// Grafana variables. Names given as {__name__="x"} are included.
func promqlMetricNames(expr string) []string {
	set := map[string]bool{}
	for _, m := range promqlNameEq.FindAllStringSubmatch(expr, -1) {
		set[m[1]] = true
	}
	e := promqlString.ReplaceAllString(expr, `""`)
	e = promqlBraces.ReplaceAllString(e, "{}")
	e = promqlBrackets.ReplaceAllString(e, "[]")
	e = promqlGrouping.ReplaceAllString(e, " ")
	e = promqlVariable.ReplaceAllString(e, " ")
	for _, loc := range promqlToken.FindAllStringIndex(e, -1) {
		tok := e[loc[0]:loc[1]]
		if c := tok[0]; c >= '0' && c <= '9' || c == '.' {
			continue // a number or a duration
		}
		if promqlNonMetric[strings.ToLower(tok)] {
			continue
		}
		if rest := strings.TrimLeft(e[loc[1]:], " \t\r\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		set[tok] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func TestPromQLMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up{job="orders-service"} == 0`, []string{"up"}},
		{
			`histogram_quantile(0.99, sum by (stage, le) (rate(orders_pipeline_stage_duration_seconds_bucket{job="x", instance=~"$instance"}[$__rate_interval])))`,
			[]string{"orders_pipeline_stage_duration_seconds_bucket"},
		},
		{`sum(rate(a_total[5m])) / (sum(rate(a_total[5m])) + sum(rate(b_total[5m]))) > 1e3`, []string{"a_total", "b_total"}},
		{`sum by (job) (x) > 1000 and sum without (instance) (delta(y[10m] offset 1h)) > 0 or vector(0)`, []string{"x", "y"}},
		{`a / on (instance) group_left (version) b_info unless ignoring(pod) c == bool 1`, []string{"a", "b_info", "c"}},
		{`sum(foo{le="+Inf", by="or"}) BY (route)`, []string{"foo"}},
		{`{__name__="named_metric", job="j"}`, []string{"named_metric"}},
		{`max_over_time(rate(q_total[5m])[1h:1m])`, []string{"q_total"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}},
	}
	for _, tc := range cases {
		if got := promqlMetricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("promqlMetricNames(%s) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// observedExpr is one PromQL expression of a dashboard panel or an alert rule.
type observedExpr struct {
	where string // file and panel or rule, for messages
	expr  string
}

// dashboardExprs reads every panel query of the provisioned Grafana dashboards,
// rows' nested panels included.
func dashboardExprs(t *testing.T) []observedExpr {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(moduleRoot(t), "configs", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under configs/grafana/dashboards: %v", err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var out []observedExpr
	var walk func(file string, raws []json.RawMessage)
	walk = func(file string, raws []json.RawMessage) {
		for _, raw := range raws {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for _, tg := range p.Targets {
				out = append(out, observedExpr{where: fmt.Sprintf("%s panel %q", filepath.Base(file), p.Title), expr: tg.Expr})
			}
			walk(file, p.Panels)
		}
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(f, d.Panels)
	}
	return out
}

// ruleExprs reads every alerting and recording rule expression under configs/prometheus.
func ruleExprs(t *testing.T) []observedExpr {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(moduleRoot(t), "configs", "prometheus", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var out []observedExpr
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Alert  string `yaml:"alert"`
					Record string `yaml:"record"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				out = append(out, observedExpr{where: fmt.Sprintf("%s rule %s%s", filepath.Base(f), r.Alert, r.Record), expr: r.Expr})
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no rules under configs/prometheus")
	}
	return out
}

// moduleRoot returns the repository root, where configs/ is.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// startedVersion returns the version field of the service_started log line.
func startedVersion(t *testing.T, logs string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		var ev struct {
			Msg     string `json:"msg"`
			Version string `json:"version"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Msg == "service_started" && ev.Version != "" {
			return ev.Version
		}
	}
	t.Fatal("no service_started log line with a version")
	return ""
}

// generatedByPrometheus are series Prometheus makes itself, not the service.
var generatedByPrometheus = map[string]bool{
	"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true,
	"scrape_duration_seconds": true, "scrape_samples_scraped": true,
}

// onlyWhenConfigured are metrics a service exports only when configured so: the read
// replica's (orders_db_replica_*) exist only with ORDERS_POSTGRES_READ_DSN, which
// TestDashboardsAndAlertsMatchExportedMetrics does not set (the replica's tests in
// modules/orders/ordersdb check them). A reference to one of these that /metrics
// lacks is logged instead of failing; TestOnlyWhenConfiguredAreUsed fails for a name no
// panel or rule uses any more.
var onlyWhenConfigured = map[string]bool{
	"orders_db_replica_up":          true, // gauge 0/1
	"orders_db_replica_lag_bytes":   true, // gauge
	"orders_db_replica_reads_total": true, // counter {outcome="replica|behind_floor|replica_error"}
}

// TestOnlyWhenConfiguredAreUsed keeps onlyWhenConfigured honest: each name is a service
// metric (orders_ prefix) that a dashboard panel or an alert rule actually uses.
func TestOnlyWhenConfiguredAreUsed(t *testing.T) {
	used := map[string]bool{}
	for _, e := range append(dashboardExprs(t), ruleExprs(t)...) {
		for _, n := range promqlMetricNames(e.expr) {
			used[n] = true
		}
	}
	for n := range onlyWhenConfigured {
		if !strings.HasPrefix(n, "orders_") {
			t.Errorf("onlyWhenConfigured: %s is not a service metric", n)
		}
		if !used[n] {
			t.Errorf("onlyWhenConfigured: no dashboard panel or alert rule uses %s; delete it from the list", n)
		}
	}
}

// TestDashboardsAndAlertsMatchExportedMetrics runs the service with real traffic
// (valid orders, bad messages for the DLQ, HTTP lookups that hit and miss the
// cache), scrapes /metrics, and fails if a dashboard panel or an alert rule names a
// metric the service does not export, or if a family the README documents has no
// series.
func TestDashboardsAndAlertsMatchExportedMetrics(t *testing.T) {
	exprs := append(dashboardExprs(t), ruleExprs(t)...)
	s := startService(t)

	gen := ordersgen.New(42)
	var recs []*kgo.Record
	var uids []string
	for range 40 {
		o, b := gen.Valid()
		uids = append(uids, o.OrderUID)
		recs = append(recs, &kgo.Record{Key: []byte(o.OrderUID), Value: b})
	}
	for _, kind := range []string{ordersgen.KindMalformed, ordersgen.KindBinary, ordersgen.KindTotals, ordersgen.KindMissing} {
		k, v := gen.Invalid(kind, s.cfg.Pipeline.MaxMessageBytes)
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: v})
	}
	testenv.KafkaProduce(t, s.brokers, s.topic, recs...)
	s.waitCommitted(t, 60*time.Second)

	// Lookups: a cached order (hit), an unknown one (a cache miss answered 404,
	// without X-Cache), on both routes.
	lookup := func(path string, wantStatus int, wantCache string) {
		t.Helper()
		resp, err := http.Get(s.base + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus || resp.Header.Get("X-Cache") != wantCache {
			t.Fatalf("GET %s: %d X-Cache %q, want %d %q", path, resp.StatusCode, resp.Header.Get("X-Cache"), wantStatus, wantCache)
		}
	}
	lookup("/order/"+uids[0], 200, "hit")
	lookup("/api/v1/orders/"+uids[1], 200, "hit")
	lookup("/order/no-such-order-"+strconv.Itoa(os.Getpid()), 404, "")

	// The version the binary reports at start, which orders_build_info must carry.
	version := startedVersion(t, s.logs(t))

	// The scrape-time families (lag, committed offsets, DLQ counts) follow the
	// broker's statistics: poll until the required series are there.
	var sc scrape
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		sc = parseScrape(t, string(waitStatus(t, s.base+"/metrics", 200, 10*time.Second)))
		missing = requiredSeriesMissing(sc, version)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, m := range missing {
		t.Errorf("after traffic: %s", m)
	}

	names := 0
	pending := map[string]bool{}
	for _, e := range exprs {
		found := promqlMetricNames(e.expr)
		if len(found) == 0 {
			t.Errorf("%s: no metric name found in %q", e.where, e.expr)
		}
		for _, n := range found {
			names++
			if generatedByPrometheus[n] {
				continue
			}
			if _, ok := sc.samples[n]; !ok {
				if onlyWhenConfigured[n] {
					pending[n] = true
					continue
				}
				t.Errorf("%s uses %s: %s", e.where, n, sc.describe(n))
			}
		}
	}
	for n := range onlyWhenConfigured {
		if _, ok := sc.samples[n]; ok {
			t.Logf("%s is exported now: delete it from onlyWhenConfigured", n)
		}
	}
	if len(pending) > 0 {
		t.Logf("not checked, exported only when configured (onlyWhenConfigured): %v", slices.Sorted(maps.Keys(pending)))
	}
	t.Logf("checked %d metric references in %d dashboard and rule expressions against %d exported sample names", names, len(exprs), len(sc.samples))
}

// requiredSeriesMissing lists what the README's metrics table needs from /metrics and
// the scrape lacks.
func requiredSeriesMissing(sc scrape, version string) []string {
	var missing []string
	need := func(ok bool, format string, args ...any) {
		if !ok {
			missing = append(missing, fmt.Sprintf(format, args...))
		}
	}
	// the batch and upsert stages are one per writer: batch-1, upsert-1, ...
	// (plain batch and upsert with one writer)
	for _, st := range []string{"fetch", "decode", "validate", "~batch(-[0-9]+)?", "~upsert(-[0-9]+)?", "cache", "commit"} {
		v, n := sc.sum("orders_pipeline_messages_total", map[string]string{"stage": st, "outcome": "ok"})
		need(n >= 1 && v > 0, "orders_pipeline_messages_total{stage=%q,outcome=\"ok\"} is %v (%d series), want > 0", st, v, n)
		if st != "fetch" { // the source has no inbound queue
			_, n = sc.sum("orders_pipeline_queue_capacity", map[string]string{"stage": st})
			need(n >= 1, "orders_pipeline_queue_capacity{stage=%q} missing", st)
		}
		if st != "fetch" && !strings.Contains(st, "batch") { // measured per call; batch measures fill time below
			_, n = sc.sum("orders_pipeline_stage_duration_seconds_count", map[string]string{"stage": st})
			need(n >= 1, "orders_pipeline_stage_duration_seconds{stage=%q} missing", st)
		}
	}
	for _, st := range []string{"decode", "validate"} {
		v, _ := sc.sum("orders_pipeline_messages_total", map[string]string{"stage": st, "outcome": "rejected"})
		need(v > 0, "orders_pipeline_messages_total{stage=%q,outcome=\"rejected\"} is %v, want > 0", st, v)
	}
	for _, class := range []string{"decode", "validation"} {
		v, _ := sc.sum("orders_pipeline_dlq_messages_total", map[string]string{"class": class})
		need(v > 0, "orders_pipeline_dlq_messages_total{class=%q} is %v, want > 0", class, v)
	}
	v, _ := sc.sum("orders_pipeline_batch_size_count", map[string]string{"stage": "~batch(-[0-9]+)?"})
	need(v > 0, "orders_pipeline_batch_size{stage=~\"batch(-[0-9]+)?\"} has no observations")
	v, _ = sc.sum("orders_pipeline_batch_flushes_total", map[string]string{"stage": "~batch(-[0-9]+)?"})
	need(v > 0, "orders_pipeline_batch_flushes_total{stage=~\"batch(-[0-9]+)?\"} is 0")
	v, _ = sc.sum("orders_pipeline_orders_written_total", nil)
	need(v >= 40, "orders_pipeline_orders_written_total is %v, want >= 40", v)
	v, _ = sc.sum("orders_pipeline_db_write_duration_seconds_count", map[string]string{"outcome": "ok"})
	need(v > 0, "orders_pipeline_db_write_duration_seconds{outcome=\"ok\"} has no observations")
	_, n := sc.sum("orders_pipeline_consumer_lag", nil)
	need(n > 0, "orders_pipeline_consumer_lag has no partition series")
	v, n = sc.sum("orders_pipeline_committed_offset", nil)
	need(n > 0 && v > 0, "orders_pipeline_committed_offset: %d series summing to %v, want > 0", n, v)
	v, _ = sc.sum("orders_pipeline_up", nil)
	need(v == 1, "orders_pipeline_up is %v, want 1", v)
	for _, lk := range []struct{ route, status string }{{"/order/:uid", "200"}, {"/order/:uid", "404"}, {"/api/v1/orders/:uid", "200"}} {
		v, _ := sc.sum("orders_http_request_duration_seconds_count", map[string]string{"route": lk.route, "method": "GET", "status": lk.status})
		need(v > 0, "orders_http_request_duration_seconds{route=%q,status=%q} has no observations", lk.route, lk.status)
	}
	for name, min := range map[string]float64{
		"orders_cache_hits_total": 2, "orders_cache_misses_total": 1, "orders_cache_entries": 40,
		"orders_cache_bytes": 1, "orders_cache_max_bytes": 1, "orders_cache_evictions_total": 0,
	} {
		v, n := sc.sum(name, nil)
		need(n == 1 && v >= min, "%s is %v (%d series), want >= %v", name, v, n, min)
	}
	_, n = sc.sum("orders_build_info", map[string]string{"version": version})
	need(n == 1, "orders_build_info{version=%q} missing", version)
	for _, name := range []string{"go_sql_in_use_connections", "go_sql_idle_connections", "go_sql_max_open_connections", "go_sql_wait_count_total"} {
		_, n := sc.sum(name, map[string]string{"db_name": "orders"})
		need(n == 1, "%s{db_name=\"orders\"} missing", name)
	}
	return missing
}
