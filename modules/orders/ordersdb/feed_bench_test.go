package ordersdb_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// feedDelivery records when each uid's change was delivered.
type feedDelivery struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (d *feedDelivery) Changes(c []orders.Change, _ int64) {
	now := time.Now()
	d.mu.Lock()
	for _, ch := range c {
		if _, ok := d.at[ch.UID]; !ok {
			d.at[ch.UID] = now
		}
	}
	d.mu.Unlock()
}

func (d *feedDelivery) Reset() {}

// BenchmarkFeedLatency measures the change feed between instances at 2,000
// orders/s: a writer applies 100-order batches every 50 ms (ApplyBatch, on a
// cluster with default durability) for FEED_BENCH_SECONDS (default 10) while a
// reader (ordersdb.Feed with the default options: NOTIFY wake-ups, a read at
// least every 200 ms) receives the changes. The latency of an order is from the
// return of its batch's ApplyBatch (committed) to the delivery of its change to
// the reader, whose next lookup then reads the new version: p50-ms, p99-ms,
// max-ms. poll-ms is the feed's read interval, the bound without NOTIFY.
//
//	go test -run '^$' -bench FeedLatency -benchtime 1x ./modules/orders/ordersdb/
func BenchmarkFeedLatency(b *testing.B) {
	seconds := testkit.EnvInt(b, "FEED_BENCH_SECONDS", 10, 1)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		batches := benchBatches(b, seconds*20/10+1) // 1,000-order batches, cut in tens below
		b.StartTimer()
		lat = append(lat, feedLatency(b, cluster, batches, seconds)...)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := min(len(lat)-1, max(0, int(p*float64(len(lat))+0.5)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
	b.ReportMetric(200, "poll-ms")
	b.Logf("%d changes at 2,000 orders/s: commit → delivered p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(lat), q(0.5), q(0.99), q(1))
}

func feedLatency(b *testing.B, cluster *testenv.Cluster, batches [][]orders.Record, seconds int) []time.Duration {
	b.Helper()
	d := dbtest.New(b, dbtest.On(cluster))
	rec := &feedDelivery{at: map[string]time.Time{}}
	f := ordersdb.NewFeed(d.Bun, ordersdb.FeedOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := f.Start(ctx); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, rec) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	for f.ConfirmedAt().IsZero() {
		time.Sleep(5 * time.Millisecond)
	}

	var small [][]orders.Record
	for _, bt := range batches {
		for i := 0; i+100 <= len(bt); i += 100 {
			small = append(small, bt[i:i+100])
		}
	}
	small = small[:min(len(small), seconds*20)]
	committed := map[string]time.Time{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, bt := range small {
		<-tick.C
		if _, err := d.Store.ApplyBatch(ctx, bt); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		for _, r := range bt {
			committed[r.UID()] = now
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.at)
		rec.mu.Unlock()
		if n >= len(committed) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d changes delivered within 30 s", n, len(committed))
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lat := make([]time.Duration, 0, len(committed))
	for uid, c := range committed {
		lat = append(lat, max(0, rec.at[uid].Sub(c)))
	}
	return lat
}
