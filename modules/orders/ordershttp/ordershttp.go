// Package ordershttp serves the orders module over HTTP: order lookups straight
// from the cache's pre-encoded JSON, the newest-first listing, the token-protected
// writes (PUT, DELETE, cache warmup), cache statistics and the OpenAPI document.
// Errors are returned to the app's error handler (httpx), which maps them to
// statuses in one place.
package ordershttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
)

// DefaultListLimit is the page size of GET /api/v1/orders without ?limit.
const DefaultListLimit = 50

// Service is what the routes need from the orders module; *orderscache.Store
// implements it. Implementations are safe for concurrent use.
type Service interface {
	// GetJSON returns the cache entry of an order (its encoded JSON, version and
	// ETag; shared, never modified) and whether it came from the cache. Unknown
	// or deleted uid: orders.ErrNotFound; malformed: orders.ErrInvalidUID. uid
	// is only valid during the call (it may point into the request's buffer):
	// an implementation copies what it keeps.
	GetJSON(ctx context.Context, uid string) (e *orderscache.Entry, hit bool, err error)
	// List returns a newest-first page (see orders.Store.List).
	List(ctx context.Context, limit int, cursor string) (orders.Page, error)
	// Warmup loads the newest orders into the cache and returns how many.
	Warmup(ctx context.Context) (loaded int, err error)
}

// Writer performs the API's writes through the order log (the orders topic):
// each returns once the pipeline applied the write, with the version it got.
// Errors: orders.ErrLogUnavailable (503), *orders.PendingError (202),
// *orders.RejectedError (422), orders.ErrNotFound (404, DELETE).
type Writer interface {
	Put(ctx context.Context, raw []byte, o orders.Order) (orders.Version, error)
	Delete(ctx context.Context, uid string) (orders.Version, error)
}

// Options configures Register.
type Options struct {
	// APIToken is the bearer token of PUT, DELETE and cache warmup; empty makes
	// those endpoints answer 403.
	APIToken string
	// MaxBodyBytes bounds a PUT body, as the ingestion bound does for messages
	// (default orders.DefaultMaxMessageBytes); larger bodies get 413.
	MaxBodyBytes int
	// CacheStats returns the JSON body of GET /api/v1/cache/stats. Nil uses
	// svc.Cache().Stats() when svc has that method (as *orderscache.Store does).
	CacheStats func() any
	// Writer performs PUT and DELETE; nil makes them answer 503 (no order log).
	Writer Writer
	// ListConcurrency bounds the list pages served at once (default 2): a page
	// of 1,000 orders is a thousand lookups' worth of rows and JSON, so a flood
	// of them would take the CPU and connections the ingestion needs. A page
	// that finds no slot within ListWait (default 100 ms) gets 503 with
	// Retry-After (orders.ErrOverloaded).
	ListConcurrency int
	ListWait        time.Duration
}

// Register adds the order routes to r:
//
//	GET    /order/:uid, /api/v1/orders/:uid  the order JSON; X-Cache hit|miss; X-Order-Version; ETag, 304
//	GET    /api/v1/orders?limit&cursor       {"orders":[...],"next_cursor":"..."}
//	PUT    /api/v1/orders/:uid               token; 200 with the order once applied; 202 + Location; 503
//	DELETE /api/v1/orders/:uid               token; 204 once applied; 202 + Location; 503
//	GET    /api/v1/cache/stats               cache counters
//	POST   /api/v1/cache/warmup              token; {"loaded": n}
//	GET    /api/v1/openapi.yaml              the OpenAPI document of the service
//
// It panics if no cache statistics source is available (a wiring error).
func Register(r fiber.Router, svc Service, opts Options) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = orders.DefaultMaxMessageBytes
	}
	stats := opts.CacheStats
	if stats == nil {
		cs, ok := svc.(interface{ Cache() *orderscache.Cache })
		if !ok {
			panic("ordershttp: Options.CacheStats is nil and the service has no Cache() method")
		}
		stats = func() any { return cs.Cache().Stats() }
	}
	if opts.ListConcurrency <= 0 {
		opts.ListConcurrency = 2
	}
	if opts.ListWait <= 0 {
		opts.ListWait = 100 * time.Millisecond
	}
	h := &handlers{
		svc: svc, maxBody: opts.MaxBodyBytes, stats: stats, writer: opts.Writer,
		lists: make(chan struct{}, opts.ListConcurrency), listWait: opts.ListWait,
	}
	auth := requireToken(opts.APIToken)

	r.Get("/order/:uid", h.get)
	r.Get("/api/v1/orders", h.list)
	r.Get("/api/v1/orders/:uid", h.get)
	r.Put("/api/v1/orders/:uid", auth, h.put)
	r.Delete("/api/v1/orders/:uid", auth, h.delete)
	r.Get("/api/v1/cache/stats", h.cacheStats)
	r.Post("/api/v1/cache/warmup", auth, h.warmup)
	r.Get("/api/v1/openapi.yaml", serveOpenAPI)
}

