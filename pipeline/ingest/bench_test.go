package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
)

// benchDirectBatch is the batch size of the direct-write baselines (the flow's
// default BatchSize).
const benchDirectBatch = 1000

// BenchmarkIngest measures the whole ingest flow consuming a backlog: N
// canonical-shaped orders (one item each, unique uids; N = INGEST_BENCH_ORDERS,
// default 50,000) are produced to a fresh 4-partition topic before the flow
// starts, then ingest.New + Run with the real database store, the otter cache and
// Prometheus metrics consume them on a dedicated PostgreSQL cluster with default
// durability. The clock runs from the first fetched message until the consumer
// group has committed every offset (group lag 0, polled); the group join before
// the first fetch is reported apart as startup-s. Every run has its own group
// and a fresh migrated database.
//
// The flow runs with the default configuration (pipeline.writers 2, adaptive
// batching, the change feed on) twice, with the other writer counts of 1, 2
// and 4 twice each, and with the change feed off twice, in the order
// D 1 4 Q Q 4 1 D (D default, Q feed off), so that load drifting during the
// run falls on every variant alike (w1/w2/w4-orders/s; the default's is orders/s).
//
// The ceiling (copy-orders/s; copy-ratio = flow / ceiling, the performance
// issue's target) is a single-connection pgx COPY of the same rows into a
// minimal schema of the same four tables: primary keys, foreign keys and one
// secondary index (minimalSchemaSQL), one transaction per 1,000 orders, measured
// at the start and at the end and averaged. Beside it: the same COPY into the
// project's schema (schema-copy-orders/s: what the schema itself costs), and the
// store's ApplyBatch called directly in 1,000-order batches on one connection
// (baseline-orders/s; ratio = flow / ApplyBatch).
//
// upsert-busy is the share of the flow's time its upsert stages spent in batch
// transactions (summed over the writers: above 1 they overlap). INGEST_BENCH_DEBUG=1
// prints the stages' counters every 5 ms.
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench Ingest -benchtime 1x ./pipeline/ingest/
func BenchmarkIngest(b *testing.B) {
	n := 50000
	if s := os.Getenv("INGEST_BENCH_ORDERS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("INGEST_BENCH_ORDERS=%q: want a positive integer", s)
		}
		n = v
	}
	// migrations log every apply at INFO: keep the benchmark output readable
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	b.Cleanup(func() { slog.SetDefault(prev) })
	brokers := testenv.KafkaBrokers(b)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	g := ordersgen.New(42)
	defaults := configs.Default().Pipeline

	var flowTime, quietTime, upsertTime, copyTime, schemaCopyTime, startup, writes time.Duration
	lanes := map[int]time.Duration{}
	var written int
	var batches uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ords, msgs := benchOrders(b, g, n)
		topic := testenv.KafkaTopicName(b, "orders")
		testenv.KafkaCreateTopic(b, brokers, topic, 4)
		testenv.KafkaProduce(b, brokers, topic, msgs...)
		b.StartTimer()

		cp1 := directCopy(b, cluster, ords, true)
		sc1 := directCopy(b, cluster, ords, false)
		up1 := directUpsert(b, cluster, ords)
		run := func(writers int, feed bool) flowResult {
			cfg := defaults
			cfg.Writers = writers
			return runFlow(b, cluster, brokers, topic, n, cfg, feed)
		}
		var others []int // the writer counts other than the default's
		for _, w := range []int{1, 2, 4} {
			if w != defaults.Writers {
				others = append(others, w)
			}
		}
		res := run(defaults.Writers, true)
		for _, w := range others {
			lanes[w] += run(w, true).flow / 2
		}
		quiet1, quiet2 := run(defaults.Writers, false), run(defaults.Writers, false)
		for _, w := range slices.Backward(others) {
			lanes[w] += run(w, true).flow / 2
		}
		res2 := run(defaults.Writers, true)
		up2 := directUpsert(b, cluster, ords)
		sc2 := directCopy(b, cluster, ords, false)
		cp2 := directCopy(b, cluster, ords, true)

		res.flow, res.startup, res.writes = (res.flow+res2.flow)/2, (res.startup+res2.startup)/2, (res.writes+res2.writes)/2
		res.batches = (res.batches + res2.batches) / 2
		quietTime += (quiet1.flow + quiet2.flow) / 2
		flowTime += res.flow
		startup += res.startup
		writes += res.writes
		batches += res.batches
		upsertTime += (up1 + up2) / 2
		copyTime += (cp1 + cp2) / 2
		schemaCopyTime += (sc1 + sc2) / 2
		written += n
	}
	b.StopTimer()
	lanes[defaults.Writers] = flowTime

	rate := float64(written) / flowTime.Seconds()
	baseline := float64(written) / upsertTime.Seconds()
	ceiling := float64(written) / copyTime.Seconds()
	schemaCopy := float64(written) / schemaCopyTime.Seconds()
	b.ReportMetric(rate, "orders/s")
	b.ReportMetric(baseline, "baseline-orders/s")
	b.ReportMetric(rate/baseline, "ratio")
	b.ReportMetric(ceiling, "copy-orders/s")
	b.ReportMetric(rate/ceiling, "copy-ratio")
	b.ReportMetric(schemaCopy, "schema-copy-orders/s")
	b.ReportMetric(float64(defaults.Writers), "writers")
	for _, w := range []int{1, 2, 4} {
		r := float64(written) / lanes[w].Seconds()
		b.ReportMetric(r, fmt.Sprintf("w%d-orders/s", w))
		b.ReportMetric(r/ceiling, fmt.Sprintf("w%d-copy-ratio", w))
	}
	b.ReportMetric(startup.Seconds()/float64(b.N), "startup-s")
	b.ReportMetric(writes.Seconds()/flowTime.Seconds(), "upsert-busy")
	quiet := float64(written) / quietTime.Seconds()
	b.ReportMetric(quiet, "nofeed-orders/s")
	b.ReportMetric(rate/quiet, "feed-ratio")
	b.Logf("%d orders per iteration, brokers %s", n, brokers)
	b.Logf("flow, %d writers: %8.0f orders/s (startup %.2fs not counted), %d batches, upsert stages busy %.0f%% (%.0f orders/s while writing)",
		defaults.Writers, rate, startup.Seconds()/float64(b.N), batches, 100*writes.Seconds()/flowTime.Seconds(), float64(written)/writes.Seconds())
	for _, w := range []int{1, 2, 4} {
		r := float64(written) / lanes[w].Seconds()
		b.Logf("flow, %d writers: %8.0f orders/s  flow/COPY %.2f", w, r, r/ceiling)
	}
	b.Logf("COPY, minimal : %8.0f orders/s  (the ceiling: PKs, FKs, one index)", ceiling)
	b.Logf("COPY, schema  : %8.0f orders/s  (the project's schema)", schemaCopy)
	b.Logf("ApplyBatch    : %8.0f orders/s  flow/ApplyBatch %.2f", baseline, rate/baseline)
	b.Logf("without feed  : %8.0f orders/s  flow/no-feed %.2f (the change feed's cost)", quiet, rate/quiet)
}

