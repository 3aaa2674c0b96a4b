// Command dashgen writes the Grafana dashboard of the order service,
// configs/grafana/dashboards/orders.json, from the Go builders of
// grafana-foundation-sdk: one function per row, the panels' queries, units and
// descriptions next to each other. Change a panel here, then regenerate:
//
//	go tool task dashboards        (or: go generate ./configs/grafana/dashgen)
//
// The file is committed; TestCommittedDashboardIsGenerated fails when it differs
// from what this command writes.
package main

//go:generate go run . -out ../dashboards/orders.json

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// outDefault is where the dashboard goes when run from the repository root.
const outDefault = "configs/grafana/dashboards/orders.json"

func main() {
	out := flag.String("out", outDefault, "file to write the dashboard JSON to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	b, err := render()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// render returns the dashboard as the committed file holds it: indented JSON,
// HTML characters unescaped (PromQL's < and > stay readable), one final newline.
func render() ([]byte, error) {
	d, err := ordersDashboard().Build()
	if err != nil {
		return nil, fmt.Errorf("build dashboard: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode dashboard: %w", err)
	}
	return buf.Bytes(), nil
}

// promUID is the uid of the Prometheus datasource that
// configs/grafana/provisioning/datasources/datasources.yml provisions.
const promUID = "prometheus"

// job and inst select the service's series and the dashboard's $instance choice.
const (
	job  = `job="orders-service"`
	inst = `job="orders-service", instance=~"$instance"`
)

// builder is the classic (schema v1) dashboard builder. The SDK marks it deprecated
// in favour of dashboardv2, but Grafana 12.1 (docker-compose.yaml) provisions v2
// dashboards only behind feature toggles; the v1 JSON model is the one its file
// provider loads by default.
type builder = dashboard.DashboardBuilder //nolint:staticcheck // SA1019: v1 is what Grafana 12.1 provisions from files; see above

var newBuilder = dashboard.NewDashboardBuilder //nolint:staticcheck // SA1019: the v1 builder, see builder

func promDS() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(promUID)}
}

// ordersDashboard is the whole dashboard: the $instance variable and the rows,
// top to bottom.
func ordersDashboard() *builder {
	d := newBuilder("Order service").
		Uid("orders-service").
		Description("Kafka → validate → PostgreSQL → cache → HTTP: ingestion, database, HTTP and cache health. See README → Operations.").
		Tags([]string{"orders"}).
		Timezone("browser").
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Version(1).
		Refresh("10s").
		Time("now-1h", "now").
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Annotations & Alerts").
			Type("dashboard").
			BuiltIn(1).
			Datasource(common.DataSourceRef{Type: cog.ToPtr("grafana"), Uid: cog.ToPtr("-- Grafana --")}).
			Enable(true).
			Hide(true).
			IconColor("rgba(0, 211, 255, 1)")).
		WithVariable(dashboard.NewQueryVariableBuilder("instance").
			Label("Instance").
			Datasource(promDS()).
			Query(dashboard.StringOrMap{Map: map[string]any{
				"query": `label_values(orders_build_info{` + job + `}, instance)`,
				"refId": "PrometheusVariableQueryEditor-VariableQuery",
			}}).
			Definition(`label_values(orders_build_info{` + job + `}, instance)`).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			IncludeAll(true).
			Multi(true).
			AllValue(".*").
			Current(dashboard.VariableOption{
				Selected: cog.ToPtr(true),
				Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
				Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
			}).
			Sort(dashboard.VariableSortAlphabeticalAsc))
	overviewRow(d)
	instancesRow(d)
	ingestionRow(d)
	databaseRow(d)
	httpRow(d)
	cacheRow(d)
	processRow(d)
	return d
}

// row starts a row: the panels added after it, up to the next row, are its panels.
func row(d *builder, id uint32, title string) {
	d.WithRow(dashboard.NewRowBuilder(title).Id(id).Collapsed(false))
}

// query is one Prometheus target of a panel.
func query(refID, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().
		RefId(refID).
		Datasource(promDS()).
		Expr(expr).
		LegendFormat(legend)
}

// step is one threshold step; from -infinity when value is nil.
func step(color string, value *float64) dashboard.Threshold {
	return dashboard.Threshold{Color: color, Value: value}
}

