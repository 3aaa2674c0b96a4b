package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// batchSpanName is the span the ingest flow starts for every batch it writes.
const batchSpanName = "ingest.upsert_batch"

// recordSpans adds an in-memory recorder to the tracer provider runService
// installed (setupTracing sets the global provider; its exporter is "none").
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("global tracer provider is %T, want the SDK provider installed by setupTracing", otel.GetTracerProvider())
	}
	rec := tracetest.NewSpanRecorder()
	tp.RegisterSpanProcessor(rec)
	return rec
}

// batchSpanLinking waits until an ended batch span links to sc and returns it.
func batchSpanLinking(t *testing.T, rec *tracetest.SpanRecorder, sc trace.SpanContext, limit time.Duration) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, s := range rec.Ended() {
			if s.Name() != batchSpanName {
				continue
			}
			for _, l := range s.Links() {
				if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span links to trace %s span %s within %s (%d spans ended)", batchSpanName, sc.TraceID(), sc.SpanID(), limit, len(rec.Ended()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTraceContextFlowsFromKafkaToTheBatchSpan checks the tracing contract: a
// message carrying W3C trace context (set by hand, and set by `produce`) ends up in
// a batch span that links the message's span, and the batch's database queries
// are child spans of that batch span.
func TestTraceContextFlowsFromKafkaToTheBatchSpan(t *testing.T) {
	s := startTestService(t, "ORDERS_TRACING_SAMPLE_RATIO=1")
	rec := recordSpans(t)

	// 1. A record with a hand-made traceparent header.
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	const uid = "traced0order0uid"
	testenv.KafkaProduce(t, s.brokers, s.topic, &kgo.Record{
		Key: []byte(uid), Value: ordersWithUID(t, ordersgen.Sample(), uid),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(fmt.Sprintf("00-%s-%s-01", tid, sid))}},
	})
	batch := batchSpanLinking(t, rec, parent, 60*time.Second)
	waitStatus(t, s.base+"/order/"+uid, 200, 30*time.Second)

	// The batch's queries (bunotel) are children of the batch span, in its trace.
	var dbSpans int
	for _, sp := range rec.Ended() {
		if sp.Parent().SpanID() == batch.SpanContext().SpanID() && sp.SpanContext().TraceID() == batch.SpanContext().TraceID() {
			dbSpans++
		}
	}
	if dbSpans == 0 {
		t.Errorf("batch span %s has no child spans: the upsert's database queries are not traced", batch.SpanContext().SpanID())
	}

	// 2. Records sent by `produce`: each carries its own producer span, and each
	// producer span is linked by the batch span that stored its order.
	if _, err := produce(context.Background(), produceOptions{count: 3, seed: 11, brokers: s.brokers, topic: s.topic, quiet: true}, s.cfg, io.Discard); err != nil {
		t.Fatalf("produce: %v", err)
	}
	var producerSpans []trace.SpanContext
	for _, sp := range rec.Ended() {
		if sp.Name() == "orders produce" && sp.SpanKind() == trace.SpanKindProducer {
			producerSpans = append(producerSpans, sp.SpanContext())
		}
	}
	if len(producerSpans) != 3 {
		t.Fatalf("produce recorded %d producer spans, want 3", len(producerSpans))
	}
	for _, sc := range producerSpans {
		b := batchSpanLinking(t, rec, sc, 60*time.Second)
		if b.SpanContext().TraceID() == sc.TraceID() {
			t.Errorf("batch span joined the producer's trace %s instead of linking it", sc.TraceID())
		}
	}
	s.waitCommitted(t, 60*time.Second)
}

// ordersWithUID returns the order JSON doc with its order_uid replaced.
func ordersWithUID(t *testing.T, doc []byte, uid string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	m["order_uid"] = uid
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

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
