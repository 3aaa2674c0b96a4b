package ordershttp_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
)

// Load benchmark of the hot path: GET /order/{uid} answered from a hot cache by
// the full service stack (httpx shell with request id and metrics, real cached
// store over PostgreSQL), against a bare Fiber handler that serves the same bytes
// from a map, both on loopback listeners, measured in the same run with the same
// load generator and 64 connections.
//
//	go test -run '^$' -bench BenchmarkOrderLookupLoad -benchtime 1x ./modules/orders/ordershttp
//
// It uses wrk (-t2 -c64 --latency) when it is on PATH and a Go load generator
// otherwise (or with ORDERS_BENCH_LOADGEN=go). ORDERS_BENCH_DURATION sets the
// measured time per server (default 10s), split into alternating 2 s rounds. It reports req/s and p99 of both and
// their ratio (service / bare).
func BenchmarkOrderLookupLoad(b *testing.B) {
	dur := 10 * time.Second
	if s := os.Getenv("ORDERS_BENCH_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("ORDERS_BENCH_DURATION: %v", err)
		}
		dur = d
	}
	const conns = 64

	s := newServer(b, ordershttp.Options{APIToken: testToken})
	o, raw := testkit.Canonical(b)
	s.seed(b, o)
	entry, hit, err := s.store.GetJSON(context.Background(), canonicalUID)
	if err != nil || !hit {
		b.Fatalf("canonical order not cached: hit=%v err=%v", hit, err)
	}
	_ = raw
	body := entry.Body

	bare := bareApp(map[string][]byte{canonicalUID: body})
	// The same bare handler with the server timeouts the service runs with
	// (httpx defaults: read 10 s, write 30 s, idle 60 s): fasthttp sets a
	// deadline per request for them, a cost of the server's configuration
	// rather than of the handler and its middleware.
	timed := bareAppWith(map[string][]byte{canonicalUID: body}, fiber.Config{
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
	})

	serviceURL := listen(b, s.app)
	bareURL := listen(b, bare)
	timedURL := listen(b, timed)
	path := "/order/" + canonicalUID

	gen := "go"
	if _, err := exec.LookPath("wrk"); err == nil && os.Getenv("ORDERS_BENCH_LOADGEN") != "go" {
		gen = "wrk"
	}
	run := func(base string, d time.Duration) loadResult {
		if gen == "wrk" {
			return runWrk(b, base+path, conns, d)
		}
		return runGoLoad(b, strings.TrimPrefix(base, "http://"), []string{path}, conns, d, len(body))
	}

	// The two servers are measured in alternating rounds of 2 s, so that load from
	// other processes on the machine falls on both alike.
	const round = 2 * time.Second
	rounds := int(dur / round)
	if rounds < 1 {
		rounds = 1
	}
	b.ResetTimer()
	var svc, bar, tim loadResult
	for i := 0; i < b.N; i++ {
		run(bareURL, time.Second) // warm-up: connections, page faults, caches
		run(serviceURL, time.Second)
		run(timedURL, time.Second)
		var bars, svcs, tims []loadResult
		for r := 0; r < rounds; r++ {
			bars = append(bars, run(bareURL, round))
			svcs = append(svcs, run(serviceURL, round))
			tims = append(tims, run(timedURL, round))
		}
		bar, svc, tim = combine(bars), combine(svcs), combine(tims)
	}
	b.StopTimer()

	b.ReportMetric(tim.rps, "timed-req/s")
	b.ReportMetric(svc.rps/tim.rps, "timed-ratio")
	ratio := svc.rps / bar.rps
	b.ReportMetric(svc.rps, "req/s")
	b.ReportMetric(svc.p99.Seconds()*1e3, "p99-ms")
	b.ReportMetric(bar.rps, "bare-req/s")
	b.ReportMetric(bar.p99.Seconds()*1e3, "bare-p99-ms")
	b.ReportMetric(ratio, "ratio")
	b.Logf("load generator %s, %d connections, %s per server", gen, conns, dur)
	b.Logf("bare fiber : %9.0f req/s  p99 %v", bar.rps, bar.p99)
	b.Logf("service    : %9.0f req/s  p99 %v  (%.2f x bare)", svc.rps, svc.p99, ratio)
	b.Logf("bare with the service's server timeouts: %9.0f req/s  p99 %v  (service %.2f x it)", tim.rps, tim.p99, svc.rps/tim.rps)
}

// BenchmarkGetOrderHandler measures the hit path in-process (no network): the
// service app's handler chain for GET /order/{uid} on a hot cache, next to the
// bare handler of BenchmarkOrderLookupLoad. allocs/op is what one request
// allocates on top of fasthttp.
func BenchmarkGetOrderHandler(b *testing.B) {
	s := newServer(b, ordershttp.Options{})
	o, _ := testkit.Canonical(b)
	s.seed(b, o)
	body, _, err := s.store.GetJSON(context.Background(), canonicalUID)
	if err != nil {
		b.Fatal(err)
	}
	for _, app := range []struct {
		name string
		app  *fiber.App
	}{{"service", s.app}, {"bare", bareApp(map[string][]byte{canonicalUID: body.Body})}} {
		b.Run(app.name, func(b *testing.B) {
			h := app.app.Handler()
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("GET")
			ctx.Request.SetRequestURI("/order/" + canonicalUID)
			h(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("warm-up: %d", ctx.Response.StatusCode())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx.Response.Reset()
				h(&ctx)
			}
		})
	}
}

