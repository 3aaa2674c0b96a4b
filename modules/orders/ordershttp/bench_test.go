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

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
)

// Load benchmark of the hot path: GET /order/{uid} answered from a hot cache by
// the full service stack (httpx shell with request id and metrics, real cached
// store over PostgreSQL, served by httpx.Serve with the default timeouts as app
// serve does), against a bare Fiber handler that serves the same response bytes
// (body and headers) from a map, both on loopback listeners, measured in the same
// run with the same load generator and 64 connections. A second baseline serves
// the body alone (the service's response is about a fifth longer: its headers).
//
//	go test -run '^$' -bench BenchmarkOrderLookupLoad -benchtime 1x ./modules/orders/ordershttp
//
// It uses wrk (-t2 -c64 --latency) when it is on PATH and a Go load generator
// otherwise (or with ORDERS_BENCH_LOADGEN=go). ORDERS_BENCH_DURATION sets the
// measured time per server (default 10s), split into alternating 2 s rounds. It
// reports req/s and p99 of each and the ratios (service / bare, service / body alone).
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

	// The baseline serves the same response bytes as the service: the body and
	// the service's headers with values of the same length (a request id like the
	// service's at a million requests), so that the ratio is the cost of the
	// service's stack rather than of its response's size. The former baseline,
	// the body alone, is measured beside it.
	bare := bareApp(map[string][]byte{canonicalUID: body}, [][2]string{
		{"X-Request-Id", "5f3e9a1c-f4240"},
		{"X-Cache", "hit"},
		{"Cache-Control", "no-cache"},
		{"X-Order-Version", string(entry.VersionText)},
		{"Etag", string(entry.ETag)},
	})
	bodyOnly := bareApp(map[string][]byte{canonicalUID: body}, nil)

	serviceURL := listen(b, s.app, true) // as app serve serves it
	bareURL := listen(b, bare, false)
	bodyURL := listen(b, bodyOnly, false)
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

	// The servers are measured in alternating rounds of 2 s, so that load from
	// other processes on the machine falls on each alike.
	const round = 2 * time.Second
	rounds := int(dur / round)
	if rounds < 1 {
		rounds = 1
	}
	sameResponseBytes(b, serviceURL+path, bareURL+path)
	b.ResetTimer()
	var svc, bar, bod loadResult
	for i := 0; i < b.N; i++ {
		run(bareURL, time.Second) // warm-up: connections, page faults, caches
		run(serviceURL, time.Second)
		run(bodyURL, time.Second)
		var bars, svcs, bods []loadResult
		// The order of the servers in a round reverses every round (ABC CBA),
		// so that what one leaves behind falls on each alike.
		for r := 0; r < rounds; r++ {
			order := []func(){
				func() { bars = append(bars, run(bareURL, round)) },
				func() { svcs = append(svcs, run(serviceURL, round)) },
				func() { bods = append(bods, run(bodyURL, round)) },
			}
			if r%2 == 1 {
				slices.Reverse(order)
			}
			for _, f := range order {
				f()
			}
		}
		bar, svc, bod = combine(bars), combine(svcs), combine(bods)
	}
	b.StopTimer()

	b.ReportMetric(bod.rps, "body-req/s")
	b.ReportMetric(svc.rps/bod.rps, "body-ratio")
	ratio := svc.rps / bar.rps
	b.ReportMetric(svc.rps, "req/s")
	b.ReportMetric(svc.p99.Seconds()*1e3, "p99-ms")
	b.ReportMetric(bar.rps, "bare-req/s")
	b.ReportMetric(bar.p99.Seconds()*1e3, "bare-p99-ms")
	b.ReportMetric(ratio, "ratio")
	b.Logf("load generator %s, %d connections, %s per server", gen, conns, dur)
	b.Logf("bare fiber : %9.0f req/s  p99 %v", bar.rps, bar.p99)
	b.Logf("service    : %9.0f req/s  p99 %v  (%.2f x bare)", svc.rps, svc.p99, ratio)
	b.Logf("bare fiber, the body alone (%d bytes less): %9.0f req/s  p99 %v  (service %.2f x it)",
		responseLen(b, serviceURL+path)-responseLen(b, bodyURL+path), bod.rps, bod.p99, svc.rps/bod.rps)
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
	}{{"service", s.app}, {"bare", bareApp(map[string][]byte{canonicalUID: body.Body}, nil)}} {
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

// bareApp is the baseline: a Fiber app that serves bodies from a map, with the
// given response headers.
func bareApp(bodies map[string][]byte, headers [][2]string) *fiber.App {
	bare := fiber.New(fiber.Config{DisableStartupMessage: true})
	bare.Get("/order/:uid", func(c *fiber.Ctx) error {
		v, ok := bodies[c.Params("uid")]
		if !ok {
			return fiber.ErrNotFound
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		for _, h := range headers {
			c.Set(h[0], h[1])
		}
		return c.Send(v)
	})
	return bare
}

// rawGet returns the response to one GET of url, on a connection of its own, as
// the bytes received (the server closes the connection after it).
func rawGet(b *testing.B, url string) []byte {
	b.Helper()
	hostPath := strings.TrimPrefix(url, "http://")
	host, path, _ := strings.Cut(hostPath, "/")
	c, err := net.Dial("tcp", host)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		b.Fatal(err)
	}
	raw, err := io.ReadAll(c)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func responseLen(b *testing.B, url string) int { return len(rawGet(b, url)) }

// sameResponseBytes fails the benchmark unless the two servers answer url with
// responses of the same header names (in order), the same body and lengths within
// 4 bytes of each other (the request id's length varies): the baseline must serve
// what the service serves.
func sameResponseBytes(b *testing.B, serviceURL, bareURL string) {
	b.Helper()
	parse := func(raw []byte) (names []string, body []byte) {
		head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
		if !ok {
			b.Fatalf("no end of head in %.300q", raw)
		}
		for _, line := range strings.Split(string(head), "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			names = append(names, name)
		}
		return names, body
	}
	sr, br := rawGet(b, serviceURL), rawGet(b, bareURL)
	sn, sb := parse(sr)
	bn, bb := parse(br)
	if !slices.Equal(sn, bn) || !bytes.Equal(sb, bb) || len(sr)-len(br) > 4 || len(br)-len(sr) > 4 {
		b.Fatalf("the baseline does not serve the service's bytes:\nservice %d bytes %v\nbare    %d bytes %v", len(sr), sn, len(br), bn)
	}
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

// listen serves app on a loopback port until the benchmark ends, through
// httpx.Serve (its timeouts enforced by the connection guard, as app serve does)
// when guarded, else with app.Listener; it returns the base URL.
func listen(b *testing.B, app *fiber.App, guarded bool) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if guarded {
			_ = httpx.Serve(app, ln)
		} else {
			_ = app.Listener(ln)
		}
	}()
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