func thresholds(steps ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

// valueText maps values to texts and colors ("0" -> DOWN, red, ...).
func valueText(pairs ...[3]string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for _, p := range pairs {
		opts[p[0]] = dashboard.ValueMappingResult{Text: cog.ToPtr(p[1]), Color: cog.ToPtr(p[2])}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// statPanel is a single-value panel of the Overview row: one instant query,
// the last value on a colored background.
func statPanel(id uint32, title, unit, description, expr, legend string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Id(id).
		Title(title).
		Description(description).
		Datasource(promDS()).
		Height(4).
		Span(4).
		Unit(unit).
		Mappings([]dashboard.ValueMapping{}).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeNone).
		JustifyMode(common.BigValueJustifyModeAuto).
		TextMode(common.BigValueTextModeAuto).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Fields("").Values(false)).
		WithTarget(query("A", expr, legend).Instant())
}

// graph is a time series panel 8 columns wide with the house style: thin
// lines, a table legend with last and max, a shared tooltip.
func graph(id uint32, title, unit, description string) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Id(id).
		Title(title).
		Description(description).
		Datasource(promDS()).
		Height(8).
		Span(8).
		Unit(unit).
		DrawStyle(common.GraphDrawStyleLine).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNone).Group("A")).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true).
			Calcs([]string{"lastNotNull", "max"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

// stacked makes a graph's series stack (parts of one total).
func stacked(p *timeseries.PanelBuilder) *timeseries.PanelBuilder {
	return p.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal).Group("A"))
}

// redLineAt draws a red threshold line at limit.
func redLineAt(p *timeseries.PanelBuilder, limit float64) *timeseries.PanelBuilder {
	return p.
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeLine)).
		Thresholds(thresholds(step("green", nil), step("red", cog.ToPtr(limit))))
}

// upDown is the 0/1 mapping of the availability stats.
var upDown = [][3]string{{"0", "DOWN", "red"}, {"1", "UP", "green"}}

func overviewRow(d *builder) {
	row(d, 1, "Overview")
	d.WithPanel(statPanel(2, "Service scraped", "short",
		"Prometheus can scrape /metrics (up == 1). Alert: OrdersServiceDown.",
		`min(up{`+inst+`})`, "").
		Mappings(valueText(upDown...)).
		Thresholds(thresholds(step("red", nil), step("green", cog.ToPtr(1.0)))))
	d.WithPanel(statPanel(3, "Pipeline running", "short",
		"orders_pipeline_up: 1 while the ingest flow runs and the broker is reachable (what /ready reports). Alert: OrdersPipelineNotReady.",
		`min(orders_pipeline_up{`+inst+`})`, "").
		Mappings(valueText(upDown...)).
		Thresholds(thresholds(step("red", nil), step("green", cog.ToPtr(1.0)))))
	d.WithPanel(statPanel(4, "Ingest rate", "ops",
		"Orders written to PostgreSQL per second (committed batches).",
		`sum(rate(orders_pipeline_orders_written_total{`+inst+`}[$__rate_interval]))`, "").
		Thresholds(thresholds(step("green", nil))))
	d.WithPanel(statPanel(5, "Consumer lag", "short",
		"Messages in the input topic not yet committed, all partitions.",
		`sum(orders_pipeline_consumer_lag{`+inst+`})`, "").
		Thresholds(thresholds(step("green", nil), step("orange", cog.ToPtr(1000.0)), step("red", cog.ToPtr(100000.0)))))
	d.WithPanel(statPanel(6, "DLQ rate", "ops",
		"Messages dead-lettered per second, all classes.",
		`sum(rate(orders_pipeline_dlq_messages_total{`+inst+`}[$__rate_interval])) or vector(0)`, "").
		Thresholds(thresholds(step("green", nil), step("orange", cog.ToPtr(0.01)), step("red", cog.ToPtr(1.0)))))
	d.WithPanel(statPanel(7, "Version", "short",
		"The running build (orders_build_info).",
		`max by (version, goversion) (orders_build_info{`+inst+`})`, "{{version}} ({{goversion}})").
		TextMode(common.BigValueTextModeName).
		Thresholds(thresholds(step("blue", nil))))
}

