package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/ingest"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// The tests of one history per order: versions are positions in the orders
// topic, replays keep theirs, tombstones delete, API writes go through the log,
// and neither the database nor the cache ever goes back to an older version.

// flow is a running ingest with a cache in front of its database store.
type flow struct {
	in     *ingest.Ingest
	cached *orderscache.Store
	stop   func() error
}

// startFlow runs the flow on e with a cache; store wraps the database store
// (nil: as it is), group overrides e.group when not empty.
func (e *env) startFlow(t *testing.T, group string, tweak func(*ingest.Config), wrap func(ingest.BatchWriter) ingest.BatchWriter) *flow {
	t.Helper()
	cfg := configs.Default().Pipeline
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.BatchLinger = 20 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	if group == "" {
		group = e.group
	}
	db := ordersdb.New(e.db)
	cached := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	var w ingest.BatchWriter = db
	if wrap != nil {
		w = wrap(db)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := ingest.New(kafkaConfig(e.brokers, e.topic, e.dlq, group), cfg, ingest.Deps{
		Store: w, Cache: cached, Metrics: prometheus.NewRegistry(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	f := &flow{in: in, cached: cached}
	stopped := false
	var result error
	f.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(60 * time.Second):
				result = errors.New("ingest did not stop within 60 s")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = f.stop() })
	return f
}

// produceAt produces records to explicit partitions (r.Partition) and returns
// them with their offsets.
func produceAt(t *testing.T, brokers string, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func orderRecord(t *testing.T, topic string, partition int32, o orders.Order) *kgo.Record {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Partition: partition, Key: []byte(o.OrderUID), Value: b}
}

func tombstone(topic string, partition int32, uid string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: []byte(uid)}
}

func versionOf(r *kgo.Record) orders.Version {
	return orders.Version{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp.UnixMilli()}
}

// dbVersion returns the stored version of uid and whether the order exists.
func (e *env) dbVersion(t *testing.T, uid string) (orders.Order, orders.Version, bool) {
	t.Helper()
	o, v, err := ordersdb.New(e.db).Get(context.Background(), uid)
	if errors.Is(err, orders.ErrNotFound) {
		return o, v, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return o, v, true
}

// cacheVersion returns the version the cache answers for uid (zero when not found).
func (f *flow) cacheVersion(t *testing.T, uid string) (orders.Version, bool) {
	t.Helper()
	e, _, err := f.cached.GetJSON(context.Background(), uid)
	if errors.Is(err, orders.ErrNotFound) {
		return orders.Version{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return e.Version, true
}

func TestReplayedOldVersionNeverOverwritesNewer(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	// A rule too strict at first: the database refuses one name (a data error),
	// so version 1 of X and the only version of Y are dead-lettered.
	if _, err := e.db.ExecContext(context.Background(),
		`ALTER TABLE delivery ADD CONSTRAINT test_strict CHECK (name <> 'Strict Name')`); err != nil {
		t.Fatal(err)
	}
	g := ordersgen.New(21)
	x1, y := g.Order(), g.Order()
	x1.Delivery.Name, y.Delivery.Name = "Strict Name", "Strict Name"
	x2 := x1
	x2.Delivery.Name = "Second Version"
	// Version 2 comes once version 1 has been dead-lettered: in the same batch it
	// would supersede version 1, which is then never written nor dead-lettered.
	sent := produceAt(t, e.brokers, orderRecord(t, e.topic, 0, x1), orderRecord(t, e.topic, 0, y))
	f := e.startFlow(t, "", nil, nil)
	e.waitLagZero(t, f.in, time.Minute)
	sent = append(sent, produceAt(t, e.brokers, orderRecord(t, e.topic, 0, x2))...)
	e.waitLagZero(t, f.in, time.Minute)
	if _, v, ok := e.dbVersion(t, x1.OrderUID); !ok || v != versionOf(sent[2]) {
		t.Fatalf("X stored at %v (%v), want version 2 %v", v, ok, versionOf(sent[2]))
	}
	letters := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second)
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2", len(letters))
	}

	// The rule is fixed; the dead letters are replayed as `app dlq replay` does.
	if _, err := e.db.ExecContext(context.Background(), `ALTER TABLE delivery DROP CONSTRAINT test_strict`); err != nil {
		t.Fatal(err)
	}
	for _, l := range letters {
		r := kafkaedge.Record{Topic: l.Topic, Partition: l.Partition, Offset: l.Offset, Key: l.Key, Value: l.Value}
		for _, h := range l.Headers {
			r.Headers = append(r.Headers, kafkaedge.Header{Key: h.Key, Value: h.Value})
		}
		topic, key, value, headers := kafkaedge.Replay(&r, e.topic)
		rec := &kgo.Record{Topic: topic, Partition: 1, Key: key, Value: value} // another partition, a higher offset
		for _, h := range headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		produceAt(t, e.brokers, rec)
	}
	e.waitLagZero(t, f.in, time.Minute)
	o, v, ok := e.dbVersion(t, x1.OrderUID)
	if !ok || v != versionOf(sent[2]) || o.Delivery.Name != "Second Version" {
		t.Errorf("after replaying version 1, X is %q at %v, want version 2 %v kept", o.Delivery.Name, v, versionOf(sent[2]))
	}
	if cv, _ := f.cacheVersion(t, x1.OrderUID); cv != versionOf(sent[2]) {
		t.Errorf("cache answers X at %v, want %v", cv, versionOf(sent[2]))
	}
	// Y's only version is stored by the replay, at its original position.
	if _, v, ok := e.dbVersion(t, y.OrderUID); !ok || v != versionOf(sent[1]) {
		t.Errorf("replayed Y stored at %v (%v), want its original position %v", v, ok, versionOf(sent[1]))
	}
	st := f.in.Snapshot().Upsert
	if st.Stale < 1 {
		t.Errorf("stale versions %d, want >= 1 (the replayed version 1)", st.Stale)
	}
}

func TestTombstonesDeleteAndRedeliveryDoesNotResurrect(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(22)
	x, kept := g.Order(), g.Order()
	unknown := "never-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	mismatch := g.Order()
	mb, _ := json.Marshal(mismatch)
	sent := produceAt(t, e.brokers,
		orderRecord(t, e.topic, 2, x), orderRecord(t, e.topic, 2, kept),
		tombstone(e.topic, 2, x.OrderUID), tombstone(e.topic, 2, unknown),
		&kgo.Record{Topic: e.topic, Partition: 2},                                  // a tombstone without a key
		&kgo.Record{Topic: e.topic, Partition: 2, Key: []byte("other"), Value: mb}, // key is not the order_uid
	)
	f := e.startFlow(t, "", nil, nil)
	e.waitLagZero(t, f.in, time.Minute)
	check := func(when string) {
		t.Helper()
		if _, v, ok := e.dbVersion(t, x.OrderUID); ok || v != versionOf(sent[2]) {
			t.Errorf("%s: X exists=%v, tombstone version %v, want deleted at %v", when, ok, v, versionOf(sent[2]))
		}
		if _, ok := f.cacheVersion(t, x.OrderUID); ok {
			t.Errorf("%s: the cache still answers X", when)
		}
		if _, _, ok := e.dbVersion(t, kept.OrderUID); !ok {
			t.Errorf("%s: an order without a tombstone is gone", when)
		}
		if _, v, ok := e.dbVersion(t, unknown); ok || v != versionOf(sent[3]) {
			t.Errorf("%s: tombstone of an unknown uid: exists=%v version %v, want %v", when, ok, v, versionOf(sent[3]))
		}
	}
	check("first pass")
	letters := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second)
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2 (tombstone without key, key mismatch)", len(letters))
	}
	for _, l := range letters {
		if c, _ := header(l, kafkaedge.HeaderErrorClass); c != orders.ClassKey {
			t.Errorf("dead letter %q: class %q, want %q", l.Key, c, orders.ClassKey)
		}
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}

	// Everything is delivered again (a new group reads from the start, as after
	// an offset reset): X stays deleted.
	f = e.startFlow(t, e.group+"-again", nil, nil)
	e.waitLagZeroGroup(t, f.in, e.group+"-again", time.Minute)
	check("after redelivery")
}

