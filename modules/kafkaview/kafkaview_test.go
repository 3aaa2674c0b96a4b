package kafkaview_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/modules/kafkaview"
)

func call(t *testing.T, app *fiber.App, path string) (int, map[string]any) {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, path, nil), 10_000)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %q: %v", path, body, err)
	}
	return resp.StatusCode, v
}

func newApp(o kafkaview.Options) *fiber.App {
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		code := fiber.StatusInternalServerError
		if fe, ok := err.(*fiber.Error); ok { //nolint:errorlint // the views return *fiber.Error unwrapped
			code = fe.Code
		}
		return c.Status(code).JSON(fiber.Map{"error": err.Error()})
	}})
	kafkaview.Register(app, o)
	return app
}

// TestReadsAreSharedAndReused: requests that arrive while a read runs wait for
// it and take its answer; a later one within the TTL reuses it; another limit
// reads again.
func TestReadsAreSharedAndReused(t *testing.T) {
	var reads atomic.Int32
	release := make(chan struct{})
	app := newApp(kafkaview.Options{
		TTL: time.Minute,
		DLQ: func(ctx context.Context, n int) (kafkaview.DLQRead, error) {
			reads.Add(1)
			<-release
			return kafkaview.DLQRead{Total: int64(n), Letters: []kafkaview.Letter{{Key: "a", Class: "decode", Value: []byte("v")}}}, nil
		},
	})
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = call(t, app, "/api/v1/dlq?limit=7")
		}()
	}
	for reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: status %d", i, c)
		}
	}
	code, v := call(t, app, "/api/v1/dlq?limit=7")
	if code != http.StatusOK || v["total"] != float64(7) {
		t.Errorf("reused answer: %d %v", code, v)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads for five requests of one limit within the TTL, want 1", n)
	}
	if letters := v["letters"].([]any); len(letters) != 1 || letters[0].(map[string]any)["value"] != nil || v["values"] != false {
		t.Errorf("untrusted answer carries values: %v", v)
	}
	call(t, app, "/api/v1/dlq?limit=8")
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads after another limit, want 2", n)
	}
}

// TestReadPastTheTimeoutIs503: a read that does not end within the timeout
// answers 503 with a JSON error saying so.
func TestReadPastTheTimeoutIs503(t *testing.T) {
	block := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	app := newApp(kafkaview.Options{
		Timeout: 50 * time.Millisecond,
		DLQ:     func(ctx context.Context, _ int) (kafkaview.DLQRead, error) { return kafkaview.DLQRead{}, block(ctx) },
		Group:   func(ctx context.Context) (kafkaview.Group, error) { return kafkaview.Group{}, block(ctx) },
	})
	for _, path := range []string{"/api/v1/dlq", "/api/v1/pipeline/group"} {
		code, v := call(t, app, path)
		if msg, _ := v["error"].(string); code != http.StatusServiceUnavailable || !strings.Contains(msg, "within 50ms") {
			t.Errorf("%s: %d %v, want 503 naming the bound", path, code, v)
		}
	}
	empty := newApp(kafkaview.Options{})
	for _, path := range []string{"/api/v1/dlq", "/api/v1/pipeline/group"} {
		if code, v := call(t, empty, path); code != http.StatusServiceUnavailable || v["error"] == "" {
			t.Errorf("%s unconfigured: %d %v, want 503", path, code, v)
		}
	}
}
