package systest

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/migrations"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// BenchmarkGrowth measures what the data already stored costs: the real binary
// (`serve`, default configuration) on a database holding GROWTH_ORDERS (default
// 5,000,000) orders against the same binary on an empty database, on one
// PostgreSQL cluster with default settings and durability. The large database is
// filled by growthLoad: server-side INSERT ... SELECT FROM generate_series into
// the store's own migrated schema (orders, delivery, payment, one item each;
// every index, check and key in place), then VACUUM ANALYZE, as autovacuum
// would leave it. Empty, large, large, empty (ABBA; each empty run on a fresh
// database), and per run:
//
//   - startup-s: process start → GET /ready 200 (migrations, none pending, and
//     the connections); warmup-s: the cache warm-up that follows (newest orders
//     up to the cache bound, 256 MiB), from its log line;
//   - orders/s: GROWTH_INGEST_ORDERS (default 50,000) new orders produced as a
//     backlog to a fresh 4-partition topic once the instance owns every
//     partition, first send → group lag 0;
//
// then, restarted with a 1 MiB cache so that lookups miss:
//
//   - miss-p99-ms: GET /order/{uid} of 2,000 random stored uids, one client;
//   - miss-req/s: the same with 64 clients for GROWTH_LOOKUP_SECONDS (default 5);
//   - list-first-ms and list-deep-ms: median of 20 GET /api/v1/orders?limit=100,
//     the first page and the page after the middle of the table.
//
// Finally, on the large database, while 2,000 orders/s arrive: a migration that
// builds an index on orders (CREATE INDEX CONCURRENTLY, applied by the service's
// migrator, migrations.UpFS) runs to the end; index-s is its duration and
// index-max-lag the largest group lag sampled every 100 ms during it.
//
// Ratios: ingest-ratio (large / empty orders/s), miss-ratio (large / empty
// req/s), list-ratio (deep / first page time, on the large database).
//
// GROWTH_PG_SETTINGS (name=value,...) sets PostgreSQL settings of the cluster,
// to measure a tuning (e.g. shared_buffers=1GB).
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench Growth -benchtime 1x -timeout 60m ./app/systest/
func BenchmarkGrowth(b *testing.B) {
	brokers := os.Getenv(testenv.KafkaBrokersEnv)
	if brokers == "" {
		b.Skipf("needs a real broker (%s)", testenv.KafkaBrokersEnv)
	}
	n := testkit.EnvInt(b, "GROWTH_ORDERS", 5_000_000, 1000)
	ingestN := testkit.EnvInt(b, "GROWTH_INGEST_ORDERS", 50_000, 100)
	lookupSeconds := testkit.EnvInt(b, "GROWTH_LOOKUP_SECONDS", 5, 1)
	settings := map[string]string{}
	if v := os.Getenv("GROWTH_PG_SETTINGS"); v != "" { // e.g. shared_buffers=1GB,effective_cache_size=8GB
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok {
				b.Fatalf("GROWTH_PG_SETTINGS=%q: want name=value,...", v)
			}
			settings[k] = val
		}
		b.Logf("PostgreSQL settings: %v", settings)
	}
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true, Settings: settings})
	g := ordersgen.New(99)

	big := cluster.CreateDB(b)
	migrateDSN(b, big)
	t0 := time.Now()
	growthLoad(b, big, n)
	b.Logf("loaded %d orders in %v", n, time.Since(t0).Round(time.Second))

	var empty, large growthResult
	b.ResetTimer()
	for range b.N {
		for _, isBig := range []bool{false, true, true, false} {
			dsn, loaded := big, n
			if !isBig {
				loaded = 0
				dsn = cluster.CreateDB(b)
				migrateDSN(b, dsn)
			}
			r := growthRun(b, brokers, dsn, g, ingestN, lookupSeconds, loaded)
			if isBig {
				large.add(r)
			} else {
				empty.add(r)
			}
		}
	}
	b.StopTimer()
	idx, maxLag := growthIndexUnderLoad(b, brokers, big, g)

	per := float64(2 * b.N)
	rate := func(r growthResult) float64 { return float64(r.ingested) / r.ingest.Seconds() }
	b.ReportMetric(float64(n), "stored-orders")
	b.ReportMetric(rate(large), "orders/s")
	b.ReportMetric(rate(empty), "empty-orders/s")
	b.ReportMetric(rate(large)/rate(empty), "ingest-ratio")
	b.ReportMetric(quantileMs(large.oneClient, 0.99), "miss-p99-ms")
	b.ReportMetric(quantileMs(empty.oneClient, 0.99), "empty-miss-p99-ms")
	b.ReportMetric(large.missRate/per, "miss-req/s")
	b.ReportMetric(empty.missRate/per, "empty-miss-req/s")
	b.ReportMetric(large.missRate/empty.missRate, "miss-ratio")
	b.ReportMetric(quantileMs(large.listFirst, 0.5), "list-first-ms")
	b.ReportMetric(quantileMs(large.listDeep, 0.5), "list-deep-ms")
	b.ReportMetric(quantileMs(large.listDeep, 0.5)/quantileMs(large.listFirst, 0.5), "list-ratio")
	b.ReportMetric(large.startup.Seconds()/per, "startup-s")
	b.ReportMetric(empty.startup.Seconds()/per, "empty-startup-s")
	b.ReportMetric(large.warmup.Seconds()/per, "warmup-s")
	b.ReportMetric(idx.Seconds(), "index-s")
	b.ReportMetric(float64(maxLag), "index-max-lag")
	b.Logf("%d orders stored; %d ingested per run; empty, large, large, empty", n, ingestN)
	for _, r := range []struct {
		name string
		r    *growthResult
	}{{"empty", &empty}, {"large", &large}} {
		b.Logf("%-5s: ingest %6.0f orders/s, start-up %.2f s, warm-up %.2f s, miss p99 %.2f ms (one client), %6.0f req/s (64), list first %.2f ms, deep %.2f ms",
			r.name, rate(*r.r), r.r.startup.Seconds()/per, r.r.warmup.Seconds()/per, quantileMs(r.r.oneClient, 0.99), r.r.missRate/per,
			quantileMs(r.r.listFirst, 0.5), quantileMs(r.r.listDeep, 0.5))
	}
	b.Logf("index built concurrently in %v while 2,000 orders/s arrived; largest group lag %d messages", idx.Round(time.Millisecond), maxLag)
}