type handlers struct {
	svc     Service
	writer  Writer
	maxBody int
	stats   func() any

	lists     chan struct{} // list pages being served (Options.ListConcurrency)
	listWait  time.Duration
	listsShed atomic.Uint64
}

// Response headers: whether the cache answered, and the version of the order
// answered (or written), "partition.offset" in the orders topic.
const (
	headerXCache       = "X-Cache"
	headerOrderVersion = "X-Order-Version"
)

// get serves one order's cached JSON bytes as they are: no decode, no encode.
// Its ETag derives from the version.
func (h *handlers) get(c *fiber.Ctx) error {
	// uid may point into fasthttp's request buffer: GetJSON validates it and
	// copies it where it keeps it (a miss), so a hit copies nothing.
	uid, err := transientUID(c)
	if err != nil {
		return err
	}
	e, hit, err := h.svc.GetJSON(c.UserContext(), uid)
	if err != nil {
		return err
	}
	resp := c.Response()
	// The keys are already in fasthttp's canonical form: SetCanonical skips
	// normalising them on every hit.
	if hit {
		resp.Header.SetCanonical(keyXCache, valueHit)
	} else {
		resp.Header.SetCanonical(keyXCache, valueMiss)
	}
	resp.Header.SetCanonical(keyCacheControl, valueNoCache)
	resp.Header.SetCanonical(keyOrderVersion, e.VersionText)
	resp.Header.SetCanonical(keyETag, e.ETag)
	if etagMatches(c.Request().Header.Peek(fiber.HeaderIfNoneMatch), e.ETag) {
		resp.SetStatusCode(fiber.StatusNotModified)
		return nil
	}
	resp.Header.SetContentType(fiber.MIMEApplicationJSON)
	resp.SetBodyRaw(e.Body)
	return nil
}

// The response headers of the lookup, as fasthttp normalises them.
var (
	keyXCache       = []byte(headerXCache)
	keyCacheControl = []byte(fiber.HeaderCacheControl)
	keyOrderVersion = []byte(headerOrderVersion)
	keyETag         = []byte("Etag") // fiber.HeaderETag ("ETag") normalised
	valueHit        = []byte("hit")
	valueMiss       = []byte("miss")
	valueNoCache    = []byte("no-cache")
)

// pathUID returns the :uid path parameter, URL-unescaped, validated and copied
// out of fasthttp's reused request buffer (the caller may keep it).
func pathUID(c *fiber.Ctx) (string, error) {
	u, err := transientUID(c)
	if err != nil || !orders.ValidUID(u) {
		return "", orders.ErrInvalidUID
	}
	return strings.Clone(u), nil
}

// transientUID returns the :uid path parameter, URL-unescaped but not
// validated; without escapes it points into fasthttp's request buffer, valid
// only while the request is served.
func transientUID(c *fiber.Ctx) (string, error) {
	raw := c.Params("uid")
	if strings.IndexByte(raw, '%') < 0 {
		return raw, nil
	}
	u, err := url.PathUnescape(raw)
	if err != nil {
		return "", orders.ErrInvalidUID
	}
	return u, nil
}

