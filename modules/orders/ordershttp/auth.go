package ordershttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Authentication answers of the token-protected endpoints.
var (
	errNoToken = fiber.NewError(fiber.StatusForbidden,
		"this endpoint is disabled: no API token is configured (set ORDERS_API_TOKEN)")
	errUnauthorized = fiber.NewError(fiber.StatusUnauthorized, "missing or invalid bearer token")
)

// requireToken returns a handler that lets a request through only with
// "Authorization: Bearer <token>" (checkToken). An empty token disables the
// endpoints (403); a missing or wrong one is a 401 with a WWW-Authenticate
// challenge.
func requireToken(token string) fiber.Handler {
	if token == "" {
		return func(*fiber.Ctx) error { return errNoToken }
	}
	check := checkToken(token)
	return func(c *fiber.Ctx) error {
		switch present, valid := check(c); {
		case !present:
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="orders"`)
			return errUnauthorized
		case !valid:
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="orders", error="invalid_token"`)
			return errUnauthorized
		}
		return c.Next()
	}
}

// HasToken returns a check that a request carries "Authorization: Bearer
// <token>" (checkToken); with an empty token no request does. The service
// gives token holders the details of /ready and the pipeline stats (error
// texts), and everyone else their plain status.
func HasToken(token string) func(c *fiber.Ctx) bool {
	if token == "" {
		return func(*fiber.Ctx) bool { return false }
	}
	check := checkToken(token)
	return func(c *fiber.Ctx) bool {
		_, valid := check(c)
		return valid
	}
}

// checkToken returns the one token check: whether a request carries bearer
// credentials, and whether they are token. The comparison is constant-time over
// SHA-256 digests, so neither the token's content nor its length leaks through
// timing.
func checkToken(token string) func(c *fiber.Ctx) (present, valid bool) {
	want := sha256.Sum256([]byte(token))
	return func(c *fiber.Ctx) (bool, bool) {
		got, ok := bearer(c.Get(fiber.HeaderAuthorization))
		if !ok {
			return false, false
		}
		sum := sha256.Sum256([]byte(got))
		return true, subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	}
}

// bearer extracts the credentials of an "Authorization: Bearer <token>" value
// (the scheme is case-insensitive).
func bearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}
