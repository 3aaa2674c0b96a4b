package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orderflow/orders-service/modules/orders"
)

// pgErr imitates a pgdriver error: SQLSTATE in Field('C').
type pgErr struct{ code string }

func (e pgErr) Error() string       { return "ERROR: #" + e.code }
func (e pgErr) Field(f byte) string { return map[byte]string{'C': e.code}[f] }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func do(t *testing.T, app *fiber.App, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	_ = resp.Body.Close()
	return resp, body
}

func errorJSON(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not a JSON object of strings: %v: %s", err, body)
	}
	if m["error"] == "" {
		t.Fatalf("error body has no \"error\": %s", body)
	}
	return m
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		status    int
		contains  string
		field     string
		notInBody string
	}{
		{"not found", fmt.Errorf("get: %w", orders.ErrNotFound), 404, "not found", "", ""},
		{"invalid uid", orders.ErrInvalidUID, 400, "uid", "", ""},
		{"invalid cursor", fmt.Errorf("list: %w", orders.ErrInvalidCursor), 400, "cursor", "", ""},
		{"invalid limit", orders.ErrInvalidLimit, 400, "limit", "", ""},
		{"decode", &orders.InvalidError{Class: orders.ClassDecode, Field: "payment.amount", Reason: "want a number"}, 400, "want a number", "payment.amount", ""},
		{"validation", fmt.Errorf("put: %w", &orders.InvalidError{Class: orders.ClassValidation, Field: "payment.goods_total", Reason: "not the sum"}), 422, "payment.goods_total", "payment.goods_total", ""},
		{"fiber error", fiber.NewError(fiber.StatusTeapot, "short and stout"), 418, "short and stout", "", ""},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), 503, "unavailable", "", "deadline"},
		{"conn refused", fmt.Errorf("read: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 503, "unavailable", "", "dial"},
		{"pg shutdown", fmt.Errorf("q: %w", pgErr{"57P01"}), 503, "unavailable", "", "57P01"},
		{"pg data error", fmt.Errorf("q: %w", pgErr{"23505"}), 500, "Internal Server Error", "", "23505"},
		{"internal", errors.New("secret table orders_x broke at 0xdeadbeef"), 500, "Internal Server Error", "", "secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := New(Config{Logger: quiet})
			app.Get("/x", func(*fiber.Ctx) error { return tt.err })
			resp, body := do(t, app, httptest.NewRequest("GET", "/x", nil))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
			m := errorJSON(t, body)
			if !strings.Contains(m["error"], tt.contains) {
				t.Errorf("error %q does not contain %q", m["error"], tt.contains)
			}
			if m["field"] != tt.field {
				t.Errorf("field %q, want %q", m["field"], tt.field)
			}
			if tt.notInBody != "" && bytes.Contains(body, []byte(tt.notInBody)) {
				t.Errorf("body leaks %q: %s", tt.notInBody, body)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	yes := []error{
		context.DeadlineExceeded, context.Canceled, io.ErrUnexpectedEOF,
		fmt.Errorf("x: %w", syscall.ECONNRESET),
		pgErr{"08006"},
		pgErr{"53300"},
		pgErr{"57P03"},
		errors.New("sql: database is closed"),
	}
	for _, err := range yes {
		if !Unavailable(err) {
			t.Errorf("Unavailable(%v) = false, want true", err)
		}
	}
	no := []error{nil, errors.New("boom"), pgErr{"23505"}, pgErr{"42P01"}, orders.ErrNotFound}
	for _, err := range no {
		if Unavailable(err) {
			t.Errorf("Unavailable(%v) = true, want false", err)
		}
	}
}

func TestUnauthorizedGetsChallenge(t *testing.T) {
	app := New(Config{Logger: quiet})
	app.Get("/x", func(*fiber.Ctx) error { return fiber.ErrUnauthorized })
	resp, body := do(t, app, httptest.NewRequest("GET", "/x", nil))
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	errorJSON(t, body)
}

func TestPanicRecovered(t *testing.T) {
	app := New(Config{Logger: quiet})
	app.Get("/boom", func(*fiber.Ctx) error { panic("secret panic detail") })
	resp, body := do(t, app, httptest.NewRequest("GET", "/boom", nil))
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	errorJSON(t, body)
	if bytes.Contains(body, []byte("secret")) {
		t.Errorf("panic detail leaked: %s", body)
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Error("no X-Request-ID on a recovered panic")
	}
	// the app still serves after a panic
	resp, _ = do(t, app, httptest.NewRequest("GET", "/boom", nil))
	if resp.StatusCode != 500 {
		t.Fatalf("second request: status %d", resp.StatusCode)
	}
}

func TestRequestID(t *testing.T) {
	app := New(Config{Logger: quiet})
	app.Get("/x", func(c *fiber.Ctx) error { return c.SendString(RequestID(c)) })

	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		resp, body := do(t, app, httptest.NewRequest("GET", "/x", nil))
		id := resp.Header.Get("X-Request-ID")
		if id == "" || seen[id] {
			t.Fatalf("request id %q empty or repeated", id)
		}
		if string(body) != id {
			t.Errorf("RequestID(c) = %q, header %q", body, id)
		}
		seen[id] = true
	}

	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("X-Request-ID", "trace-42.a:b_c")
	resp, _ := do(t, app, req)
	if got := resp.Header.Get("X-Request-ID"); got != "trace-42.a:b_c" {
		t.Errorf("incoming id not echoed: %q", got)
	}

	req = httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("X-Request-ID", "<script>")
	resp, _ = do(t, app, req)
	if got := resp.Header.Get("X-Request-ID"); got == "" || strings.Contains(got, "<") {
		t.Errorf("malformed incoming id not replaced: %q", got)
	}
}

func TestBodyLimit(t *testing.T) {
	app := New(Config{Logger: quiet, BodyLimit: 1024})
	app.Put("/x", func(c *fiber.Ctx) error { return c.SendStatus(200) })
	// app.Test reports an over-limit body as its own error, so use a real listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	url := "http://" + ln.Addr().String() + "/x"
	put := func(n int) (int, []byte) {
		req, _ := http.NewRequest("PUT", url, bytes.NewReader(make([]byte, n)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("PUT %d bytes: %v", n, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, body := put(2048); code != 413 {
		t.Fatalf("status %d, want 413 (%s)", code, body)
	} else {
		errorJSON(t, body)
	}
	if code, _ := put(1000); code != 200 {
		t.Fatalf("body under the limit: status %d", code)
	}
}

func TestMetricsUseRouteTemplate(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	app := New(Config{Logger: quiet, Registerer: reg})
	app.Get("/things/:id", func(c *fiber.Ctx) error {
		if c.Params("id") == "missing" {
			return orders.ErrNotFound
		}
		return c.SendString("ok")
	})
	for _, p := range []string{"/things/a", "/things/b", "/things/missing", "/nowhere/at/all"} {
		do(t, app, httptest.NewRequest("GET", p, nil))
	}
	want := map[string]uint64{
		`route="/things/:id",method="GET",status="200"`: 2,
		`route="/things/:id",method="GET",status="404"`: 1,
		`route="unmatched",method="GET",status="404"`:   1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "orders_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			key := fmt.Sprintf("route=%q,method=%q,status=%q", l["route"], l["method"], l["status"])
			got[key] = m.GetHistogram().GetSampleCount()
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d observations, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("label sets %v, want exactly %v", got, want)
	}
}

func TestOps(t *testing.T) {
	reg := prometheus.NewRegistry()
	ready := errors.New("kafka: no brokers reachable")
	var readyErr error
	stats := map[string]any{"stages": []any{map[string]any{"stage": "decode", "in": 3}}}
	var pipeline any
	app := New(Config{Logger: quiet, Registerer: reg})
	RegisterOps(app, Ops{
		Ready:   func(ctx context.Context) error { return readyErr },
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		PipelineStats: func(detailed bool) any {
			if m, ok := pipeline.(map[string]any); ok && detailed {
				return map[string]any{"stages": m["stages"], "error": "internal text"}
			}
			return pipeline
		},
		ReadyDetails: func() any { return map[string]string{"cache": "trusted"} },
		Trusted:      func(c *fiber.Ctx) bool { return c.Get("Authorization") == "Bearer t0ken" },
	})
	withToken := func(path string) *http.Request {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer t0ken")
		return r
	}

	resp, body := do(t, app, httptest.NewRequest("GET", "/health", nil))
	if resp.StatusCode != 200 || string(body) != `{"status":"ok"}` {
		t.Errorf("/health: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, app, httptest.NewRequest("GET", "/ready", nil))
	if resp.StatusCode != 200 || string(body) != `{"status":"ready"}` {
		t.Errorf("/ready while ready, no token: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, app, withToken("/ready"))
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"details":{"cache":"trusted"}`)) {
		t.Errorf("/ready while ready, with the token: %d %s", resp.StatusCode, body)
	}
	readyErr = ready
	// Without the token: the plain status, no internal text.
	resp, body = do(t, app, httptest.NewRequest("GET", "/ready", nil))
	if resp.StatusCode != 503 || string(body) != `{"status":"not ready"}` {
		t.Errorf("/ready while not ready, no token: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, app, withToken("/ready"))
	if resp.StatusCode != 503 || !bytes.Contains(body, []byte("no brokers reachable")) || !bytes.Contains(body, []byte("details")) || !json.Valid(body) {
		t.Errorf("/ready while not ready, with the token: %d %s", resp.StatusCode, body)
	}

	resp, body = do(t, app, httptest.NewRequest("GET", "/api/v1/pipeline/stats", nil))
	if resp.StatusCode != 200 || string(body) != `{"status":"not running"}` {
		t.Errorf("pipeline stats without a pipeline: %d %s", resp.StatusCode, body)
	}
	pipeline = stats
	resp, body = do(t, app, httptest.NewRequest("GET", "/api/v1/pipeline/stats", nil))
	if resp.StatusCode != 200 || string(body) != `{"stages":[{"in":3,"stage":"decode"}]}` {
		t.Errorf("pipeline stats: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, app, withToken("/api/v1/pipeline/stats"))
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"error":"internal text"`)) {
		t.Errorf("pipeline stats with the token: %d %s", resp.StatusCode, body)
	}

	resp, body = do(t, app, httptest.NewRequest("GET", "/metrics", nil))
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("# TYPE orders_http_request_duration_seconds histogram")) {
		t.Errorf("/metrics: %d %.300s", resp.StatusCode, body)
	}
	if !bytes.Contains(body, []byte(`orders_http_request_duration_seconds_count{method="GET",route="/health",status="200"} 1`)) {
		t.Errorf("/health was not measured by its route: %.2000s", body)
	}
}
