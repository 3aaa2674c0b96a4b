package orderscache_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// counting wraps the real database store and counts its Get calls. When gate is
// set, each Get reads the database and then waits for gate to close before it
// returns, signalling entered first: a slow database answer.
type counting struct {
	orders.Store
	gets    atomic.Int64
	gate    chan struct{}
	entered chan struct{}
}

func (c *counting) Get(ctx context.Context, uid string) (orders.Order, error) {
	c.gets.Add(1)
	o, err := c.Store.Get(ctx, uid)
	if c.gate != nil {
		select {
		case c.entered <- struct{}{}:
		default:
		}
		<-c.gate
	}
	return o, err
}

// newStore returns a cached store over a counting wrapper of a real ordersdb store
// on a fresh database.
func newStore(t testing.TB, opts orderscache.Options) (*orderscache.Store, *counting) {
	t.Helper()
	db := &counting{Store: dbtest.New(t, dbtest.Pool(8)).Store}
	return orderscache.NewStore(db, orderscache.New(64<<20), opts), db
}

// record wraps o as a Kafka version at offset off of partition 0.
func record(o orders.Order, off int64) orders.Record {
	return orders.Record{Order: o, Source: orders.Source{Partition: 0, Offset: off}}
}

// sameOrderJSON fails unless a and b encode the same order.
func sameOrderJSON(t *testing.T, a, b []byte) {
	t.Helper()
	if !testkit.SameJSON(t, a, b) {
		t.Fatalf("orders differ:\n%s\n%s", a, b)
	}
}

func mustJSON(t *testing.T, o orders.Order) []byte {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContract runs the shared store suite against the cached store.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orders.Store {
		db := dbtest.New(t, dbtest.Pool(8)).Store
		return orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	})
}

func TestReadThroughSingleFlight(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	o := ordersgen.New(1).Order()
	// written to the database only, so the cache misses it
	if _, err := db.Store.UpsertBatch(ctx, []orders.Record{record(o, 1)}); err != nil {
		t.Fatal(err)
	}
	db.gate, db.entered = make(chan struct{}), make(chan struct{}, 1)

	const n = 32
	var ready, done sync.WaitGroup
	bodies := make([][]byte, n)
	errs := make([]error, n)
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			bodies[i], _, errs[i] = s.GetJSON(ctx, o.OrderUID)
		})
	}
	ready.Wait()
	<-db.entered // one load is in the database; the others join it or find its result
	close(db.gate)
	done.Wait()

	if got := db.gets.Load(); got != 1 {
		t.Fatalf("database Get called %d times for %d concurrent misses, want 1", got, n)
	}
	want := mustJSON(t, o)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		sameOrderJSON(t, bodies[i], want)
	}
	st := s.Cache().Stats()
	if st.Hits+st.Misses != n || st.Misses == 0 {
		t.Fatalf("stats %+v: want %d lookups, at least one miss", st, n)
	}
	body, hit, err := s.GetJSON(ctx, o.OrderUID)
	if err != nil || !hit {
		t.Fatalf("after the load: hit=%v err=%v, want a hit", hit, err)
	}
	sameOrderJSON(t, body, want)
	if db.gets.Load() != 1 {
		t.Fatal("a hit reached the database")
	}
}

