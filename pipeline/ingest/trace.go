package ingest

import (
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
)

// headerCarrier reads W3C trace context from Kafka headers.
type headerCarrier []kafka.Header

func (h headerCarrier) Get(key string) string {
	for _, x := range h {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}

// Set is unused: the flow only extracts.
func (h headerCarrier) Set(string, string) {}

func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h))
	for i, x := range h {
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
