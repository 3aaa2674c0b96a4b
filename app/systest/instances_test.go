package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// The multi-instance harness: N real `serve` processes of one consumer group on
// the real broker and one PostgreSQL (fixture.start runs each), the change feed
// between them on (the default).

// apiToken is the API token of the services the system tests write to.
const apiToken = "systest-token"

// orderAt is what an instance answers for a uid: status, version header, track
// number (200 only) and X-Cache.
type orderAt struct {
	status  int
	version string
	track   string
	cache   string
}

func readOrder(s *testenv.Service, uid string) (orderAt, error) {
	resp, err := http.Get(s.URL("/api/v1/orders/" + uid)) //nolint:noctx // test reads
	if err != nil {
		return orderAt{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := orderAt{status: resp.StatusCode, version: resp.Header.Get("X-Order-Version"), cache: resp.Header.Get("X-Cache")}
	if resp.StatusCode == http.StatusOK {
		var o orders.Order
		if err := json.Unmarshal(b, &o); err != nil {
			return out, fmt.Errorf("%s: %w", uid, err)
		}
		out.track = o.TrackNumber
	}
	return out, nil
}

// write sends a PUT (body) or DELETE (nil body) to s and returns the status and
// the version it answered.
func write(t *testing.T, s *testenv.Service, uid string, body []byte) (int, string) {
	t.Helper()
	method := http.MethodPut
	if body == nil {
		method = http.MethodDelete
	}
	req, err := http.NewRequest(method, s.URL("/api/v1/orders/"+uid), bytes.NewReader(body)) //nolint:noctx // test
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, uid, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, uid, resp.StatusCode, b)
	}
	return resp.StatusCode, resp.Header.Get("X-Order-Version")
}

