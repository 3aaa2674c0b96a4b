package orderscache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit"
)

// newStore returns a cached store over a fresh fake database.
func newStore(t testing.TB, opts orderscache.Options) (*orderscache.Store, *fakeStore) {
	t.Helper()
	db := newFakeStore()
	return orderscache.NewStore(db, orderscache.New(64<<20), opts), db
}

// at returns the version at offset off of partition 0.
func at(off int64) orders.Version {
	return orders.Version{Partition: 0, Offset: off, Time: 1_700_000_000_000 + off}
}

// rec is o as the version at offset off of partition 0.
func rec(o orders.Order, off int64) orders.Record {
	return orders.Record{Order: o, Version: at(off)}
}

// tomb is the tombstone of uid at offset off of partition 0.
func tomb(uid string, off int64) orders.Record {
	return orders.Record{Order: orders.Order{OrderUID: uid}, Version: at(off), Deleted: true}
}

func apply(t testing.TB, s orders.Store, recs ...orders.Record) []orders.Stored {
	t.Helper()
	stored, err := s.ApplyBatch(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func mustJSON(t testing.TB, o orders.Order) []byte {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameOrderJSON fails unless a and b encode the same order.
func sameOrderJSON(t *testing.T, a, b []byte) {
	t.Helper()
	if !testkit.SameJSON(t, a, b) {
		t.Fatalf("orders differ:\n%s\n%s", a, b)
	}
}

// wantEntry fails unless GetJSON(uid) answers o at version v, as a hit or not.
func wantEntry(t *testing.T, s *orderscache.Store, o orders.Order, v orders.Version, hit bool) *orderscache.Entry {
	t.Helper()
	e, gotHit, err := s.GetJSON(context.Background(), o.OrderUID)
	if err != nil {
		t.Fatalf("GetJSON(%s): %v", o.OrderUID, err)
	}
	if gotHit != hit {
		t.Fatalf("GetJSON(%s): hit=%v, want %v", o.OrderUID, gotHit, hit)
	}
	if e.Version != v || e.Deleted {
		t.Fatalf("GetJSON(%s): version %+v deleted=%v, want %+v", o.OrderUID, e.Version, e.Deleted, v)
	}
	sameOrderJSON(t, e.Body, mustJSON(t, o))
	if want := `"` + v.String() + `"`; string(e.ETag) != want {
		t.Fatalf("ETag %s, want %s", e.ETag, want)
	}
	return e
}

// wantNotFound fails unless uid reads as not found at tombstone version v (zero:
// unknown) through both GetJSON and Get.
func wantNotFound(t *testing.T, s *orderscache.Store, uid string, v orders.Version) {
	t.Helper()
	if e, _, err := s.GetJSON(context.Background(), uid); !errors.Is(err, orders.ErrNotFound) || e != nil {
		t.Fatalf("GetJSON(%s) = %+v, %v; want ErrNotFound", uid, e, err)
	}
	if _, got, err := s.Get(context.Background(), uid); !errors.Is(err, orders.ErrNotFound) || got != v {
		t.Fatalf("Get(%s) = version %+v, %v; want ErrNotFound at %+v", uid, got, err, v)
	}
}

// blockGets makes db's Gets of uid (all uids if "") wait, once they have read
// the database, until the returned release is called; each Get that waits first
// sends its uid on entered.
func blockGets(db *fakeStore, uid string) (entered <-chan string, release func()) {
	in := make(chan string, 64)
	gate := make(chan struct{})
	db.setHooks(fakeHooks{afterGet: func(ctx context.Context, u string) error {
		if uid != "" && u != uid {
			return nil
		}
		in <- u
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	var once sync.Once
	return in, func() { once.Do(func() { close(gate) }) }
}

func TestEntryOfAnOrder(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	o := ordersgen.New(1).Order()
	// date_created with an offset and nanoseconds: the cached JSON is the stored form
	o.DateCreated = time.Date(2024, 3, 1, 23, 59, 58, 123456789, time.FixedZone("IDT", 3*3600))
	v := orders.Version{Partition: 0, Offset: 1045, Time: 1_700_000_000_000}
	stored := apply(t, s, orders.Record{Order: o, Version: v})
	if len(stored) != 1 || stored[0].Version != v || !stored[0].Changed {
		t.Fatalf("stored %+v", stored)
	}
	dbForm := o
	dbForm.DateCreated = o.DateCreated.UTC().Truncate(time.Microsecond)
	hit := wantEntry(t, s, dbForm, v, true)
	if string(hit.ETag) != `"0.1045"` {
		t.Fatalf("ETag %s", hit.ETag)
	}
	if db.gets.Load() != 0 {
		t.Fatal("a hit reached the database")
	}
	// a read-through answers the same entry
	s.Invalidate(o.OrderUID)
	miss := wantEntry(t, s, dbForm, v, false)
	if !bytes.Equal(miss.Body, hit.Body) || !bytes.Equal(miss.ETag, hit.ETag) {
		t.Fatalf("read-through entry differs from the filled one:\n%s %s\n%s %s", miss.ETag, miss.Body, hit.ETag, hit.Body)
	}
	got, gotV, err := s.Get(context.Background(), o.OrderUID)
	if err != nil || gotV != v || !got.DateCreated.Equal(o.DateCreated.Truncate(time.Microsecond)) || got.OrderUID != o.OrderUID {
		t.Fatalf("Get = %+v, %+v, %v", got, gotV, err)
	}
}

func TestLegacyVersionETag(t *testing.T) {
	s, _ := newStore(t, orderscache.Options{})
	g := ordersgen.New(2)
	a, b := g.Order(), g.Order()
	legacy := orders.Version{Partition: -1}
	apply(t, s, orders.Record{Order: a, Version: legacy}, orders.Record{Order: b, Version: legacy})
	ea, _, err := s.GetJSON(context.Background(), a.OrderUID)
	if err != nil {
		t.Fatal(err)
	}
	eb, _, err := s.GetJSON(context.Background(), b.OrderUID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ea.ETag, eb.ETag) || len(ea.ETag) != 18 || bytes.IndexByte(ea.ETag, '.') >= 0 {
		t.Fatalf("legacy ETags %s, %s: want distinct content hashes", ea.ETag, eb.ETag)
	}
}

func TestReadThroughSingleFlight(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	o := ordersgen.New(3).Order()
	apply(t, db, rec(o, 1)) // the database only: the cache misses it
	entered, release := blockGets(db, "")

	const n = 32
	var ready, done sync.WaitGroup
	entries := make([]*orderscache.Entry, n)
	errs := make([]error, n)
	ready.Add(n)
	for i := range n {
		done.Go(func() {
			ready.Done()
			entries[i], _, errs[i] = s.GetJSON(ctx, o.OrderUID)
		})
	}
	ready.Wait()
	<-entered // one load is in the database; the others join it or find its result
	release()
	done.Wait()

	if got := db.gets.Load(); got != 1 {
		t.Fatalf("database Get called %d times for %d concurrent misses, want 1", got, n)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if entries[i] != entries[0] {
			t.Fatalf("caller %d got another entry", i)
		}
	}
	st := s.Cache().Stats()
	if st.Hits+st.Misses != n || st.Misses == 0 {
		t.Fatalf("stats %+v: want %d lookups, at least one miss", st, n)
	}
	wantEntry(t, s, o, at(1), true)
	if db.gets.Load() != 1 {
		t.Fatal("a hit reached the database")
	}
}

// TestWriteDuringLoadWins: a version filled while a read-through holds an older
// one is what the read returns and what stays cached.
func TestWriteDuringLoadWins(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	old := ordersgen.New(4).Order()
	apply(t, db, rec(old, 1))
	entered, release := blockGets(db, old.OrderUID)
	type result struct {
		e   *orderscache.Entry
		err error
	}
	res := make(chan result, 1)
	go func() {
		e, _, err := s.GetJSON(ctx, old.OrderUID)
		res <- result{e, err}
	}()
	<-entered // the read-through has read version 1 and waits

	updated := old
	updated.TrackNumber = "WBUPDATEDTRACK"
	apply(t, s, rec(updated, 2))
	release()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.e.Version != at(2) {
		t.Fatalf("the read returned version %s, want the filled 0.2", r.e.Version)
	}
	sameOrderJSON(t, r.e.Body, mustJSON(t, updated))
	wantEntry(t, s, updated, at(2), true)
}

// TestTombstoneRefusesOlder: a delete leaves a negative entry at its tombstone's
// version, which older versions offered later (a late fill, a read-through that
// read the database before the delete, a warmup page) do not replace.
func TestTombstoneRefusesOlder(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	o := ordersgen.New(5).Order()
	uid := o.OrderUID

	// a read-through reads version 1, then the delete at 2 commits and is filled
	apply(t, db, rec(o, 1))
	entered, release := blockGets(db, uid)
	res := make(chan error, 1)
	go func() {
		_, _, err := s.GetJSON(ctx, uid)
		res <- err
	}()
	<-entered
	apply(t, s, tomb(uid, 2))
	release()
	if err := <-res; !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("read-through overtaken by a delete: %v, want ErrNotFound", err)
	}
	db.setHooks(fakeHooks{})
	gets := db.gets.Load()
	wantNotFound(t, s, uid, at(2))
	if db.gets.Load() != gets {
		t.Fatal("a lookup of a deleted uid reached the database")
	}

	// a late fill of version 1
	s.Fill([]orders.Record{rec(o, 1)}, []orders.Stored{{UID: uid, Version: at(1), Changed: true}})
	wantNotFound(t, s, uid, at(2))

	// a warmup page that still lists version 1
	db.mu.Lock()
	db.rows[uid].deleted, db.rows[uid].order, db.rows[uid].version = false, o, at(1)
	db.mu.Unlock()
	if loaded, err := s.Warmup(ctx); err != nil || loaded != 0 {
		t.Fatalf("Warmup = %d, %v: want the deleted order skipped", loaded, err)
	}
	wantNotFound(t, s, uid, at(2))

	// a newer version replaces the negative entry
	o.TrackNumber = "WBRECREATED"
	apply(t, s, rec(o, 3))
	wantEntry(t, s, o, at(3), true)
}

func TestUnknownUIDNegativeEntry(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{NegativeTTL: 100 * time.Millisecond})
	const uid = "no-such-order"
	for range 5 {
		wantNotFound(t, s, uid, orders.Version{})
	}
	if got := db.gets.Load(); got != 1 {
		t.Fatalf("database Get called %d times for 10 lookups of an unknown uid, want 1", got)
	}
	st := s.Cache().Stats()
	if st.Hits != 0 || st.Misses != 10 || st.NegativeHits != 9 {
		t.Fatalf("stats %+v: want 10 misses, 9 of them negative hits", st)
	}

	// it expires
	time.Sleep(150 * time.Millisecond)
	if _, _, err := s.GetJSON(ctx, uid); !errors.Is(err, orders.ErrNotFound) {
		t.Fatal(err)
	}
	if got := db.gets.Load(); got != 2 {
		t.Fatalf("database Get called %d times, want a second read after the negative TTL", got)
	}

	// any real version replaces it at once, also the first offset of a partition
	// and a legacy one
	g := ordersgen.New(6)
	for _, v := range []orders.Version{{Partition: 0, Offset: 0, Time: 1}, {Partition: -1}, at(9)} {
		o := g.Order()
		if _, _, err := s.GetJSON(ctx, o.OrderUID); !errors.Is(err, orders.ErrNotFound) {
			t.Fatal(err)
		}
		apply(t, s, orders.Record{Order: o, Version: v})
		e, hit, err := s.GetJSON(ctx, o.OrderUID)
		if err != nil || !hit || e.Version != v {
			t.Fatalf("after the write at %+v: %+v hit=%v err=%v", v, e, hit, err)
		}
	}
}

// TestNegativeTTLDisabled: without unknown-uid negative entries every lookup of
// an unknown uid reads the database, but a delete's negative entry is kept.
func TestNegativeTTLDisabled(t *testing.T) {
	s, db := newStore(t, orderscache.Options{NegativeTTL: -1})
	for range 3 {
		wantNotFound(t, s, "unknown", orders.Version{})
	}
	if got := db.gets.Load(); got != 6 {
		t.Fatalf("database Get called %d times, want 6 with the negative entries disabled", got)
	}
	o := ordersgen.New(7).Order()
	apply(t, s, rec(o, 1), tomb(o.OrderUID, 2))
	// a deleted uid read through: its tombstone is kept too
	u := ordersgen.New(8).Order()
	apply(t, db, rec(u, 1), tomb(u.OrderUID, 3))
	before := db.gets.Load()
	wantNotFound(t, s, o.OrderUID, at(2))
	wantNotFound(t, s, u.OrderUID, at(3))
	if got := db.gets.Load() - before; got != 1 {
		t.Fatalf("database Get called %d times for 4 lookups of 2 deleted uids, want 1", got)
	}
}

// TestNegativeLifetimes: a tombstone's negative entry lives at least 2*DBTimeout
// (longer than any database read that started before it), an unknown uid's its
// NegativeTTL; both then expire.
func TestNegativeLifetimes(t *testing.T) {
	const dbTimeout = 150 * time.Millisecond
	s, db := newStore(t, orderscache.Options{DBTimeout: dbTimeout, NegativeTTL: 20 * time.Millisecond})
	o := ordersgen.New(9).Order()
	start := time.Now()
	apply(t, s, rec(o, 1), tomb(o.OrderUID, 2))
	wantNotFound(t, s, "unknown", orders.Version{})
	time.Sleep(60 * time.Millisecond)
	gets := db.gets.Load()
	wantNotFound(t, s, o.OrderUID, at(2))
	if time.Since(start) < 2*dbTimeout && db.gets.Load() != gets {
		t.Fatal("the tombstone's negative entry expired before 2*DBTimeout")
	}
	wantNotFound(t, s, "unknown", orders.Version{})
	if db.gets.Load() == gets {
		t.Fatal("the unknown uid's negative entry outlived its NegativeTTL")
	}
	// it expires after 2*DBTimeout
	deadline := time.Now().Add(5 * time.Second)
	for {
		gets := db.gets.Load()
		wantNotFound(t, s, o.OrderUID, at(2)) // the database keeps the tombstone
		if db.gets.Load() != gets {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tombstone's negative entry never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if time.Since(start) < 2*dbTimeout {
		t.Fatalf("tombstone's negative entry expired after %v, before 2*DBTimeout", time.Since(start))
	}
}

func TestInvalidUIDSkipsDatabase(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	for _, uid := range []string{"", "has space", "semi;colon", string(make([]byte, 65))} {
		if _, _, err := s.GetJSON(context.Background(), uid); !errors.Is(err, orders.ErrInvalidUID) {
			t.Errorf("GetJSON(%q) = %v, want ErrInvalidUID", uid, err)
		}
		if _, _, err := s.Get(context.Background(), uid); !errors.Is(err, orders.ErrInvalidUID) {
			t.Errorf("Get(%q) = %v, want ErrInvalidUID", uid, err)
		}
	}
	if db.gets.Load() != 0 {
		t.Fatal("an invalid uid reached the database")
	}
}

func TestDatabaseDown(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	cached := ordersgen.New(10).Order()
	apply(t, s, rec(cached, 1))
	db.setHooks(fakeHooks{afterGet: func(context.Context, string) error { return errDown }})
	for range 2 { // a failed read is not remembered as missing
		if _, _, err := s.GetJSON(ctx, "not-cached"); !errors.Is(err, errDown) {
			t.Fatalf("GetJSON with the database down = %v, want its error", err)
		}
	}
	if db.gets.Load() != 2 {
		t.Fatalf("database Get called %d times, want 2", db.gets.Load())
	}
	// the cache still answers what it holds
	wantEntry(t, s, cached, at(1), true)
}

// TestDatabaseHangsTimeout: a database that never answers makes the read-through
// give up after Options.DBTimeout instead of waiting for the caller's unbounded
// context.
func TestDatabaseHangsTimeout(t *testing.T) {
	s, db := newStore(t, orderscache.Options{DBTimeout: 100 * time.Millisecond})
	db.setHooks(fakeHooks{afterGet: func(ctx context.Context, _ string) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	start := time.Now()
	_, _, err := s.GetJSON(context.Background(), "some-order")
	if err == nil || errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("GetJSON against a hung database = %v, want an error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("GetJSON took %v", d)
	}
}

// TestFillPicksTheStoredVersion: of several records of a uid, the one at the
// stored version is cached; a replay of older versions keeps the newer entry.
func TestFillPicksTheStoredVersion(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(11)
	a, b := g.Order(), g.Order()
	a2, a0 := a, a
	a2.TrackNumber = "WBNEWERVERSION"
	a0.TrackNumber = "WBOLDERVERSION"
	stored := apply(t, s, rec(a, 3), rec(b, 4), rec(a2, 10), rec(a0, 5))
	if len(stored) != 2 {
		t.Fatalf("stored %+v, want both uids", stored)
	}
	e := wantEntry(t, s, a2, at(10), true)
	wantEntry(t, s, b, at(4), true)

	// a replayed older version: the database keeps 10, which recs do not hold
	stored = apply(t, s, rec(a0, 5))
	if len(stored) != 1 || stored[0].Version != at(10) || stored[0].Changed {
		t.Fatalf("replay stored %+v", stored)
	}
	if got := wantEntry(t, s, a2, at(10), true); got != e {
		t.Fatal("the entry was replaced by an equal version")
	}
	if db.gets.Load() != 0 {
		t.Fatal("the database was read")
	}
}

// TestFillOfAnUnknownVersion: when the database holds a version recs do not, an
// older cached entry is invalidated (the next read loads the stored one), a
// cached entry at that version stays, and an absent one stays absent.
func TestFillOfAnUnknownVersion(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(12)
	a := g.Order()
	apply(t, s, rec(a, 1))
	a3 := a
	a3.TrackNumber = "WBTHIRD"
	apply(t, db, rec(a3, 3)) // another writer; its fill has not come yet
	wantEntry(t, s, a, at(1), true)
	s.Fill([]orders.Record{rec(a, 2)}, []orders.Stored{{UID: a.OrderUID, Version: at(3)}})
	wantEntry(t, s, a3, at(3), false) // read through

	e := wantEntry(t, s, a3, at(3), true)
	s.Fill([]orders.Record{rec(a, 2)}, []orders.Stored{{UID: a.OrderUID, Version: at(3)}})
	if got := wantEntry(t, s, a3, at(3), true); got != e {
		t.Fatal("an entry at the stored version was replaced")
	}

	// absent: nothing cached; a tombstone of a version recs lack
	b := g.Order()
	apply(t, db, tomb(b.OrderUID, 7))
	s.Fill([]orders.Record{rec(b, 2)}, []orders.Stored{{UID: b.OrderUID, Version: at(7), Deleted: true}})
	gets := db.gets.Load()
	wantNotFound(t, s, b.OrderUID, at(7))
	if db.gets.Load() != gets+1 {
		t.Fatal("Fill cached something for an absent uid whose version it did not know")
	}
	// a record at the stored version but the other kind (order vs tombstone)
	// is not taken for it
	c := g.Order()
	apply(t, s, rec(c, 1))
	s.Fill([]orders.Record{rec(c, 4)}, []orders.Stored{{UID: c.OrderUID, Version: at(4), Deleted: true}})
	if e, _ := s.Cache().Get(c.OrderUID); e != nil {
		t.Fatalf("entry %+v cached from a record that is not the stored tombstone", e)
	}
}

// TestApplyBatchErrorInvalidates: a failed write, which may have committed,
// invalidates the cached entries of all its uids.
func TestApplyBatchErrorInvalidates(t *testing.T) {
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(13)
	a, b := g.Order(), g.Order()
	apply(t, s, rec(a, 1))
	wantNotFound(t, s, b.OrderUID, orders.Version{}) // a negative entry
	errCommit := errors.New("connection reset during commit")
	db.setHooks(fakeHooks{applyErr: errCommit, applyAnyway: true})
	a2 := a
	a2.TrackNumber = "WBCOMMITTED"
	if _, err := s.ApplyBatch(context.Background(), []orders.Record{rec(a2, 2), rec(b, 3)}); !errors.Is(err, errCommit) {
		t.Fatalf("ApplyBatch = %v", err)
	}
	db.setHooks(fakeHooks{})
	wantEntry(t, s, a2, at(2), false)
	wantEntry(t, s, b, at(3), false)
}

func TestDelegates(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(14)
	a, b := g.Order(), g.Order()
	apply(t, s, rec(a, 1), rec(b, 2), tomb(b.OrderUID, 3))
	page, err := s.List(ctx, 10, "")
	if err != nil || len(page.Orders) != 1 || page.Orders[0].OrderUID != a.OrderUID || page.Versions[0] != at(1) {
		t.Fatalf("List = %+v, %v", page, err)
	}
	if _, err := s.List(ctx, 10, "not-a-cursor"); !errors.Is(err, orders.ErrInvalidCursor) {
		t.Fatalf("List(bad cursor) = %v", err)
	}
	if db.lists.Load() != 2 {
		t.Fatal("List did not reach the database")
	}
	var purged []string
	n, err := s.PurgeTombstones(ctx, time.Now().Add(time.Second), func(uids []string) { purged = append(purged, uids...) })
	if err != nil || n != 1 || len(purged) != 1 || purged[0] != b.OrderUID {
		t.Fatalf("PurgeTombstones = %d, %v, purged %v", n, err, purged)
	}
	// the negative entry went with the tombstone: the delete is forgotten
	wantNotFound(t, s, b.OrderUID, orders.Version{})
}

func TestWarmup(t *testing.T) {
	ctx := context.Background()
	db := newFakeStore()
	g := ordersgen.New(15)
	const n = 60
	recs := make([]orders.Record, n)
	for i := range recs {
		recs[i] = rec(g.Order(), int64(i+1))
	}
	apply(t, db, recs...)
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
		e, ok := c.Get(o.OrderUID)
		if i < fit {
			if !ok || e.Version != page.Versions[i] {
				t.Fatalf("newest order #%d: %+v, %v", i, e, ok)
			}
			sameOrderJSON(t, e.Body, mustJSON(t, o))
		} else if ok {
			t.Fatalf("order #%d cached beyond the bound", i)
		}
	}

	// a bound larger than everything loads everything; newer cached entries stay
	s2 := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	newer := page.Orders[5]
	newer.TrackNumber = "WBNEWER"
	s2.Fill([]orders.Record{rec(newer, 1000)}, []orders.Stored{{UID: newer.OrderUID, Version: at(1000)}})
	if loaded, err := s2.Warmup(ctx); err != nil || loaded != n {
		t.Fatalf("Warmup = %d, %v, want %d", loaded, err, n)
	}
	e, _ := s2.Cache().Get(newer.OrderUID)
	if e.Version != at(1000) {
		t.Fatalf("Warmup replaced version 0.1000 with %s", e.Version)
	}
}

// TestWarmupPageTimeout: each page read is bounded by DBTimeout.
func TestWarmupPageTimeout(t *testing.T) {
	s, db := newStore(t, orderscache.Options{DBTimeout: 100 * time.Millisecond})
	apply(t, db, rec(ordersgen.New(16).Order(), 1))
	db.setHooks(fakeHooks{afterList: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	start := time.Now()
	if _, err := s.Warmup(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Warmup over a hung listing = %v, want the page's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Warmup took %v", d)
	}
}

// TestWarmupAfterRemoval: a page read before a write is not offered for a uid
// that the write stored at a newer version or invalidated, even when the newer
// entry has left the cache by the time the page is processed.
func TestWarmupAfterRemoval(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{})
	g := ordersgen.New(17)
	updated, deleted, invalidated, untouched := g.Order(), g.Order(), g.Order(), g.Order()
	apply(t, db, rec(updated, 1), rec(deleted, 2), rec(invalidated, 3), rec(untouched, 4))

	listed, release := make(chan struct{}), make(chan struct{})
	db.setHooks(fakeHooks{afterList: func(ctx context.Context) error {
		close(listed)
		<-release
		return nil
	}})
	res := make(chan error, 1)
	go func() {
		_, err := s.Warmup(ctx)
		res <- err
	}()
	<-listed // the page holds versions 1..4
	db.setHooks(fakeHooks{})
	u2 := updated
	u2.TrackNumber = "WBUPDATED"
	apply(t, s, rec(u2, 5), tomb(deleted.OrderUID, 6))
	s.Invalidate(updated.OrderUID, deleted.OrderUID, invalidated.OrderUID) // or evicted
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	for _, uid := range []string{updated.OrderUID, deleted.OrderUID, invalidated.OrderUID} {
		if e, ok := s.Cache().Get(uid); ok {
			t.Fatalf("%s: warmup cached version %s (deleted=%v) from a page older than a write", uid, e.Version, e.Deleted)
		}
	}
	wantEntry(t, s, untouched, at(4), true)
	wantEntry(t, s, u2, at(5), false)
	wantNotFound(t, s, deleted.OrderUID, at(6))
	wantEntry(t, s, invalidated, at(3), false)
}

func BenchmarkGetJSONHit(b *testing.B) {
	ctx := context.Background()
	s, _ := newStore(b, orderscache.Options{})
	g := ordersgen.New(9)
	const keys = 1024
	uids := make([]string, keys)
	recs := make([]orders.Record, keys)
	for i := range recs {
		recs[i] = rec(g.Order(), int64(i+1))
		uids[i] = recs[i].Order.OrderUID
	}
	apply(b, s, recs...) // cached: hits never reach the database
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e, hit, err := s.GetJSON(ctx, uids[i&(keys-1)])
			if err != nil || !hit || len(e.Body) == 0 {
				b.Fatalf("GetJSON: hit=%v err=%v", hit, err)
			}
			i++
		}
	})
}

// TestGetJSONOwnsTheKeysItKeeps: the HTTP handler passes a uid that points into
// the request's buffer, which fasthttp reuses for the next request. A lookup
// that misses keeps the uid as the key of the entry it loads, so it must keep a
// copy: after the buffer is overwritten, the order (and the unknown uid's
// negative entry) must still be found under its own uid, without a second read.
func TestGetJSONOwnsTheKeysItKeeps(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{NegativeTTL: time.Minute})
	o := ordersgen.New(7).Order()
	apply(t, db, rec(o, 1))
	for _, uid := range []string{o.OrderUID, "no-such-order-1"} {
		buf := []byte(uid)
		transient := unsafe.String(&buf[0], len(buf))
		_, _, err := s.GetJSON(ctx, transient)
		if err != nil && !errors.Is(err, orders.ErrNotFound) {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 'z' // the next request's bytes
		}
		gets := db.gets.Load()
		_, hit, err := s.GetJSON(ctx, uid)
		if err != nil && !errors.Is(err, orders.ErrNotFound) {
			t.Fatal(err)
		}
		if db.gets.Load() != gets || (uid == o.OrderUID && !hit) {
			t.Fatalf("%s: not found in the cache after the caller's buffer was reused (hit=%v, database reads %d -> %d)",
				uid, hit, gets, db.gets.Load())
		}
	}
}
