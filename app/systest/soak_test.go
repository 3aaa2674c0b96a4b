package systest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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

	"github.com/orderflow/orders-service/modules/pgserver"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// Soak test: `go tool task soak` (SOAK=1). It builds the service, runs
// `app serve` on a dedicated PostgreSQL cluster (default durability) and the test
// broker, feeds it with `app produce --rate` and a steady lookup load, and every
// 30 s prints the service's RSS, goroutines (go_goroutines from /metrics), the
// consumer lag (sum of orders_pipeline_consumer_lag) and the p99 lookup latency
// measured by the loader. At the end it prints whether RSS and goroutines are
// flat (mean of the last third within 10% of the middle third, with a small
// absolute slack) and fails when they are not.
//
// Environment: SOAK_DURATION (default 10m), SOAK_RATE (orders/s, default 200),
// SOAK_LOOKUP_RATE (lookups/s, default 200), SOAK_INTERVAL (default 30s),
// SOAK_CACHE_MAX_BYTES (default 16 MiB: small, so that the cache reaches its
// bound early and later RSS growth would mean a leak, not a filling cache).
const (
	envSoak       = "SOAK"
	soakRSSSlack  = 8 << 20 // bytes of RSS growth always tolerated
	soakGoroSlack = 5       // goroutines always tolerated
)

// scrapeMetrics returns go_goroutines and the summed consumer lag from /metrics.
func scrapeMetrics(base string) (goroutines, lag float64, err error) {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, perr := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if perr != nil {
			continue
		}
		switch {
		case name == "go_goroutines":
			goroutines = v
		case strings.HasPrefix(name, "orders_pipeline_consumer_lag"):
			lag += v
		}
	}
	return goroutines, lag, sc.Err()
}

// lookupLoad sends GET /order/{uid} at a steady rate with a few workers, uids
// taken from the newest listing (refreshed every 5 s; 1 in 20 a miss), and keeps
// the latencies of the current window.
type lookupLoad struct {
	base   string
	client *http.Client
	mu     sync.Mutex
	uids   []string
	window []time.Duration
	total  atomic.Int64
	errors atomic.Int64
	non200 atomic.Int64
}

func (l *lookupLoad) refresh() {
	resp, err := l.client.Get(l.base + "/api/v1/orders?limit=1000")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var page struct {
		Orders []struct {
			UID string `json:"order_uid"`
		} `json:"orders"`
	}
	if json.NewDecoder(resp.Body).Decode(&page) != nil {
		return
	}
	uids := make([]string, 0, len(page.Orders))
	for _, o := range page.Orders {
		uids = append(uids, o.UID)
	}
	if len(uids) > 0 {
		l.mu.Lock()
		l.uids = uids
		l.mu.Unlock()
	}
}

func (l *lookupLoad) one(r *rand.Rand) {
	l.mu.Lock()
	uid := "soakmiss" + strconv.Itoa(r.IntN(1_000_000))
	if len(l.uids) > 0 && r.IntN(20) != 0 {
		uid = l.uids[r.IntN(len(l.uids))]
	}
	l.mu.Unlock()
	t0 := time.Now()
	resp, err := l.client.Get(l.base + "/order/" + uid)
	if err != nil {
		l.errors.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	l.total.Add(1)
	if resp.StatusCode != 200 && resp.StatusCode != 404 {
		l.non200.Add(1)
	}
	l.mu.Lock()
	l.window = append(l.window, d)
	l.mu.Unlock()
}

// run sends lookups at rate per second until ctx ends.
func (l *lookupLoad) run(ctx context.Context, rate float64) {
	work := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			for range work {
				l.one(r)
			}
		}(uint64(i))
	}
	refresh := time.NewTicker(5 * time.Second)
	defer refresh.Stop()
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	l.refresh()
	for {
		select {
		case <-ctx.Done():
			close(work)
			wg.Wait()
			return
		case <-refresh.C:
			l.refresh()
		case <-tick.C:
			select {
			case work <- struct{}{}:
			default: // the workers are behind: drop rather than queue without bound
				l.errors.Add(1)
			}
		}
	}
}

// takeWindow returns the p99 of the latencies since the last call and their count.
func (l *lookupLoad) takeWindow() (time.Duration, int) {
	l.mu.Lock()
	w := l.window
	l.window = nil
	l.mu.Unlock()
	if len(w) == 0 {
		return 0, 0
	}
	slices.Sort(w)
	return w[int(math.Ceil(0.99*float64(len(w))))-1], len(w)
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration", name, s)
		}
		return d
	}
	return def
}

func envFloat(t *testing.T, name string, def float64) float64 {
	if s := os.Getenv(name); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			t.Fatalf("%s=%q: want a positive number", name, s)
		}
		return v
	}
	return def
}

type soakSample struct {
	at         time.Duration
	rss        int64
	goroutines float64
	lag        float64
	p99        time.Duration
	lookups    int
}