func instancesRow(d *builder) {
	row(d, 38, "Instances")
	d.WithPanel(graph(39, "Consumer lag by instance", "short",
		"Uncommitted messages of the partitions each instance owns (the group gives every partition to one instance). One instance growing while the others are flat: its partitions are hot or the instance is slow. Alert: OrdersConsumerLagGrowing.").
		WithTarget(query("A", `sum by (instance) (orders_pipeline_consumer_lag{`+inst+`})`, "{{instance}}")))
	d.WithPanel(redLineAt(graph(40, "Change-feed lag by instance", "s",
		"Seconds since the instance last confirmed it has read the change feed (PostgreSQL) up to date. Above 1 s (red line) it stops trusting its cache and reads from the database. Alert: OrdersCacheFeedLagging."), 1).
		WithTarget(query("A", `max by (instance) (orders_feed_lag_seconds{`+inst+`})`, "{{instance}}")))
	d.WithPanel(graph(41, "Cache bypassed by instance", "short",
		"1 (bypassed) while the instance does not trust its cache because its change feed lags past the bound: lookups go to PostgreSQL (slower, still the newest committed version). /ready details say the same.").
		LineInterpolation(common.LineInterpolationStepAfter).
		Min(0).
		Max(1).
		Mappings(valueText([3]string{"0", "cache", "green"}, [3]string{"1", "bypassed", "red"})).
		Thresholds(thresholds(step("green", nil), step("red", cog.ToPtr(1.0)))).
		WithTarget(query("A", `max by (instance) (orders_cache_bypassed{`+inst+`})`, "{{instance}}")))
	d.WithPanel(graph(42, "Change feed by instance", "ops",
		"Changes (order uids) each instance receives from the change feed per second, and failed feed polls. Every instance should receive about the same change rate; poll errors mean the feed query fails (PostgreSQL reachability, pool).").
		WithTarget(query("A", `sum by (instance) (rate(orders_feed_changes_total{`+inst+`}[$__rate_interval]))`, "{{instance}} changes")).
		WithTarget(query("B", `sum by (instance) (rate(orders_feed_polls_total{`+inst+`, outcome="error"}[$__rate_interval]))`, "{{instance}} poll errors")))
	d.WithPanel(redLineAt(graph(43, "Replica lag by instance", "bytes",
		"WAL bytes the read replica is behind the primary, as each instance sees it. Above 64 MiB (red line) for 5 minutes: OrdersReplicaBehind; reads needing a newer version than the replica holds go to the primary (behind_floor)."), 64<<20).
		WithTarget(query("A", `max by (instance) (orders_db_replica_lag_bytes{`+inst+`})`, "{{instance}}")))
	d.WithPanel(graph(44, "Replica reads by outcome", "reqps",
		"Lookups routed to the read replica per second, by outcome: replica (answered by it), behind_floor (the replica was older than the version the read must see: the primary answered), replica_error (the replica query failed). Alerts: OrdersReplicaDown, OrdersReplicaBehind.").
		WithTarget(query("A", `sum by (instance, outcome) (rate(orders_db_replica_reads_total{`+inst+`}[$__rate_interval]))`, "{{instance}} {{outcome}}")))
}

// batchStage selects the batch stages: one per writer (batch-1, ...), or plain batch.
const batchStage = `stage=~"batch(-[0-9]+)?"`

