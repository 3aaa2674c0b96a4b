package ingest_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// BenchmarkWrites measures the API's writes through the log: the latency of
// Writer.Put and Writer.Delete (what PUT and DELETE /api/v1/orders/{uid} call
// after decoding: append to the orders topic, then wait until the flow applied
// that record) with one client, first at rest, then while a franz-go producer
// sends 2,000 orders/s to the same topic. The flow, the cache and the database
// are the service's (ingest.New + Run with the default configuration, the
// database store on a dedicated PostgreSQL cluster with default durability).
//
// Each phase edits WRITES_BENCH_OPS (default 200) existing orders with a PUT and
// deletes half of them; every write must answer applied (no 202), and the
// database must hold what the last write of each uid said. The same-run
// baseline is the broker's acknowledgement alone: an Appender (the Writer's
// producer) appending to a topic nobody consumes. The gap between the two is
// the flow's part: fetch, batch linger, the transaction, the cache fill.
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench Writes -benchtime 1x ./pipeline/ingest/
func BenchmarkWrites(b *testing.B) {
	ops := testkit.EnvInt(b, "WRITES_BENCH_OPS", 200, 10)
	quietMigrations(b)
	brokers := testenv.KafkaBrokers(b)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	cfg := configs.Default().Pipeline

	var rest, load writePhase
	var ack []time.Duration
	var rate float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := runWrites(b, cluster, brokers, cfg, ops)
		rest.put, rest.del = append(rest.put, r.rest.put...), append(rest.del, r.rest.del...)
		load.put, load.del = append(load.put, r.load.put...), append(load.del, r.load.del...)
		ack = append(ack, r.ack...)
		rate = r.rate
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(rest.put, 0.5)), "put-p50-ms")
	b.ReportMetric(ms(quantile(rest.put, 0.99)), "put-p99-ms")
	b.ReportMetric(ms(quantile(rest.del, 0.5)), "delete-p50-ms")
	b.ReportMetric(ms(quantile(rest.del, 0.99)), "delete-p99-ms")
	b.ReportMetric(ms(quantile(load.put, 0.5)), "load-put-p50-ms")
	b.ReportMetric(ms(quantile(load.put, 0.99)), "load-put-p99-ms")
	b.ReportMetric(ms(quantile(load.del, 0.5)), "load-delete-p50-ms")
	b.ReportMetric(ms(quantile(load.del, 0.99)), "load-delete-p99-ms")
	b.ReportMetric(ms(quantile(ack, 0.5)), "ack-p50-ms")
	b.ReportMetric(ms(quantile(ack, 0.99)), "ack-p99-ms")
	b.ReportMetric(ms(cfg.BatchLinger), "linger-ms")
	b.ReportMetric(rate, "load-orders/s")
	b.Logf("%d PUTs and %d DELETEs per phase, linger %s, brokers %s", ops, ops/2, cfg.BatchLinger, brokers)
	b.Logf("broker ack alone      : p50 %.1f ms, p99 %.1f ms", ms(quantile(ack, 0.5)), ms(quantile(ack, 0.99)))
	b.Logf("at rest      PUT      : p50 %.1f ms, p99 %.1f ms; DELETE p50 %.1f ms, p99 %.1f ms",
		ms(quantile(rest.put, 0.5)), ms(quantile(rest.put, 0.99)), ms(quantile(rest.del, 0.5)), ms(quantile(rest.del, 0.99)))
	b.Logf("%5.0f orders/s PUT    : p50 %.1f ms, p99 %.1f ms; DELETE p50 %.1f ms, p99 %.1f ms", rate,
		ms(quantile(load.put, 0.5)), ms(quantile(load.put, 0.99)), ms(quantile(load.del, 0.5)), ms(quantile(load.del, 0.99)))
}

// writePhase is the latencies of one phase of BenchmarkWrites.
type writePhase struct{ put, del []time.Duration }

type writesResult struct {
	rest, load writePhase
	ack        []time.Duration
	rate       float64 // the background produce rate achieved during the load phase
}

