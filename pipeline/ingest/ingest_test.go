package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// kafkaConfig is the default kafka section for a test's topics (the flow creates
// the DLQ topic).
func kafkaConfig(brokers, topic, dlq, group string) kafkaedge.Config {
	k := configs.Default().Kafka
	k.Brokers, k.Topic, k.DLQTopic, k.GroupID = brokers, topic, dlq, group
	k.CreateTopics = true
	return k
}

type env struct {
	brokers, topic, dlq, group string
	db                         *bun.DB
}

func newEnv(t *testing.T, db *dbtest.DB) *env {
	t.Helper()
	e := &env{
		brokers: testenv.KafkaBrokers(t),
		topic:   testenv.KafkaTopicName(t, "orders"),
		dlq:     testenv.KafkaTopicName(t, "dlq"),
	}
	e.group = e.topic + "-group"
	testenv.KafkaCreateTopic(t, e.brokers, e.topic, 4)
	e.db = db.Bun
	return e
}

// start runs the flow (CreateTopics creates the DLQ topic) and returns it with a
// stop function that cancels it and returns Run's result.
func (e *env) start(t *testing.T, tweak func(*ingest.Config)) (*ingest.Ingest, func() error) {
	t.Helper()
	cfg := configs.Default().Pipeline
	cfg.ShutdownTimeout = 20 * time.Second
	if tweak != nil {
		tweak(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := ingest.New(kafkaConfig(e.brokers, e.topic, e.dlq, e.group), cfg, ingest.Deps{
		Store:   ordersdb.New(e.db),
		Metrics: prometheus.NewRegistry(),
		Logger:  log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	stopped := false
	var result error
	stop := func() error {
		if stopped {
			return result
		}
		stopped = true
		cancel()
		select {
		case result = <-done:
		case <-time.After(60 * time.Second):
			result = errors.New("ingest did not stop within 60 s")
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return in, stop
}

// waitLagZero waits until the group committed everything produced to the topic.
func (e *env) waitLagZero(t *testing.T, in *ingest.Ingest, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		lag := testenv.KafkaGroupLag(t, e.brokers, e.group, e.topic)
		if lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			st, _ := json.Marshal(in.Snapshot())
			t.Fatalf("group lag still %d after %s; stats: %s", lag, limit, st)
		}
		if err := in.Ready(); err != nil && strings.Contains(err.Error(), "failed") {
			t.Fatalf("flow failed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) count(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.QueryRowContext(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) stored(t *testing.T, uid string) bool {
	t.Helper()
	_, _, err := ordersdb.New(e.db).Get(context.Background(), uid)
	if errors.Is(err, orders.ErrNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func validRecords(g *ordersgen.Gen, n int) ([]*kgo.Record, []string) {
	recs := make([]*kgo.Record, n)
	uids := make([]string, n)
	for i := range recs {
		o, b := g.Valid()
		recs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: b}
		uids[i] = o.OrderUID
	}
	return recs, uids
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

func TestTenThousandOrdersAllStoredLagZero(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	recs, uids := validRecords(ordersgen.New(1), 10000)
	testenv.KafkaProduce(t, e.brokers, e.topic, recs...)
	in, stop := e.start(t, nil)
	e.waitLagZero(t, in, 3*time.Minute)
	if n := e.count(t); n != len(uids) {
		t.Fatalf("%d orders stored, want %d", n, len(uids))
	}
	for _, uid := range []string{uids[0], uids[4999], uids[9999]} {
		if !e.stored(t, uid) {
			t.Errorf("order %s missing", uid)
		}
	}
	if err := in.Ready(); err != nil {
		t.Errorf("ready while running: %v", err)
	}
	st := in.Snapshot()
	if st.Upsert.Written < 10000 || st.DLQ.Total != 0 {
		t.Errorf("stats: %+v", st.Upsert)
	}
	if err := stop(); err != nil {
		t.Fatalf("soft stop: %v", err)
	}
	if in.Ready() == nil {
		t.Error("ready after stop")
	}
	if dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second); len(dl) != 0 {
		t.Errorf("%d dead letters, want 0", len(dl))
	}
}

func TestBadMessagesGoToDLQUnchanged(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	const maxBytes = 64 << 10
	g := ordersgen.New(2)
	bad := map[string][]byte{} // key -> value
	class := map[string]string{}
	var recs []*kgo.Record
	good, goodUIDs := validRecords(g, 300)
	for i, kind := range ordersgen.Kinds {
		for j := range 3 {
			key, val := g.Invalid(kind, maxBytes)
			key = fmt.Sprintf("bad-%s-%d-%s", kind, j, key)
			bad[key] = val
			switch kind {
			case ordersgen.KindTotals:
				class[key] = "validation"
			case ordersgen.KindMissing:
				class[key] = "" // decode or validation, depending on the field
			default:
				class[key] = "decode"
			}
			recs = append(recs, &kgo.Record{
				Key: []byte(key), Value: val,
				Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}},
			})
			recs = append(recs, good[i*30+j*10:i*30+j*10+10]...)
		}
	}
	recs = append(recs, good[len(ordersgen.Kinds)*30:]...)
	// Kinds beyond the generator's: rule violations found by Validate.
	o, _ := g.Valid()
	o.Items[0].Sale = 130
	sale, _ := json.Marshal(o)
	o2, _ := g.Valid()
	o2.Payment.Currency = "usd"
	cur, _ := json.Marshal(o2)
	for k, v := range map[string][]byte{"bad-sale": sale, "bad-currency": cur, "bad-empty": {}} {
		bad[k], class[k] = v, "validation"
		if k == "bad-empty" {
			class[k] = "decode"
		}
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: v})
	}
	testenv.KafkaProduce(t, e.brokers, e.topic, recs...)
	offsets := map[string]*kgo.Record{}
	for _, r := range testenv.KafkaReadAll(t, e.brokers, e.topic, 200*time.Millisecond) {
		offsets[string(r.Key)] = r
	}

	in, stop := e.start(t, func(c *ingest.Config) { c.MaxMessageBytes = maxBytes })
	e.waitLagZero(t, in, 2*time.Minute)
	if err := stop(); err != nil {
		t.Fatalf("soft stop: %v", err)
	}
	if n := e.count(t); n != len(goodUIDs) {
		t.Errorf("%d orders stored, want %d", n, len(goodUIDs))
	}
	dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second)
	if len(dl) != len(bad) {
		t.Errorf("%d dead letters, want %d", len(dl), len(bad))
	}
	seen := map[string]bool{}
	for _, r := range dl {
		k := string(r.Key)
		want, ok := bad[k]
		if !ok {
			t.Errorf("unexpected dead letter %q", k)
			continue
		}
		seen[k] = true
		if string(r.Value) != string(want) {
			t.Errorf("%s: value changed", k)
		}
		if c, _ := header(r, "x-error-class"); c != class[k] && (class[k] != "" || (c != "decode" && c != "validation")) {
			t.Errorf("%s: x-error-class %q, want %q", k, c, class[k])
		}
		for _, h := range []string{"x-error", "x-stage", "x-source-topic", "x-source-partition", "x-source-offset", "x-attempts"} {
			if v, ok := header(r, h); !ok || v == "" {
				t.Errorf("%s: header %s missing", k, h)
			}
		}
		src := offsets[k]
		if v, _ := header(r, "x-source-offset"); src == nil || v != strconv.FormatInt(src.Offset, 10) {
			t.Errorf("%s: x-source-offset %s does not match the source record", k, v)
		}
		if v, _ := header(r, "x-source-partition"); src == nil || v != strconv.Itoa(int(src.Partition)) {
			t.Errorf("%s: x-source-partition %s does not match the source record", k, v)
		}
		if v, _ := header(r, "x-source-topic"); v != e.topic {
			t.Errorf("%s: x-source-topic %q", k, v)
		}
		if strings.HasPrefix(k, "bad-") && strings.Count(k, "-") > 2 { // generator kinds carry the original header
			if v, ok := header(r, "origin"); !ok || v != "test" {
				t.Errorf("%s: original header lost", k)
			}
		}
	}
	for k := range bad {
		if !seen[k] {
			t.Errorf("bad message %q not dead-lettered", k)
		}
	}
}

func TestPoisonOrderIsolatedByBisection(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(3)
	recs, uids := validRecords(g, 400)
	// Valid for the rules, refused by PostgreSQL. The schema accepts every valid
	// order (and bun drops NUL bytes from strings), so this test database gets a
	// CHECK constraint that refuses one name: a check_violation, SQLSTATE 23514.
	if _, err := e.db.ExecContext(context.Background(),
		`ALTER TABLE delivery ADD CONSTRAINT test_poison_check CHECK (name <> 'Poison Name')`); err != nil {
		t.Fatal(err)
	}
	poison := map[string]bool{}
	for _, i := range []int{17, 250} {
		o := g.Order()
		o.Delivery.Name = "Poison Name"
		b, _ := json.Marshal(o)
		if err := orders.Validate(&o); err != nil {
			t.Fatalf("poison order must pass validation: %v", err)
		}
		poison[o.OrderUID] = true
		recs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: b}
		uids[i] = ""
	}
	testenv.KafkaProduce(t, e.brokers, e.topic, recs...)
	in, stop := e.start(t, func(c *ingest.Config) { c.BatchLinger = 300 * time.Millisecond })
	e.waitLagZero(t, in, 2*time.Minute)
	st := in.Snapshot()
	if err := stop(); err != nil {
		t.Fatalf("soft stop: %v", err)
	}
	if n := e.count(t); n != len(uids)-len(poison) {
		t.Errorf("%d orders stored, want %d", n, len(uids)-len(poison))
	}
	for _, uid := range uids {
		if uid != "" && !e.stored(t, uid) {
			t.Fatalf("good order %s not stored", uid)
		}
	}
	dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second)
	if len(dl) != len(poison) {
		t.Fatalf("%d dead letters, want %d", len(dl), len(poison))
	}
	for _, r := range dl {
		if !poison[string(r.Key)] {
			t.Errorf("dead letter %q is not a poison order", r.Key)
		}
		if c, _ := header(r, "x-error-class"); c != "data" {
			t.Errorf("x-error-class %q, want data", c)
		}
		if s, _ := header(r, "x-stage"); s != "upsert" {
			t.Errorf("x-stage %q, want upsert", s)
		}
	}
	if st.Upsert.Poison != 2 {
		t.Errorf("poison count %d, want 2", st.Upsert.Poison)
	}
}

func TestPostgresOutageLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{Durable: true})
	e := newEnv(t, dbtest.New(t, dbtest.On(cluster)))
	g := ordersgen.New(4)
	first, uids := validRecords(g, 4000)
	testenv.KafkaProduce(t, e.brokers, e.topic, first...)
	in, stop := e.start(t, func(c *ingest.Config) {
		c.BatchSize = 200 // many batches, so the kill lands mid-stream
		c.RetryMax = time.Second
	})
	deadline := time.Now().Add(time.Minute)
	for in.Snapshot().Upsert.Written == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing written within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cluster.Kill(); err != nil {
		t.Fatal(err)
	}
	second, more := validRecords(g, 4000)
	testenv.KafkaProduce(t, e.brokers, e.topic, second...)
	uids = append(uids, more...)
	time.Sleep(12 * time.Second) // the outage lasts past several retries
	if in.Snapshot().Upsert.Retries == 0 {
		t.Error("no transient retries during the outage")
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitLagZero(t, in, 3*time.Minute)
	if err := stop(); err != nil {
		t.Fatalf("soft stop: %v", err)
	}
	if n := e.count(t); n != len(uids) {
		t.Fatalf("%d orders stored, want %d", n, len(uids))
	}
	if dl := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second); len(dl) != 0 {
		t.Errorf("%d dead letters after an outage, want 0", len(dl))
	}
}

