package systest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// caseLimit bounds the waits of one case (each wait has its own bound inside it).
const caseLimit = 3 * time.Minute

// TestSIGKILLDuringStream kills the service with SIGKILL at random points while a
// stream is being produced and consumed, restarting it each time. The killed
// process is a dynamic group member: its partitions move to the restarted one
// after the session timeout, and its open DLQ transaction is aborted by the
// broker.
func TestSIGKILLDuringStream(t *testing.T) {
	brokers := requireEnv(t)
	sigkillCase(t, newFixture(t, "sigkill", brokers, durableDB(t)), suiteSeed(t)+1)
}

// TestSIGKILLStaticMember is the SIGKILL case with a static group member
// (ORDERS_KAFKA_INSTANCE_ID): the restarted process gets its partitions back at
// once and fences its predecessor's transactions.
func TestSIGKILLStaticMember(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "sigkill-static", brokers, durableDB(t))
	f.extraEnv = append(f.extraEnv, "ORDERS_KAFKA_INSTANCE_ID=faults-static-0")
	sigkillCase(t, f, suiteSeed(t)+11)
}

func sigkillCase(t *testing.T, f *fixture, seed uint64) {
	brokers := f.brokers
	t.Logf("seed %d (FAULTS_SEED=%d), %d messages, %d kills", seed, suiteSeed(t), killOrders(t), kills(t))
	s := newStream(seed, killOrders(t))
	svc := f.start()
	wait := produceAsync(brokers, f.topic, s.recs, 0, caseLimit)

	// Kill points: distinct random shares of the stream's orders already stored.
	rng := rand.New(rand.NewPCG(seed, 7))
	points := make([]int, 0, kills(t))
	for range kills(t) {
		points = append(points, int(float64(s.unique)*(0.1+0.75*rng.Float64())))
	}
	slices.Sort(points)
	for i, p := range points {
		// The point, and some progress of this instance, so that it dies while
		// ingesting (unless the stream is all stored by then).
		f.waitStored(min(max(p, f.storedCount()+100), s.unique), caseLimit, svc)
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // somewhere inside a batch
		if err := svc.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d at %d stored orders", i+1, f.storedCount())
		svc = f.start()
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, svc)
	f.check(tr, expectDLQ{passes: 1})
	stop(t, svc)
}

// TestSIGKILLInsideDLQTransaction kills the service inside its third DLQ
// transaction (a crash point of the faultinject build): once after the dead
// letters were produced and the offsets sent, before the commit (a static
// member: the restarted process aborts that transaction at start), once after
// the dead letters were produced, before the offsets (a dynamic member: the
// broker aborts the transaction after its timeout). The aborted dead letters
// must exist (a read_uncommitted reader sees them) and count for nothing: every
// bad message is in the DLQ exactly once for a read_committed reader.
func TestSIGKILLInsideDLQTransaction(t *testing.T) {
	brokers := requireEnv(t)
	for i, c := range []struct{ name, point, instance string }{
		{"static", "txn-offsets-sent", "faults-txn-0"},
		{"dynamic", "txn-produced", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "txn-crash-"+c.name, brokers, durableDB(t))
			f.bin = testenv.BuildServiceTags(t, "faultinject")
			if c.instance != "" {
				f.extraEnv = append(f.extraEnv, "ORDERS_KAFKA_INSTANCE_ID="+c.instance)
			}
			base := f.extraEnv
			f.extraEnv = append(slices.Clone(base), "FAULTINJECT_CRASH="+c.point+":3")
			s := newStream(suiteSeed(t)+21+uint64(i), caseOrders(t))
			svc := f.start()
			wait := produceAsync(brokers, f.topic, s.recs, 0, caseLimit)
			select {
			case <-svc.Done():
			case <-time.After(caseLimit):
				t.Fatalf("the crash point %s was never reached; log tail:\n%s", c.point, svc.LogTail(4096))
			}
			if err := svc.Err(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("service ended with %v, want killed at %s; log tail:\n%s", err, c.point, svc.LogTail(4096))
			}
			t.Logf("killed at %s of the third DLQ transaction, %d orders stored", c.point, f.storedCount())
			f.extraEnv = base
			svc = f.start()
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			tr := f.readTruth(s)
			f.waitLagZero(caseLimit, svc)
			out := f.check(tr, expectDLQ{passes: 1})
			all := testenv.KafkaReadAllUncommitted(t, brokers, f.dlq, time.Second)
			t.Logf("AbortedDeadLetters case=%s committed=%d uncommitted_reader=%d aborted=%d", f.name, out.dlq, len(all), len(all)-out.dlq)
			if len(all) <= out.dlq {
				t.Errorf("a read_uncommitted reader sees %d dead letters, a read_committed one %d: the killed transaction left none", len(all), out.dlq)
			}
			stop(t, svc)
		})
	}
}

