package ordersdb_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/dberr"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) {
	// Migration progress is logged at info level; keep benchmark and test output clean.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Main(m)
}

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orders.Store { return dbtest.New(t).Store })
}

// TestStoreContractCopyOnly runs the contract with every batch written by COPY
// (no batch is small): the contract's batches are mostly small ones, which the
// default store writes in two round trips instead.
func TestStoreContractCopyOnly(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orders.Store { return dbtest.New(t).Store.SetSmallBatch(0) })
}

func countRows(t *testing.T, db *bun.DB, table, uid string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(),
		"SELECT count(*) FROM ? WHERE order_uid = ?", bun.Ident(table), uid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// at returns the version at offset of partition 0.
func at(offset int64) orders.Version {
	return orders.Version{Offset: offset, Time: 1_764_000_000_000 + offset}
}

func TestTombstoneCascadesToParts(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	db, s := d.Bun, d.Store
	o := storetest.NewOrder("cascade-1", 2) // 3 items
	keep := storetest.NewOrder("cascade-2", 2)
	if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: at(1)}, {Order: keep, Version: at(2)}}); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]int{"orders": 1, "delivery": 1, "payment": 1, "items": 3} {
		if n := countRows(t, db, table, o.OrderUID); n != want {
			t.Fatalf("before delete: %s has %d rows, want %d", table, n, want)
		}
	}
	if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: orders.Order{OrderUID: o.OrderUID}, Version: at(3), Deleted: true}}); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "order_tombstones", o.OrderUID); n != 1 {
		t.Fatalf("after delete: %d tombstones of the order, want 1", n)
	}
	for _, table := range []string{"orders", "delivery", "payment", "items"} {
		if n := countRows(t, db, table, o.OrderUID); n != 0 {
			t.Errorf("after delete: %s still has %d rows of the order", table, n)
		}
		if n := countRows(t, db, table, keep.OrderUID); n == 0 {
			t.Errorf("after delete: %s lost the rows of another order", table)
		}
	}
}

func TestApplyBatchWritesOnlyAppliedParts(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	db, s := d.Bun, d.Store
	newer := storetest.NewOrder("parts-1", 1) // 2 items
	if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: newer, Version: at(10)}}); err != nil {
		t.Fatal(err)
	}
	// A stale version with 3 items and a fresh order in one batch: the stale
	// order's items must not be touched.
	stale := storetest.NewOrder("parts-1", 2)
	fresh := storetest.NewOrder("parts-2", 0)
	stored, err := s.ApplyBatch(ctx, []orders.Record{
		{Order: stale, Version: at(9)},
		{Order: fresh, Version: at(11)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []orders.Stored{
		{UID: "parts-1", Version: at(10)},
		{UID: "parts-2", Version: at(11), Changed: true},
	}
	if !slices.Equal(stored, want) {
		t.Fatalf("stored %+v, want %+v (in uid order)", stored, want)
	}
	if n := countRows(t, db, "items", "parts-1"); n != 2 {
		t.Fatalf("stale version changed items: %d rows, want 2", n)
	}
	var email string
	if err := db.QueryRowContext(ctx, "SELECT email FROM delivery WHERE order_uid = 'parts-1'").Scan(&email); err != nil {
		t.Fatal(err)
	}
	if email != newer.Delivery.Email {
		t.Fatalf("stale version changed delivery: email %q, want %q", email, newer.Delivery.Email)
	}
}

// A batch is sent with COPY in text format, or, when small, formatted into the
// statements as array literals: text with COPY's special characters (tab,
// newline, carriage return, backslash, "\N" which would read as NULL unescaped),
// with the characters of array literals, SQL strings and bun's placeholders
// (quotes, braces, commas, "?", "?0", "$1", comments), and times with
// sub-microsecond digits come back as sent, in new and in replaced orders alike,
// on both paths.
func TestApplyBatchKeepsSpecialText(t *testing.T) {
	for _, small := range []int{128, 0} {
		t.Run(fmt.Sprintf("small=%d", small), func(t *testing.T) { testSpecialText(t, small) })
	}
}

func testSpecialText(t *testing.T, small int) {
	ctx := context.Background()
	s := dbtest.New(t).Store.SetSmallBatch(small)
	special := []string{"a\tb", "tab\there", "line\nbreak\r\nCRLF", `back\slash \\ \N`, "\\N", `\.`, "ünï\tcødé €", ""}
	literal := `it's "q" {a,b} NULL ? ?0 $1 -- x /* y */ ''`
	for round, ver := range []int64{1, 2} { // inserted, then replaced
		o := storetest.NewOrder("copy-text", round+1) // 2 and 3 items
		o.Delivery.Address = special[round]
		o.Delivery.Region = special[3]
		o.Payment.Bank = special[4]
		o.Items[0].Name = special[5]
		o.Items[1].Brand = special[6]
		o.Entry = special[2]
		o.Locale = special[7]
		o.CustomerID = literal
		o.Delivery.Name = literal
		o.Items[1].Name = literal
		o.DateCreated = time.Date(2026, 12, 3, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: at(ver)}}); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.Get(ctx, "copy-text")
		if err != nil {
			t.Fatal(err)
		}
		want := o
		want.DateCreated = o.DateCreated.Truncate(time.Microsecond).UTC()
		if gj, wj := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); gj != wj {
			t.Fatalf("round %d: stored\n%s\nwant\n%s", round, gj, wj)
		}
	}
}

