// The fault suite: the real service binary (`go build ./app`,
// run as `serve`) against real PostgreSQL and a real Kafka broker, under crashes,
// outages, a slow database, rebalances and replays. Every case checks the end state
// by querying PostgreSQL and Kafka directly: each valid order stored exactly once at
// its latest version (no duplicated items), the DLQ holding exactly the invalid
// messages, the group's committed lag back at 0, the service's RSS bounded.
//
// It needs TEST_KAFKA_BROKERS (a real broker) and PostgreSQL binaries; it is
// skipped otherwise and with -short. Sizes: FAULTS_ORDERS (messages of the SIGKILL
// case, default 20000), FAULTS_KILLS (default 3), FAULTS_CASE_ORDERS (messages of the
// other cases, default 8000), FAULTS_LOCK_SECONDS (default 15), FAULTS_SEED.

package systest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

const (
	// maxMessageBytes is the service's message bound in the suite; oversized test
	// messages exceed it but stay under the broker's own 1 MiB record limit.
	maxMessageBytes = 64 << 10
	// rssBound is the memory bound every service process must stay under.
	rssBound = 512 << 20
	// invalidRatio and updateRatio shape every stream: 1% bad messages, 5% newer
	// versions of orders sent earlier.
	invalidRatio = 0.01
	updateRatio  = 0.05
)

// The suite's sizes and seed, from the environment (see the file comment).
func killOrders(t testing.TB) int  { return testkit.EnvInt(t, "FAULTS_ORDERS", 20000, 0) }
func kills(t testing.TB) int       { return testkit.EnvInt(t, "FAULTS_KILLS", 3, 0) }
func caseOrders(t testing.TB) int  { return testkit.EnvInt(t, "FAULTS_CASE_ORDERS", 8000, 0) }
func lockSeconds(t testing.TB) int { return testkit.EnvInt(t, "FAULTS_LOCK_SECONDS", 15, 0) }

// defaultSeed is the suite's seed when FAULTS_SEED is unset: one per test binary.
var defaultSeed = int(time.Now().UnixNano() % 1_000_000_007)

func suiteSeed(t testing.TB) uint64 { return uint64(testkit.EnvInt(t, "FAULTS_SEED", defaultSeed, 0)) }

// requireEnv skips the case unless a real broker and PostgreSQL can be used.
func requireEnv(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("fault suite: skipped with -short")
	}
	brokers := strings.TrimSpace(os.Getenv(testenv.KafkaBrokersEnv))
	if brokers == "" {
		t.Skipf("fault suite: needs a real Kafka broker: start one (go tool task kafka:up) and set %s=127.0.0.1:19092", testenv.KafkaBrokersEnv)
	}
	return brokers
}

var durable struct {
	once    sync.Once
	cluster *testenv.Cluster
}

// durableDB returns a fresh database on a cluster with default durability, shared
// by the cases that do not crash PostgreSQL.
func durableDB(t *testing.T) string {
	t.Helper()
	durable.once.Do(func() {
		// The cluster outlives the first case that asks for it: testenv.Main stops it.
		durable.cluster = testenv.NewCluster(&outliving{T: t}, testenv.ClusterOptions{Durable: true})
	})
	if durable.cluster == nil {
		t.Fatal("durable cluster did not start (see the first case's failure)")
	}
	return durable.cluster.CreateDB(t)
}

// outliving is a testing.TB whose Cleanup does nothing, for resources that live
// as long as the test binary (testenv.Main tears them down).
type outliving struct{ *testing.T }

func (o *outliving) Cleanup(func()) {}

// ---------------------------------------------------------------------------
// The stream: valid orders, newer versions of some, bad messages.

// stream is the planned input: records in send order, plus what they are.
type stream struct {
	recs    []*kgo.Record
	invalid map[string]bool // keys of bad messages
	unique  int             // distinct valid orders
}

