package systest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// Grafana's template variables, as this test substitutes them in the dashboard's
// queries: $instance is a multi-value variable whose "All" choice is its
// allValue ".*" (what Grafana sends while All is selected); $__rate_interval is
// Grafana's max(4 x scrape interval, step + scrape interval): with the test's 1 s
// scrape interval 15 s is a comfortable window (at least 4 samples).
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "15s",
	"$instance", ".*",
)

// Shortened rules. alerts.yml is loaded with its expressions unchanged except for
// their range selectors: every [Nm] becomes [5s], and every non-zero `for:` becomes
// 2s. The durations are sized for production (minutes); a test cannot wait that
// long, and with a 1 s scrape interval 5 s still holds several samples, so each
// expression means the same thing over a shorter window.
var (
	ruleRange = regexp.MustCompile(`\[[0-9]+m\]`)
	ruleFor   = regexp.MustCompile(`(?m)^(\s+for:\s*)[1-9][0-9]*[smh]\s*$`)
)

// The alerts that tell the ingestion stopped (alerts.yml, group orders-ingestion):
// offsets are not committed while messages wait, and the lag is above 1000 and grows.
const (
	stalledAlert    = "OrdersCommitsStalled"
	lagGrowingAlert = "OrdersConsumerLagGrowing"
)

