// Command benchreport turns the output of the benchmarks run by `go tool task bench`
// into one table: each figure with the baseline measured in the same run, their
// ratio and the target set for it (see figures below). It reads standard `go test -bench` lines
// (custom metrics reported with testing.B.ReportMetric) from the files named as
// arguments, or from stdin, prints the table as Markdown and, with -json FILE,
// writes it as JSON as well. It exits 1 when a figure's benchmark is missing from
// the input, 2 on bad usage or unreadable input; a missed target is shown, not an
// error (performance is reported, never asserted).
//
//	go run ./modules/testkit/benchreport -json .cache/bench/bench.json .cache/bench/bench.txt
//
// The figures, their baselines and targets are the table figures below: this
// file is the benchmark's configuration as much as its formatter.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// figure is one row of the table: a metric of a benchmark and its baseline.
type figure struct {
	Bench          string // benchmark name without the -GOMAXPROCS suffix
	Name           string
	Metric         string // the figure's ReportMetric unit
	Baseline       string
	BaselineMetric string
	RatioMetric    string // the benchmark's own ratio; empty: Metric / BaselineMetric
	Target         string
	// Optional, when set, names what enables a benchmark that the bench task runs
	// only on request (e.g. "BACKLOG_BENCH=1"): its absence is shown as not run
	// instead of failing the run.
	Optional string
	// Met reports whether the measured metrics meet the target; nil: no target.
	Met func(m metrics) bool
}

// growthTask is what runs BenchmarkGrowth.
const growthTask = "go tool task bench:growth"

// metrics are one benchmark's results by unit.
type metrics map[string]float64