// growthResult sums the runs on one kind of database.
type growthResult struct {
	ingested            int
	ingest              time.Duration
	startup, warmup     time.Duration
	oneClient           []time.Duration
	missRate            float64 // summed over runs
	listFirst, listDeep []time.Duration
}

func (g *growthResult) add(r growthResult) {
	g.ingested += r.ingested
	g.ingest += r.ingest
	g.startup += r.startup
	g.warmup += r.warmup
	g.oneClient = append(g.oneClient, r.oneClient...)
	g.missRate += r.missRate
	g.listFirst = append(g.listFirst, r.listFirst...)
	g.listDeep = append(g.listDeep, r.listDeep...)
}

func quantileMs(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))]) / float64(time.Millisecond)
}

// migrateDSN applies the service's migrations to the database at dsn.
func migrateDSN(b *testing.B, dsn string) {
	b.Helper()
	db, err := ordersdb.OpenForMigrations(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(context.Background(), db); err != nil {
		b.Fatal(err)
	}
}

// growthChunk is the number of orders growthLoad inserts per statement.
const growthChunk = 500_000

// growthUID is the uid of the i-th loaded order.
func growthUID(i int) string { return fmt.Sprintf("g%09d", i) }

// growthLoad fills the migrated database at dsn with n orders g000000001.. (one
// item each, plausible values, one version each on partition 0), in chunks, then
// runs VACUUM ANALYZE.
func growthLoad(b *testing.B, dsn string, n int) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	stmts := []string{
		`INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id, delivery_service,
			shardkey, sm_id, date_created, oof_shard, source_partition, source_offset, source_time)
		SELECT 'g' || lpad(g::text, 9, '0'), 'TRK' || g, 'WBIL', 'en', '', 'customer-' || (g % 100000), 'meest',
			(g % 10)::text, 99, timestamptz '2026-01-01' + make_interval(secs => g), '1', 0, g, 1767225600000 + g
		FROM generate_series($1::int, $2::int) g`,
		`INSERT INTO delivery (order_uid, name, phone, zip, city, address, region, email)
		SELECT 'g' || lpad(g::text, 9, '0'), 'Test Testov', '+9720000000', '2639809', 'Kiryat Mozkin', 'Ploshad Mira ' || g, 'Kraiot', 'test' || g || '@gmail.com'
		FROM generate_series($1::int, $2::int) g`,
		`INSERT INTO payment (order_uid, transaction, request_id, currency, provider, amount, payment_dt, bank, delivery_cost, goods_total, custom_fee)
		SELECT 'g' || lpad(g::text, 9, '0'), 'g' || lpad(g::text, 9, '0'), '', 'USD', 'wbpay', 1817 + g % 1000, 1637907727, 'alpha', 1500, 317 + g % 1000, 0
		FROM generate_series($1::int, $2::int) g`,
		`INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size, total_price, nm_id, brand, status)
		SELECT 'g' || lpad(g::text, 9, '0'), 0, 9934930, 'TRK' || g, 453, 'ab4219087a764ae0btest', 'Mascaras', 30, '0', 317 + g % 1000, 2389212, 'Vivienne Sabo', 202
		FROM generate_series($1::int, $2::int) g`,
	}
	for lo := 1; lo <= n; lo += growthChunk {
		hi := min(lo+growthChunk-1, n)
		for _, s := range stmts {
			if _, err := conn.Exec(ctx, s, lo, hi); err != nil {
				b.Fatalf("load %d..%d: %v", lo, hi, err)
			}
		}
	}
	t0 := time.Now()
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	var size string
	if err := conn.QueryRow(ctx, "SELECT pg_size_pretty(pg_database_size(current_database()))").Scan(&size); err != nil {
		b.Fatal(err)
	}
	b.Logf("VACUUM ANALYZE in %v; the database holds %s", time.Since(t0).Round(time.Second), size)
	var sizes string
	if err := conn.QueryRow(ctx, `SELECT string_agg(c.relname || ' ' || pg_size_pretty(pg_relation_size(c.oid)), ', ' ORDER BY pg_relation_size(c.oid) DESC)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') AND pg_relation_size(c.oid) > 1048576`).Scan(&sizes); err != nil {
		b.Fatal(err)
	}
	b.Logf("relations: %s", sizes)
}

