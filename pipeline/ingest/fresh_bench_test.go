package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
)

// freshRate is the steady produce rate of BenchmarkFreshness (the README's figure).
const freshRate = 2000

// freshPartitions is the number of partitions of BenchmarkFreshness's topics.
const freshPartitions = 4

// freshWarmWAL is the WAL (MiB) the cluster writes before the runs: see
// testenv.Cluster.WarmWAL. The six runs write less than this together.
const freshWarmWAL = 384

// freshSample is how many uids BenchmarkFreshness fetches through GET /order/{uid}.
const freshSample = 50

// BenchmarkFreshness measures how soon an order is served after the broker
// acknowledged it, at a steady 2,000 orders/s: the whole flow (ingest.New + Run,
// the database store on a dedicated PostgreSQL cluster with default durability,
// the otter cache, the API on a real listener) consumes a 4-partition topic while
// a franz-go producer sends canonical-shaped orders (unique uids, one item) for
// FRESH_BENCH_SECONDS per run, paced in 5 ms steps; each record's time is
// taken in its produce callback (the broker's acknowledgement).
//
// An order becomes servable when the flow's cache stage has filled it into the
// cache the API reads (the flow's CacheFiller, wrapped to record the time per
// uid): from then GET /order/{uid} answers from memory. p50-ms, p99-ms and max-ms
// are of (filled − acknowledged) over every order. The latency is split at the
// upsert: to-upsert-p99-ms (ack → its batch transaction starts: fetch, decode,
// validate, batch linger, queueing) and upsert-p99-ms (the batch transaction).
// To show the fill is what the API serves, 50 sampled uids are fetched through
// GET /order/{uid} on a real listener (httpx + ordershttp, as app/ wires them)
// right after their fill; each must answer 200 with its order, and http-p99-ms
// is (answered − acknowledged) for that sample.
//
// The default configuration batches adaptively (a batch goes to its writer as
// soon as the writer is free). Two same-run comparisons run with it, in ABCCBA
// order, FRESH_BENCH_SECONDS each (default 8), on fresh topics and databases:
// the former fixed linger (linger-ms, FRESH_BENCH_LINGER, default 50 ms: a batch
// waits that long for more orders), whose p99 is linger-p99-ms; and the floor
// (runFreshFloor: a bare consumer that COPYs each poll into the minimal schema
// and commits, the round trip of broker and disk with nothing of ours on it),
// floor-p50-ms and floor-p99-ms. The floor's p99 is what this machine's disk
// allows in the same minutes: a commit flush that stalls delays both alike. The
// achieved produce rate is reported as orders/s. FRESH_BENCH_WRITERS sets
// pipeline.writers (default the configuration's); FRESH_BENCH_COMBINE=0 runs
// the lanes without their combiner (each lane's batches in transactions of
// their own), for comparison.
//
// Each run measures a warm path, as a service that has run a while has one:
// the cluster has written freshWarmWAL MiB of WAL first (a new cluster creates
// and syncs a 16 MiB segment file every 16 MiB, about 300 ms each here), the
// warm-up orders go through the run's own producer (a cold one acknowledged its
// first second of orders at once), and the flow has committed its first offsets.
// pause-ms and floor-pause-ms are the longest delay of a goroutine sleeping
// 1 ms while the flow's and the floor's runs produced: a pause of the whole
// process (the VM stopped, CPU steal) is in both sides' p99, not in either's code.
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench Freshness -benchtime 1x ./pipeline/ingest/
func BenchmarkFreshness(b *testing.B) {
	seconds := testkit.EnvInt(b, "FRESH_BENCH_SECONDS", 8, 1)
	cfg := configs.Default().Pipeline
	cfg.Writers = testkit.EnvInt(b, "FRESH_BENCH_WRITERS", cfg.Writers, 1)
	if os.Getenv("FRESH_BENCH_COMBINE") == "0" {
		prev := ingest.SetCombineLanes(false)
		b.Cleanup(func() { ingest.SetCombineLanes(prev) })
	}
	fixed := cfg
	fixed.BatchLinger = 50 * time.Millisecond
	if s := os.Getenv("FRESH_BENCH_LINGER"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("FRESH_BENCH_LINGER=%q: want a positive duration", s)
		}
		fixed.BatchLinger = d
	}
	quietMigrations(b)
	brokers := testenv.KafkaBrokers(b)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	cluster.WarmWAL(b, freshWarmWAL)
	g := ordersgen.New(7)

	var all, lingered, floor freshResult
	add := func(to *freshResult, r freshResult) {
		to.lat = append(to.lat, r.lat...)
		to.toUpsert = append(to.toUpsert, r.toUpsert...)
		to.upsert = append(to.upsert, r.upsert...)
		to.http = append(to.http, r.http...)
		to.produced += r.produced
		to.produceTime += r.produceTime
		to.pauses.add(r.pauses)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// ABCCBA: the flow, the fixed linger, the floor.
		for _, run := range []string{"flow", "linger", "floor", "floor", "linger", "flow"} {
			b.StopTimer()
			_, msgs := benchOrders(b, g, freshPartitions+freshRate*seconds) // the first ones warm up
			b.StartTimer()
			switch run {
			case "flow":
				add(&all, runFreshness(b, cluster, brokers, cfg, msgs))
			case "linger":
				add(&lingered, runFreshness(b, cluster, brokers, fixed, msgs))
			default:
				add(&floor, runFreshFloor(b, cluster, brokers, msgs))
			}
		}
	}
	b.StopTimer()

	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(all.lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(quantile(all.lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(quantile(all.lat, 1)), "max-ms")
	b.ReportMetric(ms(quantile(all.toUpsert, 0.99)), "to-upsert-p99-ms")
	b.ReportMetric(ms(quantile(all.upsert, 0.99)), "upsert-p99-ms")
	b.ReportMetric(ms(quantile(all.http, 0.99)), "http-p99-ms")
	b.ReportMetric(ms(fixed.BatchLinger), "linger-ms")
	b.ReportMetric(ms(quantile(lingered.lat, 0.99)), "linger-p99-ms")
	b.ReportMetric(ms(quantile(floor.lat, 0.50)), "floor-p50-ms")
	b.ReportMetric(ms(quantile(floor.lat, 0.99)), "floor-p99-ms")
	b.ReportMetric(float64(all.produced)/all.produceTime.Seconds(), "orders/s")
	b.ReportMetric(ms(all.pauses.longest), "pause-ms")
	b.ReportMetric(ms(floor.pauses.longest), "floor-pause-ms")
	b.Logf("%d orders at %d/s target (%.0f/s achieved), adaptive batching vs a fixed %s linger and the floor (ABCCBA), brokers %s",
		all.produced, freshRate, float64(all.produced)/all.produceTime.Seconds(), fixed.BatchLinger, brokers)
	for _, r := range []struct {
		name string
		res  *freshResult
	}{{"adaptive", &all}, {"linger " + fixed.BatchLinger.String(), &lingered}, {"floor", &floor}} {
		b.Logf("%-12s ack → servable: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", r.name,
			ms(quantile(r.res.lat, 0.5)), ms(quantile(r.res.lat, 0.9)), ms(quantile(r.res.lat, 0.99)), ms(quantile(r.res.lat, 1)))
		b.Logf("%-12s the process paused up to %.1f ms (%d pauses of %v or more) while producing", r.name,
			ms(r.res.pauses.longest), r.res.pauses.long, pauseLong)
		if r.res == &floor {
			continue
		}
		b.Logf("%-12s ack → upsert start: p50 %.1f ms, p99 %.1f ms; upsert transaction: p50 %.1f ms, p99 %.1f ms", r.name,
			ms(quantile(r.res.toUpsert, 0.5)), ms(quantile(r.res.toUpsert, 0.99)), ms(quantile(r.res.upsert, 0.5)), ms(quantile(r.res.upsert, 0.99)))
	}
	b.Logf("GET /order/{uid} after fill (%d sampled): p50 %.1f ms, p99 %.1f ms after the ack",
		len(all.http), ms(quantile(all.http, 0.5)), ms(quantile(all.http, 0.99)))
}

// freshResult is one run of BenchmarkFreshness: per-order latencies.
type freshResult struct {
	lat, toUpsert, upsert, http []time.Duration
	produced                    int
	produceTime                 time.Duration // first send → last acknowledgement
	pauses                      pauses        // the machine's, while producing
}

// runFreshness runs the flow and the API, produces one warm-up record to each
// partition and waits until they are servable (group joined, every partition's
// path warm), then produces the rest at freshRate
// and returns the latencies. It fails the benchmark unless every order is
// filled, the sample is served and nothing was dead-lettered.
func runFreshness(b *testing.B, cluster *testenv.Cluster, brokers string, cfg ingest.Config, msgs []*kgo.Record) freshResult {
	b.Helper()
	store := dbtest.New(b, dbtest.On(cluster)).Store
	cached := orderscache.NewStore(store, orderscache.New(256<<20), orderscache.Options{})
	clock := newFreshClock(cached, store)

	// The API as app/ wires it, on a real listener.
	app := ordershttp.NewApp(cached, ordershttp.AppConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() { _ = app.Shutdown() })
	base := "http://" + ln.Addr().String()

	topic := testenv.KafkaTopicName(b, "fresh")
	testenv.KafkaCreateTopic(b, brokers, topic, freshPartitions)
	level := slog.LevelWarn
	if benchDebug {
		level = slog.LevelDebug
	}
	in, err := ingest.New(kafkaConfig(brokers, topic, topic+"-dlq", topic+"-group"), cfg, ingest.Deps{
		Store:   clock.writer(),
		Cache:   clock,
		Metrics: prometheus.NewRegistry(),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("ingest stop: %v", err)
			}
		case <-time.After(60 * time.Second):
			b.Error("ingest did not stop within 60 s")
		}
	}
	defer stop()

	p := newFreshProducer(b, brokers, topic, msgs)
	// Warm-up: the group joins and the first batch goes through before the clock runs.
	p.warmUp(b, clock.filled, func() string { return in.Snapshot().State + " " + in.Snapshot().Error })
	// and the group's first offset commit (the broker's first for a new group) is behind it
	for deadline := time.Now().Add(time.Minute); ; {
		st := in.Snapshot()
		n := 0
		for _, ps := range st.Partitions {
			if ps.Committed >= 1 {
				n++
			}
		}
		if n == freshPartitions {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("warm-up: %d of %d partitions committed a minute after their order was served", n, freshPartitions)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Sampled uids are fetched through the API right after their fill.
	sample := map[string]bool{}
	step := max(1, (len(msgs)-freshPartitions)/freshSample)
	for i := freshPartitions; i < len(msgs) && len(sample) < freshSample; i += step {
		sample[string(msgs[i].Key)] = true
	}
	served := clock.serveSample(sample, base)
	if path := os.Getenv("FRESH_BENCH_TIMELINE"); path != "" {
		stopTimeline := writeTimeline(b, path, in, clock, &p.acked)
		defer stopTimeline()
	}
	produceTime := p.steady(b)

	for deadline := time.Now().Add(time.Minute); clock.count() < len(msgs); {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d orders servable a minute after the last acknowledgement", clock.count(), len(msgs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	httpLat := <-served
	st := in.Snapshot()
	stop()
	if st.DLQ.Total != 0 {
		b.Fatalf("%d dead letters, want 0", st.DLQ.Total)
	}
	if len(httpLat.errs) > 0 {
		b.Fatalf("sampled GETs failed: %v", httpLat.errs)
	}

	res := freshResult{produced: len(msgs) - freshPartitions, produceTime: produceTime, pauses: p.pauses}
	for i := freshPartitions; i < len(msgs); i++ {
		uid := string(msgs[i].Key)
		f := clock.get(uid)
		res.lat = append(res.lat, f.filled.Sub(p.acks[i]))
		res.toUpsert = append(res.toUpsert, f.upsertStart.Sub(p.acks[i]))
		res.upsert = append(res.upsert, f.upsertEnd.Sub(f.upsertStart))
		if t, ok := httpLat.at[uid]; ok {
			res.http = append(res.http, t.Sub(p.acks[i]))
		}
	}
	if len(res.http) != len(sample) {
		b.Fatalf("%d sampled GETs answered, want %d", len(res.http), len(sample))
	}
	return res
}

// freshTimes is when one uid went through the upsert and the cache fill.
type freshTimes struct {
	upsertStart, upsertEnd, filled time.Time
}

// freshBatch is one successful batch transaction.
type freshBatch struct {
	start, end time.Time
	n          int
}

// writeTimeline writes, every 5 ms until the returned function is called, the
// run's counters to path: milliseconds since the start, acknowledged records,
// then out/queue length of every stage; the batch transactions (start, end in
// ms, orders) follow at the end as "batch" lines. FRESH_BENCH_TIMELINE=path.
func writeTimeline(b *testing.B, path string, in *ingest.Ingest, clock *freshClock, acked *atomic.Int64) func() {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			line := fmt.Sprintf("%d acked:%d", time.Since(t0).Milliseconds(), acked.Load())
			for _, s := range in.Snapshot().Stages {
				line += fmt.Sprintf(" %s:%d/%d", s.Stage, s.Out, s.QueueLength)
			}
			fmt.Fprintln(f, line)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(stop)
		<-stopped
		clock.mu.Lock()
		for _, bt := range clock.batches {
			fmt.Fprintf(f, "batch %d %d %d\n", bt.start.Sub(t0).Milliseconds(), bt.end.Sub(t0).Milliseconds(), bt.n)
		}
		clock.mu.Unlock()
		_ = f.Close()
	}
}

// freshClock wraps the flow's BatchWriter and CacheFiller to record, per uid, when
// its batch transaction ran and when it was filled into the cache (the first
// time: uids are unique in this benchmark).
type freshClock struct {
	cache ingest.CacheFiller
	store ingest.BatchWriter

	mu      sync.Mutex
	times   map[string]*freshTimes
	batches []freshBatch
	filledN int
	watch   map[string]bool
	watched chan string
}

func newFreshClock(cache ingest.CacheFiller, store ingest.BatchWriter) *freshClock {
	return &freshClock{cache: cache, store: store, times: map[string]*freshTimes{}}
}

// Fill fills the cache, then records the time for every applied uid.
func (c *freshClock) Fill(recs []orders.Record, stored []orders.Stored) {
	c.cache.Fill(recs, stored)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range stored {
		if !s.Changed {
			continue
		}
		t := c.entry(s.UID)
		if t.filled.IsZero() {
			t.filled = now
			c.filledN++
			if c.watch[s.UID] {
				c.watched <- s.UID // buffered for the whole sample
			}
		}
	}
}

func (c *freshClock) entry(uid string) *freshTimes {
	t := c.times[uid]
	if t == nil {
		t = &freshTimes{}
		c.times[uid] = t
	}
	return t
}

// writer returns the BatchWriter that records the transaction times of c.
func (c *freshClock) writer() ingest.BatchWriter { return freshWriter{c} }

type freshWriter struct{ c *freshClock }

// Invalidate passes through to the cache.
func (c *freshClock) Invalidate(uids ...string) { c.cache.Invalidate(uids...) }

// ProbeWrite passes through to the store.
func (w freshWriter) ProbeWrite(ctx context.Context, rec orders.Record) error {
	return w.c.store.ProbeWrite(ctx, rec)
}

// PurgeTombstones passes through to the store.
func (w freshWriter) PurgeTombstones(ctx context.Context, cutoff time.Time, purged func([]string)) (int64, error) {
	return w.c.store.PurgeTombstones(ctx, cutoff, purged)
}

// ApplyBatch writes recs with the wrapped store and records the transaction's
// start and end for the applied uids.
func (w freshWriter) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	start := time.Now()
	stored, err := w.c.store.ApplyBatch(ctx, recs)
	end := time.Now()
	if err == nil {
		w.c.mu.Lock()
		w.c.batches = append(w.c.batches, freshBatch{start, end, len(recs)})
		for _, s := range stored {
			if s.Changed {
				t := w.c.entry(s.UID)
				t.upsertStart, t.upsertEnd = start, end
			}
		}
		w.c.mu.Unlock()
	}
	return stored, err
}

func (c *freshClock) filled(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.times[uid]
	return t != nil && !t.filled.IsZero()
}

func (c *freshClock) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.filledN
}