func TestSoak(t *testing.T) {
	if os.Getenv(envSoak) == "" {
		t.Skipf("soak test: set %s=1 (go tool task soak)", envSoak)
	}
	duration := envDuration(t, "SOAK_DURATION", 10*time.Minute)
	interval := envDuration(t, "SOAK_INTERVAL", 30*time.Second)
	rate := envFloat(t, "SOAK_RATE", 200)
	lookupRate := envFloat(t, "SOAK_LOOKUP_RATE", 200)
	cacheBytes := int64(envFloat(t, "SOAK_CACHE_MAX_BYTES", 16<<20))

	cluster := testenv.NewCluster(t, testenv.ClusterOptions{Durable: true})
	dsn := cluster.CreateDB(t)
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "soak")
	dlq := topic + "-dlq"
	testenv.KafkaCreateTopic(t, brokers, topic, 4)
	testenv.KafkaCreateTopic(t, brokers, dlq, 1)

	bin := testenv.BuildService(t)
	// The service logs at warn, so the harness cannot read its address from the
	// service_started line: give it one.
	port, err := pgserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := "http://" + addr
	env := []string{
		"ORDERS_POSTGRES_DSN=" + dsn, "ORDERS_KAFKA_BROKERS=" + brokers, "ORDERS_KAFKA_TOPIC=" + topic,
		"ORDERS_KAFKA_DLQ_TOPIC=" + dlq, "ORDERS_KAFKA_GROUP_ID=" + topic + "-group", "ORDERS_HTTP_ADDR=" + addr,
		"ORDERS_LOG_LEVEL=warn", "ORDERS_API_TOKEN=soak", "ORDERS_CACHE_MAX_BYTES=" + strconv.FormatInt(cacheBytes, 10),
	}
	svc := testenv.StartService(t, testenv.ServiceOptions{Binary: bin, Env: env})
	t.Cleanup(func() { _ = svc.Terminate(10 * time.Second) })

	count := int(rate*duration.Seconds()) + 1
	producer := testenv.StartProcess(t, testenv.ServiceOptions{Binary: bin, Env: env, Args: []string{
		"produce", "--count", strconv.Itoa(count), "--rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"--invalid-ratio", "0.01", "--seed", "42", "--quiet",
	}})
	t.Cleanup(func() { _ = producer.Terminate(10 * time.Second) })

	load := &lookupLoad{base: base, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.run(ctx, lookupRate) }()

	fmt.Printf("soak: %s, %.0f orders/s, %.0f lookups/s, cache bound %d MiB, service pid %d, sample every %s\n",
		duration, rate, lookupRate, cacheBytes>>20, svc.Pid(), interval)
	fmt.Printf("soak: %8s %10s %10s %8s %10s %8s\n", "elapsed", "rss_mib", "goroutines", "lag", "p99_ms", "lookups")
	var samples []soakSample
	start := time.Now()
	tick := time.NewTicker(interval)
	for elapsed := time.Duration(0); elapsed < duration; {
		<-tick.C
		elapsed = time.Since(start)
		if svc.Exited() {
			t.Fatalf("the service exited during the soak (log: %s)", svc.LogPath())
		}
		rss, err := svc.RSS()
		if err != nil {
			t.Fatalf("rss: %v", err)
		}
		g, lag, err := scrapeMetrics(base)
		if err != nil {
			t.Fatalf("metrics: %v", err)
		}
		p99, n := load.takeWindow()
		s := soakSample{at: elapsed, rss: rss, goroutines: g, lag: lag, p99: p99, lookups: n}
		samples = append(samples, s)
		fmt.Printf("soak: %8s %10.1f %10.0f %8.0f %10.2f %8d\n", elapsed.Round(time.Second), float64(rss)/(1<<20), g, lag,
			float64(p99.Microseconds())/1000, n)
	}
	tick.Stop()
	cancel()
	<-loadDone
	_ = producer.Terminate(30 * time.Second)
	prodOut, _ := os.ReadFile(producer.LogPath())

	// let the pipeline catch up, then count what it stored
	var lag float64
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if _, lag, err = scrapeMetrics(base); err == nil && lag == 0 {
			break
		}
	}
	stored := countOrders(t, dsn)
	_ = svc.Terminate(30 * time.Second)

	fmt.Printf("soak: producer: %s\n", strings.TrimSpace(summaryLine(prodOut)))
	fmt.Printf("soak: stored orders %d, final lag %.0f, lookups %d (non-200/404 %d, client errors or drops %d)\n",
		stored, lag, load.total.Load(), load.non200.Load(), load.errors.Load())

	if len(samples) < 3 {
		t.Fatalf("only %d samples: run longer than 3 intervals to judge flatness", len(samples))
	}
	third := len(samples) / 3
	middle, last := samples[third:2*third], samples[len(samples)-third:]
	mean := func(ss []soakSample, f func(soakSample) float64) float64 {
		sum := 0.0
		for _, s := range ss {
			sum += f(s)
		}
		return sum / float64(len(ss))
	}
	rssMid, rssLast := mean(middle, func(s soakSample) float64 { return float64(s.rss) }), mean(last, func(s soakSample) float64 { return float64(s.rss) })
	gMid, gLast := mean(middle, func(s soakSample) float64 { return s.goroutines }), mean(last, func(s soakSample) float64 { return s.goroutines })
	rssFlat := rssLast <= rssMid*1.10+soakRSSSlack
	gFlat := gLast <= gMid*1.10+soakGoroSlack
	verdict := func(ok bool) string {
		if ok {
			return "flat"
		}
		return "GROWING"
	}
	fmt.Printf("soak: RSS middle third %.1f MiB, last third %.1f MiB (%+.1f%%): %s\n",
		rssMid/(1<<20), rssLast/(1<<20), 100*(rssLast-rssMid)/rssMid, verdict(rssFlat))
	fmt.Printf("soak: goroutines middle third %.1f, last third %.1f (%+.1f%%): %s\n",
		gMid, gLast, 100*(gLast-gMid)/gMid, verdict(gFlat))
	if !rssFlat || !gFlat {
		t.Errorf("resource use grows over the soak: RSS %s, goroutines %s", verdict(rssFlat), verdict(gFlat))
	}
	if load.non200.Load() > 0 {
		t.Errorf("%d lookups answered neither 200 nor 404", load.non200.Load())
	}
}

func countOrders(t *testing.T, dsn string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// summaryLine returns the "produce: sent=..." line of the producer's output, or
// its last line.
func summaryLine(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "produce: sent=") {
			return l
		}
	}
	return lines[len(lines)-1]
}