// growthRun measures one database: start-up, warm-up and ingest with the
// default configuration, then lookups and pages with a 1 MiB cache.
//
// The lookups ask for the loaded orders (growthUID(1..loaded)), or, on an empty
// database (loaded 0), for the ones this run ingested.
func growthRun(b *testing.B, brokers, dsn string, g *ordersgen.Gen, ingestN, lookupSeconds, loaded int) growthResult {
	b.Helper()
	var r growthResult
	f := newFixture(b, "growth", brokers, dsn)
	t0 := time.Now()
	svc := f.start()
	r.startup = time.Since(t0)
	r.warmup = warmupDuration(b, svc)
	waitOwned(b, svc)
	recs := make([]*kgo.Record, ingestN)
	uids := make([]string, ingestN)
	for i := range recs {
		uids[i] = g.Order().OrderUID
		recs[i] = newVersion(g, uids[i])
	}
	t1 := time.Now()
	if err := produce(context.Background(), brokers, f.topic, recs, 0); err != nil {
		b.Fatal(err)
	}
	f.waitLagZero(10*time.Minute, svc)
	r.ingest, r.ingested = time.Since(t1), ingestN
	if err := svc.Terminate(60 * time.Second); err != nil {
		b.Fatalf("stop: %v", err)
	}

	// Lookups that miss: a 1 MiB cache over every stored uid.
	f.extraEnv = []string{"ORDERS_CACHE_MAX_BYTES=1048576", "ORDERS_CACHE_WARMUP_ON_START=false"}
	svc = f.start()
	defer func() { _ = svc.Terminate(60 * time.Second) }()
	var maxSeq int64
	if err := f.query(context.Background(), func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), "SELECT max(seq) FROM orders").Scan(&maxSeq)
	}); err != nil {
		b.Fatal(err)
	}
	pick := func(rng *rand.Rand) string {
		if loaded > 0 {
			return growthUID(1 + rng.IntN(loaded))
		}
		return uids[rng.IntN(len(uids))]
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 10 * time.Second}
	get := func(path string) time.Duration {
		t := time.Now()
		resp, err := client.Get(svc.URL(path))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return time.Since(t)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		r.oneClient = append(r.oneClient, get("/order/"+pick(rng)))
	}
	var done atomic.Int64
	stop := time.Now().Add(time.Duration(lookupSeconds) * time.Second)
	var wg sync.WaitGroup
	for c := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for time.Now().Before(stop) {
				get("/order/" + pick(rng))
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	r.missRate = float64(done.Load()) / float64(lookupSeconds)
	// The cursor of the page after the middle of the listing (the API's cursor
	// format: base64url of "v1:<seq>").
	deep := base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatInt(maxSeq/2, 10)))
	for range 20 {
		r.listFirst = append(r.listFirst, get("/api/v1/orders?limit=100"))
		r.listDeep = append(r.listDeep, get("/api/v1/orders?limit=100&cursor="+deep))
	}
	return r
}