// etagMatches reports whether an If-None-Match header value lists etag (weak
// comparison, as RFC 9110 prescribes for If-None-Match) or is "*".
func etagMatches(header, etag []byte) bool {
	for len(header) > 0 {
		var tag []byte
		if i := indexByte(header, ','); i >= 0 {
			tag, header = header[:i], header[i+1:]
		} else {
			tag, header = header, nil
		}
		tag = trimSpace(tag)
		if len(tag) == 1 && tag[0] == '*' {
			return true
		}
		if len(tag) > 2 && tag[0] == 'W' && tag[1] == '/' {
			tag = tag[2:]
		}
		if string(tag) == string(etag) {
			return true
		}
	}
	return false
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// listBody is the JSON shape of GET /api/v1/orders.
type listBody struct {
	Orders     []orders.Order `json:"orders"`
	NextCursor string         `json:"next_cursor"`
}

func (h *handlers) list(c *fiber.Ctx) error {
	// A parameter given twice is refused rather than resolved by position, and a
	// limit given empty is not an integer: both are 400, like any bad value.
	args := c.Context().QueryArgs()
	limit := DefaultListLimit
	if vs := args.PeekMulti("limit"); len(vs) > 0 {
		n, err := strconv.Atoi(string(vs[0]))
		if len(vs) > 1 || err != nil || n < 1 || n > orders.MaxListLimit {
			return orders.ErrInvalidLimit
		}
		limit = n
	}
	if len(args.PeekMulti("cursor")) > 1 {
		return orders.ErrInvalidCursor
	}
	if !h.listSlot() {
		h.listsShed.Add(1)
		return orders.ErrOverloaded
	}
	defer func() { <-h.lists }() // after the page is encoded: the slot bounds its CPU too
	page, err := h.svc.List(c.UserContext(), limit, c.Query("cursor"))
	if err != nil {
		return err
	}
	if page.Orders == nil {
		page.Orders = []orders.Order{}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(listBody{Orders: page.Orders, NextCursor: page.NextCursor})
}

// listSlot takes a list slot, waiting at most listWait.
func (h *handlers) listSlot() bool {
	select {
	case h.lists <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(h.listWait)
	defer t.Stop()
	select {
	case h.lists <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// errUIDMismatch answers a PUT whose body names another order than its path.
var errUIDMismatch = fiber.NewError(fiber.StatusBadRequest, "order_uid in the body does not match the uid in the path")

func (h *handlers) put(c *fiber.Ctx) error {
	uid, err := pathUID(c)
	if err != nil {
		return err
	}
	raw := c.Body()
	if len(raw) > h.maxBody {
		return fiber.NewError(fiber.StatusRequestEntityTooLarge,
			fmt.Sprintf("order is %d bytes, over the %d-byte limit", len(raw), h.maxBody))
	}
	o, err := orders.Decode(raw, h.maxBody)
	if err != nil {
		return err
	}
	if o.OrderUID != "" && o.OrderUID != uid {
		return errUIDMismatch
	}
	if err := orders.Validate(&o); err != nil {
		return err
	}
	if h.writer == nil {
		return errNoWriter
	}
	v, err := h.writer.Put(c.UserContext(), bytes.Clone(raw), o)
	if err != nil {
		return h.writeError(c, uid, err)
	}
	setVersion(c, v)
	return c.JSON(o)
}

func (h *handlers) delete(c *fiber.Ctx) error {
	uid, err := pathUID(c)
	if err != nil {
		return err
	}
	if h.writer == nil {
		return errNoWriter
	}
	v, err := h.writer.Delete(c.UserContext(), uid)
	if err != nil {
		return h.writeError(c, uid, err)
	}
	setVersion(c, v)
	return c.SendStatus(fiber.StatusNoContent)
}

// errNoWriter answers writes when the service runs without an order log.
var errNoWriter = fiber.NewError(fiber.StatusServiceUnavailable, "writes are not available: no order log")

// setVersion sets the version headers of a write's answer.
func setVersion(c *fiber.Ctx, v orders.Version) {
	c.Set(headerOrderVersion, v.String())
	c.Set(fiber.HeaderETag, `"`+v.String()+`"`)
}

// writeError answers a write that did not complete: 202 with a Location for one
// appended but not yet applied, 422 for one the pipeline rejected, 503 with
// Retry-After when the order log did not take it; other errors go to the app's
// error handler.
func (h *handlers) writeError(c *fiber.Ctx, uid string, err error) error {
	var pending *orders.PendingError
	var rejected *orders.RejectedError
	switch {
	case errors.As(err, &pending):
		setVersion(c, pending.Version)
		c.Set(fiber.HeaderLocation, "/api/v1/orders/"+url.PathEscape(uid))
		return c.Status(fiber.StatusAccepted).JSON(acceptedBody{
			Status: "accepted", Version: pending.Version.String(),
			Message: "appended to the order log, not yet applied; GET the Location until X-Order-Version reaches this version",
		})
	case errors.As(err, &rejected):
		return fiber.NewError(fiber.StatusUnprocessableEntity, rejected.Error())
	case errors.Is(err, orders.ErrLogUnavailable):
		c.Set(fiber.HeaderRetryAfter, "1")
		return fiber.NewError(fiber.StatusServiceUnavailable, orders.ErrLogUnavailable.Error())
	case errors.Is(err, orders.ErrNotFound):
		return err
	}
	return fmt.Errorf("%s order: %w", strings.ToLower(c.Method()), err)
}

// acceptedBody is the JSON shape of a 202 answer to a write.
type acceptedBody struct {
	Status  string `json:"status"`
	Version string `json:"version"`
	Message string `json:"message"`
}

func (h *handlers) cacheStats(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(h.stats())
}

// warmupBody is the JSON shape of POST /api/v1/cache/warmup.
type warmupBody struct {
	Loaded int `json:"loaded"`
}

func (h *handlers) warmup(c *fiber.Ctx) error {
	n, err := h.svc.Warmup(c.UserContext())
	if err != nil {
		return fmt.Errorf("cache warmup: %w", err)
	}
	return c.JSON(warmupBody{Loaded: n})
}
