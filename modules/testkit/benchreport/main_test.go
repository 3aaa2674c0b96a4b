package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/orderflow/orders-service/modules/orders/ordersdb
cpu: AMD EPYC
BenchmarkUpsert/Interleaved-2         	      20	 150000000 ns/op	     14000 copy-orders/s	     11000 upsert-orders/s	         0.7857 upsert/copy
PASS
pkg: github.com/orderflow/orders-service/pipeline/ingest
BenchmarkIngest-2   	       1	8996964590 ns/op	     16071 baseline-orders/s	     19565 copy-orders/s	         0.3155 copy-ratio	      6173 orders/s	         0.3841 ratio	         0.2111 startup-s	      6500 nofeed-orders/s	         0.9497 feed-ratio	      5000 w1-orders/s	         0.2556 w1-copy-ratio	      7000 w4-orders/s	         0.3578 w4-copy-ratio
--- BENCH: BenchmarkIngest-2
    bench_test.go:98: 20000 orders per iteration
BenchmarkOrderLookupLoad-2   	       1	22000000000 ns/op	         3.1 bare-p99-ms	     50000 bare-req/s	         4.2 p99-ms	         0.86 ratio	     43000 req/s
BenchmarkOrderLookupMissLoad-2   	       1	10867029377 ns/op	        96.75 bare-p99-ms	      2831 bare-req/s	         0.9734 miss-ratio	        96.60 p99-ms	         1.022 ratio	      2894 req/s
BenchmarkFreshness-2   	       1	15631951124 ns/op	        17.49 floor-p50-ms	        78.24 floor-p99-ms	        63.44 http-p99-ms	        50.00 linger-ms	       172.5 linger-p99-ms	        83.37 max-ms	      2000 orders/s	        38.83 p50-ms	        67.67 p99-ms	        52.36 to-upsert-p99-ms	        23.87 upsert-p99-ms
BenchmarkInstancesIngest-2   	       1	30000000000 ns/op	      7000 one-orders/s	      6800 two-orders/s	         0.9714 ratio
BenchmarkFeedLatency-2   	       1	3227909863 ns/op	         3.663 max-ms	         1.033 p50-ms	         3.663 p99-ms	       200.0 poll-ms
BenchmarkWrites-2   	       1	30000000000 ns/op	         3.1 ack-p50-ms	         6.2 ack-p99-ms	        60.1 delete-p50-ms	        90.2 delete-p99-ms	        50.00 linger-ms	        70.5 load-delete-p50-ms	       120.3 load-delete-p99-ms	      1990 load-orders/s	        71.0 load-put-p50-ms	       130.0 load-put-p99-ms	        58.0 put-p50-ms	        88.0 put-p99-ms
`

func TestParseAndRows(t *testing.T) {
	res, hdr, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if hdr["cpu"] != "AMD EPYC" || hdr["goos"] != "linux" {
		t.Errorf("header %v", hdr)
	}
	if got := res["BenchmarkUpsert/Interleaved"]["upsert/copy"]; got != 0.7857 {
		t.Errorf("upsert/copy %v", got)
	}
	if got := res["BenchmarkIngest"]["startup-s"]; got != 0.2111 {
		t.Errorf("startup-s %v", got)
	}
	if len(res) != 8 {
		t.Errorf("%d benchmarks parsed, want 8: %v", len(res), res)
	}
	rs, missing := rows(res)
	if len(missing) != 0 {
		t.Fatalf("missing %v", missing)
	}
	byName := map[string]Row{}
	for _, r := range rs {
		byName[r.Figure] = r
	}
	up := byName[figures[0].Name]
	if *up.Value != 11000 || *up.BaselineValue != 14000 || *up.Ratio != 0.7857 || !*up.Met {
		t.Errorf("upsert row %+v", up)
	}
	in := byName[figures[1].Name]
	if *in.Value != 6173 || *in.Ratio != 0.3841 || *in.Met {
		t.Errorf("ingest row %+v", in)
	}
	p99 := byName[figures[6].Name] // hot p99: ratio computed from value / baseline
	if r := *p99.Ratio; r < 1.35 || r > 1.36 || !*p99.Met {
		t.Errorf("hot p99 row %+v ratio %v", p99, r)
	}
	miss := byName[figures[7].Name]
	if *miss.Met {
		t.Errorf("2,894 req/s meets >= 5,000: %+v", miss)
	}
	if last := byName[figures[8].Name]; last.Met != nil {
		t.Errorf("row without a target has met=%v", *last.Met)
	}
	fresh := byName[figures[9].Name]
	if *fresh.Value != 67.67 || *fresh.BaselineValue != 78.24 || *fresh.Met {
		t.Errorf("freshness row %+v", fresh)
	}
	if p50 := byName[figureOf(t, "BenchmarkFreshness", "p50-ms").Name]; *p50.Value != 38.83 || *p50.BaselineValue != 17.49 || p50.Met != nil {
		t.Errorf("freshness p50 row %+v", p50)
	}
	lingerRows := 0
	for _, f := range figures {
		if f.BaselineMetric == "linger-p99-ms" {
			lingerRows++
			if l := byName[f.Name]; *l.Value != 67.67 || *l.BaselineValue != 172.5 {
				t.Errorf("freshness vs linger row %+v", l)
			}
		}
	}
	if lingerRows != 1 {
		t.Errorf("%d rows compare with the fixed linger, want 1", lingerRows)
	}
	// the backlog benchmark is optional: absent, it is marked, not missing
	if two := byName[figures[4].Name]; *two.Value != 6800 || *two.Ratio != 0.9714 || !*two.Met {
		t.Errorf("two instances row %+v", two)
	}
	if fc := byName[figures[3].Name]; *fc.Ratio != 0.9497 || !*fc.Met {
		t.Errorf("feed cost row %+v", fc)
	}
	if fl := byName[figureOf(t, "BenchmarkFeedLatency", "p99-ms").Name]; *fl.Value != 3.663 || *fl.BaselineValue != 200 || !*fl.Met {
		t.Errorf("feed latency row %+v", fl)
	}
	if put := byName[figureOf(t, "BenchmarkWrites", "load-put-p99-ms").Name]; *put.Value != 130 || *put.BaselineValue != 6.2 || put.Met != nil {
		t.Errorf("PUT under load row %+v", put)
	}
	if w4 := byName[figureOf(t, "BenchmarkIngest", "w4-orders/s").Name]; *w4.Value != 7000 || *w4.BaselineValue != 19565 || *w4.Ratio != 0.3578 || w4.Met != nil {
		t.Errorf("4 writers row %+v", w4)
	}
	if rss := byName[figures[len(figures)-1].Name]; rss.NotRun != "BACKLOG_BENCH=1" || rss.Value != nil || rss.Met != nil {
		t.Errorf("backlog row %+v", rss)
	}
}

// figureOf returns the figure of bench with metric.
func figureOf(t *testing.T, bench, metric string) figure {
	t.Helper()
	for _, f := range figures {
		if f.Bench == bench && f.Metric == metric {
			return f
		}
	}
	t.Fatalf("no figure %s %s", bench, metric)
	return figure{}
}

func TestGrowthOnly(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "growth.txt")
	line := "BenchmarkGrowth-2 1 1 ns/op 4.1 empty-miss-p99-ms 3000 empty-miss-req/s 12000 empty-orders/s 1.2 empty-startup-s " +
		"900 index-max-lag 35.5 index-s 0.95 ingest-ratio 3.1 list-deep-ms 2.9 list-first-ms 1.07 list-ratio 4.7 miss-p99-ms " +
		"0.7 miss-ratio 2100 miss-req/s 11400 orders/s 1.5 startup-s 5000000 stored-orders 2.5 warmup-s\n"
	if err := os.WriteFile(in, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"-only", "BenchmarkGrowth", in}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	table := out.String()
	for _, want := range []string{"| 11,400 |", "| 0.95 |", ">= 0.8 x empty | yes", "| 4.70 |", "<= 5 ms | yes", "| 0.70 | >= 0.8 x empty | NO", "| 900 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "BenchmarkIngest") || strings.Contains(table, "hot cache") {
		t.Errorf("-only shows other benchmarks:\n%s", table)
	}
	if code := run([]string{"-only", "BenchmarkNope", in}, nil, &out, &errOut); code != 2 {
		t.Errorf("-only of an unknown benchmark: exit %d, want 2", code)
	}
}

func TestOptionalBenchmarkMeasured(t *testing.T) {
	res, _, err := parse(strings.NewReader("BenchmarkBacklogRSS-2 1 1 ns/op 600.5 peak-rss-MiB 256 cache-max-MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := rows(res)
	r := rs[len(rs)-1]
	if r.Benchmark != "BenchmarkBacklogRSS" || r.NotRun != "" || *r.Value != 600.5 || *r.Met {
		t.Errorf("backlog row %+v: 600.5 MiB does not meet < 512 MiB", r)
	}
}

func TestRunWritesTableAndJSONAndFlagsMissing(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	// only the lookup benchmarks: upsert and ingest are missing
	lines := strings.Split(sample, "\n")
	var part []string
	for _, l := range lines {
		if strings.HasPrefix(l, "BenchmarkOrderLookup") {
			part = append(part, l)
		}
	}
	if err := os.WriteFile(in, []byte(strings.Join(part, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "bench.json")
	var out, errOut bytes.Buffer
	code := run([]string{"-json", js, "-meta", "load_before=1.5", in}, nil, &out, &errOut)
	if code != 1 {
		t.Errorf("exit %d with missing benchmarks, want 1", code)
	}
	if !strings.Contains(errOut.String(), "BenchmarkUpsert/Interleaved") || !strings.Contains(errOut.String(), "BenchmarkIngest") {
		t.Errorf("stderr does not name the missing benchmarks: %s", errOut.String())
	}
	table := out.String()
	for _, want := range []string{"| figure | value |", "| 43,000 |", "| missing |", "| not run (BACKLOG_BENCH=1) |", "load_before: 1.5"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	raw, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(figures) || rep.Context["load_before"] != "1.5" || rep.Benchmarks["BenchmarkOrderLookupLoad"]["req/s"] != 43000 {
		t.Errorf("json report: %s", raw)
	}
	if rep.Rows[0].Value != nil {
		t.Errorf("missing benchmark has a value: %+v", rep.Rows[0])
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%d) = %q, want %q", in, got, want)
		}
	}
}

// svgElem is the part of an SVG element the chart test reads.
type svgElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Kids    []svgElem  `xml:",any"`
}

func (e svgElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestChartsDrawEachFigureAgainstItsBaseline(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bench.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	svgPath, htmlPath := filepath.Join(dir, "bench.svg"), filepath.Join(dir, "bench.html")
	var out, errOut bytes.Buffer
	if code := run([]string{"-svg", svgPath, "-html", htmlPath, "-meta", "load_before=<script>alert(1)</script>", in}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	raw, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	var root svgElem
	if err := xml.Unmarshal(raw, &root); err != nil {
		t.Fatalf("chart is not well-formed XML: %v", err)
	}
	// Each bar is a rect followed by its label; collect them in order.
	type barOf struct {
		width  float64
		colour string
		label  string
	}
	var bars []barOf
	for i, k := range root.Kids {
		if k.XMLName.Local != "rect" || k.attr("height") != strconv.Itoa(barHeight) || i+1 >= len(root.Kids) {
			continue
		}
		w, err := strconv.ParseFloat(k.attr("width"), 64)
		if err != nil {
			t.Fatalf("bar width %q: %v", k.attr("width"), err)
		}
		bars = append(bars, barOf{w, k.attr("fill"), root.Kids[i+1].Text})
	}
	find := func(label string) barOf {
		t.Helper()
		for _, b := range bars {
			if b.label == label {
				return b
			}
		}
		t.Fatalf("no bar labelled %q in %+v", label, bars)
		return barOf{}
	}
	// upsert: 11,000 (met, green) against COPY 14,000 (full width)
	up, copyBar := find("11,000 upsert-orders/s"), find("14,000 baseline")
	if copyBar.width != barsWidth || copyBar.colour != colourBaseline {
		t.Errorf("baseline bar %+v, want full width grey", copyBar)
	}
	if want := 11000.0 / 14000 * barsWidth; up.width < want-0.1 || up.width > want+0.1 || up.colour != colourMet {
		t.Errorf("upsert bar %+v, want width %.1f green", up, want)
	}
	// ingest 6,173 orders/s misses its target: red
	if ing := find("6,173 orders/s"); ing.colour != colourNotMet {
		t.Errorf("ingest bar %+v, want red", ing)
	}
	if !strings.Contains(string(raw), "not run (BACKLOG_BENCH=1)") {
		t.Error("the optional benchmark's row does not say it was not run")
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg ", "&lt;script&gt;alert(1)&lt;/script&gt;", "<td class=\"n\">11,000</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "<script>") {
		t.Error("page carries a script from the run's context unescaped")
	}
}