// newStream plans n messages: each is, at random, a bad message (invalidRatio,
// of a random kind), a newer version of an order sent earlier (updateRatio: a
// whole new order body, other track number and items, under the same uid), or a
// new valid order.
func newStream(seed uint64, n int) *stream {
	g := ordersgen.New(seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := &stream{invalid: map[string]bool{}}
	var uids []string
	for range n {
		switch r := rng.Float64(); {
		case r < invalidRatio:
			key, val := g.Invalid(g.RandomKind(), maxMessageBytes)
			key = "bad-" + key
			s.invalid[key] = true
			s.recs = append(s.recs, &kgo.Record{Key: []byte(key), Value: val})
		case r < invalidRatio+updateRatio && len(uids) > 0:
			s.recs = append(s.recs, newVersion(g, uids[rng.IntN(len(uids))]))
		default:
			o, b := g.Valid()
			uids = append(uids, o.OrderUID)
			s.recs = append(s.recs, &kgo.Record{Key: []byte(o.OrderUID), Value: b})
		}
	}
	s.unique = len(uids)
	return s
}

// newVersion returns a record carrying a new, valid body for uid.
func newVersion(g *ordersgen.Gen, uid string) *kgo.Record {
	o := g.Order()
	o.OrderUID, o.Payment.Transaction = uid, uid
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	return &kgo.Record{Key: []byte(uid), Value: b}
}

// updater makes newer versions of orders.
type updater struct{ g *ordersgen.Gen }

func newUpdater(seed uint64) *updater { return &updater{g: ordersgen.New(seed ^ 0x5bd1e995)} }

// version returns a record with a new, valid body for uid.
func (u *updater) version(uid string) *kgo.Record { return newVersion(u.g, uid) }

// produce sends recs to topic in order and waits for every acknowledgement, or
// until ctx ends. It retries through broker outages (franz-go retries without
// limit; the producer is idempotent). rate paces the sends in records per second
// (0: as fast as possible), so that a stream lasts long enough for a fault to
// land in the middle of it.
func produce(ctx context.Context, brokers, topic string, recs []*kgo.Record, rate int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(20000))
	if err != nil {
		return fmt.Errorf("produce: client: %w", err)
	}
	defer cl.Close()
	var failed atomic.Int64
	var first atomic.Value
	start := time.Now()
	for i, r := range recs {
		if rate > 0 && i%100 == 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("produce: %w", ctx.Err())
				case <-time.After(d):
				}
			}
		}
		r.Topic = ""
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("produce: flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("produce: %d records failed, first: %v", n, first.Load())
	}
	return nil
}

// produceAsync runs produce in the background; wait returns its error.
func produceAsync(brokers, topic string, recs []*kgo.Record, rate int, limit time.Duration) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		done <- produce(ctx, brokers, topic, recs, rate)
	}()
	return sync.OnceValue(func() error { return <-done })
}

// ---------------------------------------------------------------------------
// The fixture: one topic, DLQ, group and database per case; service processes.

type fixture struct {
	t                          testing.TB
	name                       string
	brokers, topic, dlq, group string
	dsn                        string
	bin                        string
	extraEnv                   []string

	mu     sync.Mutex
	maxRSS int64
	starts int
}

func newFixture(t testing.TB, name, brokers, dsn string) *fixture {
	t.Helper()
	f := &fixture{
		t: t, name: name, brokers: brokers, dsn: dsn,
		topic: testenv.KafkaTopicName(t, "orders"),
		dlq:   testenv.KafkaTopicName(t, "dlq"),
		bin:   testenv.BuildService(t),
	}
	f.group = f.topic + "-group"
	testenv.KafkaCreateTopic(t, brokers, f.topic, 4)
	return f
}

func (f *fixture) env() []string {
	return append([]string{
		"ORDERS_POSTGRES_DSN=" + f.dsn,
		"ORDERS_KAFKA_BROKERS=" + f.brokers,
		"ORDERS_KAFKA_TOPIC=" + f.topic,
		"ORDERS_KAFKA_DLQ_TOPIC=" + f.dlq,
		"ORDERS_KAFKA_GROUP_ID=" + f.group,
		"ORDERS_PIPELINE_MAX_MESSAGE_BYTES=" + strconv.Itoa(maxMessageBytes),
		"ORDERS_PIPELINE_RETRY_MAX=2s",
		"ORDERS_LOG_LEVEL=info",
		"ORDERS_TRACING_EXPORTER=none",
	}, f.extraEnv...)
}

