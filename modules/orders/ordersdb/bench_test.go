package ordersdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

const benchBatch = 1000

// benchBatches returns n batches of canonical-shaped orders (1 item each) with
// uids never used before.
func benchBatches(b *testing.B, n int) [][]orders.Record {
	b.Helper()
	canon, _ := testkit.Canonical(b)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	run := hex.EncodeToString(rnd[:])
	batches := make([][]orders.Record, n)
	for i := range batches {
		batch := make([]orders.Record, benchBatch)
		for j := range batch {
			o := canon
			o.OrderUID = fmt.Sprintf("%s-%05d-%04d", run, i, j)
			o.Payment.Transaction = o.OrderUID
			o.Items = []orders.Item{canon.Items[0]}
			off := int64(i*benchBatch + j)
			batch[j] = orders.Record{Order: o, Version: orders.Version{Partition: 0, Offset: off, Time: 1_764_000_000_000 + off}}
		}
		batches[i] = batch
	}
	return batches
}

// BenchmarkUpsert compares the store's ApplyBatch of new orders (the ingest's hot
// path) with the practical ceiling, pgx
// COPY of the same rows into the same four tables (insert only), one transaction
// per 1,000 orders on one connection, on a cluster with default durability.
// COPY and Upsert run one after the other; Interleaved alternates a COPY batch
// and an Upsert batch (into two databases) and reports the upsert/COPY ratio, which
// is the figure to trust on a machine whose load varies during the run.
//
//	go test -run '^$' -bench Upsert -benchtime 20x ./modules/orders/ordersdb/
func BenchmarkUpsert(b *testing.B) {
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})

	b.Run("COPY", func(b *testing.B) {
		ctx := context.Background()
		dsn := dbtest.New(b, dbtest.On(cluster)).DSN
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		batches := benchBatches(b, b.N)
		b.ResetTimer()
		for i := range b.N {
			if err := copyBatch(ctx, conn, batches[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "orders/s")
	})

	b.Run("Upsert", func(b *testing.B) {
		ctx := context.Background()
		s := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1)).Store
		batches := benchBatches(b, b.N)
		b.ResetTimer()
		for i := range b.N {
			stored, err := s.ApplyBatch(ctx, batches[i])
			if err != nil {
				b.Fatal(err)
			}
			if len(stored) != benchBatch || !stored[0].Changed || !stored[benchBatch-1].Changed {
				b.Fatalf("stored %d, want %d, all changed", len(stored), benchBatch)
			}
		}
		b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "orders/s")
	})

	b.Run("Interleaved", func(b *testing.B) {
		ctx := context.Background()
		copyDSN := dbtest.New(b, dbtest.On(cluster)).DSN
		conn, err := pgx.Connect(ctx, copyDSN)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		s := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1)).Store
		copyBatches, upsertBatches := benchBatches(b, b.N), benchBatches(b, b.N)
		var copyTime, upsertTime time.Duration
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			if err := copyBatch(ctx, conn, copyBatches[i]); err != nil {
				b.Fatal(err)
			}
			mid := time.Now()
			if _, err := s.ApplyBatch(ctx, upsertBatches[i]); err != nil {
				b.Fatal(err)
			}
			upsertTime += time.Since(mid)
			copyTime += mid.Sub(start)
		}
		orders := float64(b.N * benchBatch)
		b.ReportMetric(orders/copyTime.Seconds(), "copy-orders/s")
		b.ReportMetric(orders/upsertTime.Seconds(), "upsert-orders/s")
		b.ReportMetric(copyTime.Seconds()/upsertTime.Seconds(), "upsert/copy")
	})
}

// copyBatch writes recs with COPY into orders, delivery, payment and items in one
// transaction: the columns and rows the store writes (ordersdb.BatchRows).
func copyBatch(ctx context.Context, conn *pgx.Conn, recs []orders.Record) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	for _, t := range ordersdb.BatchRows(recs) {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{t.Table}, t.Columns,
			pgx.CopyFromSlice(t.Len, func(i int) ([]any, error) { return t.Row(i), nil }))
		if err != nil {
			return fmt.Errorf("copy %s: %w", t.Table, err)
		}
	}
	return tx.Commit(ctx)
}

// BenchmarkGet measures the lookup by uid, the API's cache-miss path, on one
// connection over 10,000 stored orders: Hit finds the order, Miss finds nothing,
// Tombstone finds the delete of one of 1,000 deleted orders.
//
//	go test -run '^$' -bench Get ./modules/orders/ordersdb/
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := dbtest.New(b, dbtest.Pool(1)).Store
	batches := benchBatches(b, 11)
	for _, batch := range batches {
		if _, err := s.ApplyBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	deleted := make([]orders.Record, len(batches[0]))
	for i, r := range batches[0] {
		r.Version.Offset += int64(len(batches) * benchBatch)
		r.Deleted = true
		deleted[i] = r
	}
	if _, err := s.ApplyBatch(ctx, deleted); err != nil {
		b.Fatal(err)
	}
	run := func(name string, uid func(i int) string, wantErr error) {
		b.Run(name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				_, _, err := s.Get(ctx, uid(i))
				if !errors.Is(err, wantErr) {
					b.Fatal(err)
				}
			}
		})
	}
	run("Hit", func(i int) string { return batches[1+i%10][i/10%benchBatch].Order.OrderUID }, nil)
	run("Miss", func(i int) string { return fmt.Sprintf("missing-%d", i) }, orders.ErrNotFound)
	run("Tombstone", func(i int) string { return deleted[i%benchBatch].Order.OrderUID }, orders.ErrNotFound)
}

