package ordershttp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
)

// fuzzMethods are the request methods FuzzRoutes picks from: the ones the routes
// serve, the ones they do not, and tokens no server knows.
var fuzzMethods = []string{"GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH", "TRACE", "FOO", "get"}

// fuzzRoutes are the path shapes FuzzRoutes builds from the fuzzed segment.
const (
	routeOrder    = iota // /order/{seg}
	routeAPIOrder        // /api/v1/orders/{seg}
	routeList            // /api/v1/orders?limit=..&cursor=..
	routeAsset           // /assets/{seg}
	routeAny             // /{seg}
	numRoutes
)

// FuzzRoutes drives the real service stack (httpx shell, order routes, page, a
// cached bun store on a fresh PostgreSQL database holding the canonical order)
// with fuzzed uid path segments, list limits and cursors, methods and tokens, and
// checks what must hold for any request:
//   - no 5xx (the database is up, so not even 503);
//   - every 4xx carries a JSON body {"error": "<non-empty>"};
//   - GET of an order by uid follows the uid rule: a segment that is not
//     (after URL-unescaping) 1..64 letters, digits, '-' or '_' is a 400; a valid
//     uid is 200 for the stored order and 404 otherwise;
//   - PUT and DELETE without the right token are 401, whatever the uid;
//   - the listing answers 400 for a limit that is not an integer in 1..1000 and
//     otherwise 200 with at most limit orders, or 400 for a bad cursor;
//   - the page routes never serve anything but their embedded files.
func FuzzRoutes(f *testing.F) {
	s := newServer(f, ordershttp.Options{APIToken: testToken})
	o, _ := testkit.Canonical(f)
	s.seed(f, o, withUID(o, "second-order_2"), withUID(o, strings.Repeat("Z", 64)))
	first := s.do(f, "GET", "/api/v1/orders?limit=1", "", nil)
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(first.body, &page); err != nil || page.NextCursor == "" {
		f.Fatalf("seed listing: %d %s", first.status, first.body)
	}

	type seed struct {
		route, method      uint8
		seg, limit, cursor string
		auth               uint8
	}
	for _, sd := range []seed{
		{routeOrder, 0, canonicalUID, "", "", 0},
		{routeOrder, 0, "b563feb7b2b84b6%74est", "", "", 0},
		{routeOrder, 1, canonicalUID, "", "", 0},
		{routeOrder, 0, "nosuchorder", "", "", 0},
		{routeOrder, 0, strings.Repeat("Z", 64), "", "", 0},
		{routeOrder, 0, strings.Repeat("Z", 65), "", "", 0},
		{routeOrder, 0, "..", "", "", 0},
		{routeOrder, 0, "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "", "", 0},
		{routeOrder, 0, "a%2Fb", "", "", 0},
		{routeOrder, 0, "%zz", "", "", 0},
		{routeOrder, 0, "%", "", "", 0},
		{routeOrder, 0, "%00", "", "", 0},
		{routeOrder, 0, "dots.not.allowed", "", "", 0},
		{routeOrder, 0, "<script>alert(1)</script>", "", "", 0},
		{routeOrder, 0, "\u00e9t\u00e9", "", "", 0},
		{routeOrder, 0, "' OR 1=1 --", "", "", 0},
		{routeOrder, 0, "abc/", "", "", 0},
		{routeOrder, 2, canonicalUID, "", "", 1},
		{routeAPIOrder, 0, "second-order_2", "", "", 0},
		{routeAPIOrder, 2, canonicalUID, "", "", 0},
		{routeAPIOrder, 2, canonicalUID, "", "", 1},
		{routeAPIOrder, 3, canonicalUID, "", "", 0},
		{routeAPIOrder, 3, "bad uid", "", "", 1},
		{routeAPIOrder, 4, canonicalUID, "", "", 0},
		{routeAPIOrder, 6, canonicalUID, "", "", 0},
		{routeList, 0, "", "", "", 0},
		{routeList, 0, "", "1", page.NextCursor, 0},
		{routeList, 0, "", "1000", "", 0},
		{routeList, 0, "", "1001", "", 0},
		{routeList, 0, "", "0", "", 0},
		{routeList, 0, "", "-1", "", 0},
		{routeList, 0, "", "+5", "", 0},
		{routeList, 0, "", "99999999999999999999999", "", 0},
		{routeList, 0, "", "1e3", "", 0},
		{routeList, 0, "", " 10", "", 0},
		{routeList, 0, "", "", "!!not-a-cursor", 0},
		{routeList, 0, "", "", "djE6MA", 0},
		{routeList, 0, "", "", "djE6LTE", 0},
		{routeList, 0, "", "", "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5", 0},
		{routeList, 0, "", "", strings.Repeat("A", maxFuzzField), 0},
		{routeList, 4, "", "10", "", 0},
		{routeAsset, 0, "app.js", "", "", 0},
		{routeAsset, 0, "../../etc/passwd", "", "", 0},
		{routeAsset, 0, "..%2f..%2fetc%2fpasswd", "", "", 0},
		{routeAsset, 0, "%2e%2e/%2e%2e/etc/passwd", "", "", 0},
		{routeAsset, 0, "..%252f..%252fetc%252fpasswd", "", "", 0},
		{routeAsset, 0, "index.html", "", "", 0},
		{routeAny, 0, "", "", "", 0},
		{routeAny, 0, "etc/passwd", "", "", 0},
		{routeAny, 7, "health", "", "", 0},
		{routeAny, 8, "health", "", "", 0},
		{routeAny, 9, "health", "", "", 0},
		{routeAny, 4, "api/v1/cache/warmup", "", "", 1},
		{routeAny, 0, "api/v1/openapi.yaml", "", "", 0},
		{routeAny, 8, "api/v1/orders", "", "", 0},
	} {
		f.Add(sd.route, sd.method, sd.seg, sd.limit, sd.cursor, sd.auth)
	}

	f.Fuzz(func(t *testing.T, route, method uint8, seg, limit, cursor string, auth uint8) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		// Request heads over the server's 4 KiB read buffer are refused (431) before
		// any route runs (TestOversizedRequestHead); app.Test reports them as errors.
		seg, limit, cursor = clip(seg), clip(limit), clip(cursor)
		seg = escapeTarget(seg)
		var path, query string
		switch route % numRoutes {
		case routeOrder:
			path = "/order/" + seg
		case routeAPIOrder:
			path = "/api/v1/orders/" + seg
		case routeList:
			path = "/api/v1/orders"
			q := url.Values{}
			if limit != "" {
				q.Set("limit", limit)
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			query = q.Encode()
		case routeAsset:
			path = "/assets/" + seg
		default:
			path = "/" + seg
		}
		req := &http.Request{
			Method: m,
			URL:    &url.URL{Opaque: path, RawQuery: query},
			Host:   "orders.test",
			Header: http.Header{},
			Body:   http.NoBody,
		}
		switch auth % 3 {
		case 1:
			req.Header.Set("Authorization", "Bearer wrong-"+testToken)
		case 2:
			req.Header.Set("Authorization", "Bearer "+seg)
		}
		resp, err := s.app.Test(req, 10_000)
		if err != nil {
			t.Fatalf("%s %s?%s: %v", m, path, query, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s?%s: read: %v", m, path, query, err)
		}
		status := resp.StatusCode
		what := m + " " + path
		if query != "" {
			what += "?" + query
		}

		if status >= 500 {
			t.Fatalf("%s: status %d: %.300s", what, status, body)
		}
		if status >= 400 && m != "HEAD" {
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%s: status %d with a body that is not JSON: %.300q", what, status, body)
			}
			if msg, _ := e["error"].(string); msg == "" {
				t.Fatalf("%s: status %d without an error message: %.300s", what, status, body)
			}
		}
		if bytes.Contains(body, []byte("root:")) {
			t.Fatalf("%s: the answer holds what looks like /etc/passwd: %.300s", what, body)
		}

		switch route % numRoutes {
		case routeOrder, routeAPIOrder:
			if seg == "" || strings.Contains(seg, "/") {
				return // another route (or none) answers: covered by the checks above
			}
			if m == "PUT" || m == "DELETE" {
				authorized := auth%3 == 2 && seg == testToken // the segment is sent as the token
				if route%numRoutes == routeAPIOrder && !authorized && status != http.StatusUnauthorized {
					t.Fatalf("%s without the token: status %d, want 401", what, status)
				}
				return
			}
			if m != "GET" && m != "HEAD" {
				return
			}
			want := http.StatusNotFound
			if uid, ok := uidOf(seg); !ok {
				want = http.StatusBadRequest
			} else if uid == canonicalUID || uid == "second-order_2" || uid == strings.Repeat("Z", 64) {
				want = http.StatusOK
			}
			if status != want {
				t.Fatalf("%s: status %d, want %d (uid rule): %.300s", what, status, want, body)
			}
		case routeList:
			if m != "GET" {
				return
			}
			n := ordershttp.DefaultListLimit
			if limit != "" {
				v, err := strconv.Atoi(limit)
				if err != nil || v < 1 || v > orders.MaxListLimit {
					if status != http.StatusBadRequest {
						t.Fatalf("%s: limit %q: status %d, want 400", what, limit, status)
					}
					return
				}
				n = v
			}
			switch {
			case status == http.StatusOK:
				var p struct {
					Orders     []json.RawMessage `json:"orders"`
					NextCursor *string           `json:"next_cursor"`
				}
				if err := json.Unmarshal(body, &p); err != nil || p.Orders == nil || p.NextCursor == nil {
					t.Fatalf("%s: 200 with a body that is not a page: %.300s", what, body)
				}
				if len(p.Orders) > n {
					t.Fatalf("%s: %d orders over the limit %d", what, len(p.Orders), n)
				}
			case status == http.StatusBadRequest && cursor != "":
				// a cursor the store did not hand out
			default:
				t.Fatalf("%s: status %d, want 200 (or 400 for a bad cursor): %.300s", what, status, body)
			}
		case routeAsset:
			if status == http.StatusOK && !isAsset(seg) {
				t.Fatalf("%s: 200 for a name that is not an embedded asset: %.300s", what, body)
			}
		}
	})
}

// maxFuzzField bounds each fuzzed string, so that a request head, with every
// byte percent-encoded, fits the server's 4 KiB read buffer.
const maxFuzzField = 512

func clip(s string) string {
	if len(s) > maxFuzzField {
		return s[:maxFuzzField]
	}
	return s
}

// escapeTarget percent-encodes the bytes that cannot appear in an HTTP
// request-target (controls, space, non-ASCII, '?', '#'), leaving everything
// else (including '%', '/' and '.') as the fuzzer made it.
func escapeTarget(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '"' || c == '\\' || c == '<' || c == '>' ||
			c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// uidOf applies the path rule of the order routes to a raw path segment: it is
// URL-unescaped when it holds a '%', then must be a valid uid.
func uidOf(seg string) (string, bool) {
	uid := seg
	if strings.Contains(seg, "%") {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return "", false
		}
		uid = u
	}
	return uid, orders.ValidUID(uid)
}

// isAsset reports whether name is one of the files the page serves under /assets/.
func isAsset(name string) bool {
	switch name {
	case "app.js", "style.css", "favicon.svg":
		return true
	}
	return false
}