func TestPoisonNewestVersionDoesNotHideOlder(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	if _, err := e.db.ExecContext(context.Background(),
		`ALTER TABLE delivery ADD CONSTRAINT test_poison_check CHECK (name <> 'Poison Name')`); err != nil {
		t.Fatal(err)
	}
	g := ordersgen.New(23)
	x1 := g.Order()
	x2 := x1
	x2.Delivery.Name = "Poison Name"
	x3 := x1
	x3.Delivery.Name = "Poison Name"
	x3.TrackNumber = "ANOTHER"
	var recs []*kgo.Record
	for range 50 {
		recs = append(recs, orderRecord(t, e.topic, 3, g.Order()))
	}
	recs = append(recs, orderRecord(t, e.topic, 3, x1), orderRecord(t, e.topic, 3, x2), orderRecord(t, e.topic, 3, x3))
	sent := produceAt(t, e.brokers, recs...)
	// one batch holds them all: X's two newest versions are poison, its first is not
	f := e.startFlow(t, "", func(c *ingest.Config) { c.BatchLinger = time.Second }, nil)
	e.waitLagZero(t, f.in, time.Minute)
	o, v, ok := e.dbVersion(t, x1.OrderUID)
	if !ok || v != versionOf(sent[50]) || o.Delivery.Name != x1.Delivery.Name {
		t.Fatalf("X is %q at %v (exists %v), want the valid version 1 at %v", o.Delivery.Name, v, ok, versionOf(sent[50]))
	}
	if cv, _ := f.cacheVersion(t, x1.OrderUID); cv != versionOf(sent[50]) {
		t.Errorf("cache answers X at %v, want %v", cv, versionOf(sent[50]))
	}
	letters := testenv.KafkaReadAll(t, e.brokers, e.dlq, time.Second)
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2 (versions 2 and 3)", len(letters))
	}
	for _, l := range letters {
		if off, _ := header(l, kafkaedge.HeaderSourceOffset); off != strconv.FormatInt(sent[51].Offset, 10) && off != strconv.FormatInt(sent[52].Offset, 10) {
			t.Errorf("dead letter of offset %s, want %d or %d", off, sent[51].Offset, sent[52].Offset)
		}
	}
	if n := e.count(t); n != 51 {
		t.Errorf("%d orders stored, want 51", n)
	}
}