// benchOrders returns n valid orders shaped like the canonical one (one item,
// unique uids, realistic values from ordersgen) and their Kafka records keyed by uid.
func benchOrders(b *testing.B, g *ordersgen.Gen, n int) ([]orders.Order, []*kgo.Record) {
	b.Helper()
	ords := make([]orders.Order, n)
	msgs := make([]*kgo.Record, n)
	for i := range ords {
		o := g.Order()
		o.Items = o.Items[:1]
		o.Payment.GoodsTotal = o.Items[0].TotalPrice
		o.Payment.Amount = o.Payment.GoodsTotal + o.Payment.DeliveryCost + o.Payment.CustomFee
		if err := orders.Validate(&o); err != nil {
			b.Fatalf("bench order %d: %v", i, err)
		}
		v, err := json.Marshal(o)
		if err != nil {
			b.Fatal(err)
		}
		ords[i] = o
		msgs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: v}
	}
	return ords, msgs
}

// flowResult is one run of the flow over a backlog.
type flowResult struct {
	flow    time.Duration // first fetched message → group lag 0
	startup time.Duration // Run → first fetched message (group join, topic checks)
	writes  time.Duration // sum of the upsert stage's batch transactions
	batches uint64
}

// benchDebug turns on the flow's debug log and a timeline of the stages' counters
// (out/queued every 5 ms, on stderr): INGEST_BENCH_DEBUG=1.
var benchDebug = os.Getenv("INGEST_BENCH_DEBUG") != ""

