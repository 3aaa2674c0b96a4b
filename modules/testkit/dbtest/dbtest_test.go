package dbtest_test

import (
	"context"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func hasOrdersTable(t *testing.T, db *dbtest.DB) bool {
	t.Helper()
	var n int
	if err := db.Bun.QueryRowContext(context.Background(),
		"SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'orders'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestNewIsMigratedWithAWorkingStore(t *testing.T) {
	db := dbtest.New(t, dbtest.Pool(1))
	if !hasOrdersTable(t, db) {
		t.Fatal("no orders table after New")
	}
	if got := db.Bun.Stats().MaxOpenConnections; got != 1 {
		t.Fatalf("pool of %d, want 1", got)
	}
	o, _ := testkit.Canonical(t)
	ctx := context.Background()
	if _, err := db.Store.ApplyBatch(ctx, []orders.Record{{Order: o, Version: orders.Version{Offset: 1, Time: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.Store.Get(ctx, o.OrderUID); err != nil {
		t.Fatal(err)
	}
	other := db.OpenPool(t, 2)
	if err := other.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestUnmigratedIsEmpty(t *testing.T) {
	if hasOrdersTable(t, dbtest.New(t, dbtest.Unmigrated())) {
		t.Fatal("Unmigrated database has the orders table")
	}
}
