package migrations_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/migrations"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) {
	// Migration progress is logged at info level; keep benchmark and test output clean.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	testenv.Main(m)
}

// migrationNames are the embedded migrations, in order.
var migrationNames = []string{"orders", "order_parts", "order_versions", "order_changes"}

var tables = []string{"orders", "delivery", "payment", "items", "order_tombstones"}

func existingTables(t *testing.T, db *bun.DB) map[string]bool {
	t.Helper()
	var names []string
	err := db.NewSelect().ColumnExpr("tablename").TableExpr("pg_tables").
		Where("schemaname = current_schema()").Scan(context.Background(), &names)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, n := range names {
		got[n] = true
	}
	return got
}

func requireStatus(t *testing.T, db *bun.DB, applied bool) []migrations.State {
	t.Helper()
	st, err := migrations.Status(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(migrationNames) {
		t.Fatalf("Status: %d migrations, want %d:\n%s", len(st), len(migrationNames), migrations.FormatStatus(st))
	}
	for _, s := range st {
		if s.Applied != applied {
			t.Fatalf("migration %s applied = %v, want %v", s, s.Applied, applied)
		}
	}
	return st
}

func TestUpDownUp(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t, dbtest.Unmigrated()).Bun

	st := requireStatus(t, db, false)
	if st[0].ID != "20261125000001" {
		t.Fatalf("unexpected migrations:\n%s", migrations.FormatStatus(st))
	}
	for i, s := range st {
		if s.Name != migrationNames[i] {
			t.Fatalf("migration %d is %s, want %s:\n%s", i, s.Name, migrationNames[i], migrations.FormatStatus(st))
		}
	}
	if !strings.Contains(st[0].String(), "pending") {
		t.Fatalf("pending status prints as %q", st[0])
	}

	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	st = requireStatus(t, db, true)
	for _, s := range st {
		if s.GroupID != 1 || !strings.Contains(s.String(), "applied (group 1") {
			t.Fatalf("after Up:\n%s", migrations.FormatStatus(st))
		}
	}
	got := existingTables(t, db)
	for _, tbl := range tables {
		if !got[tbl] {
			t.Errorf("after Up: table %s missing", tbl)
		}
	}

	// A second Up finds nothing to do and opens no new group.
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	if st = requireStatus(t, db, true); st[1].GroupID != 1 {
		t.Fatalf("second Up changed groups:\n%s", migrations.FormatStatus(st))
	}

	if err := migrations.Down(ctx, db); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, db, false)
	got = existingTables(t, db)
	for _, tbl := range tables {
		if got[tbl] {
			t.Errorf("after Down: table %s still exists", tbl)
		}
	}
	// Down with nothing applied is a no-op.
	if err := migrations.Down(ctx, db); err != nil {
		t.Fatal(err)
	}

	if err := migrations.Up(ctx, db); err != nil {
		t.Fatal(err)
	}
	requireStatus(t, db, true)
	if got := existingTables(t, db); !got["items"] {
		t.Fatal("after Up again: items missing")
	}
}

