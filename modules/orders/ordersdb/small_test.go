package ordersdb_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/dberr"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// TestSmallBatchesStoreWhatCopyStores writes the same random sequence of batches
// through a store that writes small batches in two round trips (the default)
// and one that writes every batch with COPY, each on its own database, and
// requires the same answer for every batch and, at the end, the same orders,
// versions, tombstones and change-feed rows. The batches mix new orders,
// replacements with another number of items, stale versions, versions of other
// partitions, duplicates of a uid, tombstones and zero versions, over a small
// set of uids, so that every branch of both paths is taken.
func TestSmallBatchesStoreWhatCopyStores(t *testing.T) {
	ctx := context.Background()
	small := dbtest.New(t, dbtest.Pool(1))
	copied := dbtest.New(t, dbtest.Pool(1))
	copied.Store.SetSmallBatch(0)
	rnd := rand.New(rand.NewPCG(7, 11))
	const uids = 40
	var offsets [3]int64
	variant := 0
	for b := range 150 {
		n := 1 + rnd.IntN(12)
		if b%25 == 24 {
			n = 70 // more than a small batch: COPY in both
		}
		batch := make([]orders.Record, 0, n)
		for range n {
			uid := fmt.Sprintf("small-%02d", rnd.IntN(uids))
			p := int32(rnd.IntN(3))
			off := offsets[p] + 1
			if rnd.IntN(5) == 0 && offsets[p] > 10 {
				off = offsets[p] - int64(rnd.IntN(10)) // stale: an offset already used or passed
			} else {
				offsets[p] = off
			}
			v := orders.Version{Partition: p, Offset: off, Time: 1_764_000_000_000 + off*10 + int64(p)}
			switch rnd.IntN(20) {
			case 0:
				batch = append(batch, orders.Record{Order: orders.Order{OrderUID: uid}, Version: v, Deleted: true})
			case 1:
				variant++
				batch = append(batch, orders.Record{Order: storetest.NewOrder(uid, variant)}) // zero version
			default:
				variant++
				batch = append(batch, orders.Record{Order: storetest.NewOrder(uid, variant), Version: v})
			}
		}
		got, err := small.Store.ApplyBatch(ctx, batch)
		if err != nil {
			t.Fatalf("batch %d, small path: %v", b, err)
		}
		want, err := copied.Store.ApplyBatch(ctx, batch)
		if err != nil {
			t.Fatalf("batch %d, COPY: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("batch %d of %d records: stored\n%+v\nwith COPY\n%+v", b, n, got, want)
		}
	}

	for _, q := range []string{
		`SELECT order_uid, source_partition, source_offset, source_time FROM orders ORDER BY order_uid`,
		`SELECT order_uid, source_partition, source_offset, source_time FROM order_tombstones ORDER BY order_uid`,
		`SELECT * FROM delivery JOIN payment USING (order_uid) ORDER BY order_uid`,
		`SELECT * FROM items ORDER BY order_uid, position`,
		// the feed's rows, each by uid: the order within a row means nothing (the
		// COPY path announces a batch of new orders from its staging table)
		`SELECT cardinality(c.uids), u.uid, u.p, u.o, u.t, u.d FROM order_changes c,
			unnest(c.uids, c.partitions, c.offsets, c.times, c.deleted) AS u(uid, p, o, t, d) ORDER BY c.id, u.uid`,
	} {
		a, b := dumpRows(t, small, q), dumpRows(t, copied, q)
		if len(a) == 0 {
			t.Errorf("%s: no rows: the sequence does not test this table", q)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s:\nsmall path %d rows\n%v\nCOPY %d rows\n%v", q, len(a), a, len(b), b)
		}
	}
	for i := range uids {
		uid := fmt.Sprintf("small-%02d", i)
		o1, v1, err1 := small.Store.Get(ctx, uid)
		o2, v2, err2 := copied.Store.Get(ctx, uid)
		if (err1 == nil) != (err2 == nil) || v1 != v2 {
			t.Fatalf("%s: small path %v %v, COPY %v %v", uid, v1, err1, v2, err2)
		}
		if err1 == nil {
			storetest.RequireEqual(t, o1, o2)
		}
	}
}

// dumpRows returns the rows of q on d, each as its columns' text.
func dumpRows(t *testing.T, d *dbtest.DB, q string) [][]string {
	t.Helper()
	rows, err := d.Bun.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			row[i] = fmt.Sprint(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// templateHook keeps the templates of the statements a store runs: what
// bunotel's spans record as db.statement.
type templateHook struct {
	mu        sync.Mutex
	templates []string
}

func (h *templateHook) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (h *templateHook) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	h.mu.Lock()
	h.templates = append(h.templates, e.QueryTemplate)
	h.mu.Unlock()
}

// The statements' templates, which the tracing hook exports, carry no order
// data on either write path: the rows go as arguments (small batches) or by COPY,
// around the hooks. Writes a new order, replaces it and probes it.
func TestBatchStatementsCarryNoOrderData(t *testing.T) {
	for _, smallBatch := range []int{128, 0} {
		t.Run(fmt.Sprintf("small=%d", smallBatch), func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.New(t, dbtest.Pool(1))
			h := &templateHook{}
			s := ordersdb.New(d.Bun.WithQueryHook(h)).SetSmallBatch(smallBatch)
			secrets := []string{"secret.person@example.com", "+15550001234", "Secretstreet 9"}
			for i, off := range []int64{1, 2} {
				o := storetest.NewOrder("pii-1", i+1)
				o.Delivery.Email, o.Delivery.Phone, o.Delivery.Address = secrets[0], secrets[1], secrets[2]
				rec := orders.Record{Order: o, Version: orders.Version{Partition: 0, Offset: off, Time: 1}}
				if _, err := s.ApplyBatch(ctx, []orders.Record{rec}); err != nil {
					t.Fatal(err)
				}
				rec.Version.Offset += 10
				if err := s.ProbeWrite(ctx, rec); err != nil {
					t.Fatal(err)
				}
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.templates) == 0 {
				t.Fatal("the hook saw no statement")
			}
			for _, q := range h.templates {
				for _, secret := range secrets {
					if strings.Contains(q, secret) {
						t.Fatalf("a statement's template holds %q:\n%.300s", secret, q)
					}
				}
			}
		})
	}
}

// ProbeWrite takes the path ApplyBatch would take for its record and reports
// what that path meets: nil, storing nothing, while the schema takes the order;
// the error once a table refuses it (here a NOT NULL column of delivery that the
// service does not write, so only the second query of a small batch fails).
func TestProbeWriteOnBothPaths(t *testing.T) {
	for _, smallBatch := range []int{128, 0} {
		t.Run(fmt.Sprintf("small=%d", smallBatch), func(t *testing.T) {
			ctx := context.Background()
			d := dbtest.New(t, dbtest.Pool(1))
			s := d.Store.SetSmallBatch(smallBatch)
			rec := orders.Record{Order: storetest.NewOrder("probe-1", 1), Version: orders.Version{Partition: 0, Offset: 1, Time: 1}}
			if err := s.ProbeWrite(ctx, rec); err != nil {
				t.Fatalf("probe on a good schema: %v", err)
			}
			if n := countRows(t, d.Bun, "orders", "probe-1") + countRows(t, d.Bun, "delivery", "probe-1"); n != 0 {
				t.Fatalf("the probe left %d rows", n)
			}
			if _, err := d.Bun.ExecContext(ctx, `ALTER TABLE delivery ADD COLUMN test_required text NOT NULL`); err != nil {
				t.Fatal(err)
			}
			if err := s.ProbeWrite(ctx, rec); err == nil {
				t.Fatal("probe succeeded while delivery refuses every order")
			}
			if _, err := s.ApplyBatch(ctx, []orders.Record{rec}); err == nil {
				t.Fatal("ApplyBatch succeeded while delivery refuses every order")
			}
			if n := countRows(t, d.Bun, "orders", "probe-1"); n != 0 {
				t.Fatalf("the failed batch left %d orders rows", n)
			}
			if _, err := s.ApplyBatch(ctx, []orders.Record{{Order: storetest.NewOrder("probe-2", 2), Version: orders.Version{Partition: 0, Offset: 2, Time: 1}}}); err == nil {
				t.Fatal("the connection's next batch succeeded while delivery refuses every order")
			}
		})
	}
}

// Text PostgreSQL cannot store (a NUL byte, invalid UTF-8) is refused as a data
// error, as COPY refuses it, never stored altered: formatted into an array
// literal it would be (the NUL dropped, the bytes replaced), so such a batch
// does not take the small batches' path.
func TestUnstorableTextIsRefusedNotAltered(t *testing.T) {
	ctx := context.Background()
	d := dbtest.New(t, dbtest.Pool(1))
	for i, bad := range []string{"nul\x00byte", "bad\xffutf8"} {
		o := storetest.NewOrder(fmt.Sprintf("text-%d", i), 1)
		o.Delivery.Name = bad
		_, err := d.Store.ApplyBatch(ctx, []orders.Record{{Order: o, Version: orders.Version{Partition: 0, Offset: int64(i + 1), Time: 1}}})
		if err == nil {
			t.Fatalf("%q stored", bad)
		}
		if c := dberr.Classify(err); c != dberr.Data {
			t.Fatalf("%q: %v classified %v, want data", bad, err, c)
		}
	}
}