// lostCommit applies the first batch that holds uid, then reports a lost
// connection: the commit's outcome is unknown to the flow.
type lostCommit struct {
	ingest.BatchWriter
	uid  string
	done atomic.Bool
}

func (l *lostCommit) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	stored, err := l.BatchWriter.ApplyBatch(ctx, recs)
	if err != nil || l.done.Load() {
		return stored, err
	}
	for i := range recs {
		if recs[i].UID() == l.uid && l.done.CompareAndSwap(false, true) {
			return nil, fmt.Errorf("commit: %w", io.ErrUnexpectedEOF)
		}
	}
	return stored, nil
}

func TestUnknownCommitOutcomeStillUpdatesTheCache(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(24)
	x1 := g.Order()
	x2 := x1
	x2.TrackNumber = "SECOND"
	first := produceAt(t, e.brokers, orderRecord(t, e.topic, 0, x1))
	var lc *lostCommit
	f := e.startFlow(t, "", func(c *ingest.Config) { c.RetryMin, c.RetryMax = 10*time.Millisecond, 50*time.Millisecond },
		func(w ingest.BatchWriter) ingest.BatchWriter {
			lc = &lostCommit{BatchWriter: w, uid: "armed-later"}
			return lc
		})
	e.waitLagZero(t, f.in, time.Minute)
	if v, ok := f.cacheVersion(t, x1.OrderUID); !ok || v != versionOf(first[0]) {
		t.Fatalf("cache has X at %v, want %v", v, versionOf(first[0]))
	}
	lc.uid = x1.OrderUID // the next batch with X commits, then "loses" the connection
	second := produceAt(t, e.brokers, orderRecord(t, e.topic, 0, x2))
	e.waitLagZero(t, f.in, time.Minute)
	if !lc.done.Load() {
		t.Fatal("the lost commit was not simulated")
	}
	if f.in.Snapshot().Upsert.Retries == 0 {
		t.Error("no retry after the lost commit")
	}
	if _, v, _ := e.dbVersion(t, x1.OrderUID); v != versionOf(second[0]) {
		t.Fatalf("database has X at %v, want %v", v, versionOf(second[0]))
	}
	if v, ok := f.cacheVersion(t, x1.OrderUID); !ok || v != versionOf(second[0]) {
		t.Errorf("cache has X at %v, want %v: the retry found it stored and must still fill it", v, versionOf(second[0]))
	}
}

