package systest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// BenchmarkInstancesIngest measures ingest with two instances against one, on
// the same broker and the same PostgreSQL cluster (default durability): the real
// binary (`serve`, default configuration, change feed on), started and joined to
// its group (every partition owned) before INSTANCES_BENCH_ORDERS (default
// 20,000) canonical-shaped orders are produced to a fresh 4-partition topic at
// full speed; the clock runs from the first send until the group has committed
// everything. One, two, two, one instance(s) (ABBA), each on a fresh database and
// topic: two-orders/s over one-orders/s is the ratio (on two cores two instances
// share the same CPUs, so no speed-up is expected; the cost of coordination is
// what it shows).
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench InstancesIngest -benchtime 1x ./app/systest/
func BenchmarkInstancesIngest(b *testing.B) {
	brokers := os.Getenv(testenv.KafkaBrokersEnv)
	if brokers == "" {
		b.Skipf("needs a real broker (%s)", testenv.KafkaBrokersEnv)
	}
	n := testkit.EnvInt(b, "INSTANCES_BENCH_ORDERS", 20000, 100)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	g := ordersgen.New(77)
	var one, two time.Duration
	b.ResetTimer()
	for range b.N {
		for _, k := range []int{1, 2, 2, 1} {
			b.StopTimer()
			recs := make([]*kgo.Record, n)
			for i := range recs {
				recs[i] = newVersion(g, g.Order().OrderUID)
			}
			b.StartTimer()
			d := instancesDrain(b, cluster, brokers, k, recs)
			if k == 1 {
				one += d
			} else {
				two += d
			}
		}
	}
	b.StopTimer()
	rate := func(d time.Duration) float64 { return float64(2*n*b.N) / d.Seconds() }
	b.ReportMetric(rate(one), "one-orders/s")
	b.ReportMetric(rate(two), "two-orders/s")
	b.ReportMetric(rate(two)/rate(one), "ratio")
	b.Logf("%d orders per run: one instance %.0f orders/s, two instances %.0f orders/s (%.2f x)", n, rate(one), rate(two), rate(two)/rate(one))
}

// instancesDrain runs k instances on a fresh database and topic, waits until
// they own every partition, produces recs and returns the time until the group
// committed them all.
func instancesDrain(b *testing.B, cluster *testenv.Cluster, brokers string, k int, recs []*kgo.Record) time.Duration {
	b.Helper()
	f := newFixture(b, "instances-bench", brokers, cluster.CreateDB(b))
	svcs := make([]*testenv.Service, k)
	for i := range svcs {
		svcs[i] = f.start()
	}
	defer func() {
		for _, s := range svcs {
			_ = s.Terminate(60 * time.Second)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		total, each := 0, true
		for _, s := range svcs {
			n := owned(s)
			total += max(n, 0)
			each = each && n > 0
		}
		if total == 4 && (k == 1 || each) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d instances do not own the 4 partitions after a minute", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t0 := time.Now()
	if err := produce(context.Background(), brokers, f.topic, recs, 0); err != nil {
		b.Fatal(err)
	}
	f.waitLagZero(5*time.Minute, svcs...)
	return time.Since(t0)
}