func TestRebalanceBetweenTwoInstancesLosesNothing(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(5)
	first, uids := validRecords(g, 3000)
	testenv.KafkaProduce(t, e.brokers, e.topic, first...)
	a, stopA := e.start(t, func(c *ingest.Config) { c.BatchSize = 100 })
	deadline := time.Now().Add(time.Minute)
	for a.Snapshot().Upsert.Written == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing written within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, stopB := e.start(t, func(c *ingest.Config) { c.BatchSize = 100 }) // joins: partitions move
	second, more := validRecords(g, 3000)
	testenv.KafkaProduce(t, e.brokers, e.topic, second...)
	uids = append(uids, more...)
	e.waitLagZero(t, b, 2*time.Minute)
	if err := stopA(); err != nil { // leaves: its partitions move to b
		t.Fatalf("stop a: %v", err)
	}
	third, more := validRecords(g, 1000)
	testenv.KafkaProduce(t, e.brokers, e.topic, third...)
	uids = append(uids, more...)
	e.waitLagZero(t, b, 2*time.Minute)
	if err := stopB(); err != nil {
		t.Fatalf("stop b: %v", err)
	}
	if n := e.count(t); n != len(uids) {
		t.Fatalf("%d orders stored, want %d", n, len(uids))
	}
}
