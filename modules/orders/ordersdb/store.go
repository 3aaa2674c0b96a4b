package ordersdb

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orders-service/modules/orders"
)

// Store is the PostgreSQL orders.Store. It is safe for concurrent use.
type Store struct {
	db *bun.DB

	mu      sync.Mutex               // serialises the first prepare
	getStmt atomic.Pointer[sql.Stmt] // prepared on first use; database/sql prepares it per connection
}

var _ orders.Store = (*Store)(nil)

// New returns a Store over db, whose schema must be migrated (package migrations).
func New(db *bun.DB) *Store {
	return &Store{db: db}
}

// UpsertBatch implements orders.Store. Records are de-duplicated by uid (highest
// offset wins, the later one on a tie) and written in one transaction with one
// statement per table: the orders upsert is guarded by the source position, and
// only the orders it applied get their delivery, payment and items replaced.
// Rows are written in uid order so concurrent batches lock them in the same order.
func (s *Store) UpsertBatch(ctx context.Context, recs []orders.Record) ([]string, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	recs = dedupe(recs)
	var applied []string
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		applied, err = writeOrders(ctx, tx, recs, upsertOrdersSQL)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("upsert batch: %w", redact(err))
	}
	return applied, nil
}

// Put implements orders.Store: it writes o with orders.APISource when it is new,
// and otherwise replaces its data but keeps the stored source position.
func (s *Store) Put(ctx context.Context, o orders.Order) error {
	if !orders.ValidUID(o.OrderUID) {
		return fmt.Errorf("put: %w", orders.ErrInvalidUID)
	}
	recs := []orders.Record{{Order: o, Source: orders.APISource}}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := writeOrders(ctx, tx, recs, putOrderSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("put: %w", redact(err))
	}
	return nil
}