func ingestionRow(d *builder) {
	row(d, 8, "Ingestion pipeline")
	d.WithPanel(graph(9, "Throughput by stage", "ops",
		"Items each stage handled successfully per second (fetch: messages read from Kafka; batch: orders added to batches; upsert/cache/commit: batches). A stage far below its upstream is the bottleneck.").
		WithTarget(query("A", `sum by (stage) (rate(orders_pipeline_messages_total{`+inst+`, outcome="ok"}[$__rate_interval]))`, "{{stage}}")))
	d.WithPanel(graph(10, "Rejected and failed by stage", "ops",
		"rejected: permanent errors handed to the DLQ (decode, validate). error: a failed call that stops the pipeline.").
		WithTarget(query("A", `sum by (stage, outcome) (rate(orders_pipeline_messages_total{`+inst+`, outcome!="ok"}[$__rate_interval]))`, "{{stage}} {{outcome}}")))
	d.WithPanel(graph(11, "Stage latency p50 / p99", "s",
		"Time a stage spends on one item, excluding time blocked on a full downstream queue; for batch, the time a batch took to fill (bounded by the linger).").
		WithTarget(query("A", `histogram_quantile(0.99, sum by (stage, le) (rate(orders_pipeline_stage_duration_seconds_bucket{`+inst+`}[$__rate_interval])))`, "p99 {{stage}}")).
		WithTarget(query("B", `histogram_quantile(0.5, sum by (stage, le) (rate(orders_pipeline_stage_duration_seconds_bucket{`+inst+`}[$__rate_interval])))`, "p50 {{stage}}")))
	d.WithPanel(graph(12, "Queue fill", "percentunit",
		"Inbound queue length / capacity per stage. Near 100 % means the stage (or one after it) is the bottleneck and backpressure pauses fetching.").
		Min(0).
		Max(1).
		WithTarget(query("A", `sum by (stage) (orders_pipeline_queue_length{`+inst+`}) / sum by (stage) (orders_pipeline_queue_capacity{`+inst+`})`, "{{stage}}")))
	d.WithPanel(graph(13, "Batch size", "short",
		"Orders per batch: p50, p99 and mean. Small batches at high load mean the linger fires first; full batches mean the count bound is reached.").
		WithTarget(query("A", `histogram_quantile(0.5, sum by (le) (rate(orders_pipeline_batch_size_bucket{`+inst+`, `+batchStage+`}[$__rate_interval])))`, "p50")).
		WithTarget(query("B", `histogram_quantile(0.99, sum by (le) (rate(orders_pipeline_batch_size_bucket{`+inst+`, `+batchStage+`}[$__rate_interval])))`, "p99")).
		WithTarget(query("C", `sum(rate(orders_pipeline_batch_size_sum{`+inst+`, `+batchStage+`}[$__rate_interval])) / sum(rate(orders_pipeline_batch_size_count{`+inst+`, `+batchStage+`}[$__rate_interval]))`, "mean")))
	d.WithPanel(stacked(graph(14, "Batch triggers", "ops",
		"What completed each batch: count (size bound), bytes (byte bound), linger (timer), drain (shutdown).")).
		WithTarget(query("A", `sum by (trigger) (rate(orders_pipeline_batch_flushes_total{`+inst+`}[$__rate_interval]))`, "{{trigger}}")))
	d.WithPanel(graph(15, "Upsert retries, splits and joint writes", "ops",
		"retries: batch writes repeated after a transient DB error (backoff, forever). splits: bisections made to isolate a poison order after a data error. joint: transactions that wrote the small batches of several writer lanes together (group commit at low rates).").
		WithTarget(query("A", `sum(rate(orders_pipeline_upsert_retries_total{`+inst+`}[$__rate_interval]))`, "retries")).
		WithTarget(query("B", `sum(rate(orders_pipeline_upsert_splits_total{`+inst+`}[$__rate_interval]))`, "splits")).
		WithTarget(query("C", `sum(rate(orders_pipeline_upsert_joint_writes_total{`+inst+`}[$__rate_interval]))`, "joint")))
	d.WithPanel(stacked(graph(16, "DLQ rate by class", "ops",
		"Messages sent to the dead-letter topic per second: decode (malformed JSON, oversized), validation (business rules), data (rejected by PostgreSQL).")).
		WithTarget(query("A", `sum by (class) (rate(orders_pipeline_dlq_messages_total{`+inst+`}[$__rate_interval]))`, "{{class}}")))
	d.WithPanel(graph(17, "Consumer lag by partition", "short",
		"High watermark minus committed offset, per partition. Steady growth: consumption is slower than production.").
		WithTarget(query("A", `sum by (partition) (orders_pipeline_consumer_lag{`+inst+`})`, "partition {{partition}}")))
	d.WithPanel(graph(18, "Commit rate by partition", "ops",
		"Offsets committed per second per partition (the watermark advancing). Flat at zero while lag exists: the pipeline is stuck.").
		WithTarget(query("A", `sum by (partition) (rate(orders_pipeline_committed_offset{`+inst+`}[$__rate_interval]))`, "partition {{partition}}")))
	d.WithPanel(graph(19, "Orders written", "ops",
		"Orders written to PostgreSQL per second, in committed batches.").
		WithTarget(query("A", `sum(rate(orders_pipeline_orders_written_total{`+inst+`}[$__rate_interval]))`, "written")))
}

// pool selects the service's database/sql pool metrics.
const pool = inst + `, db_name="orders"`

func databaseRow(d *builder) {
	row(d, 20, "Database")
	d.WithPanel(graph(21, "Batch write latency p50 / p99", "s",
		"Duration of one batch write transaction (all four tables, one transaction), successful writes.").
		WithTarget(query("A", `histogram_quantile(0.5, sum by (le) (rate(orders_pipeline_db_write_duration_seconds_bucket{`+inst+`, outcome="ok"}[$__rate_interval])))`, "p50")).
		WithTarget(query("B", `histogram_quantile(0.99, sum by (le) (rate(orders_pipeline_db_write_duration_seconds_bucket{`+inst+`, outcome="ok"}[$__rate_interval])))`, "p99")))
	d.WithPanel(graph(22, "Batch writes by outcome", "ops",
		"Batch write transactions per second: ok, or error (retried or split).").
		WithTarget(query("A", `sum by (outcome) (rate(orders_pipeline_db_write_duration_seconds_count{`+inst+`}[$__rate_interval]))`, "{{outcome}}")))
	d.WithPanel(graph(23, "Connection pool", "short",
		"database/sql pool of the service: connections in use, idle, and the maximum.").
		WithTarget(query("A", `sum(go_sql_in_use_connections{`+pool+`})`, "in use")).
		WithTarget(query("B", `sum(go_sql_idle_connections{`+pool+`})`, "idle")).
		WithTarget(query("C", `sum(go_sql_max_open_connections{`+pool+`})`, "max")))
	d.WithPanel(graph(24, "Pool waits", "short",
		"Callers that had to wait for a free connection, and the time they waited per second. Non-zero for long: the pool is too small or queries are slow.").
		WithTarget(query("A", `sum(rate(go_sql_wait_count_total{`+pool+`}[$__rate_interval]))`, "waits/s")).
		WithTarget(query("B", `sum(rate(go_sql_wait_duration_seconds_total{`+pool+`}[$__rate_interval]))`, "wait s/s")))
}

