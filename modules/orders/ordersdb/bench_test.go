package ordersdb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orders-service/modules/orders"
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
			batch[j] = orders.Record{Order: o, Source: orders.Source{Partition: 0, Offset: int64(i*benchBatch + j)}}
		}
		batches[i] = batch
	}
	return batches
}

// BenchmarkUpsert compares the store's UpsertBatch with the practical ceiling, pgx
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
			applied, err := s.UpsertBatch(ctx, batches[i])
			if err != nil {
				b.Fatal(err)
			}
			if len(applied) != benchBatch {
				b.Fatalf("applied %d, want %d", len(applied), benchBatch)
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
			if _, err := s.UpsertBatch(ctx, upsertBatches[i]); err != nil {
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
// transaction.
func copyBatch(ctx context.Context, conn *pgx.Conn, recs []orders.Record) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	n := len(recs)
	copyRows := func(table string, cols []string, rows int, row func(i int) []any) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(rows, func(i int) ([]any, error) { return row(i), nil }))
		if err != nil {
			return fmt.Errorf("copy %s: %w", table, err)
		}
		return nil
	}
	err = copyRows("orders", []string{
		"order_uid", "track_number", "entry", "locale", "internal_signature",
		"customer_id", "delivery_service", "shardkey", "sm_id", "date_created", "oof_shard", "source_partition", "source_offset",
	},
		n, func(i int) []any {
			o := &recs[i].Order
			return []any{
				o.OrderUID, o.TrackNumber, o.Entry, o.Locale, o.InternalSignature, o.CustomerID,
				o.DeliveryService, o.ShardKey, o.SmID, o.DateCreated, o.OofShard, recs[i].Source.Partition, recs[i].Source.Offset,
			}
		})
	if err != nil {
		return err
	}
	err = copyRows("delivery", []string{"order_uid", "name", "phone", "zip", "city", "address", "region", "email"},
		n, func(i int) []any {
			o := &recs[i].Order
			d := &o.Delivery
			return []any{o.OrderUID, d.Name, d.Phone, d.Zip, d.City, d.Address, d.Region, d.Email}
		})
	if err != nil {
		return err
	}
	err = copyRows("payment", []string{
		"order_uid", "transaction", "request_id", "currency", "provider", "amount",
		"payment_dt", "bank", "delivery_cost", "goods_total", "custom_fee",
	},
		n, func(i int) []any {
			o := &recs[i].Order
			p := &o.Payment
			return []any{
				o.OrderUID, p.Transaction, p.RequestID, p.Currency, p.Provider, p.Amount,
				p.PaymentDt, p.Bank, p.DeliveryCost, p.GoodsTotal, p.CustomFee,
			}
		})
	if err != nil {
		return err
	}
	type itemRef struct {
		uid string
		pos int
		it  *orders.Item
	}
	var items []itemRef
	for i := range recs {
		for j := range recs[i].Order.Items {
			items = append(items, itemRef{recs[i].Order.OrderUID, j, &recs[i].Order.Items[j]})
		}
	}
	err = copyRows("items", []string{
		"order_uid", "position", "chrt_id", "track_number", "price", "rid", "name",
		"sale", "size", "total_price", "nm_id", "brand", "status",
	},
		len(items), func(i int) []any {
			r := items[i]
			it := r.it
			return []any{
				r.uid, int32(r.pos), it.ChrtID, it.TrackNumber, it.Price, it.Rid, it.Name,
				it.Sale, it.Size, it.TotalPrice, it.NmID, it.Brand, it.Status,
			}
		})
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}
