package ordershttp_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
)

// Abuse tests: what a hostile or broken client can send to the real service
// stack. Where the transport matters (body and head limits, timeouts, raw
// request targets) they talk to a real loopback listener over a raw net.Conn,
// so no client library fixes up the request on the way.

// liveServer runs the service stack (as in newServer) with the given shell
// configuration on a loopback listener and returns its address.
func liveServer(t *testing.T, cfg httpx.Config, opts ordershttp.Options) (string, *server) {
	t.Helper()
	db := dbtest.New(t)
	store := orderscache.NewStore(db.Store, orderscache.New(16<<20), orderscache.Options{})
	cfg.Logger, cfg.Registerer = quiet, prometheus.NewRegistry()
	app := ordershttp.NewApp(store, ordershttp.AppConfig{HTTP: cfg, Orders: opts})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = httpx.Serve(app, ln) }() // as app serve does
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done })
	return ln.Addr().String(), &server{app: app, store: store, db: db.Bun}
}

// rawResponse is what came back on a raw connection.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// rawRequest writes head (and body) on a fresh connection to addr exactly as
// given and reads one response. The connection has a 30 s deadline.
func rawRequest(t *testing.T, addr, head string, body []byte) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// The server may answer and close before reading all of a body it refuses:
	// write in the background and read the answer here.
	go func() {
		_, _ = io.WriteString(conn, head)
		if len(body) > 0 {
			_, _ = conn.Write(body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%.80q: read response: %v", head, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%.80q: read body: %v", head, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// wantJSONError checks that r has status and a JSON {"error": "..."} body.
func wantJSONError(t *testing.T, what string, r rawResponse, status ...int) {
	t.Helper()
	ok := false
	for _, s := range status {
		ok = ok || r.status == s
	}
	if !ok {
		t.Errorf("%s: status %d, want %v (body %.200q)", what, r.status, status, r.body)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Errorf("%s: %d with a body that is not JSON: %.200q", what, r.status, r.body)
		return
	}
	if msg, _ := m["error"].(string); msg == "" {
		t.Errorf("%s: %d without an error message: %.200s", what, r.status, r.body)
	}
}

// TestOversizedBodies sends bodies over the 1 MiB bound in the ways a client
// can: a declared Content-Length (refused before the body is read), a chunked
// body that grows past the bound, and a body just over the bound. Each is a
// 413 with a JSON error, with or without a token, and nothing is stored.
func TestOversizedBodies(t *testing.T) {
	addr, s := liveServer(t, httpx.Config{}, ordershttp.Options{APIToken: testToken})
	path := "/api/v1/orders/" + canonicalUID
	auth := "Authorization: Bearer " + testToken + "\r\n"

	head := func(extra string) string {
		return "PUT " + path + " HTTP/1.1\r\nHost: orders.test\r\nContent-Type: application/json\r\n" + extra + "\r\n"
	}
	// declared length far over the bound, body never sent
	for _, a := range []string{auth, ""} {
		r := rawRequest(t, addr, head(a+"Content-Length: 1073741824\r\n"), nil)
		wantJSONError(t, "PUT with Content-Length 1 GiB (auth "+fmt.Sprint(a != "")+")", r, http.StatusRequestEntityTooLarge)
	}
	// a body of exactly 1 MiB + 1 byte
	big := make([]byte, httpx.DefaultBodyLimit+1)
	for i := range big {
		big[i] = ' '
	}
	r := rawRequest(t, addr, head(auth+fmt.Sprintf("Content-Length: %d\r\n", len(big))), big)
	wantJSONError(t, "PUT with a 1 MiB + 1 byte body", r, http.StatusRequestEntityTooLarge)

	// a chunked body that never declares its length and grows to 4 MiB
	var chunked strings.Builder
	chunk := strings.Repeat("a", 64<<10)
	for i := 0; i < 64; i++ {
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	chunked.WriteString("0\r\n\r\n")
	r = rawRequest(t, addr, head(auth+"Transfer-Encoding: chunked\r\n"), []byte(chunked.String()))
	wantJSONError(t, "PUT with a 4 MiB chunked body", r, http.StatusRequestEntityTooLarge)

	if got := s.do(t, "GET", "/order/"+canonicalUID, "", nil); got.status != http.StatusNotFound {
		t.Errorf("an oversized PUT stored something: GET answers %d", got.status)
	}
}

// TestOversizedRequestHead sends a request line and a header over the server's
// 4 KiB read buffer: 431 with a JSON error, no crash, no partial routing.
func TestOversizedRequestHead(t *testing.T) {
	addr, _ := liveServer(t, httpx.Config{}, ordershttp.Options{})
	long := strings.Repeat("A", 8<<10)
	r := rawRequest(t, addr, "GET /api/v1/orders?cursor="+long+" HTTP/1.1\r\nHost: orders.test\r\n\r\n", nil)
	wantJSONError(t, "8 KiB cursor", r, http.StatusRequestHeaderFieldsTooLarge)
	r = rawRequest(t, addr, "GET /health HTTP/1.1\r\nHost: orders.test\r\nX-Big: "+long+"\r\n\r\n", nil)
	wantJSONError(t, "8 KiB header", r, http.StatusRequestHeaderFieldsTooLarge)
}

// dripUntilClosed writes the lines one at a time, pausing between them, until the
// server closes the connection. It reports whether the server closed it before all
// lines were written, and what the server sent back.
func dripUntilClosed(t *testing.T, conn net.Conn, prefix string, lines []string, pause time.Duration) (closed bool, answer []byte) {
	t.Helper()
	readDone := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(conn) // ends at EOF or reset: the server closed
		readDone <- b
	}()
	if _, err := io.WriteString(conn, prefix); err != nil {
		return true, <-readDone
	}
	for _, l := range lines {
		select {
		case b := <-readDone:
			return true, b
		case <-time.After(pause):
		}
		if _, err := io.WriteString(conn, l); err != nil {
			return true, <-readDone // broken pipe or reset: closed by the server
		}
	}
	// all lines sent and the server still holds the connection: let the caller
	// fail, after giving a last answer a moment
	select {
	case b := <-readDone:
		return true, b
	case <-time.After(2 * pause):
		return false, nil
	}
}

// TestSlowClients checks that the server's read and idle timeouts close
// connections of clients that send a request head or body too slowly
// (slowloris) or sit idle, instead of holding them open: with a 300 ms read
// timeout, a client that sends one header line every 50 ms for up to 20 s must
// see the server close the connection while it is still sending. The assertion
// is on who closes the connection, not on how long it took.
func TestSlowClients(t *testing.T) {
	cfg := httpx.Config{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	addr, _ := liveServer(t, cfg, ordershttp.Options{APIToken: testToken})
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	const drips = 400
	const pause = 50 * time.Millisecond

	t.Run("slow headers", func(t *testing.T) {
		lines := make([]string, drips)
		for i := range lines {
			lines[i] = fmt.Sprintf("X-Slow-%d: a\r\n", i)
		}
		closed, answer := dripUntilClosed(t, dial(), "GET /health HTTP/1.1\r\nHost: orders.test\r\n", lines, pause)
		if !closed {
			t.Fatalf("the server kept a connection open through %d slowly sent header lines", drips)
		}
		if strings.HasPrefix(string(answer), "HTTP/1.1 200") {
			t.Fatalf("a request whose head never ended was answered 200: %.200q", answer)
		}
	})
	t.Run("slow body", func(t *testing.T) {
		lines := make([]string, drips)
		for i := range lines {
			lines[i] = "a"
		}
		head := fmt.Sprintf("PUT /api/v1/orders/%s HTTP/1.1\r\nHost: orders.test\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", canonicalUID, testToken, drips+1)
		closed, answer := dripUntilClosed(t, dial(), head, lines, pause)
		if !closed {
			t.Fatalf("the server kept a connection open through a %d-byte body sent one byte at a time", drips)
		}
		if strings.HasPrefix(string(answer), "HTTP/1.1 2") {
			t.Fatalf("an unfinished body was answered 2xx: %.200q", answer)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dial()
		if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: orders.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("keep-alive request: %d close=%v", resp.StatusCode, resp.Close)
		}
		// send nothing more: the server must close the idle connection
		// (the 60 s deadline set on our side fails the read instead)
		rest, err := io.ReadAll(br)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server never closed an idle keep-alive connection")
		}
		if len(rest) != 0 {
			t.Fatalf("unexpected bytes on an idle connection: %.200q", rest)
		}
	})
}

// TestHugeLimitsAndBadCursors checks the listing's parameter bounds: every limit
// that is not an integer in 1..1000 and every cursor the service did not hand out
// is a 400 with a JSON error, never a 500 or an unbounded page.
func TestHugeLimitsAndBadCursors(t *testing.T) {
	s := newServer(t, ordershttp.Options{})
	o, _ := testkit.Canonical(t)
	s.seed(t, o, withUID(o, "another1"))
	b64 := base64.RawURLEncoding.EncodeToString
	for _, q := range []string{
		"limit=1001", "limit=1000000", "limit=2147483648", "limit=9223372036854775807",
		"limit=9223372036854775808", "limit=18446744073709551616", "limit=-9223372036854775808",
		"limit=1e3", "limit=0x10", "limit=1.5", "limit=%20", "limit=10%00", "limit=NaN", "limit=Infinity",
		"limit=2000&limit=10", "limit=10&limit=10", "limit=", "limit=&limit=5",
		"cursor=a&cursor=b", "cursor=&cursor=",
		"cursor=" + b64([]byte("v1:0")),
		"cursor=" + b64([]byte("v1:-5")),
		"cursor=" + b64([]byte("v1:007")),
		"cursor=" + b64([]byte("v1:99999999999999999999")),
		"cursor=" + b64([]byte("v2:5")),
		"cursor=" + b64([]byte("v1:5 OR 1=1")),
		"cursor=" + b64([]byte("v1:5;DROP TABLE orders")),
		"cursor=" + base64.URLEncoding.EncodeToString([]byte("v1:5")), // padded
		"cursor=" + base64.StdEncoding.EncodeToString([]byte("v1:5>?")),
		"cursor=%00", "cursor=%FF%FE", "cursor=" + strings.Repeat("A", 2000),
	} {
		r := s.do(t, "GET", "/api/v1/orders?"+q, "", nil)
		wantError(t, "GET /api/v1/orders?"+fmt.Sprintf("%.60s", q), r, http.StatusBadRequest)
	}
	// the largest page is served and bounded by what exists
	r := s.do(t, "GET", "/api/v1/orders?limit=1000", "", nil)
	var p listPage
	if r.status != 200 || json.Unmarshal(r.body, &p) != nil || len(p.Orders) != 2 {
		t.Fatalf("limit=1000: %d %.200s", r.status, r.body)
	}
}

// TestPageRouteTraversal sends path-traversal attempts in raw request targets
// (no client normalises them) to the page routes and the rest of the router:
// each is a 404 or 400 with a JSON error; no answer holds a file of the host
// or of the source tree.
func TestPageRouteTraversal(t *testing.T) {
	addr, _ := liveServer(t, httpx.Config{}, ordershttp.Options{})
	for _, target := range []string{
		"/assets/../../etc/passwd",
		"/assets/../../../../../../etc/passwd",
		"/assets/..%2f..%2fetc%2fpasswd",
		"/assets/..%2F..%2F..%2Fetc%2Fpasswd",
		"/assets/%2e%2e/%2e%2e/etc/passwd",
		"/assets/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		"/assets/..%252f..%252fetc%252fpasswd",
		"/assets/%252e%252e%252fetc%252fpasswd",
		"/assets/..%c0%af..%c0%afetc%c0%afpasswd",
		"/assets/....//....//etc/passwd",
		"/assets/..;/..;/etc/passwd",
		"/assets/..%5c..%5cetc%5cpasswd",
		"/assets/%00../../etc/passwd",
		"/assets/app.js%00.html",
		"/assets/../web.go",
		"/assets/..%2fweb.go",
		"/assets/../assets/../../go.mod",
		"/assets//etc/passwd",
		"/assets/",
		"/assets/index.html",
		"/../../etc/passwd",
		"/%2e%2e/%2e%2e/etc/passwd",
		"//etc/passwd",
		"/etc/passwd",
		"/web.go",
		"/order/..%2f..%2fetc%2fpasswd",
		"/api/v1/orders/..%2f..%2fetc%2fpasswd",
	} {
		r := rawRequest(t, addr, "GET "+target+" HTTP/1.1\r\nHost: orders.test\r\n\r\n", nil)
		wantJSONError(t, "GET "+target, r, http.StatusNotFound, http.StatusBadRequest)
		for _, leak := range []string{"root:", "package web", "module github.com", "<html"} {
			if strings.Contains(string(r.body), leak) {
				t.Errorf("GET %s: the answer holds %q: %.200s", target, leak, r.body)
			}
		}
	}
	// the real assets are still served
	if r := rawRequest(t, addr, "GET /assets/app.js HTTP/1.1\r\nHost: orders.test\r\n\r\n", nil); r.status != 200 {
		t.Errorf("GET /assets/app.js: %d", r.status)
	}
}

// TestTokens sends every protected endpoint a table of missing, malformed and
// wrong credentials: all 401 with a Bearer challenge; only the exact token (the
// scheme name is case-insensitive) gets through. With no token configured, the
// endpoints answer 403 whatever is sent.
func TestTokens(t *testing.T) {
	s := newServer(t, ordershttp.Options{APIToken: testToken})
	disabled := newServer(t, ordershttp.Options{})
	endpoints := []struct{ method, path string }{
		{"PUT", "/api/v1/orders/" + canonicalUID},
		{"DELETE", "/api/v1/orders/" + canonicalUID},
		{"POST", "/api/v1/cache/warmup"},
	}
	denied := []struct{ name, header string }{
		{"missing", ""},
		{"scheme only", "Bearer"},
		{"empty token", "Bearer "},
		{"blank token", "Bearer    "},
		{"wrong", "Bearer wrong"},
		{"prefix of the token", "Bearer " + testToken[:len(testToken)-1]},
		{"token with a suffix", "Bearer " + testToken + "x"},
		{"token with a NUL suffix", "Bearer " + testToken + "\x00"},
		{"case changed", "Bearer " + strings.ToUpper(testToken)},
		{"two tokens", "Bearer " + testToken + " " + testToken},
		{"basic scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+testToken))},
		{"token scheme", "Token " + testToken},
		{"no scheme", testToken},
		{"bearer glued", "Bearer" + testToken},
	}
	for _, ep := range endpoints {
		for _, d := range denied {
			req := func(srv *server) reply {
				if d.header == "" {
					return srv.do(t, ep.method, ep.path, "", nil)
				}
				return srv.do(t, ep.method, ep.path, "", nil, "Authorization", d.header)
			}
			what := ep.method + " " + ep.path + " with " + d.name + " credentials"
			r := req(s)
			wantError(t, what, r, http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: no Bearer challenge: %q", what, r.header.Get("WWW-Authenticate"))
			}
			wantError(t, what+" (no token configured)", req(disabled), http.StatusForbidden)
		}
		// the token in the query string is not a credential
		wantError(t, ep.method+" with ?access_token=", s.do(t, ep.method, ep.path+"?access_token="+testToken, "", nil), http.StatusUnauthorized)
		// the right token gets past authentication (the handlers then answer on their own terms)
		for _, h := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER " + testToken} {
			if r := s.do(t, ep.method, ep.path, "", nil, "Authorization", h); r.status == 401 || r.status == 403 {
				t.Errorf("%s with %q: %d", ep.method+" "+ep.path, h, r.status)
			}
			if r := disabled.do(t, ep.method, ep.path, "", nil, "Authorization", h); r.status != http.StatusForbidden {
				t.Errorf("%s with no token configured: %d, want 403", ep.method+" "+ep.path, r.status)
			}
		}
	}
}
