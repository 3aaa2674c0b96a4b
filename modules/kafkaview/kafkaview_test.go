package kafkaview_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// get answers GET path (with the API token when token is set): its status
// and JSON body. Safe from any goroutine: it reports errors, not t.Fatal.
func get(app *fiber.App, path string, token bool) (int, map[string]any, error) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	resp, err := app.Test(req, 10_000)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, nil, fmt.Errorf("GET %s: %q: %w", path, body, err)
	}
	return resp.StatusCode, v, nil
}

// call is get without the token, from the test's goroutine.
func call(t *testing.T, app *fiber.App, path string) (int, map[string]any) {
	t.Helper()
	code, v, err := get(app, path, false)
	if err != nil {
		t.Fatal(err)
	}
	return code, v
}

const testToken = "view-token"

func trusted(c *fiber.Ctx) bool { return c.Get("Authorization") == "Bearer "+testToken }

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
// it and take its answer; later ones within the TTL reuse it, whatever their
// limit: there is one read, of the newest MaxDLQLimit, sliced per request.
func TestReadsAreSharedAndReused(t *testing.T) {
	var reads atomic.Int32
	release := make(chan struct{})
	base := time.Now()
	app := newApp(kafkaview.Options{
		TTL: time.Minute,
		DLQ: func(ctx context.Context, n int) (kafkaview.DLQRead, error) {
			reads.Add(1)
			<-release
			var ls []kafkaview.Letter
			for i := range 3 {
				ls = append(ls, kafkaview.Letter{Key: fmt.Sprint("k", i), Offset: int64(i), Time: base.Add(time.Duration(i) * time.Second), Class: "decode", Value: []byte("v")})
			}
			return kafkaview.DLQRead{Total: int64(n), Letters: ls}, nil
		},
	})
	var wg sync.WaitGroup
	codes := make([]int, 4)
	errs := make([]error, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, errs[i] = get(app, "/api/v1/dlq?limit=7", false)
		}()
	}
	for reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if errs[i] != nil || c != http.StatusOK {
			t.Errorf("request %d: status %d, %v", i, c, errs[i])
		}
	}
	code, v := call(t, app, "/api/v1/dlq?limit=7")
	if code != http.StatusOK || v["total"] != float64(kafkaview.MaxDLQLimit) {
		t.Errorf("reused answer: %d %v, want the read of the newest %d", code, v, kafkaview.MaxDLQLimit)
	}
	if letters := v["letters"].([]any); len(letters) != 3 || letters[0].(map[string]any)["value"] != nil || v["values"] != false {
		t.Errorf("untrusted answer carries values: %v", v)
	}
	for _, limit := range []int{2, 199, 200, 1} {
		code, v := call(t, app, fmt.Sprint("/api/v1/dlq?limit=", limit))
		letters, _ := v["letters"].([]any)
		if code != http.StatusOK || len(letters) != min(limit, 3) || letters[0].(map[string]any)["key"] != "k2" {
			t.Errorf("limit %d: %d, %d letters %v; want the newest %d, k2 first", limit, code, len(letters), letters, min(limit, 3))
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads for nine requests of four limits within the TTL, want 1", n)
	}
}

// TestPrivateFieldsOnlyWithTheToken: without the token a letter has only its
// x-* headers and no value, and a member neither its member id nor its host;
// with the token, all of them.
func TestPrivateFieldsOnlyWithTheToken(t *testing.T) {
	app := newApp(kafkaview.Options{
		Trusted: trusted,
		DLQ: func(context.Context, int) (kafkaview.DLQRead, error) {
			return kafkaview.DLQRead{Letters: []kafkaview.Letter{{
				Key: "a", Value: []byte("secret"),
				Headers: []kafkaview.Header{{Key: "x-error", Value: "bad"}, {Key: "customer-email", Value: "a@b.c"}, {Key: "x-stage", Value: "decode"}},
			}}}, nil
		},
		Group: func(context.Context) (kafkaview.Group, error) {
			return kafkaview.Group{ID: "g", Members: []kafkaview.Member{{ClientID: "c", InstanceID: "i", MemberID: "i-123", Host: "/10.0.0.7"}}}, nil
		},
	})
	for _, token := range []bool{false, true} {
		_, v, err := get(app, "/api/v1/dlq", token)
		if err != nil {
			t.Fatal(err)
		}
		l := v["letters"].([]any)[0].(map[string]any)
		var keys []string
		for _, h := range l["headers"].([]any) {
			keys = append(keys, h.(map[string]any)["key"].(string))
		}
		want, wantValue := "x-error,x-stage", any(nil)
		if token {
			want, wantValue = "x-error,customer-email,x-stage", "secret"
		}
		if strings.Join(keys, ",") != want || l["value"] != wantValue {
			t.Errorf("token %v: headers %v, value %v; want %s and %v", token, keys, l["value"], want, wantValue)
		}
		_, g, err := get(app, "/api/v1/pipeline/group", token)
		if err != nil {
			t.Fatal(err)
		}
		m := g["members"].([]any)[0].(map[string]any)
		_, hasHost := m["host"]
		_, hasID := m["member_id"]
		if hasHost != token || hasID != token || m["instance_id"] != "i" || m["client_id"] != "c" {
			t.Errorf("token %v: member %v; want host and member_id only with the token", token, m)
		}
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
	// A reader whose client gave up on its own timeout (kafkaedge marks it
	// context.DeadlineExceeded) before the request's deadline.
	timedOut := fmt.Errorf("read: %w: Local: Timed out", context.DeadlineExceeded)
	early := newApp(kafkaview.Options{
		Timeout: 50 * time.Millisecond,
		DLQ:     func(context.Context, int) (kafkaview.DLQRead, error) { return kafkaview.DLQRead{}, timedOut },
		Group:   func(context.Context) (kafkaview.Group, error) { return kafkaview.Group{}, timedOut },
	})
	for _, a := range []*fiber.App{app, early} {
		for _, path := range []string{"/api/v1/dlq", "/api/v1/pipeline/group"} {
			code, v := call(t, a, path)
			if msg, _ := v["error"].(string); code != http.StatusServiceUnavailable || !strings.Contains(msg, "within 50ms") {
				t.Errorf("%s: %d %v, want 503 naming the bound", path, code, v)
			}
		}
	}
	empty := newApp(kafkaview.Options{})
	for _, path := range []string{"/api/v1/dlq", "/api/v1/pipeline/group"} {
		if code, v := call(t, empty, path); code != http.StatusServiceUnavailable || v["error"] == "" {
			t.Errorf("%s unconfigured: %d %v, want 503", path, code, v)
		}
	}
}
