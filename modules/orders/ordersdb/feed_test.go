package ordersdb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// feedRecorder is a FeedHandler that records what it receives.
type feedRecorder struct {
	mu      sync.Mutex
	changes []orders.Change
	floors  []int64
	resets  int
	wake    chan struct{}
}

func newFeedRecorder() *feedRecorder { return &feedRecorder{wake: make(chan struct{}, 1)} }

func (r *feedRecorder) Changes(c []orders.Change, floor int64) {
	r.mu.Lock()
	r.changes = append(r.changes, c...)
	r.floors = append(r.floors, floor)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *feedRecorder) Reset() {
	r.mu.Lock()
	r.resets++
	r.mu.Unlock()
}

// byUID returns the changes received per uid, in order.
func (r *feedRecorder) byUID() map[string][]orders.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]orders.Change{}
	for _, c := range r.changes {
		out[c.UID] = append(out[c.UID], c)
	}
	return out
}

// waitFor waits until cond holds on the recorder, at most 10 s.
func (r *feedRecorder) waitFor(t *testing.T, what string, cond func(map[string][]orders.Change) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(r.byUID()) {
		if time.Now().After(deadline) {
			t.Fatalf("feed: %s not received within 10 s; got %v", what, r.byUID())
		}
		select {
		case <-r.wake:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func runFeed(t *testing.T, f *ordersdb.Feed, h ordersdb.FeedHandler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("feed run: %v", err)
		}
	})
}

// TestFeedAnnouncesEveryBatch checks that every batch announces what the
// database holds for each of its uids, changed or not (a redelivery re-announces),
// tombstones included, and that the feed delivers each row once: on both write
// paths, the small batches' statements and COPY (where a batch of orders all
// applied is announced from the staging table, the others from orders).
func TestFeedAnnouncesEveryBatch(t *testing.T) {
	t.Run("small", func(t *testing.T) { testFeedAnnouncesEveryBatch(t, false) })
	t.Run("copy", func(t *testing.T) { testFeedAnnouncesEveryBatch(t, true) })
}

func testFeedAnnouncesEveryBatch(t *testing.T, copyPath bool) {
	ctx := context.Background()
	d := dbtest.New(t)
	if copyPath {
		d.Store.SetSmallBatch(0)
	}
	rec := newFeedRecorder()
	f := ordersdb.NewFeed(d.Bun, ordersdb.FeedOptions{Poll: 50 * time.Millisecond})
	runFeed(t, f, rec)

	v1 := orders.Version{Partition: 0, Offset: 10, Time: 1}
	v2 := orders.Version{Partition: 0, Offset: 11, Time: 2}
	a, b := storetest.NewOrder("feed-a", 1), storetest.NewOrder("feed-b", 2)
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: a, Version: v1}, {Order: b, Version: v1}}); err != nil {
		t.Fatal(err)
	}
	// a redelivery of a's version (nothing new) and b's delete
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: a, Version: v1}, {Order: orders.Order{OrderUID: "feed-b"}, Version: v2, Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	// an older version of a (refused: a stays at v1) beside a new order c
	c := storetest.NewOrder("feed-c", 3)
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: a, Version: orders.Version{Partition: 0, Offset: 5, Time: 1}}, {Order: c, Version: v2}}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the three batches", func(m map[string][]orders.Change) bool {
		return len(m["feed-a"]) == 3 && len(m["feed-b"]) == 2 && len(m["feed-c"]) == 1
	})
	time.Sleep(200 * time.Millisecond) // more reads: nothing is delivered twice
	m := rec.byUID()
	if len(m["feed-a"]) != 3 || len(m["feed-b"]) != 2 || len(m["feed-c"]) != 1 {
		t.Fatalf("changes delivered more than once: %v", m)
	}
	want := map[string][]orders.Change{
		"feed-a": {{UID: "feed-a", Version: v1}, {UID: "feed-a", Version: v1}, {UID: "feed-a", Version: v1}},
		"feed-b": {{UID: "feed-b", Version: v1}, {UID: "feed-b", Version: v2, Deleted: true}},
		"feed-c": {{UID: "feed-c", Version: v2}},
	}
	for uid, w := range want {
		for i := range w {
			if m[uid][i] != w[i] {
				t.Errorf("%s change %d: %+v, want %+v", uid, i, m[uid][i], w[i])
			}
		}
	}
	rec.mu.Lock()
	floors := rec.floors
	rec.mu.Unlock()
	for i := 1; i < len(floors); i++ {
		if floors[i] < floors[i-1] || floors[i] <= 0 {
			t.Fatalf("WAL floors not increasing and positive: %v", floors)
		}
	}
	if st := f.Stats(); st.Rows != 3 || st.Changes != 6 || st.Reads == 0 || st.LagSeconds < 0 || st.LagSeconds > 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestFeedLateCommitNotSkipped checks the watermark: a transaction that took its