func TestInvalidUIDs(t *testing.T) {
	ctx := context.Background()
	s := dbtest.New(t).Store
	bad := "no spaces allowed"
	if _, _, err := s.Get(ctx, bad); !errors.Is(err, orders.ErrInvalidUID) {
		t.Errorf("Get: %v, want ErrInvalidUID", err)
	}
	// ApplyBatch trusts validated input; the schema still refuses a bad uid, as a
	// data error, in an order and in a tombstone.
	for _, r := range []orders.Record{
		{Order: storetest.NewOrder(bad, 1), Version: at(1)},
		{Order: orders.Order{OrderUID: bad}, Version: at(1), Deleted: true},
	} {
		_, err := s.ApplyBatch(ctx, []orders.Record{r})
		if err == nil || dberr.Classify(err) != dberr.Data {
			t.Errorf("ApplyBatch with a bad uid (deleted %v): %v (class %v), want a data error", r.Deleted, err, dberr.Classify(err))
		}
	}
}

func TestDataErrorsRollBackTheWholeBatch(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	db, s := d.Bun, d.Store
	good := storetest.NewOrder("good-1", 1)
	poison := storetest.NewOrder("poison-1", 1)
	poison.DateCreated = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) // timestamptz out of range: SQLSTATE 22008
	negative := storetest.NewOrder("poison-2", 1)
	negative.Items[0].Price = -1 // items_money_check: SQLSTATE 23514

	for _, bad := range []orders.Order{poison, negative} {
		// with a tombstone, the batch takes COPY; without, the two round trips of
		// a small batch (the item's check fails in the second)
		for _, batch := range [][]orders.Record{{
			{Order: good, Version: at(1)},
			{Order: bad, Version: at(2)},
			{Order: orders.Order{OrderUID: "gone-1"}, Version: at(3), Deleted: true},
		}, {
			{Order: good, Version: at(1)},
			{Order: bad, Version: at(2)},
		}} {
			_, err := s.ApplyBatch(ctx, batch)
			if err == nil {
				t.Fatalf("batch with %s: no error", bad.OrderUID)
			}
			if c := dberr.Classify(err); c != dberr.Data {
				t.Fatalf("batch with %s: %v classified %v, want data", bad.OrderUID, err, c)
			}
			if n := countRows(t, db, "orders", good.OrderUID); n != 0 {
				t.Fatalf("failed batch left %d rows of the good order", n)
			}
			if n := countRows(t, db, "order_tombstones", "gone-1"); n != 0 {
				t.Fatalf("failed batch left a tombstone")
			}
		}
	}
	// A failing tombstone statement rolls back the orders of its batch too.
	_, err := s.ApplyBatch(ctx, []orders.Record{
		{Order: good, Version: at(1)},
		{Order: orders.Order{OrderUID: "bad uid"}, Version: at(3), Deleted: true},
	})
	if c := dberr.Classify(err); err == nil || c != dberr.Data {
		t.Fatalf("batch with a bad tombstone: %v classified %v, want data", err, c)
	}
	if n := countRows(t, db, "orders", good.OrderUID); n != 0 {
		t.Fatalf("failed batch left %d rows of the good order", n)
	}
}