// runFlow runs the ingest flow over topic until the group has committed all n
// messages. It fails the benchmark unless every order is stored and cached and
// nothing was dead-lettered.
// flowRuns counts runFlow's runs (benchmarks run one at a time).
var flowRuns int

func runFlow(b *testing.B, cluster *testenv.Cluster, brokers, topic string, n int, cfg ingest.Config, feed bool) flowResult {
	b.Helper()
	tdb := dbtest.New(b, dbtest.On(cluster))
	db, store := tdb.Bun, tdb.Store
	flowRuns++ // every run its own group: each consumes the whole backlog
	group := fmt.Sprintf("%s-group-%d-w%d", topic, flowRuns, cfg.Writers)
	if !feed {
		store.WithoutChangeFeed()
		group += "-nofeed"
	}
	cached := orderscache.NewStore(store, orderscache.New(256<<20), orderscache.Options{})
	reg := prometheus.NewRegistry()
	kcfg := kafkaConfig(brokers, topic, topic+"-dlq", group)
	level := slog.LevelWarn
	if benchDebug {
		level = slog.LevelDebug
	}
	in, err := ingest.New(kcfg, cfg, ingest.Deps{
		Store:   store,
		Cache:   cached,
		Metrics: reg,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- in.Run(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("ingest did not stop within 60 s")
		}
	}
	fail := func(format string, args ...any) {
		st := in.Snapshot()
		_ = stop()
		b.Fatalf(format+"; state %s %s, written %d", append(args, st.State, st.Error, st.Upsert.Written)...)
	}

	deadline := t0.Add(2 * time.Minute)
	var first time.Time
	for first.IsZero() {
		for _, s := range in.Snapshot().Stages {
			if s.Stage == "fetch" && s.Out > 0 {
				first = time.Now()
			}
		}
		if time.Now().After(deadline) {
			fail("nothing fetched within 2 minutes")
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline = first.Add(10 * time.Minute)
	for {
		st := in.Snapshot()
		if st.Upsert.Written >= uint64(n) {
			break
		}
		if st.State == "failed" || time.Now().After(deadline) {
			fail("orders not written")
		}
		if benchDebug {
			line := fmt.Sprintf("%5dms", time.Since(first).Milliseconds())
			for _, s := range st.Stages {
				line += fmt.Sprintf(" %s:%d/%d", s.Stage, s.Out, s.QueueLength)
			}
			fmt.Fprintln(os.Stderr, line)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for testenv.KafkaGroupLag(b, brokers, kcfg.GroupID, topic) != 0 {
		if time.Now().After(deadline) {
			fail("group lag not 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := flowResult{flow: time.Since(first), startup: first.Sub(t0)}
	st := in.Snapshot()
	res.batches = st.Upsert.Batches
	res.writes = dbWriteTime(b, reg)
	if err := stop(); err != nil {
		b.Fatalf("soft stop: %v", err)
	}

	var stored int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM orders").Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != n || st.DLQ.Total != 0 {
		b.Fatalf("%d orders stored, %d dead letters; want %d and 0", stored, st.DLQ.Total, n)
	}
	if cs := cached.Cache().Stats(); cs.Entries != int64(n) {
		b.Fatalf("%d orders cached, want %d", cs.Entries, n)
	}
	return res
}

// dbWriteTime returns the total time of the flow's successful batch transactions,
// from its orders_pipeline_db_write_duration_seconds histogram.
func dbWriteTime(b *testing.B, reg *prometheus.Registry) time.Duration {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "orders_pipeline_db_write_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "ok" {
					return time.Duration(m.GetHistogram().GetSampleSum() * float64(time.Second))
				}
			}
		}
	}
	b.Fatal("metric orders_pipeline_db_write_duration_seconds{outcome=ok} not found")
	return 0
}

// directUpsert writes ords with the store's ApplyBatch in 1,000-order batches on one
// connection into a fresh database and returns the time taken.
func directUpsert(b *testing.B, cluster *testenv.Cluster, ords []orders.Order) time.Duration {
	b.Helper()
	store := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1)).Store
	recs := benchRecords(ords)
	ctx := context.Background()
	t0 := time.Now()
	for i := 0; i < len(recs); i += benchDirectBatch {
		batch := recs[i:min(i+benchDirectBatch, len(recs))]
		stored, err := store.ApplyBatch(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range stored {
			if !s.Changed {
				b.Fatalf("%s not applied", s.UID)
			}
		}
	}
	return time.Since(t0)
}

// directCopy writes ords with pgx COPY, one transaction per 1,000 orders on one
// connection, into a fresh database, and returns the time taken: into the
// minimal schema of the four tables (minimalSchemaSQL), the write ceiling of
// this machine, or into the project's own migrated schema.
func directCopy(b *testing.B, cluster *testenv.Cluster, ords []orders.Order, minimal bool) time.Duration {
	b.Helper()
	ctx := context.Background()
	dsn := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1)).DSN
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	recs := benchRecords(ords)
	schema := "public"
	if minimal {
		schema = "minimal"
		if _, err := conn.Exec(ctx, minimalSchemaSQL(recs[:1])); err != nil {
			b.Fatalf("minimal schema: %v", err)
		}
	}
	t0 := time.Now()
	for i := 0; i < len(recs); i += benchDirectBatch {
		if err := copyOrders(ctx, conn, schema, recs[i:min(i+benchDirectBatch, len(recs))]); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0)
}