func (c *freshClock) get(uid string) freshTimes {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.times[uid]; t != nil {
		return *t
	}
	return freshTimes{}
}

// sampleResult is when each sampled uid was answered by GET /order/{uid}.
type sampleResult struct {
	at   map[string]time.Time
	errs []string
}

// serveSample fetches every uid of sample through GET base/order/{uid} as soon
// as it is filled; the result arrives on the channel once all were fetched.
func (c *freshClock) serveSample(sample map[string]bool, base string) <-chan sampleResult {
	c.mu.Lock()
	c.watch = sample
	c.watched = make(chan string, len(sample))
	watched := c.watched
	c.mu.Unlock()
	out := make(chan sampleResult, 1)
	go func() {
		res := sampleResult{at: map[string]time.Time{}}
		client := &http.Client{Timeout: 5 * time.Second}
		for range len(sample) {
			uid := <-watched
			resp, err := client.Get(base + "/order/" + uid)
			now := time.Now()
			if err != nil {
				res.errs = append(res.errs, fmt.Sprintf("%s: %v", uid, err))
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var o orders.Order
			if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &o) != nil || o.OrderUID != uid {
				res.errs = append(res.errs, fmt.Sprintf("%s: %d %.100s", uid, resp.StatusCode, body))
				continue
			}
			res.at[uid] = now
		}
		out <- res
	}()
	return out
}

