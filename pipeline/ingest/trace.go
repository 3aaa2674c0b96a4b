package ingest

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// headerCarrier reads W3C trace context from a record's headers.
type headerCarrier struct{ r *kafkaedge.Record }

func (h headerCarrier) Get(key string) string { return h.r.Header(key) }

// Set is unused: the flow only extracts.
func (h headerCarrier) Set(string, string) {}

func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h.r.Headers))
	for i, x := range h.r.Headers {
		keys[i] = x.Key
	}
	return keys
}

// links are the span links of a batch to the producer spans of its messages.
func links(items []*item) []trace.Link {
	var out []trace.Link
	for _, it := range items {
		if it.span.IsValid() {
			out = append(out, trace.Link{SpanContext: it.span})
		}
	}
	return out
}
