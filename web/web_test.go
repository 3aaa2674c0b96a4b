package web_test

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/web"
)

func get(t *testing.T, app *fiber.App, path string, hdr ...string) (int, map[string]string, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	h := map[string]string{}
	for k := range resp.Header {
		h[k] = resp.Header.Get(k)
	}
	return resp.StatusCode, h, string(b)
}

func TestPageAndAssets(t *testing.T) {
	app := fiber.New()
	web.Register(app)

	code, h, body := get(t, app, "/")
	if code != 200 || !strings.HasPrefix(h["Content-Type"], "text/html") || !strings.Contains(strings.ToLower(body), "<html") {
		t.Fatalf("GET /: %d %q", code, h["Content-Type"])
	}
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if !strings.Contains(h[k], want) {
			t.Errorf("header %s = %q, want it to contain %q", k, h[k], want)
		}
	}
	if strings.Contains(h["Content-Security-Policy"], "unsafe-inline") {
		t.Errorf("CSP allows inline code: %s", h["Content-Security-Policy"])
	}

	// no inline script or style, no absolute or external URLs: the page works offline
	if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(body) {
		t.Error("index.html has an inline script")
	}
	if regexp.MustCompile(`\son[a-z]+=|\sstyle=|<style`).MatchString(body) {
		t.Error("index.html has inline handlers or styles")
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		if strings.Contains(m[1], "//") || strings.HasPrefix(m[1], "/") {
			t.Errorf("index.html references a non-relative URL %q", m[1])
		}
	}

	for path, ct := range map[string]string{
		"/assets/app.js":      "javascript",
		"/assets/style.css":   "text/css",
		"/assets/favicon.svg": "image/svg+xml",
	} {
		code, h, body := get(t, app, path)
		if code != 200 || !strings.Contains(h["Content-Type"], ct) || body == "" {
			t.Errorf("GET %s: %d %q", path, code, h["Content-Type"])
		}
		if h["X-Content-Type-Options"] != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			if path != "/assets/favicon.svg" { // the SVG namespace is a URI, not a fetch
				t.Errorf("%s references an absolute URL", path)
			}
		}
		code, _, _ = get(t, app, path, "If-None-Match", h["Etag"])
		if code != 304 {
			t.Errorf("GET %s with its ETag: %d, want 304", path, code)
		}
	}
	if code, _, _ := get(t, app, "/assets/index.html"); code != 404 {
		t.Errorf("index.html under /assets: %d, want 404", code)
	}
	if code, _, _ := get(t, app, "/assets/nope.js"); code != 404 {
		t.Errorf("unknown asset: %d, want 404", code)
	}

	_, _, js := get(t, app, "/assets/app.js")
	if strings.Contains(js, "innerHTML") || strings.Contains(js, "outerHTML") ||
		strings.Contains(js, "insertAdjacentHTML") || strings.Contains(js, "document.write") {
		t.Error("app.js uses an HTML-parsing sink")
	}
}