// start runs one more service process and waits until it is ready; a sampler
// records its RSS every 100 ms until it exits.
func (f *fixture) start() *testenv.Service {
	f.t.Helper()
	f.mu.Lock()
	f.starts++
	n := f.starts
	f.mu.Unlock()
	dir := os.Getenv("FAULTS_LOG_DIR") // keep the service logs there (default: the test's temp dir)
	if dir == "" {
		dir = f.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	s := testenv.StartService(f.t, testenv.ServiceOptions{
		Binary:  f.bin,
		Env:     f.env(),
		LogPath: fmt.Sprintf("%s/%s-service-%d.log", dir, f.name, n),
	})
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss, err := s.RSS(); err == nil {
				f.mu.Lock()
				f.maxRSS = max(f.maxRSS, rss)
				f.mu.Unlock()
			}
			select {
			case <-s.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peakRSS returns the largest RSS seen across the case's processes.
func (f *fixture) peakRSS() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxRSS
}

// alive fails the test when every one of svcs has exited.
func (f *fixture) alive(svcs ...*testenv.Service) {
	f.t.Helper()
	for _, s := range svcs {
		if !s.Exited() {
			return
		}
	}
	if len(svcs) > 0 {
		f.t.Fatalf("service exited unexpectedly; log tail:\n%s", svcs[len(svcs)-1].LogTail(4096))
	}
}

// query runs fn on a fresh connection to the case's database.
func (f *fixture) query(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return fn(conn)
}

// storedCount returns the number of orders rows, or -1 when the database does not answer.
func (f *fixture) storedCount() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := -1
	err := f.query(ctx, func(c *pgx.Conn) error { return c.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n) })
	if err != nil {
		return -1
	}
	return n
}

