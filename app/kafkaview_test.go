package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/kafkaview"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

const viewToken = "view-token"

// viewApp serves the Kafka views of cfg the way the service wires them.
func viewApp(cfg kafkaedge.Config, timeout time.Duration) *fiber.App {
	app := httpx.New(httpx.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	o := kafkaedge.Views(cfg)
	o.Trusted = ordershttp.HasToken(viewToken)
	o.Timeout = timeout
	kafkaview.Register(app, o)
	return app
}

// getJSON calls path on app (with the token when token) and decodes the answer into v.
func getJSON(t *testing.T, app *fiber.App, path string, token bool, v any) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token {
		req.Header.Set(fiber.HeaderAuthorization, "Bearer "+viewToken)
	}
	resp, err := app.Test(req, 20_000)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %d %q: %v", path, resp.StatusCode, body, err)
	}
	return resp.StatusCode
}

type dlqAnswer struct {
	Topic   string         `json:"topic"`
	Total   int64          `json:"total"`
	ByClass map[string]int `json:"by_class"`
	Values  bool           `json:"values"`
	Letters []struct {
		Partition       int32     `json:"partition"`
		Offset          int64     `json:"offset"`
		Time            time.Time `json:"time"`
		Key             string    `json:"key"`
		Error           string    `json:"error"`
		Class           string    `json:"class"`
		SourceTopic     string    `json:"source_topic"`
		SourcePartition *int32    `json:"source_partition"`
		SourceOffset    *int64    `json:"source_offset"`
		Attempts        int       `json:"attempts"`
		ValueBytes      int       `json:"value_bytes"`
		ValueCut        bool      `json:"value_cut"`
		Value           *string   `json:"value"`
		Headers         []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"headers"`
	} `json:"letters"`
	Error string `json:"error"`
}

// TestDLQView writes dead letters with the service's headers to a fresh topic
// of the real broker and reads them back through GET /api/v1/dlq: the newest
// first, counted by class, values only with the token.
func TestDLQView(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	input := testenv.KafkaTopicName(t, "orders")
	dlq := input + "-dlq"
	testenv.KafkaCreateTopic(t, brokers, dlq, 2)
	classes := []string{"decode", "validation", "data", "validation", "decode", "validation", "data"}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	// The oldest letter is an oversized message: its value is answered cut.
	big := bytes.Repeat([]byte("x"), kafkaview.MaxValueBytes+1000)
	recs := []*kgo.Record{{
		Key: []byte("big"), Value: big, Timestamp: base.Add(-time.Second),
		Headers: []kgo.RecordHeader{{Key: kafkaedge.HeaderErrorClass, Value: []byte("decode")}},
	}}
	for i, class := range classes {
		recs = append(recs, &kgo.Record{
			Key: fmt.Appendf(nil, "order-%d", i), Value: fmt.Appendf(nil, `{"secret":"value-%d"}`, i),
			Timestamp: base.Add(time.Duration(i) * time.Second),
			Headers: []kgo.RecordHeader{
				{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
				{Key: kafkaedge.HeaderError, Value: fmt.Appendf(nil, "reason %d: <b>%s</b>", i, class)},
				{Key: kafkaedge.HeaderErrorClass, Value: []byte(class)},
				{Key: kafkaedge.HeaderStage, Value: []byte("validate")},
				{Key: kafkaedge.HeaderSourceTopic, Value: []byte(input)},
				{Key: kafkaedge.HeaderSourcePartition, Value: []byte("3")},
				{Key: kafkaedge.HeaderSourceOffset, Value: fmt.Appendf(nil, "%d", 100+i)},
				{Key: kafkaedge.HeaderAttempts, Value: []byte("1")},
			},
		})
	}
	testenv.KafkaProduce(t, brokers, dlq, recs...)
	app := viewApp(kafkaedge.Config{Brokers: brokers, DLQTopic: dlq}, 10*time.Second)

	var a dlqAnswer
	if code := getJSON(t, app, "/api/v1/dlq?limit=5", false, &a); code != http.StatusOK {
		t.Fatalf("status %d: %+v", code, a)
	}
	if a.Topic != dlq || a.Total != int64(len(recs)) || a.Values {
		t.Errorf("topic %q total %d values %v, want %q, %d, false", a.Topic, a.Total, a.Values, dlq, len(recs))
	}
	var keys []string
	for _, l := range a.Letters {
		keys = append(keys, l.Key)
		if l.Value != nil {
			t.Errorf("letter %s carries its value without the token", l.Key)
		}
	}
	if want := []string{"order-6", "order-5", "order-4", "order-3", "order-2"}; !slices.Equal(keys, want) {
		t.Fatalf("letters %v, want the newest first %v", keys, want)
	}
	if want := map[string]int{"data": 2, "validation": 2, "decode": 1}; fmt.Sprint(a.ByClass) != fmt.Sprint(want) {
		t.Errorf("by class %v, want %v", a.ByClass, want)
	}
	l := a.Letters[0]
	if l.Error != "reason 6: <b>data</b>" || l.Class != "data" || l.SourceTopic != input ||
		l.SourcePartition == nil || *l.SourcePartition != 3 || l.SourceOffset == nil || *l.SourceOffset != 106 ||
		l.Attempts != 1 || l.ValueBytes != len(`{"secret":"value-6"}`) || !l.Time.Equal(base.Add(6*time.Second)) {
		t.Errorf("newest letter %+v", l)
	}
	if len(l.Headers) != 7 || l.Headers[0].Key != kafkaedge.HeaderError {
		t.Errorf("headers %+v, want the 7 x-* written (no original header without the token)", l.Headers)
	}

	var ta dlqAnswer
	if code := getJSON(t, app, "/api/v1/dlq?limit=3", true, &ta); code != http.StatusOK || !ta.Values || len(ta.Letters) != 3 {
		t.Fatalf("with the token: status %d, values %v, %d letters", code, ta.Values, len(ta.Letters))
	}
	for _, l := range ta.Letters {
		if want := `{"secret":"value-` + l.Key[len("order-"):] + `"}`; l.Value == nil || *l.Value != want {
			t.Errorf("letter %s value %v, want %s", l.Key, l.Value, want)
		}
		if len(l.Headers) != 8 || l.Headers[0].Key != "traceparent" {
			t.Errorf("letter %s headers %+v with the token, want the 8 written", l.Key, l.Headers)
		}
	}
	var all dlqAnswer
	if code := getJSON(t, app, "/api/v1/dlq?limit=200", true, &all); code != http.StatusOK || len(all.Letters) != len(recs) {
		t.Fatalf("limit 200: status %d, %d letters, want %d", code, len(all.Letters), len(recs))
	}
	if l := all.Letters[len(recs)-1]; l.Key != "big" || !l.ValueCut || l.ValueBytes != len(big) || l.Value == nil || len(*l.Value) != kafkaview.MaxValueBytes {
		t.Errorf("oversized letter: key %q cut %v bytes %d, value of %d bytes", l.Key, l.ValueCut, l.ValueBytes, len(deref(l.Value)))
	}
	var wrong dlqAnswer
	if code := getJSON(t, app, "/api/v1/dlq?limit=3", false, &wrong); code != http.StatusOK || wrong.Values || wrong.Letters[0].Value != nil {
		t.Errorf("the token's answer leaked to a request without it: %d values=%v", code, wrong.Values)
	}

	for _, q := range []string{"limit=0", "limit=201", "limit=x", "limit=1&limit=2"} {
		var e dlqAnswer
		if code := getJSON(t, app, "/api/v1/dlq?"+q, false, &e); code != http.StatusBadRequest || e.Error == "" {
			t.Errorf("%s: status %d %q, want 400 with an error", q, code, e.Error)
		}
	}

	var missing dlqAnswer
	gone := viewApp(kafkaedge.Config{Brokers: brokers, DLQTopic: dlq + "-missing"}, 10*time.Second)
	if code := getJSON(t, gone, "/api/v1/dlq", false, &missing); code != http.StatusServiceUnavailable || missing.Error == "" {
		t.Errorf("missing topic: status %d %q, want 503 with an error", code, missing.Error)
	}
}

// TestGroupView describes a consumer group with a static member of the real
// broker through GET /api/v1/pipeline/group.
func TestGroupView(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "orders")
	testenv.KafkaCreateTopic(t, brokers, topic, 3)
	group := topic + "-group"
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": group, "group.instance.id": "web-1",
		"client.id": "view-test", "enable.metrics.push": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c.Poll(100)
		if parts, _ := c.Assignment(); len(parts) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the consumer got no assignment within 30 s")
		}
	}

	// Six records, none consumed: committed at 0 everywhere, the member's lag is 6.
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")})
	}
	testenv.KafkaProduce(t, brokers, topic, recs...)
	var zero []kafka.TopicPartition
	for p := range int32(3) {
		zero = append(zero, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: 0})
	}
	if _, err := c.CommitOffsets(zero); err != nil {
		t.Fatalf("commit: %v", err)
	}

	app := viewApp(kafkaedge.Config{Brokers: brokers, GroupID: group, InstanceID: "web-1"}, 10*time.Second)
	var g kafkaview.Group
	if code := getJSON(t, app, "/api/v1/pipeline/group", false, &g); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if g.ID != group || g.State != "Stable" || len(g.Members) != 1 {
		t.Fatalf("group %+v", g)
	}
	m := g.Members[0]
	if m.InstanceID != "web-1" || m.ClientID != "view-test" || !m.Self || m.Host != "" || m.MemberID != "" || !slices.Equal(m.Partitions[topic], []int32{0, 1, 2}) {
		t.Errorf("member %+v, want no host or member id without the token", m)
	}
	var tg kafkaview.Group
	if code := getJSON(t, app, "/api/v1/pipeline/group", true, &tg); code != http.StatusOK || len(tg.Members) != 1 ||
		tg.Members[0].Host == "" || tg.Members[0].MemberID == "" {
		t.Errorf("with the token: status %d, group %+v; want the member's host and member id", code, tg)
	}
	if m.Lag == nil || *m.Lag != 6 {
		t.Errorf("member lag %v, want 6", m.Lag)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