// TestDashboardAndAlertsOnRealPrometheus runs a real Prometheus against a running
// service with traffic (valid orders, bad ones for the DLQ, lookups that hit and
// miss, a read replica so that the replica panels have series) and checks through
// its HTTP API that:
//
//   - stopping PostgreSQL while orders keep arriving makes the ingestion alerts
//     (commits stalled, lag growing) pending and then firing (both are inactive
//     before, with everything committed);
//     PostgreSQL is started again and the service commits every order that arrived;
//   - every panel query of the generated dashboard returns at least one series;
//   - every alert rule of alerts.yml evaluates without error.
//
// The bad messages come first: a commit that carries dead letters is a Kafka
// transaction, which librdkafka's statistics do not see, and the lag metric once
// took its committed offsets from those statistics (the stalled alert was active
// on an idle service); it now takes them from the committer.
func TestDashboardAndAlertsOnRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("stops PostgreSQL under load: skipped with -short")
	}
	promBin := prometheusBinary(t)
	brokers := testenv.KafkaBrokers(t)
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{})
	dsn := cluster.CreateDB(t)
	standby := cluster.NewStandby(t)
	f := newFixture(t, "prometheus", brokers, dsn)
	f.extraEnv = append(f.extraEnv, "ORDERS_POSTGRES_READ_DSN="+standby.DSNOf(dsn), "ORDERS_CACHE_WARMUP_ON_START=false")
	svc := f.start()
	defer stop(t, svc)
	prom := startPrometheus(t, promBin, svc.Addr())

	// Valid orders and bad ones of each kind that does not need the size bound
	// (for the DLQ series; their commits are transactions), then lookups that
	// hit, miss (404) and list (through the replica).
	gen := ordersgen.New(7)
	var recs []*kgo.Record
	var uids []string
	for range 200 {
		o, b := gen.Valid()
		uids = append(uids, o.OrderUID)
		recs = append(recs, &kgo.Record{Key: []byte(o.OrderUID), Value: b})
	}
	for _, kind := range []string{ordersgen.KindMalformed, ordersgen.KindBinary, ordersgen.KindMissing, ordersgen.KindTypes, ordersgen.KindTotals} {
		k, v := gen.Invalid(kind, maxMessageBytes)
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: v})
	}
	testenv.KafkaProduce(t, brokers, f.topic, recs...)
	f.waitLagZero(time.Minute, svc)
	for _, path := range []string{"/order/" + uids[0], "/api/v1/orders/" + uids[1], "/order/no-such-order", "/api/v1/orders?limit=5"} {
		resp, err := http.Get(svc.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// With everything committed, both alerts are inactive, at an evaluation
	// after that (not merely before Prometheus evaluated them at all).
	committedAt := time.Now()
	deadline := committedAt.Add(20 * time.Second)
	for _, alert := range []string{stalledAlert, lagGrowingAlert} {
		for st := prom.alertState(t, alert); st != "" || !prom.evaluatedSince(t, alert, committedAt); st = prom.alertState(t, alert) {
			if time.Now().After(deadline) {
				t.Fatalf("%s is %q before the outage (evaluated since everything was committed: %v), with everything committed: lag %s, committed offsets %s",
					alert, st, prom.evaluatedSince(t, alert, committedAt), prom.values(t, `orders_pipeline_consumer_lag`), prom.values(t, `orders_pipeline_committed_offset`))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// PostgreSQL stops while orders keep arriving: both alerts go pending, then
	// firing (their `for:` shortened to 2 s).
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Log("postgres stopped")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a failed wait below must not leave the producer running
	produced := make(chan produceResult, 1)
	go func() { produced <- produceUntil(ctx, brokers, f.topic, gen) }()
	prom.waitAlert(t, stalledAlert, "firing", time.Minute, svc)
	prom.waitAlert(t, lagGrowingAlert, "firing", time.Minute, svc)
	cancel()
	res := <-produced
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Logf("%s and %s fired with %d orders produced during the outage", stalledAlert, lagGrowingAlert, res.n)
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	t.Log("postgres started again")
	f.waitLagZero(time.Minute, svc)
	if n, want := f.storedCount(), len(uids)+res.n; n != want {
		t.Errorf("after the outage %d orders are stored, want %d", n, want)
	}
	waitStatus(t, svc.URL("/ready"), http.StatusOK, 30*time.Second)

	checkPanelQueries(t, prom)
	checkRuleHealth(t, prom)
}

// checkPanelQueries fails for each panel query of the dashboard that has not
// answered a series within 45 s.
func checkPanelQueries(t *testing.T, prom *promServer) {
	t.Helper()
	exprs := dashboardExprs(t)
	var empty []string
	deadline := time.Now().Add(45 * time.Second)
	for {
		empty = empty[:0]
		for _, e := range exprs {
			q := grafanaVariables.Replace(e.expr)
			n, err := prom.seriesCount(q)
			if err != nil {
				t.Fatalf("%s: %q: %v", e.where, q, err)
			}
			if n == 0 {
				empty = append(empty, fmt.Sprintf("%s: %s", e.where, q))
			}
		}
		if len(empty) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, e := range empty {
		t.Errorf("no series: %s", e)
	}
	t.Logf("%d of %d panel queries answered by Prometheus", len(exprs)-len(empty), len(exprs))
}

// checkRuleHealth waits until Prometheus has evaluated every alert of alerts.yml
// (30 s at most) and fails for each that is missing or not healthy.
func checkRuleHealth(t *testing.T, prom *promServer) {
	t.Helper()
	want := alertNames(t)
	deadline := time.Now().Add(30 * time.Second)
	var rules []promRule
	for {
		rules = prom.rules(t)
		evaluated := 0
		for _, r := range rules {
			if r.Health != "unknown" {
				evaluated++
			}
		}
		if evaluated == len(want) && len(rules) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.Name)
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q, last error %q", r.Name, r.Health, r.LastError)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Prometheus loaded the rules %v, alerts.yml has %v", got, want)
	}
	t.Logf("%d alert rules evaluated", len(rules))
}

// prometheusBinary finds the prometheus server (PROMETHEUS, else PATH, else
// Debian's /usr/bin/prometheus) or skips the test with a warning.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMETHEUS"); p != "" {
		return p
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	t.Skip("WARNING: the prometheus server is not installed (apt-get install prometheus, or set PROMETHEUS=/path/to/prometheus): " +
		"the dashboard's queries and the alert rules are not checked against a real Prometheus")
	return ""
}

// promServer is a Prometheus server run by the test.
type promServer struct {
	base string // http://127.0.0.1:port
	log  string
}

// startPrometheus runs Prometheus with a scrape and evaluation interval of 1 s,
// target the service at addr (job orders-service, as the rules select) and the
// shortened copy of configs/prometheus/alerts.yml, and waits until it is ready.
// It is stopped in t.Cleanup.
func startPrometheus(t *testing.T, bin, addr string) *promServer {
	t.Helper()
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "configs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules := ruleFor.ReplaceAllString(ruleRange.ReplaceAllString(string(raw), "[5s]"), "${1}2s")
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: orders-service
    static_configs:
      - targets: [%q]
`, addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{log: filepath.Join(dir, "prometheus.log")}
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		p.base = "http://127.0.0.1:" + strconv.Itoa(port)
		logFile, err := os.Create(p.log)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
			"--log.level=warn")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); logFile.Close(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		if p.waitReady(exited, 30*time.Second) {
			return p
		}
		if attempt == 3 { // another process took the port each time, or it cannot start
			t.Fatalf("prometheus did not become ready; log:\n%s", p.logTail())
		}
	}
}

// waitReady polls /-/ready; false when the process exited or the limit passed.
func (p *promServer) waitReady(exited <-chan struct{}, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func (p *promServer) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// freePort returns a TCP port that was free a moment ago on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// get calls the Prometheus HTTP API and decodes its data field into v.
func (p *promServer) get(path string, v any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %d: %w", path, resp.StatusCode, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %d: %s", path, resp.StatusCode, env.Error)
	}
	return json.Unmarshal(env.Data, v)
}

// seriesCount runs an instant query and returns how many series it answered; an
// error is a query Prometheus refuses (bad syntax, bad substitution).
func (p *promServer) seriesCount(q string) (int, error) {
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return 0, err
	}
	if data.ResultType != "vector" && data.ResultType != "matrix" {
		return 0, fmt.Errorf("result type %s, want a vector", data.ResultType)
	}
	return len(data.Result), nil
}

// values runs an instant query and renders its series as partition=value, for messages.
func (p *promServer) values(t *testing.T, q string) string {
	t.Helper()
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range data.Result {
		out = append(out, fmt.Sprintf("%s=%v", r.Metric["partition"], r.Value[1]))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// promRule is one rule of /api/v1/rules.
type promRule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
	// LastEvaluation is zero until the rule was evaluated.
	LastEvaluation time.Time `json:"lastEvaluation"`
}

func (p *promServer) rules(t *testing.T) []promRule {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules?type=alert", &data); err != nil {
		t.Fatal(err)
	}
	var out []promRule
	for _, g := range data.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// evaluatedSince reports whether Prometheus evaluated the rule of alert after since.
func (p *promServer) evaluatedSince(t *testing.T, alert string, since time.Time) bool {
	t.Helper()
	for _, r := range p.rules(t) {
		if r.Name == alert && r.LastEvaluation.After(since) {
			return true
		}
	}
	return false
}

// activeAlert is one alert of /api/v1/alerts.
type activeAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promServer) alerts(t *testing.T) []activeAlert {
	t.Helper()
	var data struct {
		Alerts []activeAlert `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", &data); err != nil {
		t.Fatal(err)
	}
	return data.Alerts
}

// alertState returns "firing" or "pending" when an instance of alert is so,
// else "" (inactive).
func (p *promServer) alertState(t *testing.T, alert string) string {
	t.Helper()
	state := ""
	for _, a := range p.alerts(t) {
		if a.Labels["alertname"] == alert && (a.State == "firing" || a.State == "pending" && state == "") {
			state = a.State
		}
	}
	return state
}

// waitAlert polls /api/v1/alerts until alert is in state (pending or firing);
// it fails the test at the limit, or if the service exits.
func (p *promServer) waitAlert(t *testing.T, alert, state string, limit time.Duration, svc *testenv.Service) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if p.alertState(t, alert) == state {
			return
		}
		if svc.Exited() {
			t.Fatalf("service exited; log tail:\n%s", svc.LogTail(4096))
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, a := range p.alerts(t) {
				seen = append(seen, a.Labels["alertname"]+"="+a.State)
			}
			t.Fatalf("%s not %s after %v; active alerts: %v", alert, state, limit, seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// alertNames returns the sorted alert names of configs/prometheus/alerts.yml.
func alertNames(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "configs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r.Alert)
			}
		}
	}
	slices.Sort(out)
	return out
}

type produceResult struct {
	n   int // valid orders acknowledged by the broker
	err error
}

// produceUntil sends valid orders (25 every 100 ms) until ctx ends.
func produceUntil(ctx context.Context, brokers, topic string, gen *ordersgen.Gen) produceResult {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return produceResult{err: err}
	}
	defer cl.Close()
	var res produceResult
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		recs := make([]*kgo.Record, 25)
		for i := range recs {
			o, b := gen.Valid()
			recs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: b}
		}
		// Not ctx: a batch once started is sent whole, so res.n is what the broker holds.
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			res.err = fmt.Errorf("produce during the outage: %w", err)
			return res
		}
		res.n += len(recs)
		select {
		case <-ctx.Done():
			return res
		case <-tick.C:
		}
	}
}