func TestConcurrentOverlappingBatches(t *testing.T) {
	ctx := context.Background()
	s := dbtest.New(t).Store
	// Writers write the same uids with increasing offsets in different input
	// orders, orders for the first half of the uids and tombstones for the other;
	// sorted writes mean no deadlock, and the highest offset ends up stored.
	const writers, uids, rounds = 4, 50, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				batch := make([]orders.Record, 0, uids)
				for i := range uids {
					u := i
					if w%2 == 1 {
						u = uids - 1 - i
					}
					off := int64(r*writers + w)
					batch = append(batch, orders.Record{
						Order:   storetest.NewOrder(fmt.Sprintf("race-%02d", u), int(off)),
						Version: at(off),
						Deleted: u >= uids/2,
					})
				}
				if _, err := s.ApplyBatch(ctx, batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent batch: %v (class %v)", err, dberr.Classify(err))
	}
	top := int64((rounds-1)*writers + writers - 1)
	for i := range uids {
		uid := fmt.Sprintf("race-%02d", i)
		got, v, err := s.Get(ctx, uid)
		if i >= uids/2 {
			if !errors.Is(err, orders.ErrNotFound) || v != at(top) {
				t.Fatalf("Get(%s) = %v, version %+v; want ErrNotFound at %+v", uid, err, v, at(top))
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if v != at(top) {
			t.Fatalf("Get(%s) version %+v, want %+v", uid, v, at(top))
		}
		storetest.RequireEqual(t, got, storetest.NewOrder(uid, int(top)))
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", "mysql://x", "postgres://u:secret@127.0.0.1:1/db?sslmode=nonsense"} {
		db, err := ordersdb.Open(ctx, dsn, 1)
		if err == nil {
			_ = db.Close()
			t.Errorf("Open(%q): no error", dsn)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open error leaks the password: %v", err)
		}
	}
	if _, err := ordersdb.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable", 0); err == nil {
		t.Error("Open with pool size 0: no error")
	}
	// Nothing listens on port 1: the ping fails, as a transient error.
	_, err := ordersdb.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable", 1)
	if err == nil || dberr.Classify(err) != dberr.Transient || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open to a closed port: %v (class %v), want a transient error without the password", err, dberr.Classify(err))
	}
}

// fakeTimeout is a net.Error timeout, as a socket read deadline reports it.
type fakeTimeout struct{}

