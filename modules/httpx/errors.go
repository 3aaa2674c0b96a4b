package httpx

import (
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/orderflow/orders-service/modules/dberr"
	"github.com/orderflow/orders-service/modules/orders"
)

// Status maps err to the HTTP status and the message to show the client. It is the
// one place where errors become statuses:
//   - orders.ErrNotFound: 404; ErrInvalidUID, ErrInvalidCursor, ErrInvalidLimit: 400;
//   - *orders.InvalidError: 400 for decode errors, 422 for validation errors;
//   - *fiber.Error: its own code and message (e.g. 413 for a body over the limit);
//   - orders.ErrOverloaded (a read shed), deadlines, cancellations and
//     unreachable databases (see Unavailable): 503, with Retry-After: 1;
//   - anything else: 500 with a generic message, so internals never leak.
func Status(err error) (int, string) {
	var ie *orders.InvalidError
	var fe *fiber.Error
	switch {
	case errors.Is(err, orders.ErrNotFound):
		return fiber.StatusNotFound, orders.ErrNotFound.Error()
	case errors.Is(err, orders.ErrInvalidUID):
		return fiber.StatusBadRequest, orders.ErrInvalidUID.Error()
	case errors.Is(err, orders.ErrInvalidCursor):
		return fiber.StatusBadRequest, orders.ErrInvalidCursor.Error()
	case errors.Is(err, orders.ErrInvalidLimit):
		return fiber.StatusBadRequest, orders.ErrInvalidLimit.Error()
	case errors.As(err, &ie):
		if ie.Class == orders.ClassValidation {
			return fiber.StatusUnprocessableEntity, ie.Error()
		}
		return fiber.StatusBadRequest, ie.Error()
	case errors.As(err, &fe):
		return fe.Code, fe.Message
	case errors.Is(err, orders.ErrOverloaded):
		return fiber.StatusServiceUnavailable, orders.ErrOverloaded.Error()
	case Unavailable(err):
		return fiber.StatusServiceUnavailable, "service unavailable: the database is not reachable, try again later"
	default:
		return fiber.StatusInternalServerError, http.StatusText(http.StatusInternalServerError)
	}
}

// Unavailable reports whether err means the database could not answer in time or
// could not be reached: what dberr.Classify calls Transient.
func Unavailable(err error) bool {
	return err != nil && dberr.Classify(err) == dberr.Transient
}

// errorHandler is the app's fiber.ErrorHandler.
type errorHandler struct {
	log *slog.Logger
	// lastUnavailable is the unix second of the last logged 503, so an outage
	// under load logs about one line per second rather than one per request.
	lastUnavailable atomic.Int64
}

// errorBody is the JSON shape of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func (h *errorHandler) handle(c *fiber.Ctx, err error) error {
	code, msg := Status(err)
	body := errorBody{Error: msg}
	var ie *orders.InvalidError
	if errors.As(err, &ie) {
		body.Field = ie.Field
	}
	if code == fiber.StatusServiceUnavailable && len(c.Response().Header.Peek(fiber.HeaderRetryAfter)) == 0 {
		c.Set(fiber.HeaderRetryAfter, "1") // shed or unavailable: worth a retry shortly
	}
	switch {
	case code == fiber.StatusServiceUnavailable:
		now := time.Now().Unix()
		if last := h.lastUnavailable.Load(); now != last && h.lastUnavailable.CompareAndSwap(last, now) {
			h.log.Warn("http_unavailable", "route", c.Route().Path, "request_id", RequestID(c), "err", err)
		}
	case code >= fiber.StatusInternalServerError && !errors.Is(err, errPanic):
		h.log.Error("http_error", "route", c.Route().Path, "method", c.Method(), "status", code,
			"request_id", RequestID(c), "err", err)
	}
	if code == fiber.StatusUnauthorized && len(c.Response().Header.Peek(fiber.HeaderWWWAuthenticate)) == 0 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="orders"`)
	}
	return c.Status(code).JSON(body)
}
