package systest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
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
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// TestVersionsRandomInterleavings is the property test of one history per
// order: random interleavings of Kafka versions, tombstones, replays of old
// versions (with their x-source-* positions), PUTs and DELETEs through the API,
// with a SIGKILL in the middle (redelivery of what was not committed) and a
// full redelivery at the end (a new group reads the topic from the start).
//
// The orders topic is the one authority: read back at the end, its newest
// version of each uid (by Origin: a replay counts at its original position) is
// what the database and the service's cache must hold. While it runs, a reader
// checks that no answer of the service ever shows an order at a version older
// than one it showed before. VERSIONS_OPS sets the number of operations
// (default 500), FAULTS_SEED the seed.
func TestVersionsRandomInterleavings(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "versions", brokers, durableDB(t))
	f.extraEnv = append(f.extraEnv, "ORDERS_API_TOKEN="+apiToken, "ORDERS_API_APPLY_WAIT=5s")
	seed := suiteSeed(t) + 12
	rng := rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d))
	g := ordersgen.New(seed)
	ops := testkit.EnvInt(t, "VERSIONS_OPS", 500, 10)
	t.Logf("seed %d, %d operations", seed, ops)

	uids := make([]string, 20)
	for i := range uids {
		uids[i] = fmt.Sprintf("ver%03d-%d", i, seed%100000)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(f.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	send := func(r *kgo.Record) *kgo.Record {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	body := func(uid string) []byte {
		o := g.Order()
		o.OrderUID, o.Payment.Transaction = uid, uid
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	var svc atomic.Pointer[testenv.Service]
	svc.Store(f.start())
	mon := newMonotonic()
	stopReader := mon.run(&svc, uids)

	sent := map[string][]*kgo.Record{} // uid -> its order records, for replays
	count := map[string]int{}
	for i := range ops {
		if i == ops/2 {
			if err := svc.Load().Kill(); err != nil {
				t.Fatal(err)
			}
			svc.Store(f.start())
			count["kill"]++
		}
		uid := uids[rng.IntN(len(uids))]
		switch r := rng.Float64(); {
		case r < 0.35:
			rec := send(&kgo.Record{Key: []byte(uid), Value: body(uid)})
			sent[uid] = append(sent[uid], rec)
			count["kafka"]++
		case r < 0.45:
			send(&kgo.Record{Key: []byte(uid)})
			count["tombstone"]++
		case r < 0.60 && len(sent[uid]) > 0:
			old := sent[uid][rng.IntN(len(sent[uid]))]
			send(&kgo.Record{Key: old.Key, Value: old.Value, Headers: []kgo.RecordHeader{
				{Key: kafkaedge.HeaderSourceTopic, Value: []byte(f.topic)},
				{Key: kafkaedge.HeaderSourcePartition, Value: []byte(strconv.Itoa(int(old.Partition)))},
				{Key: kafkaedge.HeaderSourceOffset, Value: []byte(strconv.FormatInt(old.Offset, 10))},
				{Key: kafkaedge.HeaderSourceTimestamp, Value: []byte(strconv.FormatInt(old.Timestamp.UnixMilli(), 10))},
				{Key: kafkaedge.HeaderReplayedFrom, Value: []byte("test")},
			}})
			count["replay"]++
		case r < 0.85:
			status, _ := write(t, svc.Load(), uid, body(uid))
			if status != 200 && status != 202 {
				t.Fatalf("PUT %s: %d", uid, status)
			}
			count[fmt.Sprintf("put_%d", status)]++
		default:
			status, _ := write(t, svc.Load(), uid, nil)
			if status != 204 && status != 202 && status != 404 {
				t.Fatalf("DELETE %s: %d", uid, status)
			}
			count[fmt.Sprintf("delete_%d", status)]++
		}
	}
	t.Logf("operations: %v", count)
	f.waitLagZero(caseLimit, svc.Load())
	want := f.newestVersions(uids)
	f.checkVersions(t, svc.Load(), want, "after the run")

	// Everything once more, from the start: nothing may go back.
	stop(t, svc.Load())
	f.group += "-again"
	svc.Store(f.start())
	f.waitLagZero(caseLimit, svc.Load())
	f.checkVersions(t, svc.Load(), want, "after a full redelivery")
	stopReader()
	if n, bad := mon.result(); bad != "" {
		t.Errorf("an answer went back to an older version (%d reads): %s", n, bad)
	} else {
		t.Logf("monotonic reads: %d answers, none older than one before", n)
	}
	stop(t, svc.Load())
}

// newest is the newest version of an order in the topic: its position and,
// unless deleted, its track number.
type newest struct {
	version orders.Version
	deleted bool
	track   string
}

// newestVersions reads the orders topic and returns, per uid, its newest
// version by Origin (a replayed record counts at its x-source-* position).
func (f *fixture) newestVersions(uids []string) map[string]newest {
	f.t.Helper()
	out := map[string]newest{}
	for _, r := range testenv.KafkaReadAll(f.t, f.brokers, f.topic, 500*time.Millisecond) {
		rec := kafkaedge.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kafkaedge.Header{Key: h.Key, Value: h.Value})
		}
		p, o, ts := rec.Origin()
		n := newest{version: orders.Version{Partition: p, Offset: o, Time: ts.UnixMilli()}, deleted: r.Value == nil}
		if !n.deleted {
			var ord orders.Order
			if err := json.Unmarshal(r.Value, &ord); err != nil {
				f.t.Fatalf("record %d/%d does not decode: %v", r.Partition, r.Offset, err)
			}
			n.track = ord.TrackNumber
		}
		uid := string(r.Key)
		if cur, ok := out[uid]; !ok || n.version.Newer(cur.version) {
			out[uid] = n
		}
	}
	if len(out) == 0 || len(out) > len(uids) {
		f.t.Fatalf("the topic holds %d uids, want 1..%d", len(out), len(uids))
	}
	return out
}

// checkVersions compares the database (orders and tombstones) and the
// service's answers (the second read of each uid comes from its cache) with want.
func (f *fixture) checkVersions(t *testing.T, s *testenv.Service, want map[string]newest, when string) {
	t.Helper()
	type row struct {
		part    int32
		off     int64
		track   string
		deleted bool
	}
	rows := map[string]row{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := f.query(ctx, func(c *pgx.Conn) error {
		rs, err := c.Query(ctx, `SELECT order_uid, source_partition, source_offset, track_number, false FROM orders
			UNION ALL SELECT t.order_uid, t.source_partition, t.source_offset, '', true FROM order_tombstones t
			WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_uid = t.order_uid)`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var uid string
			var r row
			if err := rs.Scan(&uid, &r.part, &r.off, &r.track, &r.deleted); err != nil {
				return err
			}
			rows[uid] = r
		}
		return rs.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for uid, w := range want {
		r, ok := rows[uid]
		if !ok || r.part != w.version.Partition || r.off != w.version.Offset || r.deleted != w.deleted || r.track != w.track {
			bad++
			t.Errorf("%s: database has %+v (present %v), want version %s deleted %v track %q", when, r, ok, w.version, w.deleted, w.track)
			continue
		}
		for read := range 2 {
			status, version, cache := getOrder(s, uid)
			switch {
			case w.deleted && status != 404:
				t.Errorf("%s: GET %s (read %d, cache %s): %d version %s, want 404 (deleted at %s)", when, uid, read, cache, status, version, w.version)
				bad++
			case !w.deleted && (status != 200 || version != w.version.String()):
				t.Errorf("%s: GET %s (read %d, cache %s): %d version %s, want 200 at %s", when, uid, read, cache, status, version, w.version)
				bad++
			case !w.deleted && read == 1 && cache != "hit":
				t.Errorf("%s: second GET %s not from the cache: %s", when, uid, cache)
			}
		}
	}
	t.Logf("%s: %d uids checked in the database and the cache, %d wrong", when, len(want), bad)
}

// getOrder reads one order: status, X-Order-Version and X-Cache.
func getOrder(s *testenv.Service, uid string) (int, string, string) {
	resp, err := http.Get(s.URL("/api/v1/orders/" + uid)) //nolint:noctx // test reads
	if err != nil {
		return 0, "", ""
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Order-Version"), resp.Header.Get("X-Cache")
}

// monotonic reads the service continuously and records, per uid, the newest
// version an answer showed; an answer older than that is a violation.
type monotonic struct {
	mu    sync.Mutex
	seen  map[string]orders.Version
	reads int
	bad   string
}

func newMonotonic() *monotonic { return &monotonic{seen: map[string]orders.Version{}} }

func (m *monotonic) run(svc *atomic.Pointer[testenv.Service], uids []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			uid := uids[i%len(uids)]
			status, version, _ := getOrder(svc.Load(), uid)
			if status != 200 {
				if status == 0 || errors.Is(ctx.Err(), context.Canceled) {
					time.Sleep(5 * time.Millisecond) // between processes
				}
				continue
			}
			v, err := orders.ParseVersion(version)
			m.mu.Lock()
			m.reads++
			switch {
			case err != nil:
				if m.bad == "" {
					m.bad = fmt.Sprintf("%s answered without a valid X-Order-Version: %q", uid, version)
				}
			case v.Compare(m.seen[uid]) < 0 && v.Partition == m.seen[uid].Partition:
				if m.bad == "" {
					m.bad = fmt.Sprintf("%s answered at %s after %s", uid, v, m.seen[uid])
				}
			default:
				m.seen[uid] = v
			}
			m.mu.Unlock()
		}
	}()
	return func() { cancel(); <-done }
}

func (m *monotonic) result() (int, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads, m.bad
}