// waitStored waits until at least n orders are stored while one of svcs runs.
func (f *fixture) waitStored(n int, limit time.Duration, svcs ...*testenv.Service) {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if f.storedCount() >= n {
			return
		}
		f.alive(svcs...)
		if time.Now().After(deadline) {
			f.t.Fatalf("fewer than %d orders stored after %v (have %d)", n, limit, f.storedCount())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLagZero waits until the group has committed everything in the input topic.
func (f *fixture) waitLagZero(limit time.Duration, svcs ...*testenv.Service) {
	f.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		lag := testenv.KafkaGroupLag(f.t, f.brokers, f.group, f.topic)
		if lag == 0 {
			return
		}
		f.alive(svcs...)
		if time.Now().After(deadline) {
			tail := ""
			if len(svcs) > 0 {
				tail = svcs[len(svcs)-1].LogTail(4096)
			}
			f.t.Fatalf("committed lag still %d after %v; log tail:\n%s", lag, limit, tail)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// admin returns a franz-go admin client for the case's broker.
func (f *fixture) admin() (*kgo.Client, *kadm.Client) {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(f.brokers, ",")...))
	if err != nil {
		f.t.Fatal(err)
	}
	return cl, kadm.NewClient(cl)
}

// members returns the group's state and its member ids.
func (f *fixture) members() (string, []string) {
	f.t.Helper()
	cl, adm := f.admin()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := adm.DescribeGroups(ctx, f.group)
	if err != nil {
		f.t.Fatalf("describe group: %v", err)
	}
	g := groups[f.group]
	if g.Err != nil {
		f.t.Fatalf("describe group: %v", g.Err)
	}
	ids := make([]string, len(g.Members))
	for i, m := range g.Members {
		ids[i] = m.MemberID
	}
	return g.State, ids
}

// pipelineStats fetches GET /api/v1/pipeline/stats.
func pipelineStats(s *testenv.Service) (map[string]any, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.URL("/api/v1/pipeline/stats"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pipeline stats: %d %s", resp.StatusCode, b)
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// readyStatus returns the status code of GET /ready (0 when it does not answer).
func readyStatus(s *testenv.Service) int {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.URL("/ready"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ---------------------------------------------------------------------------
// Expectations and the end-state check.

// pos is a record's place in the input topic.
type pos struct {
	partition int32
	offset    int64
}

// want is the latest version of a valid order in the input topic.
type want struct {
	pos
	track string
	items int
}

// truth is what the input topic really holds (read back after producing, so
// retries or duplicates of the producer are accounted for).
type truth struct {
	messages int
	latest   map[string]want // uid -> latest version
	versions int             // valid messages (all versions)
	invalid  map[pos]string  // bad message -> key
}

// readTruth reads the whole input topic and derives the expected end state.
func (f *fixture) readTruth(s *stream) *truth {
	f.t.Helper()
	tr := &truth{latest: map[string]want{}, invalid: map[pos]string{}}
	for _, r := range testenv.KafkaReadAll(f.t, f.brokers, f.topic, 500*time.Millisecond) {
		tr.messages++
		key := string(r.Key)
		p := pos{r.Partition, r.Offset}
		if s.invalid[key] {
			tr.invalid[p] = key
			continue
		}
		var o orders.Order
		if err := json.Unmarshal(r.Value, &o); err != nil {
			f.t.Fatalf("valid record %s at %d/%d does not decode: %v", key, r.Partition, r.Offset, err)
		}
		tr.versions++
		w := want{pos: p, track: o.TrackNumber, items: len(o.Items)}
		if prev, ok := tr.latest[key]; ok {
			if prev.partition != p.partition {
				f.t.Fatalf("versions of %s in partitions %d and %d: no order between them", key, prev.partition, p.partition)
			}
			if prev.offset > p.offset {
				continue
			}
		}
		tr.latest[key] = w
	}
	if tr.messages == 0 {
		f.t.Fatal("input topic is empty")
	}
	return tr
}

// outcome is the measured result of a case.
type outcome struct {
	produced   int // messages in the input topic
	unique     int // distinct valid orders
	invalid    int // bad messages
	stored     int // valid orders stored at their latest version with all their parts
	dlq        int // dead letters
	lost       int // valid orders missing or not at their latest version + bad messages not dead-lettered
	duplicated int // item rows beyond an order's items (an order stored twice)
	dlqDup     int // committed dead letters beyond one per bad message and pass
	stale      int // orders stored at an older version (included in lost)
	unexpected int // orders stored or dead-lettered that are not such input
}

// expectDLQ says how many dead letters each bad message must have.
type expectDLQ struct {
	// passes is how many times the topic was consumed from the start (2 after a replay).
	passes int
}

// check verifies the end state once the committed lag is 0: the database holds
// every valid order exactly once at its latest version, the DLQ exactly the bad
// messages (as many times as dl says), and logs the FAULT line.
func (f *fixture) check(tr *truth, dl expectDLQ) outcome {
	f.t.Helper()
	out := outcome{produced: tr.messages, unique: len(tr.latest), invalid: len(tr.invalid)}

	type row struct {
		track         string
		part          int32
		off           int64
		items         int
		delivery, pay bool
	}
	rows := map[string]row{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := f.query(ctx, func(c *pgx.Conn) error {
		rs, err := c.Query(ctx, `SELECT o.order_uid, o.track_number, o.source_partition, o.source_offset,
			(SELECT count(*) FROM items i WHERE i.order_uid = o.order_uid),
			EXISTS (SELECT 1 FROM delivery d WHERE d.order_uid = o.order_uid),
			EXISTS (SELECT 1 FROM payment p WHERE p.order_uid = o.order_uid)
			FROM orders o`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var uid string
			var r row
			if err := rs.Scan(&uid, &r.track, &r.part, &r.off, &r.items, &r.delivery, &r.pay); err != nil {
				return err
			}
			rows[uid] = r
		}
		return rs.Err()
	})
	if err != nil {
		f.t.Fatalf("read stored orders: %v", err)
	}

	var problems []string
	note := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for uid, w := range tr.latest {
		r, ok := rows[uid]
		switch {
		case !ok:
			out.lost++
			note("order %s missing", uid)
		case r.track != w.track || r.part != w.partition || r.off != w.offset:
			out.lost++
			out.stale++
			note("order %s at %d/%d track %s, want latest %d/%d track %s", uid, r.part, r.off, r.track, w.partition, w.offset, w.track)
		case !r.delivery || !r.pay || r.items < w.items:
			out.lost++
			note("order %s incomplete: delivery %v payment %v items %d of %d", uid, r.delivery, r.pay, r.items, w.items)
		default:
			out.stored++
		}
		if ok && r.items > w.items {
			out.duplicated += r.items - w.items
			note("order %s has %d item rows, want %d", uid, r.items, w.items)
		}
	}
	for uid := range rows {
		if _, ok := tr.latest[uid]; !ok {
			out.unexpected++
			note("unexpected stored order %s", uid)
		}
	}

	dead := testenv.KafkaReadAll(f.t, f.brokers, f.dlq, time.Second)
	out.dlq = len(dead)
	perSource := map[pos]int{}
	for _, r := range dead {
		var p pos
		for _, h := range r.Headers {
			switch h.Key {
			case kafkaedge.HeaderSourcePartition:
				v, _ := strconv.ParseInt(string(h.Value), 10, 32)
				p.partition = int32(v)
			case kafkaedge.HeaderSourceOffset:
				p.offset, _ = strconv.ParseInt(string(h.Value), 10, 64)
			}
		}
		key, ok := tr.invalid[p]
		if !ok || key != string(r.Key) {
			out.unexpected++
			note("dead letter %q from %d/%d is not a bad input message", r.Key, p.partition, p.offset)
			continue
		}
		perSource[p]++
	}
	for p, key := range tr.invalid {
		n := perSource[p]
		if n < dl.passes {
			out.lost++
			note("bad message %s at %d/%d dead-lettered %d times, want %d", key, p.partition, p.offset, n, dl.passes)
		}
		if n > dl.passes {
			out.dlqDup += n - dl.passes
			note("bad message %s at %d/%d dead-lettered %d times, want %d", key, p.partition, p.offset, n, dl.passes)
		}
	}

	if lag := testenv.KafkaGroupLag(f.t, f.brokers, f.group, f.topic); lag != 0 {
		note("committed lag %d", lag)
		f.t.Errorf("committed lag %d, want 0", lag)
	}
	f.t.Logf("FAULT case=%s produced=%d stored=%d dlq=%d lost=%d duplicated=%d",
		f.name, out.produced, out.stored, out.dlq, out.lost, out.duplicated)
	f.t.Logf("detail case=%s unique_orders=%d versions=%d invalid=%d dlq_redelivered=%d stale=%d unexpected=%d peak_rss_mib=%d starts=%d",
		f.name, out.unique, tr.versions, out.invalid, out.dlqDup, out.stale, out.unexpected, f.peakRSS()>>20, f.starts)
	if out.lost != 0 || out.duplicated != 0 || out.unexpected != 0 || out.stored != out.unique || out.dlqDup != 0 {
		f.t.Errorf("end state wrong: %+v\n%s", out, strings.Join(problems, "\n"))
	}
	if rss := f.peakRSS(); rss >= rssBound {
		f.t.Errorf("peak RSS %d MiB, bound %d MiB", rss>>20, rssBound>>20)
	}
	return out
}

// stop terminates a service gracefully and requires a clean exit.
func stop(t *testing.T, s *testenv.Service) {
	t.Helper()
	if err := s.Terminate(60 * time.Second); err != nil {
		t.Errorf("graceful stop: %v; log tail:\n%s", err, s.LogTail(4096))
	}
}