// minimalSchemaSQL creates the schema "minimal" with the four tables the store
// writes, with the columns and types it writes (ordersdb.BatchRows) and nothing
// else: a primary key per table (items: order_uid, position), a foreign key from
// each part to its order, and one secondary index (orders by date_created, as a
// listing would need). No checks, no sequence, no version table, no change feed:
// what our schema adds costs against us.
func minimalSchemaSQL(sample []orders.Record) string {
	keys := map[string]string{"orders": "order_uid", "delivery": "order_uid", "payment": "order_uid", "items": "order_uid, position"}
	var sb strings.Builder
	sb.WriteString("CREATE SCHEMA minimal;\n")
	for _, t := range ordersdb.BatchRows(sample) {
		fmt.Fprintf(&sb, "CREATE TABLE minimal.%s (", t.Table)
		for k, c := range t.Columns {
			fmt.Fprintf(&sb, "%s %s NOT NULL, ", c, t.Types[k])
		}
		fmt.Fprintf(&sb, "PRIMARY KEY (%s)", keys[t.Table])
		if t.Table != "orders" {
			sb.WriteString(", FOREIGN KEY (order_uid) REFERENCES minimal.orders (order_uid) ON DELETE CASCADE")
		}
		sb.WriteString(");\n")
	}
	sb.WriteString("CREATE INDEX ON minimal.orders (date_created);\n")
	return sb.String()
}

// benchRecords gives ords Kafka-like versions (partition 0, offsets 0..).
func benchRecords(ords []orders.Order) []orders.Record {
	recs := make([]orders.Record, len(ords))
	for i := range ords {
		recs[i] = orders.Record{Order: ords[i], Version: orders.Version{Partition: 0, Offset: int64(i), Time: 1}}
	}
	return recs
}

// copyOrders writes recs with COPY into orders, delivery, payment and items in one
// transaction (the same columns and rows ApplyBatch writes: ordersdb.BatchRows).
func copyOrders(ctx context.Context, conn *pgx.Conn, schema string, recs []orders.Record) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("copy: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	for _, t := range ordersdb.BatchRows(recs) {
		src := pgx.CopyFromSlice(t.Len, func(i int) ([]any, error) { return t.Row(i), nil })
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, t.Table}, t.Columns, src); err != nil {
			return fmt.Errorf("copy %s: %w", t.Table, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("copy: commit: %w", err)
	}
	return nil
}
