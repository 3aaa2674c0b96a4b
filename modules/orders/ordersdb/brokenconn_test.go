package ordersdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// The connection of a batch breaks between BEGIN and its COPY (its backend is
// terminated, as when PostgreSQL is killed or fails over): the batch returns an
// error, so the writer retries, and the pool still works. With the batch in a
// database/sql transaction the COPY's broken write (driver.ErrBadConn inside
// sql.Conn.Raw) made database/sql wait for that transaction to end, forever.
func TestBrokenConnectionMidCopy(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	conn, err := d.Bun.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	var pid int
	if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	recs := []orders.Record{{Order: storetest.NewOrder("broken-1", 1), Version: at(1)}}
	between := func() error {
		if _, err := d.Bun.ExecContext(ctx, "SELECT pg_terminate_backend(?)", pid); err != nil {
			return err
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var n int
			if err := d.Bun.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = ?", pid).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("backend %d still there 10 s after pg_terminate_backend", pid)
				break
			}
		}
		// The first use reads the server's FATAL and closes the driver's
		// connection; the COPY then writes nothing: driver.ErrBadConn.
		_, _ = conn.ExecContext(ctx, "SELECT 1")
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- ordersdb.StageInTx(ctx, conn, between, recs) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the batch on a terminated connection succeeded")
		}
		t.Logf("batch on a broken connection: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the batch on a broken connection has not returned in 60 s (database/sql waits for its own transaction)")
	}
	// The next batch gets a working connection.
	if _, err := d.Store.ApplyBatch(ctx, recs); err != nil {
		t.Fatalf("batch after the broken connection: %v", err)
	}
}
