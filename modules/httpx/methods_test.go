package httpx

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// TestUnknownMethods checks that a method Fiber does not know gets a JSON error:
// 405 with the path's methods in Allow, or 404 for a path no route has, the same
// answers a known but unserved method gets.
func TestUnknownMethods(t *testing.T) {
	app := New(Config{Logger: quiet})
	app.Get("/things/:id", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Put("/things/:id", func(c *fiber.Ctx) error { return c.SendString("ok") })
	for _, tc := range []struct {
		method, path, allow string
		status              int
	}{
		{"QUERY", "/things/1", "GET, HEAD, PUT", 405},
		{"get", "/things/1/", "GET, HEAD, PUT", 405},
		{"FOO", "/nothing/here", "", 404},
		{"FOO", "/things/", "", 404},
		{"PATCH", "/things/1", "GET, HEAD, PUT", 405}, // known method: Fiber's own answer
		{"GET", "/things/1", "", 200},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		req.Method = tc.method
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status == 200 {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil || m["error"] == "" {
			t.Errorf("%s %s: body is not a JSON error: %q", tc.method, tc.path, body)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}