// TestWriteDuringLoadWins: a Put that commits while a read-through holds the older
// version must not be overwritten by that read's result.
func TestWriteDuringLoadWins(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	old := ordersgen.New(2).Order()
	if _, err := db.Store.UpsertBatch(ctx, []orders.Record{record(old, 1)}); err != nil {
		t.Fatal(err)
	}
	db.gate, db.entered = make(chan struct{}), make(chan struct{}, 1)
	type result struct {
		body []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		body, _, err := s.GetJSON(ctx, old.OrderUID)
		res <- result{body, err}
	}()
	<-db.entered // the read-through has read the old version and waits

	updated := old
	updated.TrackNumber = "WBUPDATEDTRACK"
	putErr := s.Put(ctx, updated)
	close(db.gate)
	r := <-res
	if putErr != nil {
		t.Fatal(putErr)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := mustJSON(t, updated)
	sameOrderJSON(t, r.body, want)
	body, hit, err := s.GetJSON(ctx, old.OrderUID)
	if err != nil || !hit {
		t.Fatalf("after the race: hit=%v err=%v", hit, err)
	}
	sameOrderJSON(t, body, want)
}

func TestNegativeCache(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	const uid = "no-such-order"
	for range 5 {
		if _, _, err := s.GetJSON(ctx, uid); !errors.Is(err, orders.ErrNotFound) {
			t.Fatalf("GetJSON(unknown) = %v, want ErrNotFound", err)
		}
	}
	if got := db.gets.Load(); got != 1 {
		t.Fatalf("database Get called %d times for 5 lookups of an unknown uid, want 1", got)
	}

	// a committed write clears the negative entry at once
	o := ordersgen.New(3).Order()
	o.OrderUID, o.Payment.Transaction = uid, uid
	if _, err := s.UpsertBatch(ctx, []orders.Record{record(o, 7)}); err != nil {
		t.Fatal(err)
	}
	body, hit, err := s.GetJSON(ctx, uid)
	if err != nil || !hit {
		t.Fatalf("after upsert: hit=%v err=%v, want a hit", hit, err)
	}
	sameOrderJSON(t, body, mustJSON(t, o))

	// a delete remembers the uid as missing: no database read
	if err := s.Delete(ctx, uid); err != nil {
		t.Fatal(err)
	}
	before := db.gets.Load()
	if _, _, err := s.GetJSON(ctx, uid); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
	if db.gets.Load() != before {
		t.Fatal("a lookup of a just-deleted uid reached the database")
	}

	// Put clears it too
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	if _, hit, err := s.GetJSON(ctx, uid); err != nil || !hit {
		t.Fatalf("after put: hit=%v err=%v, want a hit", hit, err)
	}
}

func TestNegativeCacheDisabled(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{NegativeTTL: -1})
	for range 3 {
		if _, _, err := s.GetJSON(ctx, "unknown"); !errors.Is(err, orders.ErrNotFound) {
			t.Fatalf("GetJSON(unknown) = %v, want ErrNotFound", err)
		}
	}
	if got := db.gets.Load(); got != 3 {
		t.Fatalf("database Get called %d times, want 3 with the negative cache disabled", got)
	}
}

func TestInvalidUIDSkipsDatabase(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	for _, uid := range []string{"", "has space", "semi;colon", string(make([]byte, 65))} {
		if _, _, err := s.GetJSON(context.Background(), uid); !errors.Is(err, orders.ErrInvalidUID) {
			t.Errorf("GetJSON(%q) = %v, want ErrInvalidUID", uid, err)
		}
	}
	if db.gets.Load() != 0 {
		t.Fatal("an invalid uid reached the database")
	}
}

func TestDatabaseDown(t *testing.T) {
	ctx := context.Background()
	cluster := testenv.NewCluster(t, testenv.ClusterOptions{})
	db := &counting{Store: dbtest.New(t, dbtest.On(cluster), dbtest.Pool(8)).Store}
	s := orderscache.NewStore(db, orderscache.New(1<<20), orderscache.Options{})
	cached := ordersgen.New(4).Order()
	if _, err := s.UpsertBatch(ctx, []orders.Record{record(cached, 1)}); err != nil {
		t.Fatal(err)
	}

	if err := cluster.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.GetJSON(ctx, "not-cached")
	if err == nil || errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("GetJSON with the database down = %v, want a database error", err)
	}
	// the cache still answers what it holds
	body, hit, err := s.GetJSON(ctx, cached.OrderUID)
	if err != nil || !hit {
		t.Fatalf("cached order with the database down: hit=%v err=%v", hit, err)
	}
	sameOrderJSON(t, body, mustJSON(t, cached))
	// a failed read is not remembered as missing
	if _, _, err := s.GetJSON(ctx, "not-cached"); err == nil || errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("second GetJSON = %v, want a database error again", err)
	}
}

