package systest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
)

// largeOrder returns a valid order of 1,000 items whose JSON is about 765 KiB
// (long names and brands), the size the reliability issue measured with.
func largeOrder(g *ordersgen.Gen) (orders.Order, []byte) {
	o := g.Order()
	base := o.Items[0]
	o.Items = make([]orders.Item, 1000)
	var goods int64
	for i := range o.Items {
		it := base
		it.Name = strings.Repeat("n", 450)
		it.Brand = strings.Repeat("b", 200)
		it.TotalPrice = it.Price * (100 - it.Sale) / 100
		goods += it.TotalPrice
		o.Items[i] = it
	}
	o.Payment.GoodsTotal = goods
	o.Payment.Amount = goods + o.Payment.DeliveryCost + o.Payment.CustomFee
	b, _ := json.Marshal(o)
	return o, b
}

// A backlog of large orders (1,000 items, ~765 KiB each) drains with the
// process's peak RSS under its own memory limit: the in-flight pipeline is
// bounded by bytes (pipeline.max_inflight_bytes), not only by the mailboxes'
// counts (three of 2,048 messages could hold 4.6 GB of such orders). Once
// drained, every in-flight byte has been given back.
func TestLargeOrdersBacklogStaysUnderTheMemoryLimit(t *testing.T) {
	brokers := requireEnv(t)
	n := testkit.EnvInt(t, "LARGE_ORDERS", 300, 20)
	f := newFixture(t, "large-orders", brokers, durableDB(t))
	const cache, inflight = 32 << 20, 16 << 20
	sized := configs.Default()
	sized.Cache.MaxBytes, sized.Pipeline.MaxInFlightBytes = cache, inflight
	limit := sized.MemoryNeed() // the service's own memory need for these bounds
	f.extraEnv = append(f.extraEnv, "ORDERS_PIPELINE_MAX_MESSAGE_BYTES=1048576",
		"ORDERS_CACHE_MAX_BYTES=33554432", "ORDERS_PIPELINE_MAX_INFLIGHT_BYTES=16777216",
		"ORDERS_CACHE_WARMUP_ON_START=false")
	g := ordersgen.New(suiteSeed(t) + 61)
	recs := make([]*kgo.Record, n)
	uids := make([]string, n)
	size := 0
	for i := range recs {
		o, b := largeOrder(g)
		if err := orders.Validate(&o); err != nil {
			t.Fatalf("the large order is not valid: %v", err)
		}
		recs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: b}
		uids[i] = o.OrderUID
		size = len(b)
	}
	if err := produce(context.Background(), brokers, f.topic, recs, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := f.start()
	defer stop(t, s)
	f.waitLagZero(5*time.Minute, s)
	took := time.Since(start)
	if got := f.storedUIDs(uids); got != n {
		t.Fatalf("stored %d of %d large orders", got, n)
	}
	if v := metricValue(t, s, "orders_pipeline_inflight_bytes"); v != 0 {
		t.Errorf("orders_pipeline_inflight_bytes = %v after the backlog drained, want 0 (bytes not given back)", v)
	}
	peak := f.peakRSS()
	t.Logf("%d orders of %d KiB (%d MiB) drained in %s; peak RSS %d MiB, memory limit %d MiB",
		n, size>>10, (n*size)>>20, took.Round(time.Millisecond), peak>>20, limit>>20)
	if peak > limit {
		t.Errorf("peak RSS %d MiB over the memory limit %d MiB", peak>>20, limit>>20)
	}
}