func TestConcurrentUpAppliesOnce(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t, dbtest.Unmigrated())
	const instances = 4
	dbs := make([]*bun.DB, instances)
	for i := range dbs {
		dbs[i] = db.OpenPool(t, dbtest.DefaultPoolSize)
	}
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i, db := range dbs {
		wg.Go(func() { errs[i] = migrations.Up(ctx, db) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	st := requireStatus(t, dbs[0], true)
	for _, s := range st {
		if s.GroupID != 1 {
			t.Errorf("%s: group %d, want every migration in group 1", s, s.GroupID)
		}
	}
	var rows int
	if err := dbs[0].NewSelect().TableExpr("bun_migrations").ColumnExpr("count(*)").Scan(ctx, &rows); err != nil {
		t.Fatal(err)
	}
	if rows != len(migrationNames) {
		t.Fatalf("bun_migrations has %d rows, want %d (each migration applied once)", rows, len(migrationNames))
	}
	// The lock was released: the advisory lock is free for a new session.
	var locked bool
	if err := dbs[1].QueryRowContext(ctx, "SELECT pg_try_advisory_lock(?)", int64(0x6f72646572736d67)).Scan(&locked); err != nil {
		t.Fatal(err)
	}
	if !locked {
		t.Fatal("migration advisory lock still held after Up returned")
	}
}

func TestSchemaSeqIsStableAndPartsCascade(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun // migrated
	upsert := `INSERT INTO orders (order_uid, track_number, entry, customer_id, date_created, source_partition, source_offset)
		VALUES (?, 'T', 'E', 'c', now(), 0, ?)
		ON CONFLICT (order_uid) DO UPDATE SET source_offset = EXCLUDED.source_offset
		RETURNING seq`
	var seqA, seqB, seqA2 int64
	if err := db.QueryRowContext(ctx, upsert, "a", 1).Scan(&seqA); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, upsert, "b", 2).Scan(&seqB); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, upsert, "a", 3).Scan(&seqA2); err != nil {
		t.Fatal(err)
	}
	if seqB <= seqA || seqA2 != seqA {
		t.Fatalf("seq a=%d b=%d a-after-update=%d: want b > a and a unchanged", seqA, seqB, seqA2)
	}

	if _, err := db.ExecContext(ctx, `INSERT INTO items (order_uid, position, chrt_id, price, sale, total_price, nm_id, status)
		VALUES ('a', 0, 1, 1, 0, 1, 1, 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM orders WHERE order_uid = 'a'"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE order_uid = 'a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("items of a deleted order: %d rows remain", n)
	}

	_, err := db.ExecContext(ctx, upsert, "bad uid!", 1)
	var pgErr pgdriver.Error
	if !errors.As(err, &pgErr) || pgErr.Field('C') != "23514" {
		t.Fatalf("uid check: err = %v, want SQLSTATE 23514", err)
	}
}

func TestSchemaVersionsAndTombstones(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun // migrated
	// A row written without source_time (as every row before the migration) gets 0.
	if _, err := db.ExecContext(ctx, `INSERT INTO orders (order_uid, track_number, entry, customer_id, date_created, source_partition, source_offset)
		VALUES ('a', 'T', 'E', 'c', now(), 0, 1)`); err != nil {
		t.Fatal(err)
	}
	var sourceTime int64
	if err := db.QueryRowContext(ctx, "SELECT source_time FROM orders WHERE order_uid = 'a'").Scan(&sourceTime); err != nil {
		t.Fatal(err)
	}
	if sourceTime != 0 {
		t.Fatalf("source_time of a row written without it: %d, want 0", sourceTime)
	}

	tomb := `INSERT INTO order_tombstones (order_uid, source_partition, source_offset, source_time) VALUES (?, 0, 1, 2)`
	if _, err := db.ExecContext(ctx, tomb, "a"); err != nil {
		t.Fatal(err)
	}
	var fresh bool
	if err := db.QueryRowContext(ctx, "SELECT deleted_at > now() - interval '1 hour' FROM order_tombstones WHERE order_uid = 'a'").Scan(&fresh); err != nil {
		t.Fatal(err)
	}
	if !fresh {
		t.Fatal("deleted_at does not default to now()")
	}
	_, err := db.ExecContext(ctx, tomb, "bad uid!")
	var pgErr pgdriver.Error
	if !errors.As(err, &pgErr) || pgErr.Field('C') != "23514" {
		t.Fatalf("tombstone uid check: err = %v, want SQLSTATE 23514", err)
	}
	var indexed bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_indexes
		WHERE schemaname = current_schema() AND tablename = 'order_tombstones' AND indexdef LIKE '%(deleted_at)')`).Scan(&indexed); err != nil {
		t.Fatal(err)
	}
	if !indexed {
		t.Fatal("order_tombstones has no index on deleted_at (the purge)")
	}
}

// A migration that runs longer than the service's statement and read timeouts
// (an index built concurrently on a large table, here after a 10 s sleep) is
// applied through OpenForMigrations, and a second instance starting meanwhile
// waits for the advisory lock as long as it takes, then finds nothing to do.
func TestLongMigrationAndWaitingInstance(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.New(t).DSN
	fsys, err := migrations.FilesWith(map[string]string{
		"29991231000001_slow_index.up.sql":   "SELECT pg_sleep(10);\n--bun:split\nCREATE INDEX CONCURRENTLY IF NOT EXISTS orders_slow_idx ON orders (customer_id);\n",
		"29991231000001_slow_index.down.sql": "DROP INDEX CONCURRENTLY IF EXISTS orders_slow_idx;\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	if ordersdb.DefaultStatementTimeout >= 10*time.Second {
		t.Fatalf("the statement timeout (%v) is not shorter than the migration", ordersdb.DefaultStatementTimeout)
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			db, err := ordersdb.OpenForMigrations(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			errs[i] = migrations.UpFS(ctx, db, fsys)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var valid bool
	var applied int
	if err := conn.QueryRow(ctx, `SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_slow_idx'::regclass),
		(SELECT count(*) FROM bun_migrations WHERE name = '29991231000001')`).Scan(&valid, &applied); err != nil {
		t.Fatal(err)
	}
	if !valid || applied != 1 {
		t.Fatalf("index valid %v, migration applied %d times; want true and 1", valid, applied)
	}
}
