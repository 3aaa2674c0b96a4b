package systest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// batchSpanName is the span the ingest flow starts for every batch it writes.
const batchSpanName = "ingest.upsert_batch"

// spanRef identifies a span: hex trace and span ids.
type spanRef struct{ trace, span string }

// span is what the tests need of an exported span.
type span struct {
	name   string
	kind   tracepb.Span_SpanKind
	ref    spanRef
	parent string // parent span id, hex; "" for a root
	links  []spanRef
}

// spanRecorder is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf) that
// keeps every span the service and `app produce` export to it.
type spanRecorder struct {
	endpoint string // host:port for ORDERS_TRACING_ENDPOINT
	mu       sync.Mutex
	spans    []span
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// recordSpans starts a receiver for the test's duration.
func recordSpans(t *testing.T) *spanRecorder {
	t.Helper()
	rec := &spanRecorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec.endpoint = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(rec.export), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rec
}

func (r *spanRecorder) export(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil || req.URL.Path != "/v1/traces" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range msg.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s := span{
					name:   sp.GetName(),
					kind:   sp.GetKind(),
					ref:    spanRef{hexID(sp.GetTraceId()), hexID(sp.GetSpanId())},
					parent: hexID(sp.GetParentSpanId()),
				}
				for _, l := range sp.GetLinks() {
					s.links = append(s.links, spanRef{hexID(l.GetTraceId()), hexID(l.GetSpanId())})
				}
				r.spans = append(r.spans, s)
			}
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// ended returns the spans received so far (the SDK exports spans once they end).
func (r *spanRecorder) ended() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

// env points a process's tracing at the recorder, sampling everything.
func (r *spanRecorder) env() []string {
	return []string{"ORDERS_TRACING_EXPORTER=otlp-http", "ORDERS_TRACING_ENDPOINT=" + r.endpoint, "ORDERS_TRACING_SAMPLE_RATIO=1"}
}

// batchSpanLinking waits until an ended batch span links to sc and returns it.
func batchSpanLinking(t *testing.T, rec *spanRecorder, sc spanRef, limit time.Duration) span {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, s := range rec.ended() {
			if s.name != batchSpanName {
				continue
			}
			for _, l := range s.links {
				if l == sc {
					return s
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s span links to trace %s span %s within %s (%d spans ended)", batchSpanName, sc.trace, sc.span, limit, len(rec.ended()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTraceContextFlowsFromKafkaToTheBatchSpan checks the tracing contract: a
// message carrying W3C trace context (set by hand, and set by `produce`) ends up in
// a batch span that links the message's span, and the batch's database queries
// are child spans of that batch span. The service and `app produce` export their
// spans over OTLP/HTTP to a receiver in the test.
func TestTraceContextFlowsFromKafkaToTheBatchSpan(t *testing.T) {
	rec := recordSpans(t)
	s := startService(t, rec.env()...)

	// 1. A record with a hand-made traceparent header.
	var tid [16]byte
	var sid [8]byte
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	parent := spanRef{hexID(tid[:]), hexID(sid[:])}
	const uid = "traced0order0uid"
	testenv.KafkaProduce(t, s.brokers, s.topic, &kgo.Record{
		Key: []byte(uid), Value: ordersWithUID(t, orders.Sample(), uid),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(fmt.Sprintf("00-%s-%s-01", parent.trace, parent.span))}},
	})
	batch := batchSpanLinking(t, rec, parent, 60*time.Second)
	waitStatus(t, s.base+"/order/"+uid, 200, 30*time.Second)

	// The batch's queries (bunotel) are children of the batch span, in its trace.
	// They end before the batch span, so they were exported with it or earlier.
	var dbSpans int
	for _, sp := range rec.ended() {
		if sp.parent == batch.ref.span && sp.ref.trace == batch.ref.trace {
			dbSpans++
		}
	}
	if dbSpans == 0 {
		t.Errorf("batch span %s has no child spans: the upsert's database queries are not traced", batch.ref.span)
	}

	// 2. Records sent by `produce`: each carries its own producer span, and each
	// producer span is linked by the batch span that stored its order.
	producer := testenv.StartProcess(t, testenv.ServiceOptions{
		Binary: testenv.BuildService(t),
		Args:   []string{"produce", "--count", "3", "--seed", "11", "--brokers", s.brokers, "--topic", s.topic, "--quiet"},
		Env:    rec.env(),
	})
	select {
	case <-producer.Done():
		if err := producer.Err(); err != nil {
			t.Fatalf("produce: %v\n%s", err, producer.LogTail(4096))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("produce did not finish within 60 s\n%s", producer.LogTail(4096))
	}
	var producerSpans []spanRef
	for _, sp := range rec.ended() {
		if sp.name == "orders produce" && sp.kind == tracepb.Span_SPAN_KIND_PRODUCER {
			producerSpans = append(producerSpans, sp.ref)
		}
	}
	if len(producerSpans) != 3 {
		t.Fatalf("produce recorded %d producer spans, want 3", len(producerSpans))
	}
	for _, sc := range producerSpans {
		b := batchSpanLinking(t, rec, sc, 60*time.Second)
		if b.ref.trace == sc.trace {
			t.Errorf("batch span joined the producer's trace %s instead of linking it", sc.trace)
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