// memMetrics returns the service's Go heap and cache figures from its /metrics, in
// MiB, for the progress log of BenchmarkBacklogRSS (the rest of RSS is C memory:
// librdkafka's queues and buffers).
func memMetrics(url string) string {
	resp, err := http.Get(url) //nolint:noctx // a progress line; the default client is enough
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "metrics: " + err.Error()
	}
	out := ""
	for _, name := range []string{
		"go_memstats_heap_inuse_bytes", "go_memstats_heap_sys_bytes", "go_memstats_next_gc_bytes",
		"go_memstats_sys_bytes", "orders_cache_bytes",
	} {
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				out += fmt.Sprintf(" %s=%.0f", strings.TrimSuffix(strings.TrimPrefix(name, "go_memstats_"), "_bytes"), f/(1<<20))
			}
		}
	}
	return "MiB:" + out
}

// quantile returns the q-quantile (nearest rank) of ds; 0 when empty. It sorts ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// quietMigrations raises the default logger to WARN for the benchmark: the
// migrations log every apply at INFO.
func quietMigrations(b *testing.B) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	b.Cleanup(func() { slog.SetDefault(prev) })
}

// BenchmarkBacklogRSS measures the service's memory under a large backlog:
// BACKLOG_BENCH_ORDERS (default 1,000,000) canonical-shaped orders (unique uids,
// one item) are produced to a fresh 4-partition topic (lz4, large batches) before
// the service starts; then the real binary (`serve`, default configuration but
// for the ORDERS_* of the broker, topics, group and a dedicated PostgreSQL
// cluster with default durability) consumes it. Its VmRSS is sampled every
// 100 ms from the start of the process until the group's lag is 0: peak-rss-MiB
// is the largest sample, drain-s the time from the process start to lag 0
// (startup and migrations included), orders/s the backlog over drain-s. The
// reference is the service's cache bound (cache-max-MiB, cache.max_bytes): with
// unique uids the cache fills up to it. The service inherits the environment, so
// ORDERS_CACHE_MAX_BYTES or GOMEMLIMIT set for the benchmark apply to it.
//
// It is long (producing the backlog alone takes about a minute): it runs only
// with BACKLOG_BENCH=1.
//
//	BACKLOG_BENCH=1 TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench BacklogRSS -benchtime 1x -timeout 30m ./pipeline/ingest/
func BenchmarkBacklogRSS(b *testing.B) {
	if os.Getenv("BACKLOG_BENCH") != "1" {
		b.Skip("BACKLOG_BENCH=1 runs it (long: a 1,000,000-message backlog)")
	}
	n := testkit.EnvInt(b, "BACKLOG_BENCH_ORDERS", 1_000_000, 1)
	// the service's configuration: the defaults, or ORDERS_* of the environment,
	// which the service inherits (e.g. ORDERS_CACHE_MAX_BYTES)
	def, err := configs.Load("", os.Environ())
	if err != nil {
		b.Fatal(err)
	}
	quietMigrations(b)
	brokers := testenv.KafkaBrokers(b)
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	bin := testenv.BuildService(b)
	g := ordersgen.New(99)

	var peak int64
	var drain time.Duration
	var total int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		topic := testenv.KafkaTopicName(b, "backlog")
		testenv.KafkaCreateTopic(b, brokers, topic, 4)
		t0 := time.Now()
		produceBacklog(b, g, brokers, topic, n)
		b.Logf("produced %d orders in %.1fs", n, time.Since(t0).Seconds())
		dsn := cluster.CreateDB(b)
		b.StartTimer()

		p, d := drainBacklog(b, bin, dsn, brokers, topic, n)
		peak = max(peak, p)
		drain += d
		total += n
	}
	b.StopTimer()
	b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(drain.Seconds()/float64(b.N), "drain-s")
	b.ReportMetric(float64(total)/drain.Seconds(), "orders/s")
	b.ReportMetric(float64(def.Cache.MaxBytes)/(1<<20), "cache-max-MiB")
	b.Logf("%d orders: peak RSS %.0f MiB, drained in %.1fs (%.0f orders/s), brokers %s",
		total, float64(peak)/(1<<20), drain.Seconds(), float64(total)/drain.Seconds(), brokers)
}