// writeOrders runs the orders statement ordersSQL for recs and then replaces the
// delivery, payment and items of the orders it applied. It returns those uids.
func writeOrders(ctx context.Context, tx bun.Tx, recs []orders.Record, ordersSQL string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, ordersSQL, ordersTable.args(recs)...)
	if err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	applied := make([]string, 0, len(recs))
	var replaced []string // applied uids that existed before: their old items must go
	for rows.Next() {
		var uid string
		var inserted bool
		if err := rows.Scan(&uid, &inserted); err != nil {
			rows.Close()
			return nil, fmt.Errorf("orders: scan: %w", err)
		}
		applied = append(applied, uid)
		if !inserted {
			replaced = append(replaced, uid)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	if len(applied) == 0 {
		return applied, nil
	}

	if len(applied) < len(recs) {
		keep := make(map[string]struct{}, len(applied))
		for _, uid := range applied {
			keep[uid] = struct{}{}
		}
		recs = slices.DeleteFunc(slices.Clone(recs), func(r orders.Record) bool {
			_, ok := keep[r.Order.OrderUID]
			return !ok
		})
	}
	deliverySQL, paymentSQL := upsertDeliverySQL, upsertPaymentSQL
	if len(replaced) == 0 { // all new: no conflict possible, skip the speculative insertion
		deliverySQL, paymentSQL = insertDeliverySQL, insertPaymentSQL
	}
	if _, err := tx.ExecContext(ctx, deliverySQL, deliveryTable.args(recs)...); err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	if _, err := tx.ExecContext(ctx, paymentSQL, paymentTable.args(recs)...); err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	if len(replaced) > 0 {
		slices.Sort(replaced)
		if _, err := tx.ExecContext(ctx, deleteItemsSQL, pgdialect.Array(replaced)); err != nil {
			return nil, fmt.Errorf("delete items: %w", err)
		}
	}
	if items := itemRows(recs); len(items) > 0 {
		if _, err := tx.ExecContext(ctx, insertItemsSQL, itemsTable.args(items)...); err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
	}
	return applied, nil
}

// dedupe keeps one record per uid: the one with the highest offset, the later one
// on a tie. The result is sorted by uid and does not alias recs.
func dedupe(recs []orders.Record) []orders.Record {
	out := make([]orders.Record, 0, len(recs))
	at := make(map[string]int, len(recs))
	for _, r := range recs {
		i, seen := at[r.Order.OrderUID]
		if !seen {
			at[r.Order.OrderUID] = len(out)
			out = append(out, r)
			continue
		}
		if r.Source.Offset >= out[i].Source.Offset {
			out[i] = r
		}
	}
	slices.SortFunc(out, func(a, b orders.Record) int { return cmp.Compare(a.Order.OrderUID, b.Order.OrderUID) })
	return out
}

// Get implements orders.Store in one round trip. A malformed uid gives
// orders.ErrInvalidUID.
func (s *Store) Get(ctx context.Context, uid string) (orders.Order, error) {
	if !orders.ValidUID(uid) {
		return orders.Order{}, fmt.Errorf("get: %w", orders.ErrInvalidUID)
	}
	stmt, err := s.getStatement(ctx)
	if err != nil {
		return orders.Order{}, fmt.Errorf("get: %w", err)
	}
	rows, err := stmt.QueryContext(ctx, uid)
	if err != nil {
		return orders.Order{}, fmt.Errorf("get: %w", err)
	}
	list, _, err := scanOrders(rows)
	if err != nil {
		return orders.Order{}, fmt.Errorf("get: %w", err)
	}
	if len(list) == 0 {
		return orders.Order{}, orders.ErrNotFound
	}
	return list[0], nil
}

// getStatement returns the prepared lookup by uid, preparing it on first use: the
// lookup is the cache-miss path of the API, and a prepared statement skips parsing
// and planning the join on every call. A failed prepare is retried on the next call.
func (s *Store) getStatement(ctx context.Context) (*sql.Stmt, error) {
	if stmt := s.getStmt.Load(); stmt != nil {
		return stmt, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if stmt := s.getStmt.Load(); stmt != nil {
		return stmt, nil
	}
	stmt, err := s.db.DB.PrepareContext(ctx, selectOrderSQL+"WHERE o.order_uid = $1")
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	s.getStmt.Store(stmt)
	return stmt, nil
}

// List implements orders.Store with keyset pagination on the insertion sequence,
// in one round trip per page. The page's last order is never repeated on the next
// page, and orders inserted while paging are newer than every cursor, so a walk
// visits each order that existed when it started exactly once (unless deleted).
func (s *Store) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	if limit < 1 || limit > orders.MaxListLimit {
		return orders.Page{}, fmt.Errorf("list: %w", orders.ErrInvalidLimit)
	}
	var (
		rows *sql.Rows
		err  error
	)
	if cursor == "" {
		rows, err = s.db.QueryContext(ctx, selectOrderSQL+"ORDER BY o.seq DESC LIMIT ?", limit+1)
	} else {
		after, derr := decodeCursor(cursor)
		if derr != nil {
			return orders.Page{}, fmt.Errorf("list: %w", derr)
		}
		rows, err = s.db.QueryContext(ctx, selectOrderSQL+"WHERE o.seq < ? ORDER BY o.seq DESC LIMIT ?", after, limit+1)
	}
	if err != nil {
		return orders.Page{}, fmt.Errorf("list: %w", err)
	}
	list, seqs, err := scanOrders(rows)
	if err != nil {
		return orders.Page{}, fmt.Errorf("list: %w", err)
	}
	page := orders.Page{Orders: list}
	if len(list) > limit {
		page.Orders = list[:limit]
		page.NextCursor = encodeCursor(seqs[limit-1])
	}
	return page, nil
}

// Delete implements orders.Store; the delivery, payment and items rows go with
// the order (ON DELETE CASCADE). A malformed uid gives orders.ErrInvalidUID.
func (s *Store) Delete(ctx context.Context, uid string) error {
	if !orders.ValidUID(uid) {
		return fmt.Errorf("delete: %w", orders.ErrInvalidUID)
	}
	res, err := s.db.NewDelete().TableExpr("orders").Where("order_uid = ?", uid).Exec(ctx)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if n == 0 {
		return orders.ErrNotFound
	}
	return nil
}

// scanOrders reads rows of selectOrderSQL and closes them. It returns the orders
// and their sequence numbers.
func scanOrders(rows *sql.Rows) ([]orders.Order, []int64, error) {
	defer rows.Close()
	var (
		list  []orders.Order
		seqs  []int64
		rec   orders.Record // each row is scanned into rec.Order, then copied out
		seq   int64
		items []byte
	)
	dest := make([]any, 0, len(readColumns)+2)
	dest = append(dest, &seq)
	for i := range readColumns {
		dest = append(dest, readColumns[i].ptr(&rec))
	}
	dest = append(dest, &items)
	for rows.Next() {
		rec = orders.Record{}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("scan: %w", err)
		}
		for i := range readColumns {
			if c := &readColumns[i]; c.kind == kindTimestamptz {
				t := c.tm(&rec)
				*t = t.UTC()
			}
		}
		o := &rec.Order
		if err := json.Unmarshal(items, &o.Items); err != nil {
			return nil, nil, fmt.Errorf("scan items of %s: %w", o.OrderUID, err)
		}
		list = append(list, *o)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return list, seqs, nil
}