// id before another, and commits after it was read, is still delivered.
func TestFeedLateCommitNotSkipped(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	rec := newFeedRecorder()
	f := ordersdb.NewFeed(d.Bun, ordersdb.FeedOptions{Poll: 20 * time.Millisecond})
	runFeed(t, f, rec)

	// The early transaction: its id is assigned and its feed row written, not committed.
	tx, err := d.Bun.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT INTO order_changes (uids, partitions, offsets, times, deleted)
		VALUES ('{late-1}', '{1}', '{5}', '{7}', '{false}')`); err != nil {
		t.Fatal(err)
	}
	// A later transaction commits and is read.
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: storetest.NewOrder("early-read", 1), Version: orders.Version{Offset: 1, Time: 1}}}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the later transaction", func(m map[string][]orders.Change) bool { return len(m["early-read"]) == 1 })
	time.Sleep(100 * time.Millisecond) // several reads while the early one is open
	if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the late commit", func(m map[string][]orders.Change) bool { return len(m["late-1"]) == 1 })
	if c := rec.byUID()["late-1"][0]; c.Version != (orders.Version{Partition: 1, Offset: 5, Time: 7}) {
		t.Fatalf("late change %+v", c)
	}
}

// TestFeedGapResets checks that a reader that could not read the feed for more
// than half the retention empties the cache (its handler's Reset).
func TestFeedGapResets(t *testing.T) {
	d := dbtest.New(t)
	rec := newFeedRecorder()
	f := ordersdb.NewFeed(d.Bun, ordersdb.FeedOptions{Poll: 20 * time.Millisecond, Retention: 2 * time.Second})
	runFeed(t, f, rec)
	rec.waitFor(t, "a first read", func(map[string][]orders.Change) bool { return !f.ConfirmedAt().IsZero() })
	// The feed cannot be read for longer than the retention's half.
	exec := func(q string) {
		t.Helper()
		if _, err := d.Bun.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER TABLE order_changes RENAME TO order_changes_away`)
	time.Sleep(1500 * time.Millisecond)
	if lag := f.Lag(time.Now()); lag < time.Second {
		t.Errorf("lag %s while the feed cannot be read", lag)
	}
	if st := f.Stats(); st.Failures == 0 || st.Error == "" {
		t.Errorf("stats while the feed cannot be read: %+v", st)
	}
	exec(`ALTER TABLE order_changes_away RENAME TO order_changes`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		n := rec.resets
		rec.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resets %d after a gap of more than half the retention, want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWithoutChangeFeed checks that a store without the feed writes no rows.
func TestWithoutChangeFeed(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	s := ordersdb.New(d.Bun).WithoutChangeFeed()
	if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: storetest.NewOrder("quiet-1", 1), Version: orders.Version{Offset: 1, Time: 1}}}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := d.Bun.QueryRowContext(ctx, `SELECT count(*) FROM order_changes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d feed rows without the feed", n)
	}
}

// TestFeedFailureRollsBackTheBatch: the change feed's row is sent with the
// batch's COMMIT, in one round trip. When it fails, the COMMIT must not run:
// the batch is rolled back whole (no order without its change-feed row), the
// error reaches the caller, and the connection serves the next batch.
func TestFeedFailureRollsBackTheBatch(t *testing.T) {
	t.Run("small", func(t *testing.T) { testFeedFailureRollsBack(t, 64) })
	t.Run("copy", func(t *testing.T) { testFeedFailureRollsBack(t, 0) })
}

func testFeedFailureRollsBack(t *testing.T, small int) {
	ctx := context.Background()
	d := dbtest.New(t, dbtest.Pool(1)) // the next batch gets the same connection
	d.Store.SetSmallBatch(small)
	if _, err := d.Bun.ExecContext(ctx, "ALTER TABLE order_changes RENAME TO order_changes_away"); err != nil {
		t.Fatal(err)
	}
	v := orders.Version{Partition: 0, Offset: 1, Time: 1}
	a := storetest.NewOrder("feed-fail-a", 1)
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: a, Version: v}}); err == nil {
		t.Fatal("ApplyBatch succeeded without the change-feed table")
	}
	var n int
	if err := d.Bun.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d orders stored by a batch whose change-feed row failed", n)
	}
	if _, err := d.Bun.ExecContext(ctx, "ALTER TABLE order_changes_away RENAME TO order_changes"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: a, Version: v}}); err != nil {
		t.Fatalf("the next batch on the connection: %v", err)
	}
	if err := d.Bun.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_changes)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("after the retry: %d orders + change rows, want 1 + 1", n)
	}
}
