package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/orderflow/orders-service/configs"
)

// TestLogLinesCarryTraceIDs checks that the service logger adds trace_id and
// span_id to records logged with a context that holds a span, and nothing to
// records without one.
func TestLogLinesCarryTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(configs.Log{Level: "info", Format: "json"}, &buf)
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	log.With("component", "ingest").InfoContext(ctx, "upsert_retry", "attempt", 1)
	span.End()
	log.InfoContext(context.Background(), "no_span")

	dec := json.NewDecoder(&buf)
	var withSpan, without map[string]any
	if err := dec.Decode(&withSpan); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&without); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if withSpan["trace_id"] != sc.TraceID().String() || withSpan["span_id"] != sc.SpanID().String() {
		t.Errorf("log line with a span: trace_id %v span_id %v, want %s %s", withSpan["trace_id"], withSpan["span_id"], sc.TraceID(), sc.SpanID())
	}
	if _, ok := without["trace_id"]; ok {
		t.Errorf("log line without a span has trace_id: %v", without)
	}
}