func TestCrossPartitionVersionsOrderedByTimestamp(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(25)
	x1 := g.Order()
	x2 := x1
	x2.TrackNumber = "OLDER-BY-TIME"
	now := time.Now().Truncate(time.Millisecond)
	newer := orderRecord(t, e.topic, 0, x1)
	newer.Timestamp = now
	older := orderRecord(t, e.topic, 1, x2) // another partition, an earlier timestamp
	older.Timestamp = now.Add(-time.Hour)
	// the older one is consumed last: partition 1 gets it after partition 0's is stored
	produceAt(t, e.brokers, newer)
	f := e.startFlow(t, "", nil, nil)
	e.waitLagZero(t, f.in, time.Minute)
	produceAt(t, e.brokers, older)
	e.waitLagZero(t, f.in, time.Minute)
	o, v, _ := e.dbVersion(t, x1.OrderUID)
	if v != versionOf(newer) || o.TrackNumber != x1.TrackNumber {
		t.Errorf("X is %q at %v, want the later timestamp's version %v", o.TrackNumber, v, versionOf(newer))
	}
	if n := f.in.Snapshot().Upsert.CrossPartition; n != 1 {
		t.Errorf("cross-partition comparisons %d, want 1", n)
	}
	// a version on another partition with a later timestamp wins
	latest := orderRecord(t, e.topic, 2, x2)
	latest.Timestamp = now.Add(time.Hour)
	produceAt(t, e.brokers, latest)
	e.waitLagZero(t, f.in, time.Minute)
	if o, v, _ := e.dbVersion(t, x1.OrderUID); v != versionOf(latest) || o.TrackNumber != x2.TrackNumber {
		t.Errorf("X is %q at %v, want the latest timestamp's version %v", o.TrackNumber, v, versionOf(latest))
	}
	if n := f.in.Snapshot().Upsert.CrossPartition; n != 2 {
		t.Errorf("cross-partition comparisons %d, want 2", n)
	}
}