func runWrites(b *testing.B, cluster *testenv.Cluster, brokers string, cfg ingest.Config, ops int) writesResult {
	b.Helper()
	ctx := context.Background()
	store := dbtest.New(b, dbtest.On(cluster)).Store
	cached := orderscache.NewStore(store, orderscache.New(256<<20), orderscache.Options{})
	topic := testenv.KafkaTopicName(b, "writes")
	testenv.KafkaCreateTopic(b, brokers, topic, 4)
	in, err := ingest.New(kafkaConfig(brokers, topic, topic+"-dlq", topic+"-group"), cfg, ingest.Deps{
		Store:   store,
		Cache:   cached,
		Metrics: prometheus.NewRegistry(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("ingest stop: %v", err)
		}
	}()
	api := configs.Default().API
	w, err := in.NewWriter(ingest.WriterConfig{Brokers: brokers, Topic: topic, AppendTimeout: api.AppendTimeout, ApplyWait: 30 * time.Second}, store)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()

	g := ordersgen.New(31)
	// Created through the log too; the first also waits for the group to join.
	seed := func(n int) []orders.Order {
		ords, _ := benchOrders(b, g, n)
		for _, o := range ords {
			raw, _ := json.Marshal(o)
			if _, err := w.Put(ctx, raw, o); err != nil {
				b.Fatalf("seed PUT %s: %v", o.OrderUID, err)
			}
		}
		return ords
	}
	phase := func(ords []orders.Order) writePhase {
		var p writePhase
		for i, o := range ords {
			o.TrackNumber = "EDITED"
			raw, _ := json.Marshal(o)
			t0 := time.Now()
			v, err := w.Put(ctx, raw, o)
			p.put = append(p.put, time.Since(t0))
			if err != nil {
				b.Fatalf("PUT %s: %v", o.OrderUID, err)
			}
			if i%2 == 1 {
				continue
			}
			t0 = time.Now()
			dv, err := w.Delete(ctx, o.OrderUID)
			p.del = append(p.del, time.Since(t0))
			if err != nil {
				b.Fatalf("DELETE %s: %v", o.OrderUID, err)
			}
			if dv.Compare(v) <= 0 {
				b.Fatalf("DELETE %s at %v, not after its PUT at %v", o.OrderUID, dv, v)
			}
		}
		for i, o := range ords {
			got, _, err := store.Get(ctx, o.OrderUID)
			switch {
			case i%2 == 0 && err == nil:
				b.Fatalf("%s deleted but stored", o.OrderUID)
			case i%2 == 1 && (err != nil || got.TrackNumber != "EDITED"):
				b.Fatalf("%s: %q, %v; want the PUT's edit", o.OrderUID, got.TrackNumber, err)
			}
		}
		return p
	}

	var res writesResult
	restOrders := seed(ops)
	res.ack = bareAppends(b, brokers, topic+"-ack", ops)
	res.rest = phase(restOrders)

	loadOrders := seed(ops)
	stop := make(chan struct{})
	produced := make(chan float64, 1)
	lg := ordersgen.New(32)
	next := func() *kgo.Record { _, msgs := benchOrders(b, lg, 1); return msgs[0] }
	go func() { produced <- produceAtRate(b, brokers, topic, next, freshRate, stop) }()
	time.Sleep(2 * time.Second) // the flow reaches its steady state
	res.load = phase(loadOrders)
	close(stop)
	res.rate = <-produced
	if st := in.Snapshot(); st.DLQ.Total != 0 {
		b.Fatalf("%d dead letters, want 0", st.DLQ.Total)
	}
	return res
}

// bareAppends returns the latency of n appends of a small record by the
// Writer's producer (kafkaedge.Appender) to a fresh 4-partition topic no one reads.
func bareAppends(b *testing.B, brokers, topic string, n int) []time.Duration {
	b.Helper()
	testenv.KafkaCreateTopic(b, brokers, topic, 4)
	app, err := kafkaedge.NewAppender(brokers, "bench-ack", 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close(5 * time.Second)
	value := []byte(`{"order_uid":"x"}`)
	var lat []time.Duration
	for i := 0; i <= n; i++ {
		t0 := time.Now()
		if _, err := app.Append(context.Background(), topic, []byte(time.Now().String()), value, nil); err != nil {
			b.Fatal(err)
		}
		if i > 0 { // the first one connects
			lat = append(lat, time.Since(t0))
		}
	}
	return lat
}

// produceAtRate sends the records of next to topic at rate per second (in 5 ms
// steps) until stop is closed, and returns the rate the broker acknowledged.
func produceAtRate(b *testing.B, brokers, topic string, next func() *kgo.Record, rate int, stop <-chan struct{}) float64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(0), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		b.Error(err)
		return 0
	}
	defer cl.Close()
	var acked atomic.Int64
	var wg sync.WaitGroup
	const tick = 5 * time.Millisecond
	t0 := time.Now()
	sent := 0
	for {
		select {
		case <-stop:
			wg.Wait()
			return float64(acked.Load()) / time.Since(t0).Seconds()
		default:
		}
		due := int(time.Since(t0).Seconds() * float64(rate))
		for ; sent < due; sent++ {
			wg.Add(1)
			cl.Produce(context.Background(), next(), func(_ *kgo.Record, err error) {
				if err == nil {
					acked.Add(1)
				}
				wg.Done()
			})
		}
		time.Sleep(tick - time.Since(t0)%tick)
	}
}