// figures is the table, in order.
var figures = []figure{
	{
		Bench: "BenchmarkUpsert/Interleaved", Name: "store UpsertBatch, 1,000-order batches (orders/s)",
		Metric: "upsert-orders/s", Baseline: "pgx COPY of the same rows", BaselineMetric: "copy-orders/s",
		RatioMetric: "upsert/copy", Target: ">= 0.7 x COPY",
		Met: func(m metrics) bool { return m["upsert/copy"] >= 0.7 },
	},
	{
		Bench: "BenchmarkIngest", Name: "ingest flow, Kafka backlog to committed (orders/s)",
		Metric: "orders/s", Baseline: "UpsertBatch directly, 1,000/batch", BaselineMetric: "baseline-orders/s",
		RatioMetric: "ratio", Target: ">= 10,000 orders/s",
		Met: func(m metrics) bool { return m["orders/s"] >= 10000 },
	},
	{
		Bench: "BenchmarkIngest", Name: "ingest flow (default writers) vs the write ceiling (orders/s)",
		Metric: "orders/s", Baseline: "pgx COPY, one connection, minimal schema (PKs, FKs, one index)", BaselineMetric: "copy-orders/s",
		RatioMetric: "copy-ratio", Target: ">= 0.85 x COPY",
		Met: func(m metrics) bool { return m["copy-ratio"] >= 0.85 },
	},
	{
		Bench: "BenchmarkIngest", Name: "ingest flow with the change feed vs without (orders/s)",
		Metric: "orders/s", Baseline: "the same flow, change feed off", BaselineMetric: "nofeed-orders/s",
		RatioMetric: "feed-ratio", Target: ">= 0.9 x without",
		Met: func(m metrics) bool { return m["feed-ratio"] >= 0.9 },
	},
	{
		Bench: "BenchmarkInstancesIngest", Name: "ingest with two instances vs one, same broker and database (orders/s)",
		Metric: "two-orders/s", Baseline: "one instance, same run (ABBA)", BaselineMetric: "one-orders/s",
		RatioMetric: "ratio", Target: ">= 0.9 x one",
		Met: func(m metrics) bool { return m["ratio"] >= 0.9 },
	},
	{
		Bench: "BenchmarkOrderLookupLoad", Name: "GET /order/{uid}, hot cache, 64 conns (req/s)",
		Metric: "req/s", Baseline: "bare Fiber handler, the same response bytes (body and headers) from a map", BaselineMetric: "bare-req/s",
		RatioMetric: "ratio", Target: ">= 40,000 req/s and >= 0.9 x bare",
		Met: func(m metrics) bool { return m["req/s"] >= 40000 && m["ratio"] >= 0.9 },
	},
	{
		Bench: "BenchmarkOrderLookupLoad", Name: "GET /order/{uid}, hot cache: p99 (ms)",
		Metric: "p99-ms", Baseline: "bare Fiber handler, the same response bytes (body and headers) from a map", BaselineMetric: "bare-p99-ms",
		Target: "<= 5 ms",
		Met:    func(m metrics) bool { return m["p99-ms"] <= 5 },
	},
	{
		Bench: "BenchmarkOrderLookupMissLoad", Name: "GET /order/{uid}, cache miss, 64 conns (req/s)",
		Metric: "req/s", Baseline: "bare Fiber handler: Store.Get + orders.EncodeJSON", BaselineMetric: "bare-req/s",
		RatioMetric: "ratio", Target: ">= 5,000 req/s and >= 0.9 x bare",
		Met: func(m metrics) bool { return m["req/s"] >= 5000 && m["ratio"] >= 0.9 },
	},
	{
		Bench: "BenchmarkOrderLookupMissLoad", Name: "GET /order/{uid}, cache miss: p99 (ms)",
		Metric: "p99-ms", Baseline: "bare Fiber handler: Store.Get + orders.EncodeJSON", BaselineMetric: "bare-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkFreshness", Name: "freshness at 2,000 orders/s: broker ack to servable, p99 (ms)",
		Metric: "p99-ms", Baseline: "the floor: a bare consumer COPYing each poll into the minimal schema, commit, p99 (ABCCBA)", BaselineMetric: "floor-p99-ms",
		Target: "<= 30 ms",
		Met:    func(m metrics) bool { return m["p99-ms"] <= 30 },
	},
	{
		Bench: "BenchmarkFreshness", Name: "freshness at 2,000 orders/s: broker ack to servable, p50 (ms)",
		Metric: "p50-ms", Baseline: "the floor, p50", BaselineMetric: "floor-p50-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkFreshness", Name: "freshness, adaptive batching vs a fixed 50 ms linger, p99 (ms)",
		Metric: "p99-ms", Baseline: "a fixed 50 ms batch linger instead, p99 (ABCCBA)", BaselineMetric: "linger-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkFeedLatency", Name: "change feed at 2,000 orders/s: commit to delivered on another reader, p99 (ms)",
		Metric: "p99-ms", Baseline: "the feed's read interval (without NOTIFY)", BaselineMetric: "poll-ms",
		Target: "<= 1,000 ms",
		Met:    func(m metrics) bool { return m["p99-ms"] <= 1000 },
	},
	{
		Bench: "BenchmarkWrites", Name: "PUT through the log, at rest: p99 (ms)",
		Metric: "put-p99-ms", Baseline: "the broker's ack alone, p99", BaselineMetric: "ack-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkWrites", Name: "DELETE through the log, at rest: p99 (ms)",
		Metric: "delete-p99-ms", Baseline: "the broker's ack alone, p99", BaselineMetric: "ack-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkWrites", Name: "PUT through the log, 2,000 orders/s ingest: p99 (ms)",
		Metric: "load-put-p99-ms", Baseline: "the broker's ack alone, p99", BaselineMetric: "ack-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkWrites", Name: "DELETE through the log, 2,000 orders/s ingest: p99 (ms)",
		Metric: "load-delete-p99-ms", Baseline: "the broker's ack alone, p99", BaselineMetric: "ack-p99-ms",
		Target: "-",
	},
	{
		Bench: "BenchmarkOrderLookupLoad", Name: "GET /order/{uid}, hot cache, vs a bare handler serving the body alone (req/s)",
		Metric: "req/s", Baseline: "bare Fiber handler, the body alone from a map (no service headers)", BaselineMetric: "body-req/s",
		RatioMetric: "body-ratio", Target: "-",
	},
	{
		Bench: "BenchmarkIngest", Name: "ingest flow, 1 writer, vs the write ceiling (orders/s)",
		Metric: "w1-orders/s", Baseline: "pgx COPY, one connection, minimal schema (PKs, FKs, one index)", BaselineMetric: "copy-orders/s",
		RatioMetric: "w1-copy-ratio", Target: "-",
	},
	{
		Bench: "BenchmarkIngest", Name: "ingest flow, 4 writers, vs the write ceiling (orders/s)",
		Metric: "w4-orders/s", Baseline: "pgx COPY, one connection, minimal schema (PKs, FKs, one index)", BaselineMetric: "copy-orders/s",
		RatioMetric: "w4-copy-ratio", Target: "-",
	},
	{
		Bench: "BenchmarkGrowth", Name: "ingest with 5,000,000 orders stored vs an empty database (orders/s)",
		Metric: "orders/s", Baseline: "the same on an empty database (ABBA)", BaselineMetric: "empty-orders/s",
		RatioMetric: "ingest-ratio", Target: ">= 0.8 x empty", Optional: growthTask,
		Met: func(m metrics) bool { return m["ingest-ratio"] >= 0.8 },
	},
	{
		Bench: "BenchmarkGrowth", Name: "cache-miss GET /order/{uid}, one client, 5,000,000 stored: p99 (ms)",
		Metric: "miss-p99-ms", Baseline: "the same on an empty database", BaselineMetric: "empty-miss-p99-ms",
		Target: "<= 5 ms", Optional: growthTask,
		Met: func(m metrics) bool { return m["miss-p99-ms"] <= 5 },
	},
	{
		Bench: "BenchmarkGrowth", Name: "cache-miss GET /order/{uid}, 64 clients, 5,000,000 stored (req/s)",
		Metric: "miss-req/s", Baseline: "the same on an empty database", BaselineMetric: "empty-miss-req/s",
		RatioMetric: "miss-ratio", Target: ">= 0.8 x empty", Optional: growthTask,
		Met: func(m metrics) bool { return m["miss-ratio"] >= 0.8 },
	},
	{
		Bench: "BenchmarkGrowth", Name: "list, the page after the middle vs the first page, 5,000,000 stored (ms)",
		Metric: "list-deep-ms", Baseline: "the first page, same database", BaselineMetric: "list-first-ms",
		RatioMetric: "list-ratio", Target: "within 2 x of each other", Optional: growthTask,
		Met: func(m metrics) bool { return m["list-ratio"] <= 2 && m["list-ratio"] >= 0.5 },
	},
	{
		Bench: "BenchmarkGrowth", Name: "start-up to /ready, 5,000,000 stored (s)",
		Metric: "startup-s", Baseline: "the same on an empty database", BaselineMetric: "empty-startup-s",
		Target: "<= 10 s", Optional: growthTask,
		Met: func(m metrics) bool { return m["startup-s"] <= 10 },
	},
	{
		Bench: "BenchmarkGrowth", Name: "cache warm-up after /ready (newest orders up to 256 MiB), 5,000,000 stored (s)",
		Metric: "warmup-s", Baseline: "start-up to /ready, same run (s)", BaselineMetric: "startup-s",
		RatioMetric: "none", Target: "-", Optional: growthTask,
	},
	{
		Bench: "BenchmarkGrowth", Name: "an index built by a migration during 2,000 orders/s: largest group lag (messages)",
		Metric: "index-max-lag", Baseline: "the build's duration (s)", BaselineMetric: "index-s",
		RatioMetric: "none", Target: "<= 4,000 (2 s of traffic)", Optional: growthTask,
		Met: func(m metrics) bool { return m["index-max-lag"] <= 4000 },
	},
	{
		Bench: "BenchmarkBacklogRSS", Name: "service peak RSS draining a 1,000,000-message backlog (MiB)",
		Metric: "peak-rss-MiB", Baseline: "the cache bound (cache.max_bytes)", BaselineMetric: "cache-max-MiB",
		Target: "< 512 MiB", Optional: "BACKLOG_BENCH=1",
		Met: func(m metrics) bool { return m["peak-rss-MiB"] < 512 },
	},
}