func TestAPIWritesGoThroughTheLog(t *testing.T) {
	e := newEnv(t, dbtest.New(t))
	g := ordersgen.New(26)
	db := ordersdb.New(e.db)

	// A Kafka version produced before the PUT but consumed after it does not
	// undo it: the flow is not running yet, so the PUT is appended and pending.
	x1 := g.Order()
	x2 := x1
	x2.TrackNumber = "EDITED"
	produceAt(t, e.brokers, orderRecord(t, e.topic, partitionOf(x1.OrderUID, 4), x1))
	f := e.startFlowStopped(t)
	w, err := f.in.NewWriter(ingest.WriterConfig{Brokers: e.brokers, Topic: e.topic, AppendTimeout: 10 * time.Second, ApplyWait: 500 * time.Millisecond}, db)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	raw, _ := json.Marshal(x2)
	_, err = w.Put(context.Background(), raw, x2)
	var pending *orders.PendingError
	if !errors.As(err, &pending) {
		t.Fatalf("PUT with no flow running: %v, want *orders.PendingError", err)
	}
	f.run()
	e.waitLagZero(t, f.in, time.Minute)
	if o, v, _ := e.dbVersion(t, x1.OrderUID); o.TrackNumber != "EDITED" || v != pending.Version {
		t.Fatalf("after the flow caught up X is %q at %v, want the PUT's %v", o.TrackNumber, v, pending.Version)
	}
	if pending.Version.Partition != partitionOf(x1.OrderUID, 4) {
		t.Errorf("the PUT landed on partition %d, the Kafka version on %d: API writes must partition keys like other producers (murmur2)",
			pending.Version.Partition, partitionOf(x1.OrderUID, 4))
	}

	// With the flow running, PUT and DELETE answer once applied, with the version.
	w2, err := f.in.NewWriter(ingest.WriterConfig{Brokers: e.brokers, Topic: e.topic, AppendTimeout: 10 * time.Second, ApplyWait: 20 * time.Second}, db)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	y := g.Order()
	raw, _ = json.Marshal(y)
	v, err := w2.Put(context.Background(), raw, y)
	if err != nil {
		t.Fatal(err)
	}
	if cv, ok := f.cacheVersion(t, y.OrderUID); !ok || cv != v {
		t.Errorf("right after PUT the cache answers %v (%v), want %v", cv, ok, v)
	}
	dv, err := w2.Delete(context.Background(), y.OrderUID)
	if err != nil {
		t.Fatal(err)
	}
	if !dv.Newer(v) {
		t.Errorf("delete version %v not newer than put version %v", dv, v)
	}
	if _, ok := f.cacheVersion(t, y.OrderUID); ok {
		t.Error("right after DELETE the cache still answers the order")
	}
	if _, _, ok := e.dbVersion(t, y.OrderUID); ok {
		t.Error("right after DELETE the database still has the order")
	}
	if _, err := w2.Delete(context.Background(), y.OrderUID); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("DELETE of a deleted order: %v, want ErrNotFound", err)
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}
	// Redelivered from the start (a new group), Y stays deleted and X edited.
	f2 := e.startFlow(t, e.group+"-again", nil, nil)
	e.waitLagZeroGroup(t, f2.in, e.group+"-again", time.Minute)
	if _, _, ok := e.dbVersion(t, y.OrderUID); ok {
		t.Error("after redelivery a deleted order is back")
	}
	if o, _, _ := e.dbVersion(t, x1.OrderUID); o.TrackNumber != "EDITED" {
		t.Errorf("after redelivery X is %q, want the PUT's", o.TrackNumber)
	}

	// A broker that cannot take the write: ErrLogUnavailable, nothing waits forever.
	dead, err := f2.in.NewWriter(ingest.WriterConfig{Brokers: "127.0.0.1:1", Topic: e.topic, AppendTimeout: time.Second, ApplyWait: time.Second}, db)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	z := g.Order()
	raw, _ = json.Marshal(z)
	if _, err := dead.Put(context.Background(), raw, z); !errors.Is(err, orders.ErrLogUnavailable) {
		t.Errorf("PUT with the broker unreachable: %v, want ErrLogUnavailable", err)
	}
}

// startFlowStopped builds the flow on e without running it; run starts it.
func (e *env) startFlowStopped(t *testing.T) *stoppedFlow {
	t.Helper()
	sf := &stoppedFlow{e: e, t: t}
	cfg := configs.Default().Pipeline
	cfg.ShutdownTimeout = 20 * time.Second
	cfg.BatchLinger = 20 * time.Millisecond
	db := ordersdb.New(e.db)
	sf.cached = orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	in, err := ingest.New(kafkaConfig(e.brokers, e.topic, e.dlq, e.group), cfg, ingest.Deps{
		Store: db, Cache: sf.cached, Metrics: prometheus.NewRegistry(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	sf.in = in
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started, stopped := false, false
	sf.run = func() {
		started = true
		go func() { done <- in.Run(ctx) }()
	}
	sf.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		if !started {
			in.Close()
			return nil
		}
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("ingest did not stop within 60 s")
		}
	}
	t.Cleanup(func() { _ = sf.stop() })
	return sf
}

type stoppedFlow struct {
	e      *env
	t      *testing.T
	in     *ingest.Ingest
	cached *orderscache.Store
	run    func()
	stop   func() error
}

func (f *stoppedFlow) cacheVersion(t *testing.T, uid string) (orders.Version, bool) {
	return (&flow{cached: f.cached}).cacheVersion(t, uid)
}

// waitLagZeroGroup is waitLagZero for another group of e's topic.
func (e *env) waitLagZeroGroup(t *testing.T, in *ingest.Ingest, group string, limit time.Duration) {
	t.Helper()
	saved := e.group
	e.group = group
	defer func() { e.group = saved }()
	e.waitLagZero(t, in, limit)
}

// partitionOf is Kafka's default partition of a key (murmur2, as the Java
// client, franz-go and the service's producers compute it).
func partitionOf(key string, partitions int32) int32 {
	return int32(murmur2([]byte(key))&0x7fffffff) % partitions
}

// murmur2 is Kafka's murmur2 hash of a record key.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	n := len(data) / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