func httpRow(d *builder) {
	row(d, 25, "HTTP API")
	d.WithPanel(stacked(graph(26, "Requests by route", "reqps",
		"Requests per second by route template.")).
		WithTarget(query("A", `sum by (route) (rate(orders_http_request_duration_seconds_count{`+inst+`}[$__rate_interval]))`, "{{route}}")))
	d.WithPanel(graph(27, "Latency p99 by route", "s",
		"99th percentile of request duration by route (p50 dashed).").
		WithTarget(query("A", `histogram_quantile(0.99, sum by (route, le) (rate(orders_http_request_duration_seconds_bucket{`+inst+`}[$__rate_interval])))`, "p99 {{route}}")).
		WithTarget(query("B", `histogram_quantile(0.5, sum by (route, le) (rate(orders_http_request_duration_seconds_bucket{`+inst+`}[$__rate_interval])))`, "p50 {{route}}")))
	d.WithPanel(graph(28, "Errors by route and status", "reqps",
		"4xx and 5xx answers per second by route and status. 404 on /order/:uid is a lookup of an unknown order; 5xx are server errors.").
		WithTarget(query("A", `sum by (route, status) (rate(orders_http_request_duration_seconds_count{`+inst+`, status=~"4..|5.."}[$__rate_interval]))`, "{{status}} {{route}}")))
}

func cacheRow(d *builder) {
	row(d, 29, "Cache")
	hits := `sum(rate(orders_cache_hits_total{` + inst + `}[$__rate_interval]))`
	misses := `sum(rate(orders_cache_misses_total{` + inst + `}[$__rate_interval]))`
	d.WithPanel(graph(30, "Hit ratio", "percentunit",
		"Share of cache lookups answered from memory (misses go to PostgreSQL, one flight per key).").
		Span(6).
		Min(0).
		Max(1).
		WithTarget(query("A", hits+` / (`+hits+` + `+misses+`)`, "hit ratio")))
	d.WithPanel(graph(31, "Bytes vs bound", "bytes",
		"Bytes of cached order JSON against the configured bound (ORDERS_CACHE_MAX_BYTES).").
		Span(6).
		WithTarget(query("A", `sum(orders_cache_bytes{`+inst+`})`, "bytes")).
		WithTarget(query("B", `sum(orders_cache_max_bytes{`+inst+`})`, "max bytes")))
	d.WithPanel(graph(32, "Entries", "short",
		"Orders held in the cache.").
		Span(6).
		WithTarget(query("A", `sum(orders_cache_entries{`+inst+`})`, "entries")))
	d.WithPanel(graph(33, "Hits, misses, evictions", "ops",
		"Lookups per second by result, and entries evicted per second to stay within the bound.").
		Span(6).
		WithTarget(query("A", hits, "hits")).
		WithTarget(query("B", misses, "misses")).
		WithTarget(query("C", `sum(rate(orders_cache_evictions_total{`+inst+`}[$__rate_interval]))`, "evictions")))
}

func processRow(d *builder) {
	row(d, 34, "Process")
	d.WithPanel(graph(35, "CPU", "percentunit",
		"CPU seconds used per second by the process.").
		WithTarget(query("A", `sum(rate(process_cpu_seconds_total{`+inst+`}[$__rate_interval]))`, "cpu")))
	d.WithPanel(graph(36, "Memory", "bytes",
		"Resident memory and Go heap in use.").
		WithTarget(query("A", `sum(process_resident_memory_bytes{`+inst+`})`, "rss")).
		WithTarget(query("B", `sum(go_memstats_heap_inuse_bytes{`+inst+`})`, "heap in use")))
	d.WithPanel(graph(37, "Goroutines", "short",
		"Live goroutines: steady under steady load; growth is a leak.").
		WithTarget(query("A", `sum(go_goroutines{`+inst+`})`, "goroutines")))
}
