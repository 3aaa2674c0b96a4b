// Package web embeds the service's web page (index.html, app.js, style.css and an
// icon) and serves it: GET / and GET /assets/{name}. The page works offline (no
// CDN), uses relative URLs only, and is served with a strict Content-Security-Policy
// (no inline script or style, connections only to this origin).
package web

import (
	"embed"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/gofiber/fiber/v2"
)

//go:embed assets
var files embed.FS

// ContentSecurityPolicy is the policy sent with the page and its assets.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Register serves the page at GET / and its files at GET /assets/{name}, with the
// security headers (CSP, X-Content-Type-Options, Referrer-Policy, X-Frame-Options)
// and ETag revalidation. It panics if the embedded files are unreadable, which
// would be a build defect.
func Register(r fiber.Router) {
	assets := map[string]asset{}
	entries, err := fs.ReadDir(files, "assets")
	if err != nil {
		panic(fmt.Sprintf("web: read embedded assets: %v", err))
	}
	for _, e := range entries {
		body, err := fs.ReadFile(files, path.Join("assets", e.Name()))
		if err != nil {
			panic(fmt.Sprintf("web: read embedded %s: %v", e.Name(), err))
		}
		ct := mime.TypeByExtension(path.Ext(e.Name()))
		if ct == "" {
			ct = "application/octet-stream"
		}
		assets[e.Name()] = asset{
			body:        body,
			contentType: ct,
			etag:        `"` + strconv.FormatUint(xxhash.Sum64(body), 16) + `"`,
		}
	}
	index, ok := assets["index.html"]
	if !ok {
		panic("web: index.html is not embedded")
	}
	index.contentType = "text/html; charset=utf-8"
	delete(assets, "index.html")

	r.Get("/", func(c *fiber.Ctx) error { return serve(c, index) })
	r.Get("/assets/:name", func(c *fiber.Ctx) error {
		a, ok := assets[c.Params("name")]
		if !ok {
			return fiber.NewError(fiber.StatusNotFound, "no such asset")
		}
		return serve(c, a)
	})
}

func serve(c *fiber.Ctx, a asset) error {
	c.Set(fiber.HeaderContentSecurityPolicy, ContentSecurityPolicy)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	if c.Get(fiber.HeaderIfNoneMatch) == a.etag {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.contentType)
	return c.Send(a.body)
}