// Row is one figure as measured; it is also the JSON shape of a row.
type Row struct {
	Figure        string   `json:"figure"`
	Benchmark     string   `json:"benchmark"`
	Unit          string   `json:"unit"`
	Value         *float64 `json:"value"` // nil when the benchmark is missing
	Baseline      string   `json:"baseline"`
	BaselineValue *float64 `json:"baseline_value"`
	Ratio         *float64 `json:"ratio"`
	Target        string   `json:"target"`
	Met           *bool    `json:"met"` // nil: no target or no value
	// NotRun is set when an optional benchmark was not run: what enables it.
	NotRun string `json:"not_run,omitempty"`
}

// Report is the JSON document: the rows, every metric of every benchmark, and
// the run's context.
type Report struct {
	Date       string             `json:"date"`
	Context    map[string]string  `json:"context"` // goos, goarch, cpu, and -meta values
	Rows       []Row              `json:"rows"`
	Benchmarks map[string]metrics `json:"benchmarks"`
}

// benchLine matches a result line: name[-procs] iterations then value/unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// parse reads go test -bench output: the results by benchmark name (without the
// -GOMAXPROCS suffix; a benchmark seen twice keeps its last result) and the
// goos/goarch/cpu header lines.
func parse(r io.Reader) (map[string]metrics, map[string]string, error) {
	results := map[string]metrics{}
	header := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		for _, k := range []string{"goos", "goarch", "cpu"} {
			if v, ok := strings.CutPrefix(line, k+": "); ok {
				header[k] = v
			}
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			continue // not a result line (e.g. a log line starting with a benchmark's name)
		}
		res := metrics{}
		ok := true
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				ok = false
				break
			}
			res[fields[i+1]] = v
		}
		if ok {
			results[m[1]] = res
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return results, header, nil
}