// produceBacklog produces n canonical-shaped orders to topic in chunks, so the
// benchmark never holds the whole backlog in memory.
func produceBacklog(b *testing.B, g *ordersgen.Gen, brokers, topic string, n int) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(50*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.MaxBufferedRecords(200_000),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	const chunk = 20_000
	ctx := context.Background()
	var mu sync.Mutex
	var produceErr error
	for done := 0; done < n; done += chunk {
		_, msgs := benchOrders(b, g, min(chunk, n-done))
		for _, r := range msgs {
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					produceErr = err
					mu.Unlock()
				}
			})
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatalf("produce backlog: %v", err)
	}
	if produceErr != nil {
		b.Fatalf("produce backlog: %v", produceErr)
	}
}

// drainBacklog runs the service binary over the backlog until the group's lag is
// 0 and returns its peak RSS and the time from start to lag 0. It fails the
// benchmark unless all n orders are stored.
func drainBacklog(b *testing.B, bin, dsn, brokers, topic string, n int) (int64, time.Duration) {
	b.Helper()
	group := topic + "-group"
	env := []string{
		"ORDERS_POSTGRES_DSN=" + dsn,
		"ORDERS_KAFKA_BROKERS=" + brokers,
		"ORDERS_KAFKA_TOPIC=" + topic,
		"ORDERS_KAFKA_DLQ_TOPIC=" + topic + "-dlq",
		"ORDERS_KAFKA_GROUP_ID=" + group,
		"ORDERS_LOG_LEVEL=info", // StartService reads the address from the service_started line
		"ORDERS_TRACING_EXPORTER=none",
	}
	t0 := time.Now()
	s := testenv.StartService(b, testenv.ServiceOptions{Binary: bin, Env: env})
	var mu sync.Mutex
	var peak int64
	var samples []int64
	stopSampler := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := s.RSS(); err == nil {
				mu.Lock()
				peak = max(peak, rss)
				samples = append(samples, rss)
				mu.Unlock()
			}
			select {
			case <-stopSampler:
				return
			case <-s.Done():
				return
			case <-tick.C:
			}
		}
	}()
	deadline := t0.Add(20 * time.Minute)
	last := time.Now()
	for {
		lag := testenv.KafkaGroupLag(b, brokers, group, topic)
		if lag == 0 {
			break
		}
		if s.Exited() {
			b.Fatalf("service exited; log tail:\n%s", s.LogTail(4096))
		}
		if time.Now().After(deadline) {
			b.Fatalf("group lag still %d after 20 minutes", lag)
		}
		if time.Since(last) >= 10*time.Second {
			mu.Lock()
			var now int64
			if len(samples) > 0 {
				now = samples[len(samples)-1]
			}
			b.Logf("%5.0fs lag %d, rss %.0f MiB (peak %.0f MiB); %s", time.Since(t0).Seconds(), lag,
				float64(now)/(1<<20), float64(peak)/(1<<20), memMetrics(s.URL("/metrics")))
			mu.Unlock()
			last = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	drain := time.Since(t0)
	close(stopSampler)
	<-sampled
	if err := s.Terminate(30 * time.Second); err != nil {
		b.Errorf("stop service: %v; log tail:\n%s", err, s.LogTail(4096))
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if stored != n {
		b.Fatalf("%d orders stored, want %d", stored, n)
	}
	mu.Lock()
	defer mu.Unlock()
	return peak, drain
}
