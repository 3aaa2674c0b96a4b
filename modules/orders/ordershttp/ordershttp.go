// Package ordershttp serves the orders module over HTTP: order lookups straight
// from the cache's pre-encoded JSON, the newest-first listing, the token-protected
// writes (PUT, DELETE, cache warmup), cache statistics and the OpenAPI document.
// Errors are returned to the app's error handler (httpx), which maps them to
// statuses in one place.
package ordershttp

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
)

// DefaultListLimit is the page size of GET /api/v1/orders without ?limit.
const DefaultListLimit = 50

// Service is what the routes need from the orders module; *orderscache.Store
// implements it. Implementations are safe for concurrent use.
type Service interface {
	// GetJSON returns the encoded JSON of an order and whether it came from the
	// cache; the bytes are shared and never modified. Unknown uid: orders.ErrNotFound.
	GetJSON(ctx context.Context, uid string) (body []byte, hit bool, err error)
	// List returns a newest-first page (see orders.Store.List).
	List(ctx context.Context, limit int, cursor string) (orders.Page, error)
	// Put stores a validated order written through the API.
	Put(ctx context.Context, o orders.Order) error
	// Delete removes an order, or returns orders.ErrNotFound.
	Delete(ctx context.Context, uid string) error
	// Warmup loads the newest orders into the cache and returns how many.
	Warmup(ctx context.Context) (loaded int, err error)
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
}

// Register adds the order routes to r:
//
//	GET    /order/:uid, /api/v1/orders/:uid  the order JSON; X-Cache hit|miss; ETag, 304
//	GET    /api/v1/orders?limit&cursor       {"orders":[...],"next_cursor":"..."}
//	PUT    /api/v1/orders/:uid               token; 200 with the stored order
//	DELETE /api/v1/orders/:uid               token; 204
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
	h := &handlers{svc: svc, maxBody: opts.MaxBodyBytes, stats: stats}
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
	maxBody int
	stats   func() any
}

// headerXCache names the response header saying whether the cache answered.
const headerXCache = "X-Cache"

// get serves one order's cached JSON bytes as they are: no decode, no encode.
func (h *handlers) get(c *fiber.Ctx) error {
	uid, err := pathUID(c)
	if err != nil {
		return err
	}
	body, hit, err := h.svc.GetJSON(c.UserContext(), uid)
	if err != nil {
		return err
	}
	resp := c.Response()
	if hit {
		resp.Header.Set(headerXCache, "hit")
	} else {
		resp.Header.Set(headerXCache, "miss")
	}
	resp.Header.Set(fiber.HeaderCacheControl, "no-cache")
	var tag [18]byte
	etag := appendETag(tag[:0], body)
	resp.Header.SetBytesV(fiber.HeaderETag, etag)
	if etagMatches(c.Request().Header.Peek(fiber.HeaderIfNoneMatch), etag) {
		resp.SetStatusCode(fiber.StatusNotModified)
		return nil
	}
	resp.Header.SetContentType(fiber.MIMEApplicationJSON)
	resp.SetBodyRaw(body)
	return nil
}

// pathUID returns the :uid path parameter, URL-unescaped, validated and copied
// out of fasthttp's reused request buffer (the cache may keep it as a key).
func pathUID(c *fiber.Ctx) (string, error) {
	raw := c.Params("uid")
	if strings.IndexByte(raw, '%') >= 0 {
		u, err := url.PathUnescape(raw)
		if err != nil || !orders.ValidUID(u) {
			return "", orders.ErrInvalidUID
		}
		return u, nil // PathUnescape allocated a fresh string
	}
	if !orders.ValidUID(raw) {
		return "", orders.ErrInvalidUID
	}
	return strings.Clone(raw), nil
}

// appendETag appends a strong entity tag: the quoted 64-bit xxhash of body in hex.
func appendETag(dst, body []byte) []byte {
	const digits = "0123456789abcdef"
	sum := xxhash.Sum64(body)
	dst = append(dst, '"')
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(sum>>uint(shift))&0xf])
	}
	return append(dst, '"')
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
	if err := h.svc.Put(c.UserContext(), o); err != nil {
		return fmt.Errorf("put order: %w", err)
	}
	return c.JSON(o)
}

func (h *handlers) delete(c *fiber.Ctx) error {
	uid, err := pathUID(c)
	if err != nil {
		return err
	}
	if err := h.svc.Delete(c.UserContext(), uid); err != nil {
		if errors.Is(err, orders.ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete order: %w", err)
	}
	return c.SendStatus(fiber.StatusNoContent)
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