// TestDatabaseHangsTimeout points the store at a server that accepts connections
// and never answers: the read-through must give up with an error (Options.DBTimeout)
// instead of waiting for the caller's unbounded context.
func TestDatabaseHangsTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex
	var accepted []net.Conn
	conns.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c) // held open, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range accepted {
			_ = c.Close()
		}
		mu.Unlock()
	})
	dsn := fmt.Sprintf("postgres://postgres@%s/blackhole?sslmode=disable", l.Addr())
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	t.Cleanup(func() { _ = sqldb.Close() })
	db := ordersdb.New(bun.NewDB(sqldb, pgdialect.New()))
	s := orderscache.NewStore(db, orderscache.New(1<<20), orderscache.Options{DBTimeout: 200 * time.Millisecond})
	_, _, err = s.GetJSON(context.Background(), "some-order")
	if err == nil || errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("GetJSON against a hung database = %v, want an error", err)
	}
}

func TestFillKeepsTheStoredVersion(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(5)
	a, b := g.Order(), g.Order()
	a2 := a
	a2.TrackNumber = "WBNEWERVERSION"
	a0 := a
	a0.TrackNumber = "WBOLDERVERSION"
	// a at offsets 10 (a2, newest), 5 (a0) and 3 (a): the store keeps offset 10
	recs := []orders.Record{record(a, 3), record(b, 4), record(a2, 10), record(a0, 5)}
	applied, err := s.UpsertBatch(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 2 {
		t.Fatalf("applied %v, want both uids", applied)
	}
	for _, want := range []orders.Order{a2, b} {
		body, hit, err := s.GetJSON(ctx, want.OrderUID)
		if err != nil || !hit {
			t.Fatalf("%s: hit=%v err=%v, want a hit after UpsertBatch", want.OrderUID, hit, err)
		}
		sameOrderJSON(t, body, mustJSON(t, want))
		// the cached version is the one the database returns
		stored, err := db.Store.Get(ctx, want.OrderUID)
		if err != nil {
			t.Fatal(err)
		}
		sameOrderJSON(t, body, mustJSON(t, stored))
	}

	// a replayed older version is not applied, so the cache keeps the newer one
	applied, err = s.UpsertBatch(ctx, []orders.Record{record(a0, 5)})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Fatalf("replay applied %v", applied)
	}
	body, _, err := s.GetJSON(ctx, a.OrderUID)
	if err != nil {
		t.Fatal(err)
	}
	sameOrderJSON(t, body, mustJSON(t, a2))
}

// TestCachedEqualsDatabaseForm: a hit answers the same JSON as a read-through,
// also for a date_created with an offset and sub-microsecond digits.
func TestCachedEqualsDatabaseForm(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(11)
	a, b := g.Order(), g.Order()
	a.DateCreated = time.Date(2024, 3, 1, 23, 59, 58, 123456789, time.FixedZone("IDT", 3*3600))
	b.DateCreated = time.Date(2024, 3, 1, 23, 59, 58, 999999999, time.FixedZone("W", -5*3600))
	if _, err := s.UpsertBatch(ctx, []orders.Record{record(a, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, o := range []orders.Order{a, b} {
		hitBody, hit, err := s.GetJSON(ctx, o.OrderUID)
		if err != nil || !hit {
			t.Fatalf("hit=%v err=%v", hit, err)
		}
		s.Cache().Invalidate(o.OrderUID)
		missBody, hit, err := s.GetJSON(ctx, o.OrderUID)
		if err != nil || hit {
			t.Fatalf("after Invalidate: hit=%v err=%v, want a read-through", hit, err)
		}
		sameOrderJSON(t, hitBody, missBody)
	}
	if db.gets.Load() != 2 {
		t.Fatalf("database Get called %d times, want 2", db.gets.Load())
	}
}

func TestFillForPipeline(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	o := ordersgen.New(6).Order()
	if _, _, err := s.GetJSON(ctx, o.OrderUID); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("before the write: %v, want ErrNotFound", err)
	}
	// the pipeline writes through the database store and fills the cache after commit
	recs := []orders.Record{record(o, 1)}
	applied, err := db.Store.UpsertBatch(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	s.Fill(recs, applied)
	body, hit, err := s.GetJSON(ctx, o.OrderUID)
	if err != nil || !hit {
		t.Fatalf("after Fill: hit=%v err=%v, want a hit (negative entry cleared)", hit, err)
	}
	sameOrderJSON(t, body, mustJSON(t, o))
}

func TestPutAndDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, orderscache.Options{})
	o := ordersgen.New(7).Order()
	if _, err := s.UpsertBatch(ctx, []orders.Record{record(o, 1)}); err != nil {
		t.Fatal(err)
	}
	o.Delivery.City = "Haifa"
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, o.OrderUID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Delivery.City != "Haifa" {
		t.Fatalf("Get after Put: city %q", got.Delivery.City)
	}
	if err := s.Delete(ctx, o.OrderUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, o.OrderUID); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, o.OrderUID); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("second Delete = %v, want ErrNotFound", err)
	}
}

