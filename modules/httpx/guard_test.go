package httpx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// The connection guard must keep the limits fasthttp's own deadlines keep. Each
// case runs against both: httpx.Serve (the guard) and app.Listener (fasthttp's
// per-request deadlines), so a difference between them is a failure of the guard.
// The assertions are on who closes a connection and what was answered, never on
// how long it took.
func TestServeTimeouts(t *testing.T) {
	const limit = 300 * time.Millisecond
	for _, mode := range []struct {
		name  string
		serve func(*fiber.App, net.Listener) error
	}{
		{"guard", Serve},
		{"fasthttp deadlines", func(app *fiber.App, ln net.Listener) error { return app.Listener(ln) }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			app := New(Config{Logger: quiet, ReadTimeout: limit, WriteTimeout: limit, IdleTimeout: limit})
			app.Get("/ok", func(c *fiber.Ctx) error { return c.SendString("ok") })
			app.Get("/slow", func(c *fiber.Ctx) error {
				time.Sleep(3 * limit) // a handler's own time counts against no limit
				return c.SendString("slow")
			})
			big := bytes.Repeat([]byte("x"), 64<<20)
			app.Get("/big", func(c *fiber.Ctx) error { return c.Send(big) })
			app.Put("/echo", func(c *fiber.Ctx) error { return c.Send(c.Body()) })
			addr := serveOn(t, app, mode.serve)

			t.Run("slow head is cut", func(t *testing.T) {
				c := dialRaw(t, addr)
				if _, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: t\r\n"); err != nil {
					t.Fatal(err)
				}
				// one header line every 50 ms, for up to 10 s: the read limit is 300 ms
				if drip(c, func(i int) string { return fmt.Sprintf("X-Drip-%d: a\r\n", i) }) {
					t.Fatal("the server kept a connection open through 10 s of a slowly sent head")
				}
				if answer, _ := readAll(c); strings.HasPrefix(answer, "HTTP/1.1 200") {
					t.Fatalf("a head that never ended was answered: %.100q", answer)
				}
			})
			t.Run("slow body is cut", func(t *testing.T) {
				c := dialRaw(t, addr)
				if _, err := io.WriteString(c, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				if drip(c, func(int) string { return "a" }) {
					t.Fatal("the server kept a connection open through 10 s of a slowly sent body")
				}
				if answer, _ := readAll(c); strings.HasPrefix(answer, "HTTP/1.1 200") {
					t.Fatalf("an unfinished body was answered: %.100q", answer)
				}
			})
			t.Run("idle keep-alive is closed", func(t *testing.T) {
				c := dialRaw(t, addr)
				br := bufio.NewReader(c)
				get(t, c, br, "/ok", "ok")
				_, err := br.ReadByte() // the client sends nothing more
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the server never closed an idle keep-alive connection")
				}
			})
			t.Run("a slow handler and a short pause are served", func(t *testing.T) {
				c := dialRaw(t, addr)
				br := bufio.NewReader(c)
				get(t, c, br, "/slow", "slow")
				time.Sleep(limit / 3)
				get(t, c, br, "/ok", "ok") // the same connection, kept alive
				get(t, c, br, "/slow", "slow")
			})
			t.Run("a client that stops reading is cut", func(t *testing.T) {
				c := dialRaw(t, addr)
				if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second) // the socket buffers fill; the write limit is 300 ms
				n, err := io.Copy(io.Discard, c)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the server held a stalled response for 30 s")
				}
				if n >= int64(len(big)) {
					t.Fatalf("the client got the whole %d-byte response after stalling: the write was not cut", n)
				}
			})
		})
	}
}

// TestServeStopsItsGuard checks that the guard's goroutine ends with the server.
func TestServeStopsItsGuard(t *testing.T) {
	guards := func() int {
		buf := make([]byte, 1<<20)
		return strings.Count(string(buf[:runtime.Stack(buf, true)]), "httpx.(*guard).run")
	}
	before := guards()
	app := New(Config{Logger: quiet, ReadTimeout: 100 * time.Millisecond})
	app.Get("/ok", func(c *fiber.Ctx) error { return c.SendString("ok") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(app, ln) }()
	c := dialRaw(t, ln.Addr().String())
	get(t, c, bufio.NewReader(c), "/ok", "ok")
	if guards() != before+1 {
		t.Fatalf("guard goroutines: %d, want %d while serving", guards(), before+1)
	}
	if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for guards() != before {
		if time.Now().After(deadline) {
			t.Fatalf("the guard goroutine outlived the server: %d running, want %d", guards(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func serveOn(t *testing.T, app *fiber.App, serve func(*fiber.App, net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = serve(app, ln) }()
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(5 * time.Second); <-done })
	return ln.Addr().String()
}

// dialRaw connects to addr with a 30 s deadline on the client's side, so that a
// server that never closes fails the test instead of hanging it.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func get(t *testing.T, c net.Conn, br *bufio.Reader, path, want string) {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("GET %s: %d %q %v, want 200 %q", path, resp.StatusCode, body, err, want)
	}
}

// drip sends piece(i) every 50 ms, 200 times, and reports whether every write
// succeeded: false means the server closed the connection on the way.
func drip(c net.Conn, piece func(i int) string) bool {
	for i := 0; i < 200; i++ {
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(c, piece(i)); err != nil {
			return false
		}
	}
	return true
}

func readAll(c net.Conn) (string, error) {
	b, err := io.ReadAll(c)
	return string(b), err
}