func (fakeTimeout) Error() string   { return "i/o timeout" }
func (fakeTimeout) Timeout() bool   { return true }
func (fakeTimeout) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want dberr.Class
	}{
		{"nil", nil, dberr.Fatal},
		{"deadline", context.DeadlineExceeded, dberr.Transient},
		{"canceled wrapped", fmt.Errorf("apply batch: %w", context.Canceled), dberr.Transient},
		{"bad conn", driver.ErrBadConn, dberr.Transient},
		{"conn done", sql.ErrConnDone, dberr.Transient},
		{"eof", io.EOF, dberr.Transient},
		{"unexpected eof", fmt.Errorf("x: %w", io.ErrUnexpectedEOF), dberr.Transient},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, dberr.Transient},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), dberr.Transient},
		{"net timeout", fakeTimeout{}, dberr.Transient},
		{"tx done", sql.ErrTxDone, dberr.Fatal},
		{"unknown", errors.New("boom"), dberr.Fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dberr.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestClassifyServerErrors classifies real errors raised by PostgreSQL.
func TestClassifyServerErrors(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t, dbtest.Pool(2)).Bun
	tests := []struct {
		sqlstate string
		want     dberr.Class
	}{
		{"40001", dberr.Transient},
		{"40P01", dberr.Transient},
		{"53300", dberr.Transient},
		{"57P01", dberr.Transient},
		{"57P02", dberr.Transient},
		{"57P03", dberr.Transient},
		{"08006", dberr.Transient},
		{"53100", dberr.Transient},
		{"55P03", dberr.Transient},
		{"57014", dberr.Transient},
		{"22001", dberr.Data},
		{"22021", dberr.Data},
		{"23505", dberr.Data},
		{"23503", dberr.Data},
		{"23514", dberr.Data},
		{"42804", dberr.Data},
		{"54000", dberr.Data},
		{"42P01", dberr.Fatal},
		{"42703", dberr.Fatal},
		{"XX000", dberr.Fatal},
		{"28P01", dberr.Fatal},
	}
	for _, tt := range tests {
		t.Run(tt.sqlstate, func(t *testing.T) {
			_, err := db.ExecContext(ctx, fmt.Sprintf(
				"DO $$ BEGIN RAISE EXCEPTION 'synthetic' USING ERRCODE = '%s'; END $$", tt.sqlstate))
			if err == nil {
				t.Fatal("no error")
			}
			if got := dberr.Classify(fmt.Errorf("wrapped: %w", err)); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
	// A real statement error, not a synthetic one.
	_, err := db.ExecContext(ctx, "SELECT * FROM no_such_table")
	if got := dberr.Classify(err); got != dberr.Fatal {
		t.Errorf("missing table: %v classified %v, want fatal", err, got)
	}
}

// TestServerCrashIsTransient kills the server under the store: the failure must
// classify as transient, and the same batch must succeed after a restart.
func TestServerCrashIsTransient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dedicated cluster")
	}
	ctx := context.Background()
	c := testenv.NewCluster(t, testenv.ClusterOptions{})
	s := dbtest.New(t, dbtest.On(c)).Store
	batch := func(off int64) []orders.Record {
		var recs []orders.Record
		for i := range 20 {
			recs = append(recs, orders.Record{Order: storetest.NewOrder(fmt.Sprintf("crash-%02d", i), i), Version: at(off)})
		}
		return recs
	}
	if _, err := s.ApplyBatch(ctx, batch(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err := s.ApplyBatch(ctx, batch(2))
	if err == nil {
		t.Fatal("apply on a killed server: no error")
	}
	if got := dberr.Classify(err); got != dberr.Transient {
		t.Fatalf("apply on a killed server: %v classified %v, want transient", err, got)
	}
	if _, _, err := s.Get(ctx, "crash-00"); dberr.Classify(err) != dberr.Transient {
		t.Fatalf("get on a killed server: %v, want a transient error", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool may hold dead connections: the retry (as the pipeline does) succeeds.
	var stored []orders.Stored
	for attempt := 0; ; attempt++ {
		stored, err = s.ApplyBatch(ctx, batch(2))
		if err == nil {
			break
		}
		if dberr.Classify(err) != dberr.Transient || attempt == 5 {
			t.Fatalf("apply after restart: %v (class %v)", err, dberr.Classify(err))
		}
	}
	for _, st := range stored {
		if st.Version != at(2) {
			t.Fatalf("after restart %+v, want every order at %+v", st, at(2))
		}
	}
	if len(stored) != 20 {
		t.Fatalf("after restart %d results, want 20", len(stored))
	}
	got, _, err := s.Get(ctx, "crash-07")
	if err != nil {
		t.Fatal(err)
	}
	storetest.RequireEqual(t, got, storetest.NewOrder("crash-07", 7))
}

func TestStatementTimeoutIsSet(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDSN(t)
	db, err := ordersdb.Open(ctx, dsn, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got string
	if err := db.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "9s" {
		t.Fatalf("statement_timeout %q, want 9s", got)
	}
	db2, err := ordersdb.Open(ctx, dsn+"&statement_timeout=1234", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if err := db2.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "1234ms" {
		t.Fatalf("statement_timeout from the DSN: %q, want 1234ms", got)
	}
}