// readyDetails returns /ready's details.cache of s ("trusted", "bypassed", ...).
func readyCache(s *testenv.Service) string {
	req, _ := http.NewRequest(http.MethodGet, s.URL("/ready"), nil) //nolint:noctx // test reads
	req.Header.Set("Authorization", "Bearer "+apiToken)             // details are for token holders
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "unreachable"
	}
	defer resp.Body.Close()
	var body struct {
		Details struct {
			Cache string `json:"cache"`
		} `json:"details"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Details.Cache
}

// awaitAll polls every instance until check holds for every uid on it, and
// returns how long each instance took (from start). It fails after limit.
func awaitAll(t *testing.T, svcs []*testenv.Service, uids []string, limit time.Duration, check func(uid string, o orderAt) bool) []time.Duration {
	t.Helper()
	start := time.Now()
	took := make([]time.Duration, len(svcs))
	for i, s := range svcs {
		pending := slices.Clone(uids)
		for len(pending) > 0 {
			var still []string
			var last orderAt
			for _, uid := range pending {
				got, err := readOrder(s, uid)
				if err != nil || !check(uid, got) {
					still = append(still, uid)
					last = got
				}
			}
			pending = still
			if len(pending) == 0 {
				break
			}
			if time.Since(start) > limit {
				t.Fatalf("instance %d: %d of %d orders still not as expected %s after the commit (e.g. %s: %+v)",
					i, len(pending), len(uids), limit, pending[0], last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took[i] = time.Since(start)
	}
	return took
}

// TestInstancesCoherent is the scenario: two instances of one group, one
// database (b reading through a streaming standby, paused while the new versions
// arrive); every order read on both (so both cache it), then new versions of
// all of them produced: once the group has committed them, both instances serve
// the new versions (neither keeps its cached old one). Then a PUT answered by one
// instance, a DELETE by the other and a Kafka tombstone are seen by both, and an
// instance answering a write it does not own the partition of serves that write
// at once.
func TestInstancesCoherent(t *testing.T) {
	brokers := requireEnv(t)
	// A primary and a real streaming standby: instance b reads through it.
	primary := testenv.NewCluster(t, testenv.ClusterOptions{Durable: true})
	dsn := primary.CreateDB(t)
	standby := primary.NewStandby(t)
	f := newFixture(t, "instances-coherent", brokers, dsn)
	f.extraEnv = append(f.extraEnv, "ORDERS_API_TOKEN="+apiToken, "ORDERS_CACHE_WARMUP_ON_START=false")
	n := testkit.EnvInt(t, "INSTANCES_ORDERS", 400, 10)
	g := ordersgen.New(suiteSeed(t) + 31)
	a := f.start()
	f.extraEnv = append(f.extraEnv, "ORDERS_POSTGRES_READ_DSN="+standby.DSNOf(dsn))
	b := f.start()
	svcs := []*testenv.Service{a, b}
	defer stop(t, a)
	defer stop(t, b)

	first := make([]*kgo.Record, n)
	uids := make([]string, n)
	for i := range first {
		o := g.Order()
		uids[i] = o.OrderUID
		v, _ := json.Marshal(o)
		first[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: v}
	}
	ctx := context.Background()
	if err := produce(ctx, brokers, f.topic, first, 0); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(time.Minute, a, b)
	// Every order read on both instances: now each holds all of them in its cache.
	awaitAll(t, svcs, uids, 10*time.Second, func(_ string, o orderAt) bool { return o.status == 200 })
	awaitAll(t, svcs, uids, 10*time.Second, func(_ string, o orderAt) bool { return o.status == 200 && o.cache == "hit" })

	// The standby stops replaying: b's reloads after the feed's changes must not
	// come from it (it lacks them); they are redone on the primary.
	if err := standby.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	second := make([]*kgo.Record, n)
	tracks := map[string]string{}
	for i, uid := range uids {
		second[i] = newVersion(g, uid)
		var o orders.Order
		_ = json.Unmarshal(second[i].Value, &o)
		tracks[uid] = o.TrackNumber
	}
	if err := produce(ctx, brokers, f.topic, second, 0); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(time.Minute, a, b)
	took := awaitAll(t, svcs, uids, 10*time.Second, func(uid string, o orderAt) bool { return o.status == 200 && o.track == tracks[uid] })
	t.Logf("new versions of %d cached orders served by both instances %v / %v after the group committed them (b's standby paused)", n, took[0], took[1])
	if err := standby.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	// b read through the standby, and redid on the primary what the paused
	// standby lacked.
	replica := metricValue(t, b, `orders_db_replica_reads_total{outcome="replica"}`)
	behind := metricValue(t, b, `orders_db_replica_reads_total{outcome="behind_floor"}`)
	t.Logf("instance b: %v reads answered by the standby, %v redone on the primary (standby behind the floor)", replica, behind)
	if replica <= 0 || behind <= 0 {
		t.Errorf("replica reads %v, behind the floor %v: want both > 0", replica, behind)
	}

	// API writes: a PUT on a, a DELETE on b, each visible on the other; each
	// instance serves its own write at once, whichever instance owns the partition.
	for i := 0; i < 20; i++ {
		uid := uids[i]
		on, other := svcs[i%2], svcs[(i+1)%2]
		o := g.Order()
		o.OrderUID, o.Payment.Transaction = uid, uid
		o.TrackNumber = fmt.Sprintf("PUT%02d", i)
		body, _ := json.Marshal(o)
		status, version := write(t, on, uid, body)
		if status != http.StatusOK {
			t.Fatalf("PUT %s: %d", uid, status)
		}
		if got, err := readOrder(on, uid); err != nil || got.version != version || got.track != o.TrackNumber {
			t.Fatalf("right after its PUT (%s), the instance answers %+v, %v", version, got, err)
		}
		awaitAll(t, []*testenv.Service{other}, []string{uid}, 10*time.Second, func(_ string, g orderAt) bool { return g.version == version })
		status, _ = write(t, other, uid, nil)
		if status != http.StatusNoContent {
			t.Fatalf("DELETE %s: %d", uid, status)
		}
		if got, _ := readOrder(other, uid); got.status != http.StatusNotFound {
			t.Fatalf("right after its DELETE, the instance answers %+v", got)
		}
		awaitAll(t, []*testenv.Service{on}, []string{uid}, 10*time.Second, func(_ string, g orderAt) bool { return g.status == http.StatusNotFound })
	}
	// A Kafka tombstone.
	tomb := uids[n-1]
	if err := produce(ctx, brokers, f.topic, []*kgo.Record{{Key: []byte(tomb)}}, 0); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(time.Minute, a, b)
	awaitAll(t, svcs, []string{tomb}, 10*time.Second, func(_ string, g orderAt) bool { return g.status == http.StatusNotFound })
	for i, s := range svcs {
		if c := readyCache(s); c != "trusted" {
			t.Errorf("instance %d: /ready details.cache %q, want trusted", i, c)
		}
	}
}

// TestInstanceBypassesCacheWhenFeedUnread makes the change feed unreadable: past
// the bound, every instance stops answering from its cache (X-Cache: miss, the
// database's answer), says so in /ready and its metrics, and goes back to its
// cache once it has read the feed again.
func TestInstanceBypassesCacheWhenFeedUnread(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "instances-bypass", brokers, durableDB(t))
	f.extraEnv = append(f.extraEnv, "ORDERS_API_TOKEN="+apiToken, "ORDERS_CACHE_WARMUP_ON_START=false", "ORDERS_CACHE_COHERENCE_BOUND=1s")
	s := f.start()
	defer stop(t, s)
	o := ordersgen.New(suiteSeed(t) + 32).Order()
	v, _ := json.Marshal(o)
	if err := produce(context.Background(), brokers, f.topic, []*kgo.Record{{Key: []byte(o.OrderUID), Value: v}}, 0); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(time.Minute, s)
	awaitAll(t, []*testenv.Service{s}, []string{o.OrderUID}, 10*time.Second, func(_ string, g orderAt) bool { return g.cache == "hit" })

	exec := func(q string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.query(ctx, func(c *pgx.Conn) error { _, err := c.Exec(ctx, q); return err }); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER TABLE order_changes RENAME TO order_changes_away`)
	deadline := time.Now().Add(10 * time.Second)
	for readyCache(s) != "bypassed" {
		if time.Now().After(deadline) {
			t.Fatal("the instance still trusts its cache 10 s after the feed became unreadable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := readOrder(s, o.OrderUID); err != nil || got.status != 200 || got.cache != "miss" {
		t.Fatalf("bypassed lookup: %+v, %v; want 200 from the database (X-Cache: miss)", got, err)
	}
	if m := metricValue(t, s, "orders_cache_bypassed"); m != 1 {
		t.Errorf("orders_cache_bypassed %v, want 1", m)
	}
	exec(`ALTER TABLE order_changes_away RENAME TO order_changes`)
	awaitAll(t, []*testenv.Service{s}, []string{o.OrderUID}, 10*time.Second, func(_ string, g orderAt) bool { return g.cache == "hit" })
	if c := readyCache(s); c != "trusted" {
		t.Errorf("after the feed is readable again: %q, want trusted", c)
	}
}

// metricValue returns the value of an unlabelled metric of s (-1 when absent).
func metricValue(t *testing.T, s *testenv.Service, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL("/metrics")) //nolint:noctx // test reads
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestInstanceKilledMidStream runs two instances, SIGKILLs one while a stream of
// new orders, newer versions and bad messages arrives, and checks the end state
// on the survivor: every valid order stored once at its newest version, every
// bad message dead-lettered once, and the survivor serving the newest version of
// every order (none stale in its cache).
func TestInstanceKilledMidStream(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "instances-kill", brokers, durableDB(t))
	f.extraEnv = append(f.extraEnv, "ORDERS_CACHE_WARMUP_ON_START=false")
	s := newStream(suiteSeed(t)+33, testkit.EnvInt(t, "INSTANCES_KILL_ORDERS", 6000, 100))
	a, b := f.start(), f.start()
	defer stop(t, b)

	// Both instances read orders continuously (their caches fill with what is
	// being updated).
	var reads atomic.Int64
	readStop := make(chan struct{})
	var wg sync.WaitGroup
	for _, svc := range []*testenv.Service{a, b} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-readStop:
					return
				default:
				}
				if _, err := readOrder(svc, string(s.recs[i%len(s.recs)].Key)); err == nil {
					reads.Add(1)
				}
			}
		})
	}
	wait := produceAsync(brokers, f.topic, s.recs, 1500, 2*time.Minute)
	time.Sleep(time.Duration(len(s.recs)/3*1000/1500) * time.Millisecond)
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("instance a killed (SIGKILL) after about a third of the stream")
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(2*time.Minute, b)
	close(readStop)
	wg.Wait()
	tr := f.readTruth(s)
	f.check(tr, expectDLQ{passes: 1})

	var uids []string
	for uid := range tr.latest {
		uids = append(uids, uid)
	}
	took := awaitAll(t, []*testenv.Service{b}, uids, 10*time.Second, func(uid string, o orderAt) bool {
		w := tr.latest[uid]
		return o.status == 200 && o.track == w.track && o.version == fmt.Sprintf("%d.%d", w.partition, w.offset)
	})
	stale := 0 // none: awaitAll fails otherwise
	t.Logf("survivor: %d orders checked over HTTP at their newest version within %v, %d stale; %d reads during the run",
		len(tr.latest), took[0], stale, reads.Load())
}