func TestWarmup(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t, dbtest.Pool(8)).Store
	g := ordersgen.New(8)
	const n = 60
	recs := make([]orders.Record, n)
	for i := range recs {
		recs[i] = record(g.Order(), int64(i))
	}
	if _, err := db.UpsertBatch(ctx, recs); err != nil {
		t.Fatal(err)
	}
	page, err := db.List(ctx, n, "")
	if err != nil || len(page.Orders) != n {
		t.Fatalf("list: %d orders, %v", len(page.Orders), err)
	}
	// a bound that holds about a third of them
	var weights []int64
	var all int64
	for _, o := range page.Orders {
		w := int64(orderscache.Weight(o.OrderUID, mustJSON(t, o)))
		weights = append(weights, w)
		all += w
	}
	bound := all / 3
	fit, sum := 0, int64(0)
	for _, w := range weights {
		if sum+w > bound {
			break
		}
		sum += w
		fit++
	}

	c := orderscache.New(bound)
	s := orderscache.NewStore(db, c, orderscache.Options{})
	loaded, err := s.Warmup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if loaded != fit {
		t.Fatalf("Warmup loaded %d, want the %d newest that fit in %d bytes", loaded, fit, bound)
	}
	for i, o := range page.Orders {
		body, ok := c.Get(o.OrderUID)
		if i < fit {
			if !ok {
				t.Fatalf("newest order #%d not cached", i)
			}
			sameOrderJSON(t, body, mustJSON(t, o))
		} else if ok {
			t.Fatalf("order #%d cached beyond the bound", i)
		}
	}

	// a bound larger than everything loads everything
	s2 := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	if loaded, err := s2.Warmup(ctx); err != nil || loaded != n {
		t.Fatalf("Warmup = %d, %v, want %d", loaded, err, n)
	}
}

func BenchmarkGetJSONHit(b *testing.B) {
	ctx := context.Background()
	db := dbtest.New(b, dbtest.Pool(8)).Store
	s := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	g := ordersgen.New(9)
	const keys = 1024
	uids := make([]string, keys)
	recs := make([]orders.Record, keys)
	for i := range recs {
		recs[i] = record(g.Order(), int64(i))
		uids[i] = recs[i].Order.OrderUID
	}
	applied := make([]string, keys)
	copy(applied, uids)
	s.Fill(recs, applied) // cache only: hits never reach the database
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			body, hit, err := s.GetJSON(ctx, uids[i&(keys-1)])
			if err != nil || !hit || len(body) == 0 {
				b.Fatalf("GetJSON: hit=%v err=%v", hit, err)
			}
			i++
		}
	})
}

func BenchmarkCacheGetHit(b *testing.B) {
	c := orderscache.New(64 << 20)
	g := ordersgen.New(10)
	const keys = 1024
	uids := make([]string, keys)
	for i := range uids {
		o := g.Order()
		if err := c.SetOrder(&o); err != nil {
			b.Fatal(err)
		}
		uids[i] = o.OrderUID
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(uids[i&(keys-1)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}
