package httpx

import (
	"slices"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// unknownMethodBody answers a request whose method the app does not know.
var unknownMethodBody = []byte(`{"error":"Method Not Allowed"}`)

// jsonUnknownMethods wraps the app's fasthttp handler so that a request with a
// method outside the app's RequestMethods (QUERY, FOO, lower-case get, ...) is
// answered like a known method that no route serves: 405 with a JSON error body
// and an Allow header listing the methods the path has (404 when it has none).
// Fiber answers such requests itself, before any middleware or error handler
// runs, with a plain-text 400, which would break the "JSON errors everywhere"
// contract.
func jsonUnknownMethods(app *fiber.App) {
	srv := app.Server()
	known := make(map[string]struct{}, len(app.Config().RequestMethods))
	for _, m := range app.Config().RequestMethods {
		known[m] = struct{}{}
	}
	// Routes are registered after New returns: read them on first use.
	var once sync.Once
	var routes []fiber.Route
	next := srv.Handler
	srv.Handler = func(ctx *fasthttp.RequestCtx) {
		if _, ok := known[string(ctx.Method())]; ok {
			next(ctx)
			return
		}
		once.Do(func() { routes = app.GetRoutes(true) })
		allow := allowedMethods(routes, string(ctx.URI().PathOriginal()))
		ctx.Response.Header.Set(fiber.HeaderCacheControl, "no-store")
		ctx.SetContentType(fiber.MIMEApplicationJSON)
		if len(allow) == 0 {
			ctx.SetStatusCode(fiber.StatusNotFound)
			ctx.SetBodyString(`{"error":"Cannot serve ` + jsonSafe(string(ctx.Method())) + ` here"}`)
			return
		}
		ctx.Response.Header.Set(fiber.HeaderAllow, strings.Join(allow, ", "))
		ctx.SetStatusCode(fiber.StatusMethodNotAllowed)
		ctx.SetBody(unknownMethodBody)
	}
}

// allowedMethods returns the methods of the routes whose path template matches
// path (":name" matches one non-empty segment; case-insensitive; a trailing
// slash is ignored, as the app's router does), in the app's route order.
func allowedMethods(routes []fiber.Route, path string) []string {
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	var out []string
	for _, r := range routes {
		if !slices.Contains(out, r.Method) && templateMatches(r.Path, path) {
			out = append(out, r.Method)
		}
	}
	return out
}

func templateMatches(template, path string) bool {
	ts, ps := strings.Split(template, "/"), strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i, t := range ts {
		if strings.HasPrefix(t, ":") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if !strings.EqualFold(t, ps[i]) {
			return false
		}
	}
	return true
}

// jsonSafe keeps the letters of a method token, so it can go into a JSON string.
func jsonSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' {
			return r
		}
		return -1
	}, s)
}