// waitOwned waits until svc owns the 4 partitions of its topic.
func waitOwned(b *testing.B, svc *testenv.Service) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for owned(svc) != 4 {
		if time.Now().After(deadline) {
			b.Fatal("the instance does not own the 4 partitions after a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var warmedRE = regexp.MustCompile(`"msg":"cache_warmed_up".*?"duration":"([^"]+)"`)

// warmupDuration waits for the service's cache_warmed_up log line and returns
// the duration it reports.
func warmupDuration(b *testing.B, svc *testenv.Service) time.Duration {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		raw, err := os.ReadFile(svc.LogPath())
		if err != nil {
			b.Fatal(err)
		}
		if m := warmedRE.FindSubmatch(raw); m != nil {
			d, err := time.ParseDuration(string(m[1]))
			if err != nil {
				b.Fatalf("warm-up duration %q: %v", m[1], err)
			}
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("no cache_warmed_up line within 2 minutes:\n%s", svc.LogTail(2048))
	return 0
}

// growthIndexUnderLoad runs the service on the large database while 2,000
// orders/s arrive, applies a migration that builds an index on orders
// concurrently, and returns its duration and the largest group lag seen while
// it ran. It fails if the migration fails or the lag does not drain after it.
func growthIndexUnderLoad(b *testing.B, brokers, dsn string, g *ordersgen.Gen) (time.Duration, int64) {
	b.Helper()
	f := newFixture(b, "growth-index", brokers, dsn)
	svc := f.start()
	defer func() { _ = svc.Terminate(60 * time.Second) }()
	waitOwned(b, svc)
	const rate, seconds = 2000, 120
	recs := make([]*kgo.Record, rate*seconds)
	for i := range recs {
		recs[i] = newVersion(g, g.Order().OrderUID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan error, 1)
	go func() { produced <- produce(ctx, brokers, f.topic, recs, rate) }()
	time.Sleep(3 * time.Second) // the flow at its steady state

	var maxLag atomic.Int64
	sampling := make(chan struct{})
	go func() {
		defer close(sampling)
		for ctx.Err() == nil {
			if st, err := pipelineStats(svc); err == nil {
				if lag, ok := st["consumer_lag"].(float64); ok && int64(lag) > maxLag.Load() {
					maxLag.Store(int64(lag))
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	fsys, err := migrations.FilesWith(map[string]string{
		"29991231000001_growth_index.up.sql":   "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_growth_customer_idx ON orders (customer_id);\n",
		"29991231000001_growth_index.down.sql": "DROP INDEX CONCURRENTLY IF EXISTS orders_growth_customer_idx;\n",
	})
	if err != nil {
		b.Fatal(err)
	}
	db, err := ordersdb.OpenForMigrations(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now()
	if err := migrations.UpFS(context.Background(), db, fsys); err != nil {
		b.Fatalf("the index migration: %v", err)
	}
	took := time.Since(t0)
	cancel()
	<-sampling
	if err := <-produced; err != nil && !errors.Is(err, context.Canceled) {
		b.Fatalf("produce: %v", err)
	}
	var valid bool
	if err := f.query(context.Background(), func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(),
			`SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_growth_customer_idx'::regclass`).Scan(&valid)
	}); err != nil || !valid {
		b.Fatalf("the index is not valid after the migration: %v", err)
	}
	f.waitLagZero(5*time.Minute, svc)
	if err := f.query(context.Background(), func(c *pgx.Conn) error {
		_, err := c.Exec(context.Background(), "DROP INDEX orders_growth_customer_idx; DELETE FROM bun_migrations WHERE name = '29991231000001'")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return took, maxLag.Load()
}
