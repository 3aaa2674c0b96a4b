package ordersdb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// TestNewerSQLIsVersionCompare evaluates the version guard of the write statements
// on every pair of a set of versions (including the zero version, the legacy
// partition -1, equal times on different partitions) and checks it against
// orders.Version.Compare.
func TestNewerSQLIsVersionCompare(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun
	var vs []orders.Version
	for _, p := range []int32{-1, 0, 1, 2} {
		for _, o := range []int64{-1, 0, 1, 5} {
			for _, tm := range []int64{0, 1, 1000} {
				vs = append(vs, orders.Version{Partition: p, Offset: o, Time: tm})
			}
		}
	}
	var parts []int64
	var offs, times []int64
	for _, v := range vs {
		parts = append(parts, int64(v.Partition))
		offs = append(offs, v.Offset)
		times = append(times, v.Time)
	}
	side := `(SELECT * FROM unnest(?::int[], ?::bigint[], ?::bigint[]) WITH ORDINALITY
		AS x(source_partition, source_offset, source_time, i))`
	rows, err := db.QueryContext(ctx, `SELECT a.i, b.i, `+ordersdb.NewerSQL("a", "b")+`
		FROM `+side+` a CROSS JOIN `+side+` b`,
		pgdialect.Array(parts), pgdialect.Array(offs), pgdialect.Array(times),
		pgdialect.Array(parts), pgdialect.Array(offs), pgdialect.Array(times))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var i, j int
		var newer bool
		if err := rows.Scan(&i, &j, &newer); err != nil {
			t.Fatal(err)
		}
		a, b := vs[i-1], vs[j-1]
		if want := a.Compare(b) > 0; newer != want {
			t.Errorf("SQL: %+v newer than %+v = %v; Version.Compare says %v", a, b, newer, want)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(vs)*len(vs) {
		t.Fatalf("compared %d pairs, want %d", n, len(vs)*len(vs))
	}
}

// TestLegacyRows checks versions written before source_time existed: time 0, and
// partition -1 / offset -1 for orders written through the former API. Every
// version read from the topic is newer than those; a row at (0, 0, 0) (offset 0
// of partition 0) holds the zero Version, older than everything.
func TestLegacyRows(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t)
	db, s := d.Bun, d.Store
	for uid, v := range map[string]orders.Version{
		"api-1":   {Partition: -1, Offset: -1},
		"api-2":   {Partition: -1, Offset: -1},
		"kafka-1": {Partition: 3, Offset: 40},
		"zero-1":  {},
	} {
		o := storetest.NewOrder(uid, 1)
		if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: orders.Version{Partition: 9, Offset: 9, Time: 9}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `UPDATE orders SET source_partition = ?, source_offset = ?, source_time = 0 WHERE order_uid = ?`,
			v.Partition, v.Offset, uid); err != nil {
			t.Fatal(err)
		}
		if _, got, err := s.Get(ctx, uid); err != nil || got != v {
			t.Fatalf("Get(%s) version %+v, %v; want %+v", uid, got, err, v)
		}
	}
	steps := []struct {
		uid     string
		v       orders.Version
		applied bool
	}{
		{"api-1", orders.Version{Partition: 0, Offset: 0, Time: 0}, false}, // the zero version: never written
		{"api-1", orders.Version{Partition: 0, Offset: 7, Time: 0}, true},  // time 0 too, but partition 0 > -1
		{"kafka-1", orders.Version{Partition: 3, Offset: 39, Time: 5000}, false},
		{"kafka-1", orders.Version{Partition: 3, Offset: 41, Time: 1}, true},
		{"zero-1", orders.Version{Partition: 0, Offset: 0, Time: 1}, true}, // offset 0 again, but the row holds the zero version
	}
	for i, st := range steps {
		o := storetest.NewOrder(st.uid, 10+i)
		stored, err := s.ApplyBatch(ctx, []orders.Record{{Order: o, Version: st.v}})
		if err != nil {
			t.Fatal(err)
		}
		if stored[0].Changed != st.applied {
			t.Fatalf("%s at %+v: %+v, want changed %v", st.uid, st.v, stored[0], st.applied)
		}
		got, v, err := s.Get(ctx, st.uid)
		if err != nil {
			t.Fatal(err)
		}
		if st.applied {
			storetest.RequireEqual(t, got, o)
			if v != st.v {
				t.Fatalf("%s: version %+v, want %+v", st.uid, v, st.v)
			}
		}
	}
	// A tombstone of a legacy order deletes it.
	stored, err := s.ApplyBatch(ctx, []orders.Record{{Order: orders.Order{OrderUID: "api-2"}, Version: orders.Version{Partition: 0, Offset: 1, Time: 0}, Deleted: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !stored[0].Changed || !stored[0].Deleted {
		t.Fatalf("tombstone of a legacy order: %+v", stored[0])
	}
	if _, _, err := s.Get(ctx, "api-2"); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("Get after the tombstone: %v, want ErrNotFound", err)
	}
}

// TestOrdersStatementLooksUpTombstones checks the plan of the ingest's statement
// with many tombstones: each new order looks its tombstone up by key. A plan that
// reads the whole of order_tombstones (the hash anti join PostgreSQL may choose for
// NOT EXISTS) costs every batch time in proportion to the deletes kept.
func TestOrdersStatementLooksUpTombstones(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun
	if _, err := db.ExecContext(ctx, `INSERT INTO order_tombstones (order_uid, source_partition, source_offset, source_time)
		SELECT 'tomb-' || g, 0, g, 1 FROM generate_series(1, 100000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE order_tombstones"); err != nil {
		t.Fatal(err)
	}
	recs := make([]orders.Record, 1000)
	for i := range recs {
		recs[i] = orders.Record{Order: storetest.NewOrder(fmt.Sprintf("plan-%04d", i), i), Version: orders.Version{Offset: int64(i), Time: 1}}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK") //nolint:errcheck // the end of the test
	if err := ordersdb.StageOrders(ctx, conn, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(ctx, "EXPLAIN "+ordersdb.ApplyOrdersSQL)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if p := plan.String(); strings.Contains(p, "Seq Scan on order_tombstones") || !strings.Contains(p, "order_tombstones_pkey") {
		t.Fatalf("the orders statement does not look tombstones up by key:\n%s", p)
	}
}
