package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/pgserver"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// A read replica that is down when the service starts delays nothing and fails no
// read: the primary answers, and the replica shows as down.
func TestStoreWithUnreachableReplica(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	port, err := pgserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := configs.Default()
	cfg.Postgres.ReadDSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orders?sslmode=disable", port)
	reg := prometheus.NewRegistry()
	store, closeStore, err := newStore(cfg, d.Bun, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	o := storetest.NewOrder("app-replica-1", 1)
	if _, err := store.ApplyBatch(ctx, []orders.Record{{Order: o, Version: orders.Version{Offset: 1, Time: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Get(ctx, o.OrderUID); err != nil {
		t.Fatalf("get with the replica down: %v", err)
	}
	if page, err := store.List(ctx, 10, ""); err != nil || len(page.Orders) != 1 {
		t.Fatalf("list with the replica down: %d orders, %v", len(page.Orders), err)
	}
	if st := store.ReplicaStats(); !st.Configured || st.Up || st.Reads != 0 {
		t.Fatalf("replica stats %+v: want configured, down, no reads", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"orders_db_replica_reads_total", "orders_db_replica_up", "orders_db_replica_lag_bytes", "go_sql_open_connections"} {
		if !names[want] {
			t.Errorf("metric %s not registered", want)
		}
	}
}