// rows evaluates the figures against results; missing lists the benchmarks absent
// (optional ones not run are marked in their rows instead).
func rows(results map[string]metrics) (out []Row, missing []string) {
	return rowsOf(figures, results)
}

// rowsOf is rows for the figures figs.
func rowsOf(figs []figure, results map[string]metrics) (out []Row, missing []string) {
	seen := map[string]bool{}
	for _, f := range figs {
		r := Row{Figure: f.Name, Benchmark: f.Bench, Unit: f.Metric, Baseline: f.Baseline, Target: f.Target}
		m, ok := results[f.Bench]
		if !ok && f.Optional != "" {
			r.NotRun = f.Optional
			out = append(out, r)
			continue
		}
		if !ok {
			if !seen[f.Bench] {
				missing = append(missing, f.Bench)
				seen[f.Bench] = true
			}
			out = append(out, r)
			continue
		}
		if v, ok := m[f.Metric]; ok {
			r.Value = &v
		}
		if v, ok := m[f.BaselineMetric]; ok {
			r.BaselineValue = &v
		}
		if f.RatioMetric != "" {
			if v, ok := m[f.RatioMetric]; ok {
				r.Ratio = &v
			}
		} else if r.Value != nil && r.BaselineValue != nil && *r.BaselineValue != 0 {
			v := *r.Value / *r.BaselineValue
			r.Ratio = &v
		}
		if f.Met != nil && r.Value != nil {
			met := f.Met(m)
			r.Met = &met
		}
		out = append(out, r)
	}
	return out, missing
}