// statementTimer is a bun query hook that adds up the time of each statement,
// named by its first words.
type statementTimer struct {
	mu sync.Mutex
	d  map[string]time.Duration
}

func (t *statementTimer) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	return ctx
}

func (t *statementTimer) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	name := e.Query
	if i := strings.IndexAny(name, "(\n"); i > 0 && i < 60 {
		name = name[:i]
	}
	name = strings.TrimSpace(name[:min(len(name), 60)])
	t.mu.Lock()
	t.d[name] += time.Since(e.StartTime)
	t.mu.Unlock()
}

// BenchmarkApplyBatchStatements writes 50 batches of 1,000 new canonical-shaped
// orders with ApplyBatch on one connection (change feed on) and prints where the
// time goes, statement by statement (bun's query hook; the COPYs of the batch
// go around the hook and are the rest of each transaction's time). It is the
// profile behind the write path's shape, not a figure of the bench table.
//
//	go test -run '^$' -bench ApplyBatchStatements -benchtime 1x ./modules/orders/ordersdb/
func BenchmarkApplyBatchStatements(b *testing.B) {
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tdb := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1))
		st := &statementTimer{d: map[string]time.Duration{}}
		store := ordersdb.New(tdb.Bun.WithQueryHook(st))
		batches := benchBatches(b, 50)
		ctx := context.Background()
		b.StartTimer()
		t0 := time.Now()
		for _, batch := range batches {
			if _, err := store.ApplyBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		total := time.Since(t0)
		b.StopTimer()
		hooked := time.Duration(0)
		names := make([]string, 0, len(st.d))
		for n, d := range st.d {
			names = append(names, n)
			hooked += d
		}
		sort.Slice(names, func(i, j int) bool { return st.d[names[i]] > st.d[names[j]] })
		b.ReportMetric(float64(50*benchBatch)/total.Seconds(), "orders/s")
		b.Logf("%d orders in %v: %.0f orders/s", 50*benchBatch, total.Round(time.Millisecond), float64(50*benchBatch)/total.Seconds())
		for _, n := range names {
			b.Logf("%5.1f%%  %8.1f ms  %s", 100*st.d[n].Seconds()/total.Seconds(), float64(st.d[n].Microseconds())/1000, n)
		}
		b.Logf("%5.1f%%  %8.1f ms  the COPYs (orders into the staging table, delivery, payment, items) and the client",
			100*(total-hooked).Seconds()/total.Seconds(), float64((total-hooked).Microseconds())/1000)
		b.StartTimer()
	}
}

// BenchmarkApplySmallBatches writes batches of a few new canonical-shaped orders
// with ApplyBatch on one connection (change feed on), one after the other: the
// batches of a steady trickle, where a batch's transaction is mostly round trips
// and the commit's flush rather than rows. Per batch size (1, 10, 50, 100, 200)
// it writes 300 batches in two round trips (the small batches' path, forced
// for every size) and 300 with COPY, alternately, each on its own database,
// and reports each one's transaction p50 and p99 (ms) and p50-ratio (two round
// trips / COPY): where the ratio crosses 1 is where smallBatch belongs.
// Freshness at 2,000 orders/s follows these transactions.
//
//	go test -run '^$' -bench ApplySmallBatches -benchtime 1x ./modules/orders/ordersdb/
func BenchmarkApplySmallBatches(b *testing.B) {
	const batches = 300
	cluster := testenv.NewCluster(b, testenv.ClusterOptions{Durable: true})
	for _, size := range []int{1, 10, 50, 100, 200} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				def := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1))
				def.Store.SetSmallBatch(size)
				cp := dbtest.New(b, dbtest.On(cluster), dbtest.Pool(1))
				cp.Store.SetSmallBatch(0)
				var flat []orders.Record
				for _, bt := range benchBatches(b, (2*batches*size+benchBatch-1)/benchBatch) {
					flat = append(flat, bt...)
				}
				ctx := context.Background()
				lat := [2][]time.Duration{}
				b.StartTimer()
				for k := 0; k < 2*batches; k++ {
					st := def.Store
					if k%2 == 1 {
						st = cp.Store
					}
					s := time.Now()
					if _, err := st.ApplyBatch(ctx, flat[k*size:(k+1)*size]); err != nil {
						b.Fatal(err)
					}
					lat[k%2] = append(lat[k%2], time.Since(s))
				}
				b.StopTimer()
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				q := func(l []time.Duration, p float64) time.Duration {
					sort.Slice(l, func(x, y int) bool { return l[x] < l[y] })
					return l[int(p*float64(len(l)-1))]
				}
				b.ReportMetric(ms(q(lat[0], 0.5)), "p50-ms")
				b.ReportMetric(ms(q(lat[0], 0.99)), "p99-ms")
				b.ReportMetric(ms(q(lat[1], 0.5)), "copy-p50-ms")
				b.ReportMetric(ms(q(lat[1], 0.99)), "copy-p99-ms")
				b.ReportMetric(float64(q(lat[0], 0.5))/float64(q(lat[1], 0.5)), "p50-ratio")
				b.StartTimer()
			}
		})
	}
}