// streamRate paces the streams of the outage and rebalance cases (orders/s), so
// the fault lands while orders are still being produced and consumed.
const streamRate = 1000

// TestPostgresCrashMidStream crashes PostgreSQL (immediate shutdown: no
// checkpoint) while the service ingests a stream, keeps it down for 10 s while
// more orders arrive, and starts it again.
func TestPostgresCrashMidStream(t *testing.T) {
	brokers := requireEnv(t)
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{Durable: true})
	f := newFixture(t, "postgres-crash", brokers, cluster.CreateDB(t))
	s := newStream(suiteSeed(t)+2, caseOrders(t))
	svc := f.start()
	wait := produceAsync(brokers, f.topic, s.recs, streamRate, caseLimit)
	f.waitStored(len(s.recs)/5, caseLimit, svc)
	at := f.storedCount()
	if err := cluster.Kill(); err != nil {
		t.Fatal(err)
	}
	_, before := f.members()
	t.Logf("postgres killed (immediate) at %d stored orders", at)
	down := time.Now()
	sawNotReady := false
	for time.Since(down) < 10*time.Second { // the outage lasts past several retries
		if readyStatus(svc) == http.StatusServiceUnavailable {
			sawNotReady = true
		}
		f.alive(svc)
		time.Sleep(200 * time.Millisecond)
	}
	if !sawNotReady {
		t.Error("/ready never answered 503 while PostgreSQL was down")
	}
	if _, during := f.members(); !slices.Equal(before, during) {
		t.Errorf("group members changed during the outage: %v -> %v", before, during)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	t.Log("postgres restarted")
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, svc)
	if _, after := f.members(); !slices.Equal(before, after) {
		t.Errorf("group members changed across the outage: %v -> %v", before, after)
	}
	f.check(tr, expectDLQ{passes: 1})
	stop(t, svc)
}

// TestBrokerRestartMidStream stops the (dedicated) Kafka broker while the
// service ingests a stream and the producer keeps sending, and starts it again.
func TestBrokerRestartMidStream(t *testing.T) {
	requireEnv(t)
	if reason := testenv.KafkaBrokerAvailable(); reason != "" {
		t.Skipf("broker restart case needs its own broker: %s", reason)
	}
	b := testenv.StartKafkaBroker(t)
	f := newFixture(t, "broker-restart", b.Addr(), durableDB(t))
	s := newStream(suiteSeed(t)+3, caseOrders(t))
	svc := f.start()
	wait := produceAsync(b.Addr(), f.topic, s.recs, streamRate, caseLimit)
	f.waitStored(len(s.recs)/5, caseLimit, svc)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker stopped at %d stored orders", f.storedCount())
	time.Sleep(5 * time.Second) // the service runs without a broker for a while
	f.alive(svc)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker restarted at %d stored orders", f.storedCount())
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, svc)
	f.check(tr, expectDLQ{passes: 1})
	stop(t, svc)
}

