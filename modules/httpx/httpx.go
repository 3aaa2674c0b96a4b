// Package httpx is the shared HTTP shell of the service: it builds the Fiber app
// with the one error handler that maps domain errors to statuses, panic recovery,
// request ids and request metrics, and it registers the operational endpoints
// (/health, /ready, /metrics, /api/v1/pipeline/stats).
package httpx

import (
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBodyLimit is the largest request body the app accepts (1 MiB); larger
// bodies are answered 413 before any handler runs.
const DefaultBodyLimit = 1 << 20

// Config configures New. Zero durations and a zero BodyLimit take the defaults.
type Config struct {
	// ReadTimeout bounds reading one request (default 10 s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response (default 30 s).
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection may idle (default 60 s).
	IdleTimeout time.Duration
	// BodyLimit is the largest accepted request body in bytes (default DefaultBodyLimit).
	BodyLimit int
	// Registerer receives the request duration histogram; nil records no metrics.
	Registerer prometheus.Registerer
	// Logger logs server errors (5xx) and, at debug level, one line per request.
	// Nil uses slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.BodyLimit <= 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// New returns a Fiber app with the service's error handler (JSON bodies
// {"error": "..."} with the status chosen by Status) and one middleware that
// assigns the request id (X-Request-ID), recovers panics as 500s and records
// orders_http_request_duration_seconds{route,method,status} by route template.
// Register routes on the returned app; New panics only if cfg.Registerer rejects
// the metric (for example a duplicate registration).
func New(cfg Config) *fiber.App {
	cfg = cfg.withDefaults()
	eh := &errorHandler{log: cfg.Logger}
	app := fiber.New(fiber.Config{
		AppName:               "orders-service",
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		BodyLimit:             cfg.BodyLimit,
		DisableStartupMessage: true,
		ErrorHandler:          eh.handle,
	})
	var hist *prometheus.HistogramVec
	if cfg.Registerer != nil {
		hist = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_http_request_duration_seconds",
			Help:    "Duration of HTTP requests by route template, method and status code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "status"})
		cfg.Registerer.MustRegister(hist)
	}
	app.Use(newShell(cfg.Logger, hist, eh.handle).handle)
	jsonUnknownMethods(app)
	return app
}
