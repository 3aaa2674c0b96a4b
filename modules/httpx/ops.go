package httpx

import (
	"context"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check.
const readyTimeout = 2 * time.Second

// Ops are the operational hooks served by RegisterOps. Every field is optional.
type Ops struct {
	// Ready reports nil when the service can do its work (Postgres and Kafka
	// reachable, pipeline running) and an error saying why not otherwise. It gets
	// a context bounded to 2 s. Nil means always ready.
	Ready func(ctx context.Context) error
	// Metrics serves the Prometheus text format; nil serves the default registry.
	Metrics http.Handler
	// PipelineStats returns a JSON-marshalable snapshot of the pipeline; nil (or a
	// nil result) answers {"status":"not running"}. detailed is Trusted's
	// answer: without it, leave out internal error texts.
	PipelineStats func(detailed bool) any
	// ReadyDetails, when not nil, returns a JSON-marshalable value that /ready
	// adds as "details" to its answer, ready or not (e.g. whether the cache is
	// trusted or bypassed), for trusted requests only. It must not block.
	ReadyDetails func() any
	// Trusted reports whether a request may see internal details: why /ready is
	// not ready, its details, and the error texts of the pipeline stats. Nil:
	// no request does (the plain status for everyone).
	Trusted func(c *fiber.Ctx) bool
}

var (
	healthBody     = []byte(`{"status":"ok"}`)
	readyBody      = []byte(`{"status":"ready"}`)
	notReadyBody   = []byte(`{"status":"not ready"}`)
	notRunningBody = []byte(`{"status":"not running"}`)
)

// RegisterOps registers GET /health (200 {"status":"ok"} while the process lives),
// GET /ready (200 {"status":"ready"}, or 503 {"status":"not ready"}; a trusted
// request also gets "error" (the reason) and "details"), GET /metrics and GET
// /api/v1/pipeline/stats (200 with the stats as JSON, error texts for trusted
// requests only).
func RegisterOps(r fiber.Router, ops Ops) {
	trusted := func(c *fiber.Ctx) bool { return ops.Trusted != nil && ops.Trusted(c) }
	r.Get("/health", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(healthBody)
	})
	r.Get("/ready", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		if ops.Ready != nil {
			ctx, cancel := context.WithTimeout(c.UserContext(), readyTimeout)
			defer cancel()
			if err := ops.Ready(ctx); err != nil {
				if !trusted(c) {
					c.Status(fiber.StatusServiceUnavailable)
					c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
					return c.Send(notReadyBody)
				}
				body := fiber.Map{"status": "not ready", "error": err.Error()}
				if ops.ReadyDetails != nil {
					body["details"] = ops.ReadyDetails()
				}
				return c.Status(fiber.StatusServiceUnavailable).JSON(body)
			}
		}
		if ops.ReadyDetails != nil && trusted(c) {
			return c.JSON(fiber.Map{"status": "ready", "details": ops.ReadyDetails()})
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(readyBody)
	})
	metrics := ops.Metrics
	if metrics == nil {
		metrics = promhttp.Handler()
	}
	r.Get("/metrics", adaptor.HTTPHandler(metrics))
	r.Get("/api/v1/pipeline/stats", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		var stats any
		if ops.PipelineStats != nil {
			stats = ops.PipelineStats(trusted(c))
		}
		if stats == nil {
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(notRunningBody)
		}
		return c.JSON(stats)
	})
}