// bareApp is the baseline: a Fiber app that serves bodies from a map.
func bareApp(bodies map[string][]byte) *fiber.App {
	return bareAppWith(bodies, fiber.Config{})
}

// bareAppWith is bareApp with the server configuration cfg.
func bareAppWith(bodies map[string][]byte, cfg fiber.Config) *fiber.App {
	cfg.DisableStartupMessage = true
	bare := fiber.New(cfg)
	bare.Get("/order/:uid", func(c *fiber.Ctx) error {
		v, ok := bodies[c.Params("uid")]
		if !ok {
			return fiber.ErrNotFound
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(v)
	})
	return bare
}

type loadResult struct {
	rps float64
	p99 time.Duration
}

// combine averages the throughput of equal-length rounds and takes the median p99.
func combine(rs []loadResult) loadResult {
	var sum float64
	p99s := make([]time.Duration, 0, len(rs))
	for _, r := range rs {
		sum += r.rps
		p99s = append(p99s, r.p99)
	}
	slices.Sort(p99s)
	return loadResult{rps: sum / float64(len(rs)), p99: p99s[len(p99s)/2]}
}

// listen serves app on a loopback port until the benchmark ends; it returns the base URL.
func listen(b *testing.B, app *fiber.App) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(ln) }()
	b.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done })
	return "http://" + ln.Addr().String()
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)\b`)
)

// runWrk runs wrk with two threads (plus extra arguments, e.g. "-s", script) and
// returns its throughput and p99 latency; any non-2xx answer or socket error fails.
func runWrk(b *testing.B, url string, conns int, d time.Duration, extra ...string) loadResult {
	b.Helper()
	secs := max(int(d/time.Second), 1)
	args := append([]string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s", "--latency"}, extra...)
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("Non-2xx")) || bytes.Contains(out, []byte("Socket errors")) {
		b.Fatalf("wrk saw errors:\n%s", out)
	}
	m, p := wrkRPS.FindSubmatch(out), wrkP99.FindSubmatch(out)
	if m == nil || p == nil {
		b.Fatalf("cannot parse wrk output:\n%s", out)
	}
	rps, _ := strconv.ParseFloat(string(m[1]), 64)
	v, _ := strconv.ParseFloat(string(p[1]), 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[2])]
	return loadResult{rps: rps, p99: time.Duration(v * float64(unit))}
}

// runGoLoad keeps conns keep-alive connections busy for d with GETs of paths
// picked uniformly at random, one request in flight per connection, and checks
// every answer is a 200 with a body of bodyLen bytes (any non-empty body when
// bodyLen is 0).
func runGoLoad(b *testing.B, addr string, paths []string, conns int, d time.Duration, bodyLen int) loadResult {
	b.Helper()
	deadline := time.Now().Add(d)
	lat := make([][]time.Duration, conns)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			br := bufio.NewReaderSize(c, 16<<10)
			buf := make([]byte, max(bodyLen, 64<<10))
			var req []byte
			for {
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				req = append(req[:0], "GET "...)
				req = append(req, paths[rnd.IntN(len(paths))]...)
				req = append(req, " HTTP/1.1\r\nHost: "...)
				req = append(req, addr...)
				req = append(req, "\r\n\r\n"...)
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
				n, err := readResponse(br, buf)
				if err != nil || n == 0 || (bodyLen > 0 && n != bodyLen) {
					errs <- fmt.Errorf("response: %d bytes: %w", n, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	return loadSummary(b, lat, errs, time.Since(start))
}

// readResponse reads one HTTP/1.1 response with a Content-Length body into buf
// and returns the body length; a status other than 200 is an error.
func readResponse(br *bufio.Reader, buf []byte) (int, error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return 0, fmt.Errorf("status line %q", status)
	}
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("Content-Length:")) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if n < 0 || n > len(buf) {
		return 0, fmt.Errorf("content length %d", n)
	}
	_, err = io.ReadFull(br, buf[:n])
	return n, err
}

// loadSummary turns the workers' latencies into a loadResult; any worker error
// fails the benchmark.
func loadSummary(b *testing.B, lat [][]time.Duration, errs chan error, elapsed time.Duration) loadResult {
	b.Helper()
	close(errs)
	for err := range errs {
		b.Fatalf("load: %v", err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		b.Fatal("load: no request completed")
	}
	slices.Sort(all)
	return loadResult{rps: float64(len(all)) / elapsed.Seconds(), p99: all[len(all)*99/100]}
}
