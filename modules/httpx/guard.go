package httpx

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Serve serves app on ln until the app shuts down, like app.Listener, with the
// app's read, write and idle timeouts (fiber.Config ReadTimeout, WriteTimeout,
// IdleTimeout, as New sets them) enforced by a connection guard instead of
// fasthttp's per-request deadlines.
//
// fasthttp arms up to three socket deadlines per request (idle, read, write),
// each a runtime timer update; on the lookup path that is a measurable share of
// the server's CPU. The guard keeps the same limits with two atomic stores per
// read or write: each connection publishes the deadline of the read or write it
// is blocked in, and one goroutine per listener, ticking at a tenth of the
// shortest timeout (10 ms–500 ms), expires the operations past theirs by setting
// the socket's deadline into the past, which fails them with the same timeout
// error fasthttp's own deadlines give. The limits are:
//
//   - idle: a kept-alive connection waiting for the first byte of its next request;
//   - read: a new connection delivering its first request, and a request from its
//     first byte to its last (a slow head or body is cut, however steadily it drips);
//   - write: one response, from its first byte written until the client reads the
//     next request (a client that stops reading is cut).
//
// A handler's own time counts against none of them, as with fasthttp's deadlines.
// A timeout is never shorter than configured and at most two ticks longer. The
// guard sees reads and writes, not requests: a read that follows a write waits
// under the idle limit until its first byte, then under the read limit. So the
// rest of a pipelined request whose start was already buffered, or a body sent
// after a "100 Continue", gets up to idle + read rather than read: bounded, only
// more lenient.
// Serving the app with app.Listener instead keeps fasthttp's own deadlines: the
// same limits, at their cost. Serve changes the app's fasthttp server, so serve
// one app through Serve only.
func Serve(app *fiber.App, ln net.Listener) error {
	cfg := app.Config()
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = cfg.ReadTimeout // fasthttp's rule
	}
	g := newGuard(cfg.ReadTimeout, cfg.WriteTimeout, idle)
	if g == nil {
		return app.Listener(ln)
	}
	srv := app.Server()
	srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = 0, 0, 0
	gl := &guardListener{Listener: ln, g: g}
	go g.run()
	defer g.listenerClosed()
	return app.Listener(gl)
}

// guard tracks the connections of one listener and expires their overdue reads
// and writes.
type guard struct {
	read, write, idle int64 // nanoseconds; 0: no limit
	slack             int64 // added to every deadline: the coarse clock lags by up to a tick
	tick              time.Duration
	now               atomic.Int64 // coarse clock (Unix ns), advanced every tick

	mu     sync.Mutex
	conns  map[*guardConn]struct{}
	closed bool // the listener is closed: stop once the last connection is gone
}

func newGuard(read, write, idle time.Duration) *guard {
	shortest := time.Duration(0)
	for _, d := range []time.Duration{read, write, idle} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return nil
	}
	tick := min(max(shortest/10, 10*time.Millisecond), 500*time.Millisecond)
	g := &guard{
		read: int64(read), write: int64(write), idle: int64(idle),
		slack: int64(tick), tick: tick,
		conns: make(map[*guardConn]struct{}),
	}
	g.now.Store(time.Now().UnixNano())
	return g
}

// deadline returns the deadline of a limit d counted from now (coarse), or 0
// (none) when d is 0.
func (g *guard) deadline(d int64) int64 {
	if d == 0 {
		return 0
	}
	return g.now.Load() + d + g.slack
}

// run advances the clock and expires overdue operations until the listener is
// closed and its last connection is gone.
func (g *guard) run() {
	t := time.NewTicker(g.tick)
	defer t.Stop()
	for range t.C {
		now := time.Now().UnixNano()
		g.now.Store(now)
		g.mu.Lock()
		for c := range g.conns {
			c.expireIfOverdue(now)
		}
		done := g.closed && len(g.conns) == 0
		g.mu.Unlock()
		if done {
			return
		}
	}
}

func (g *guard) add(c *guardConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed && len(g.conns) == 0 {
		return false // the sweeper has stopped or is stopping
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *guard) remove(c *guardConn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// listenerClosed lets the sweeper stop once the connections still open (being
// drained by a shutdown) are gone.
func (g *guard) listenerClosed() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

type guardListener struct {
	net.Listener
	g *guard
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &guardConn{Conn: c, g: l.g}
	gc.reqDeadline = l.g.deadline(l.g.read) // the first request: read timeout from accept
	if !l.g.add(gc) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return gc, nil
}

// Connection phases, as seen from its reads and writes.
const (
	phaseRequest uint32 = iota // reading a request (or the first one of a new connection)
	phaseWrote                 // writing a response; the next read waits for a new request
	phaseIdle                  // waiting for the first byte of the next request
)

// guardConn is a served connection. fasthttp reads and writes a connection on
// one goroutine; the phase fields are still atomics so that the sweeper and
// Close may run beside it.
type guardConn struct {
	net.Conn
	g *guard

	readDL  atomic.Int64 // deadline of the read in progress (Unix ns), 0: none in progress
	writeDL atomic.Int64 // deadline of the write in progress

	phase         atomic.Uint32
	reqDeadline   int64 // phaseRequest: when the request must have been read; owned by the reader
	writeDeadline int64 // phaseWrote: when the response must have been written; owned by the writer
	closed        atomic.Bool
}

func (c *guardConn) Read(p []byte) (int, error) {
	var dl int64
	switch c.phase.Load() {
	case phaseRequest:
		dl = c.reqDeadline
	case phaseWrote:
		c.phase.Store(phaseIdle)
		dl = c.g.deadline(c.g.idle)
	default:
		dl = c.g.deadline(c.g.idle)
	}
	c.readDL.Store(dl)
	n, err := c.Conn.Read(p)
	c.readDL.Store(0)
	if n > 0 && c.phase.Load() == phaseIdle {
		c.phase.Store(phaseRequest)
		c.reqDeadline = c.g.deadline(c.g.read)
	}
	return n, err
}

func (c *guardConn) Write(p []byte) (int, error) {
	if c.phase.Load() != phaseWrote {
		c.phase.Store(phaseWrote)
		c.writeDeadline = c.g.deadline(c.g.write)
	}
	c.writeDL.Store(c.writeDeadline)
	n, err := c.Conn.Write(p)
	c.writeDL.Store(0)
	return n, err
}

func (c *guardConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.g.remove(c)
	}
	return c.Conn.Close()
}

// expireIfOverdue fails the read or write in progress if its deadline has passed:
// a deadline in the past makes the blocked call (and any later one) return
// os.ErrDeadlineExceeded, as fasthttp's own deadline would have. A deadline seen
// non-zero belongs to an operation in progress when it was read, so an operation
// that started after the check is only affected if the connection was overdue.
func (c *guardConn) expireIfOverdue(now int64) {
	if dl := c.readDL.Load(); dl != 0 && dl <= now {
		_ = c.Conn.SetReadDeadline(expired)
	}
	if dl := c.writeDL.Load(); dl != 0 && dl <= now {
		_ = c.Conn.SetWriteDeadline(expired)
	}
}

// expired is a deadline long past.
var expired = time.Unix(1, 0)
