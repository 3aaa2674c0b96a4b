package ordershttp

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// OpenAPI is the OpenAPI 3 document (YAML) of every route the service serves:
// the order routes of this package, the operational routes of httpx and the page.
//
//go:embed openapi.yaml
var OpenAPI []byte

func serveOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/yaml; charset=utf-8")
	return c.Send(OpenAPI)
}