// TestSlowDatabaseBackpressure holds an ACCESS EXCLUSIVE lock on the orders table
// while a backlog arrives: the consumer must stay in its group with the same
// member id, the RSS must stay bounded, and everything must land afterwards.
func TestSlowDatabaseBackpressure(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "slow-db", brokers, durableDB(t))
	s := newStream(suiteSeed(t)+4, caseOrders(t)*3)
	svc := f.start()
	warm := len(s.recs) / 20
	if err := produce(context.Background(), brokers, f.topic, s.recs[:warm], 0); err != nil {
		t.Fatal(err)
	}
	f.waitLagZero(caseLimit, svc)
	state, before := f.members()
	if state != "Stable" || len(before) != 1 {
		t.Fatalf("group %s with members %v before the lock, want Stable with 1", state, before)
	}

	ctx := context.Background()
	lock, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	t.Logf("orders table locked for %d s", lockSeconds(t))
	wait := produceAsync(brokers, f.topic, s.recs[warm:], 0, caseLimit)
	locked := time.Now()
	var lockRSS int64
	paused := false
	for time.Since(locked) < time.Duration(lockSeconds(t))*time.Second {
		f.alive(svc)
		if rss, err := svc.RSS(); err == nil {
			lockRSS = max(lockRSS, rss)
		}
		if st, err := pipelineStats(svc); err == nil && fetchQueueFull(st) {
			paused = true
		}
		// or the in-flight bytes at their bound (pipeline.max_inflight_bytes):
		// the source then fetches nothing new before the mailbox fills
		if used, limit := metricValue(t, svc, "orders_pipeline_inflight_bytes"), metricValue(t, svc, "orders_pipeline_inflight_bytes_limit"); limit > 0 && used > limit-2*maxMessageBytes {
			paused = true
		}
		if state, ids := f.members(); state != "Stable" || !slices.Equal(ids, before) {
			t.Errorf("group %s with members %v during the lock, want Stable with %v", state, ids, before)
		}
		time.Sleep(500 * time.Millisecond)
	}
	waiting := -1
	qctx, qcancel := context.WithTimeout(ctx, 10*time.Second)
	_ = f.query(qctx, func(c *pgx.Conn) error {
		return c.QueryRow(qctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
	})
	qcancel()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("lock released; peak RSS during the lock %d MiB; server backends waiting for the lock at release: %d",
		lockRSS>>20, waiting)
	if !paused {
		t.Error("neither the fetch stage's mailbox nor the in-flight bytes filled during the lock: the backlog did not build up")
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, svc)
	if state, ids := f.members(); state != "Stable" || !slices.Equal(ids, before) {
		t.Errorf("group %s with members %v after the lock, want Stable with %v", state, ids, before)
	}
	if lockRSS >= rssBound {
		t.Errorf("RSS %d MiB during the lock, bound %d MiB", lockRSS>>20, rssBound>>20)
	}
	f.check(tr, expectDLQ{passes: 1})
	stop(t, svc)
}

// fetchQueueFull reports whether the pipeline stats show the fetch stage's
// output mailbox at capacity (the source then pauses its partitions).
func fetchQueueFull(st map[string]any) bool {
	stages, _ := st["stages"].([]any)
	for _, s := range stages {
		m, _ := s.(map[string]any)
		if m == nil {
			continue
		}
		if name, _ := m["stage"].(string); name != "decode" {
			continue
		}
		l, _ := m["queue_length"].(float64)
		c, _ := m["queue_capacity"].(float64)
		return c > 0 && l >= c
	}
	return false
}

// TestRebalanceTwoInstances runs two services in one group and stops one of them
// with SIGTERM during ingestion; its partitions move to the other.
func TestRebalanceTwoInstances(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "rebalance", brokers, durableDB(t))
	s := newStream(suiteSeed(t)+5, caseOrders(t))
	a := f.start()
	b := f.start()
	wait := produceAsync(brokers, f.topic, s.recs, streamRate, caseLimit)
	f.waitStored(len(s.recs)/3, caseLimit, a, b)
	if state, ids := f.members(); state != "Stable" || len(ids) != 2 {
		t.Errorf("group %s with members %v before the stop, want Stable with 2", state, ids)
	}
	if err := a.Terminate(60 * time.Second); err != nil {
		t.Errorf("SIGTERM of the first instance: %v; log tail:\n%s", err, a.LogTail(4096))
	}
	t.Logf("first instance stopped at %d stored orders", f.storedCount())
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, b)
	if state, ids := f.members(); state != "Stable" || len(ids) != 1 {
		t.Errorf("group %s with members %v, want Stable with the one remaining instance", state, ids)
	}
	f.check(tr, expectDLQ{passes: 1})
	stop(t, b)
}

