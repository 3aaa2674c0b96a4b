package httpx

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// routeUnmatched labels requests that matched no route (404/405).
const routeUnmatched = "unmatched"

// errPanic is what a recovered panic becomes; it is logged once, where it is recovered.
var errPanic = fiber.NewError(fiber.StatusInternalServerError, "Internal Server Error")

// maxRequestIDLen bounds an accepted incoming X-Request-ID.
const maxRequestIDLen = 128

// shell is the single middleware wrapping every request: request id, panic
// recovery, error handling and the duration histogram. Doing it in one handler
// keeps the hot path to one extra c.Next() hop.
type shell struct {
	log      *slog.Logger
	hist     *prometheus.HistogramVec
	onError  fiber.ErrorHandler
	idPrefix [9]byte // 8 random hex digits and '-'
	idSeq    atomic.Uint64

	mu        sync.Mutex                                     // serialises writers of observers
	observers atomic.Pointer[map[obsKey]prometheus.Observer] // copy-on-write
}

type obsKey struct {
	route, method string
	status        int
}

func newShell(log *slog.Logger, hist *prometheus.HistogramVec, onError fiber.ErrorHandler) *shell {
	s := &shell{log: log, hist: hist, onError: onError}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms; fall back to the clock.
		v := uint32(time.Now().UnixNano())
		b = [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	}
	hex.Encode(s.idPrefix[:8], b[:])
	s.idPrefix[8] = '-'
	empty := map[obsKey]prometheus.Observer{}
	s.observers.Store(&empty)
	return s
}

func (s *shell) handle(c *fiber.Ctx) error {
	start := c.Context().Time() // fasthttp's clock reading just before the handler
	if start.IsZero() {         // a RequestCtx not served by a fasthttp server
		start = time.Now()
	}
	s.setRequestID(c)
	entry := c.Route()

	if err := s.next(c); err != nil {
		if herr := s.onError(c, err); herr != nil {
			c.Status(fiber.StatusInternalServerError)
		}
	}

	if s.hist == nil && !s.log.Enabled(c.Context(), slog.LevelDebug) {
		return nil
	}
	route := c.Route()
	path, method := route.Path, route.Method
	if route == entry {
		path, method = routeUnmatched, c.Method()
	}
	status := c.Response().StatusCode()
	elapsed := time.Since(start)
	if s.hist != nil {
		s.observer(path, method, status).Observe(elapsed.Seconds())
	}
	if s.log.Enabled(c.Context(), slog.LevelDebug) {
		s.log.LogAttrs(c.Context(), slog.LevelDebug, "http_request",
			slog.String("method", c.Method()), slog.String("path", c.Path()), slog.String("route", path),
			slog.Int("status", status), slog.Duration("duration", elapsed),
			slog.String("request_id", RequestID(c)))
	}
	return nil
}

// next runs the rest of the chain, turning a panic into an error.
func (s *shell) next(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("http_panic", "route", c.Route().Path, "request_id", RequestID(c),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = errPanic
		}
	}()
	return c.Next()
}

// setRequestID echoes a well-formed incoming X-Request-ID or makes a new one
// (random process prefix + sequence), without allocating.
func (s *shell) setRequestID(c *fiber.Ctx) {
	if in := c.Request().Header.Peek(fiber.HeaderXRequestID); validRequestID(in) {
		c.Response().Header.SetBytesV(fiber.HeaderXRequestID, in)
		return
	}
	var buf [32]byte
	n := copy(buf[:], s.idPrefix[:])
	b := strconv.AppendUint(buf[:n], s.idSeq.Add(1), 16)
	c.Response().Header.SetCanonical(keyRequestID, b)
}

// keyRequestID is X-Request-ID as fasthttp normalises it.
var keyRequestID = []byte("X-Request-Id")

func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > maxRequestIDLen {
		return false
	}
	for _, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == ':') {
			return false
		}
	}
	return true
}

// RequestID returns the id of the request being served (the X-Request-ID
// response header set by the app's middleware), or "" outside such an app.
func RequestID(c *fiber.Ctx) string {
	return string(c.Response().Header.Peek(fiber.HeaderXRequestID))
}

// observer returns the cached histogram child for the labels; lookups are
// lock-free and allocation-free, misses copy the small map once per new label set.
func (s *shell) observer(route, method string, status int) prometheus.Observer {
	k := obsKey{route: route, method: method, status: status}
	if o, ok := (*s.observers.Load())[k]; ok {
		return o
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := *s.observers.Load()
	if o, ok := cur[k]; ok {
		return o
	}
	// The strings may point into fasthttp's reusable buffers: own them.
	k.route, k.method = string([]byte(route)), string([]byte(method))
	o := s.hist.WithLabelValues(k.route, k.method, strconv.Itoa(status))
	next := make(map[obsKey]prometheus.Observer, len(cur)+1)
	for kk, v := range cur {
		next[kk] = v
	}
	next[k] = o
	s.observers.Store(&next)
	return o
}