// num formats a figure: integers above 100, two decimals below.
func num(v *float64) string {
	switch {
	case v == nil:
		return "missing"
	case math.Abs(*v) >= 100:
		return thousands(int64(math.Round(*v)))
	default:
		return strconv.FormatFloat(*v, 'f', 2, 64)
	}
}

// thousands writes n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// markdown renders the rows as a Markdown table.
func markdown(w io.Writer, rs []Row) {
	fmt.Fprintln(w, "| figure | value | baseline (same run) | baseline value | ratio | target | met |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---|---|")
	for _, r := range rs {
		ratio := "-"
		if r.Ratio != nil {
			ratio = strconv.FormatFloat(*r.Ratio, 'f', 2, 64)
		}
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		value, baseline := num(r.Value), num(r.BaselineValue)
		if r.NotRun != "" {
			value, baseline = "not run ("+r.NotRun+")", "-"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Figure, value, r.Baseline, baseline, ratio, r.Target, met)
	}
}

// metaFlags collects repeated -meta key=value flags.
type metaFlags map[string]string

func (m metaFlags) String() string { return fmt.Sprint(map[string]string(m)) }

func (m metaFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonPath := fs.String("json", "", "also write the table as JSON to this file")
	svgPath := fs.String("svg", "", "also write a bar chart of the figures against their baselines as SVG to this file")
	htmlPath := fs.String("html", "", "also write a self-contained HTML page (the chart, the table, the run's context) to this file")
	only := fs.String("only", "", "only the figures of this benchmark (e.g. BenchmarkGrowth)")
	meta := metaFlags{}
	fs.Var(meta, "meta", "key=value recorded in the JSON context and printed under the table (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	input := stdin
	if fs.NArg() > 0 {
		var readers []io.Reader
		for _, name := range fs.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintf(stderr, "bench: %v\n", err)
				return 2
			}
			defer f.Close()
			readers = append(readers, f)
		}
		input = io.MultiReader(readers...)
	}
	results, header, err := parse(input)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	figs := figures
	if *only != "" {
		figs = nil
		for _, f := range figures {
			if f.Bench == *only {
				figs = append(figs, f)
			}
		}
		if len(figs) == 0 {
			fmt.Fprintf(stderr, "bench: -only %s: no such benchmark in the table\n", *only)
			return 2
		}
	}
	rs, missing := rowsOf(figs, results)
	markdown(stdout, rs)

	ctx := map[string]string{}
	for k, v := range header {
		ctx[k] = v
	}
	for k, v := range meta {
		ctx[k] = v
	}
	fmt.Fprintln(stdout)
	for _, k := range []string{"cpu", "goos", "goarch"} {
		if v, ok := ctx[k]; ok {
			fmt.Fprintf(stdout, "%s: %s\n", k, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		fmt.Fprintf(stdout, "%s: %s\n", k, meta[k])
	}
	date := time.Now().UTC().Format(time.RFC3339)
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{
		{*svgPath, func(w io.Writer) error { return svgChart(w, rs, "Benchmarks against their same-run baselines, "+date) }},
		{*htmlPath, func(w io.Writer) error { return htmlReport(w, rs, ctx, date) }},
	} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "chart: %s\n", out.path)
	}
	if *jsonPath != "" {
		rep := Report{Date: date, Context: ctx, Rows: rs, Benchmarks: results}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // targets read ">= 0.7 x COPY", not "\u003e= ..."
		enc.SetIndent("", "  ")
		err := enc.Encode(rep)
		if err == nil {
			err = os.WriteFile(*jsonPath, buf.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "bench: write json: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "json: %s\n", *jsonPath)
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "bench: no result for %s (did it fail?)\n", strings.Join(missing, ", "))
		return 1
	}
	return 0
}

// writeFile writes path with write.
func writeFile(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