// TestReplayNeverGoesBack stores orders, then newer versions of some, then resets
// the group to the beginning of the topic and lets the service consume it all
// again: no order may go back to an older version, at any moment of the replay.
func TestReplayNeverGoesBack(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "replay", brokers, durableDB(t))
	s := newStream(suiteSeed(t)+6, caseOrders(t))
	// Newer versions of the first half's orders, sent after the whole stream.
	g := newUpdater(suiteSeed(t) + 6)
	var updates int
	for _, r := range s.recs[:len(s.recs)/2] {
		if !s.invalid[string(r.Key)] && updates%2 == 0 {
			s.recs = append(s.recs, g.version(string(r.Key)))
		}
		updates++
	}
	svc := f.start()
	if err := produce(context.Background(), brokers, f.topic, s.recs, 0); err != nil {
		t.Fatal(err)
	}
	tr := f.readTruth(s)
	f.waitLagZero(caseLimit, svc)
	f.check(tr, expectDLQ{passes: 1})
	stop(t, svc)

	// Reset the (now empty) group to the start of every partition.
	cl, adm := f.admin()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	starts, err := adm.ListStartOffsets(ctx, f.topic)
	if err == nil {
		err = adm.CommitAllOffsets(ctx, f.group, starts.Offsets())
	}
	cancel()
	cl.Close()
	if err != nil {
		t.Fatalf("reset offsets: %v", err)
	}
	if lag := testenv.KafkaGroupLag(t, brokers, f.group, f.topic); lag != int64(tr.messages) {
		t.Fatalf("lag %d after the reset, want %d (the whole topic)", lag, tr.messages)
	}
	t.Logf("group reset to the beginning: %d messages to replay", tr.messages)

	svc = f.start()
	regressions := 0
	deadline := time.Now().Add(caseLimit)
	for testenv.KafkaGroupLag(t, brokers, f.group, f.topic) > 0 {
		f.alive(svc)
		if time.Now().After(deadline) {
			t.Fatalf("replay not committed within %v", caseLimit)
		}
		regressions += f.olderVersions(tr)
		time.Sleep(100 * time.Millisecond)
	}
	regressions += f.olderVersions(tr)
	if regressions != 0 {
		t.Errorf("%d observations of an order at an older version during the replay", regressions)
	}
	st, err := pipelineStats(svc)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := st["upsert"].(map[string]any)
	written, _ := up["orders_written"].(float64)
	applied, _ := up["orders_applied"].(float64)
	t.Logf("replay: orders_written=%v orders_applied=%v", written, applied)
	if int(written) < len(tr.latest) {
		t.Errorf("replay wrote %v orders, want at least %d: the topic was not re-consumed", written, len(tr.latest))
	}
	if applied != 0 {
		t.Errorf("replay applied %v orders, want 0 (every stored version is already the latest)", applied)
	}
	f.checkAPI(svc, tr)
	f.check(tr, expectDLQ{passes: 2}) // each bad message is dead-lettered once per pass
	stop(t, svc)
}

// olderVersions counts orders whose stored track number is not the latest one.
func (f *fixture) olderVersions(tr *truth) int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	err := f.query(ctx, func(c *pgx.Conn) error {
		rs, err := c.Query(ctx, "SELECT order_uid, track_number FROM orders")
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var uid, track string
			if err := rs.Scan(&uid, &track); err != nil {
				return err
			}
			if w, ok := tr.latest[uid]; ok && w.track != track {
				n++
			}
		}
		return rs.Err()
	})
	if err != nil {
		f.t.Fatalf("read orders: %v", err)
	}
	return n
}

// checkAPI reads a sample of orders through the HTTP API (cache, then
// database): each must be at its latest version.
func (f *fixture) checkAPI(svc *testenv.Service, tr *truth) {
	f.t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	n := 0
	for uid, w := range tr.latest {
		if n == 200 {
			break
		}
		n++
		resp, err := c.Get(svc.URL("/order/" + uid))
		if err != nil {
			f.t.Fatal(err)
		}
		var o orders.Order
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			f.t.Errorf("GET /order/%s: %d %v", uid, resp.StatusCode, err)
			continue
		}
		if o.TrackNumber != w.track || len(o.Items) != w.items {
			f.t.Errorf("GET /order/%s: track %s with %d items, want latest %s with %d", uid, o.TrackNumber, len(o.Items), w.track, w.items)
		}
	}
}
