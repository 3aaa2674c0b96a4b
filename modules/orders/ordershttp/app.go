package ordershttp

import (
	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/kafkaview"
	"github.com/orderflow/orders-service/web"
)

// AppConfig configures NewApp.
type AppConfig struct {
	// HTTP configures the shell (timeouts, body limit, metrics, logger).
	HTTP httpx.Config
	// Ops are the operational endpoints' hooks (readiness, metrics, pipeline stats).
	Ops httpx.Ops
	// Orders configures the order routes.
	Orders Options
	// Kafka configures the read-only Kafka views (dead letters, consumer group);
	// its Trusted defaults to Ops.Trusted.
	Kafka kafkaview.Options
}

// NewApp assembles the service's whole HTTP stack on svc: the httpx shell (error
// mapping, panic recovery, request ids, request metrics), the operational
// endpoints (/health, /ready, /metrics, /api/v1/pipeline/stats), the order routes
// (Register), the Kafka views (kafkaview.Register) and the web page. `app serve` runs it; tests that need the real
// stack build it here too, so they test what the service serves. It panics where
// httpx.New and Register do (wiring errors).
func NewApp(svc Service, cfg AppConfig) *fiber.App {
	app := httpx.New(cfg.HTTP)
	httpx.RegisterOps(app, cfg.Ops)
	Register(app, svc, cfg.Orders)
	if cfg.Kafka.Trusted == nil {
		cfg.Kafka.Trusted = cfg.Ops.Trusted
	}
	kafkaview.Register(app, cfg.Kafka)
	web.Register(app)
	return app
}