// owned returns how many partitions s reports owning (-1 when it does not answer).
func owned(s *testenv.Service) int {
	st, err := pipelineStats(s)
	if err != nil {
		return -1
	}
	parts, _ := st["partitions"].([]any)
	return len(parts)
}

// TestInstancesRollingRestart restarts every instance in turn while 2,000
// orders/s arrive and clients look orders up on every instance in rotation, the
// instance being restarted taken out of the rotation first, as a load balancer
// drains it. No lookup may fail; the end state must be exact. The time each
// instance took to be back with its partitions (SIGTERM → new process ready
// → partitions owned) and the group's pause are reported.
func TestInstancesRollingRestart(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "instances-roll", brokers, durableDB(t))
	f.extraEnv = append(f.extraEnv, "ORDERS_CACHE_WARMUP_ON_START=false")
	const rate = 2000
	s := newStream(suiteSeed(t)+34, testkit.EnvInt(t, "INSTANCES_ROLL_ORDERS", 30000, 1000))
	ids := []string{"roll-a", "roll-b"}
	// Dynamic members by default; INSTANCES_ROLL_STATIC=1 gives each instance its
	// static member id (see the README's known limit of static membership).
	static := testkit.EnvInt(t, "INSTANCES_ROLL_STATIC", 0, 0) == 1
	start := func(id string) *testenv.Service {
		if !static {
			return f.start()
		}
		saved := f.extraEnv
		f.extraEnv = append(slices.Clone(saved), "ORDERS_KAFKA_INSTANCE_ID="+id)
		defer func() { f.extraEnv = saved }()
		return f.start()
	}
	svcs := make([]*testenv.Service, len(ids))
	for i, id := range ids {
		svcs[i] = start(id)
	}

	var rotation atomic.Pointer[[]*testenv.Service]
	setRotation := func(except int) {
		var r []*testenv.Service
		for i, s := range svcs {
			if i != except {
				r = append(r, s)
			}
		}
		rotation.Store(&r)
	}
	setRotation(-1)
	var lookups, failures atomic.Int64
	var firstFailure atomic.Pointer[string]
	stopLookups := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := c; ; i += 4 {
				select {
				case <-stopLookups:
					return
				default:
				}
				r := *rotation.Load()
				svc := r[i%len(r)]
				got, err := readOrder(svc, string(s.recs[i%len(s.recs)].Key))
				lookups.Add(1)
				if err != nil || (got.status != http.StatusOK && got.status != http.StatusNotFound) {
					failures.Add(1)
					msg := fmt.Sprintf("%s: %+v %v", svc.Addr(), got, err)
					firstFailure.CompareAndSwap(nil, &msg)
				}
			}
		})
	}

	wait := produceAsync(brokers, f.topic, s.recs, rate, 2*time.Minute)
	time.Sleep(3 * time.Second)
	for i, id := range ids {
		// Drained first, as a load balancer does (readiness off, then a grace
		// period like Kubernetes' preStop) so that requests already routed to it
		// complete before it stops.
		setRotation(i)
		time.Sleep(time.Second)
		t0 := time.Now()
		if err := svcs[i].Terminate(60 * time.Second); err != nil {
			t.Fatalf("%s: graceful stop: %v", id, err)
		}
		stopped := time.Since(t0)
		svcs[i] = start(id)
		ready := time.Since(t0)
		for owned(svcs[i]) <= 0 {
			if time.Since(t0) > time.Minute {
				t.Fatalf("%s owns no partition a minute after its restart", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("REBALANCE instance=%s static=%v stop=%v ready=%v partitions_back=%v", id, static, stopped.Round(time.Millisecond),
			ready.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		setRotation(-1)
		time.Sleep(2 * time.Second)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(2*time.Minute, svcs...)
	close(stopLookups)
	wg.Wait()
	tr := f.readTruth(s)
	f.check(tr, expectDLQ{passes: 1})
	for _, svc := range svcs {
		stop(t, svc)
	}
	t.Logf("lookups during the rolling restart: %d, failed %d", lookups.Load(), failures.Load())
	if n := failures.Load(); n > 0 {
		t.Errorf("%d lookups failed during the rolling restart; first: %s", n, *firstFailure.Load())
	}
}
