package ordersdb

import (
	"strings"
	"time"

	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orders-service/modules/orders"
)

// The columns the store writes are declared once per table below (ordersTable,
// deliveryTable, paymentTable, itemsTable). Everything else is derived from these
// declarations when the package is initialised: the write statements, their
// ON CONFLICT update lists, the lookup's SELECT list and its Scan targets, and
// the column lists of the COPY baselines of the benchmarks (BatchRows).
//
// The write path sends each table's rows as one array per column and expands them
// server-side with unnest: one statement per table, whatever the batch size, and
// far less parsing and planning than a multi-row VALUES list.
//
// A column's SQL name is the JSON name of the model field it stores (the items
// are read back as JSON objects keyed by column name); the tests check that the
// declarations, the model and the migrated schema agree.

// kind is the PostgreSQL type of a column and the Go type of its model field.
type kind uint8

const (
	kindText        kind = iota // text; string
	kindInteger                 // integer; int32 (sent as an int64 array, cast to int[])
	kindBigint                  // bigint; int64
	kindTimestamptz             // timestamptz; time.Time, written and read back in UTC
)

// arrayType is the array type the unnest parameter of a column is cast to.
var arrayType = [...]string{
	kindText:        "text[]",
	kindInteger:     "int[]",
	kindBigint:      "bigint[]",
	kindTimestamptz: "timestamptz[]",
}

// role says how the statements treat a column.
type role uint8

const (
	// data is a field of the model: written, replaced on conflict, read back.
	data role = iota
	// key identifies the row (order_uid; the position of an item): written, never
	// updated, read back only from orders.
	key
	// source is the Kafka position of the stored version (orders only): written,
	// replaced only by the guarded upsert, never read back.
	source
)

// column declares one column of a table whose rows are of type R. Its accessor
// (the one of its kind; the others are nil) points into a row at the column's
// value: the write path reads through it, the lookup scans into it.
type column[R any] struct {
	name string
	kind kind
	role role

	str func(*R) *string
	i32 func(*R) *int32
	i64 func(*R) *int64
	tm  func(*R) *time.Time
}

func text[R any](name string, field func(*R) *string) column[R] {
	return column[R]{name: name, kind: kindText, str: field}
}

func integer[R any](name string, field func(*R) *int32) column[R] {
	return column[R]{name: name, kind: kindInteger, i32: field}
}

func bigint[R any](name string, field func(*R) *int64) column[R] {
	return column[R]{name: name, kind: kindBigint, i64: field}
}

func timestamptz[R any](name string, field func(*R) *time.Time) column[R] {
	return column[R]{name: name, kind: kindTimestamptz, tm: field}
}

// as returns c with role r.
func (c column[R]) as(r role) column[R] {
	c.role = r
	return c
}

// ptr returns a pointer to the column's value in row, as a Scan target.
func (c *column[R]) ptr(row *R) any {
	switch c.kind {
	case kindText:
		return c.str(row)
	case kindInteger:
		return c.i32(row)
	case kindBigint:
		return c.i64(row)
	default:
		return c.tm(row)
	}
}

// value returns the column's value in row.
func (c *column[R]) value(row *R) any {
	switch c.kind {
	case kindText:
		return *c.str(row)
	case kindInteger:
		return *c.i32(row)
	case kindBigint:
		return *c.i64(row)
	default:
		return *c.tm(row)
	}
}

// table declares one table the store writes, with rows of type R.
type table[R any] struct {
	name string
	cols []column[R]
}

// itemRow is one row of items: an item with its order and its position in the order.
type itemRow struct {
	order *orders.Order
	item  *orders.Item
	pos   int32
}

// The tables, in the order they are written. Adding a field to the order means
// adding its column here (see "Adding a field to the order" in the README).
var (
	ordersTable = table[orders.Record]{name: "orders", cols: []column[orders.Record]{
		text("order_uid", func(r *orders.Record) *string { return &r.Order.OrderUID }).as(key),
		text("track_number", func(r *orders.Record) *string { return &r.Order.TrackNumber }),
		text("entry", func(r *orders.Record) *string { return &r.Order.Entry }),
		text("locale", func(r *orders.Record) *string { return &r.Order.Locale }),
		text("internal_signature", func(r *orders.Record) *string { return &r.Order.InternalSignature }),
		text("customer_id", func(r *orders.Record) *string { return &r.Order.CustomerID }),
		text("delivery_service", func(r *orders.Record) *string { return &r.Order.DeliveryService }),
		text("shardkey", func(r *orders.Record) *string { return &r.Order.ShardKey }),
		bigint("sm_id", func(r *orders.Record) *int64 { return &r.Order.SmID }),
		timestamptz("date_created", func(r *orders.Record) *time.Time { return &r.Order.DateCreated }),
		text("oof_shard", func(r *orders.Record) *string { return &r.Order.OofShard }),
		integer("source_partition", func(r *orders.Record) *int32 { return &r.Source.Partition }).as(source),
		bigint("source_offset", func(r *orders.Record) *int64 { return &r.Source.Offset }).as(source),
	}}

	deliveryTable = table[orders.Record]{name: "delivery", cols: []column[orders.Record]{
		text("order_uid", func(r *orders.Record) *string { return &r.Order.OrderUID }).as(key),
		text("name", func(r *orders.Record) *string { return &r.Order.Delivery.Name }),
		text("phone", func(r *orders.Record) *string { return &r.Order.Delivery.Phone }),
		text("zip", func(r *orders.Record) *string { return &r.Order.Delivery.Zip }),
		text("city", func(r *orders.Record) *string { return &r.Order.Delivery.City }),
		text("address", func(r *orders.Record) *string { return &r.Order.Delivery.Address }),
		text("region", func(r *orders.Record) *string { return &r.Order.Delivery.Region }),
		text("email", func(r *orders.Record) *string { return &r.Order.Delivery.Email }),
	}}

	paymentTable = table[orders.Record]{name: "payment", cols: []column[orders.Record]{
		text("order_uid", func(r *orders.Record) *string { return &r.Order.OrderUID }).as(key),
		text("transaction", func(r *orders.Record) *string { return &r.Order.Payment.Transaction }),
		text("request_id", func(r *orders.Record) *string { return &r.Order.Payment.RequestID }),
		text("currency", func(r *orders.Record) *string { return &r.Order.Payment.Currency }),
		text("provider", func(r *orders.Record) *string { return &r.Order.Payment.Provider }),
		bigint("amount", func(r *orders.Record) *int64 { return &r.Order.Payment.Amount }),
		bigint("payment_dt", func(r *orders.Record) *int64 { return &r.Order.Payment.PaymentDt }),
		text("bank", func(r *orders.Record) *string { return &r.Order.Payment.Bank }),
		bigint("delivery_cost", func(r *orders.Record) *int64 { return &r.Order.Payment.DeliveryCost }),
		bigint("goods_total", func(r *orders.Record) *int64 { return &r.Order.Payment.GoodsTotal }),
		bigint("custom_fee", func(r *orders.Record) *int64 { return &r.Order.Payment.CustomFee }),
	}}

	itemsTable = table[itemRow]{name: "items", cols: []column[itemRow]{
		text("order_uid", func(r *itemRow) *string { return &r.order.OrderUID }).as(key),
		integer("position", func(r *itemRow) *int32 { return &r.pos }).as(key),
		bigint("chrt_id", func(r *itemRow) *int64 { return &r.item.ChrtID }),
		text("track_number", func(r *itemRow) *string { return &r.item.TrackNumber }),
		bigint("price", func(r *itemRow) *int64 { return &r.item.Price }),
		text("rid", func(r *itemRow) *string { return &r.item.Rid }),
		text("name", func(r *itemRow) *string { return &r.item.Name }),
		bigint("sale", func(r *itemRow) *int64 { return &r.item.Sale }),
		text("size", func(r *itemRow) *string { return &r.item.Size }),
		bigint("total_price", func(r *itemRow) *int64 { return &r.item.TotalPrice }),
		bigint("nm_id", func(r *itemRow) *int64 { return &r.item.NmID }),
		text("brand", func(r *itemRow) *string { return &r.item.Brand }),
		bigint("status", func(r *itemRow) *int64 { return &r.item.Status }),
	}}
)

// itemRows returns the items rows of recs, in record and item order.
func itemRows(recs []orders.Record) []itemRow {
	n := 0
	for i := range recs {
		n += len(recs[i].Order.Items)
	}
	rows := make([]itemRow, 0, n)
	for i := range recs {
		o := &recs[i].Order
		for j := range o.Items {
			rows = append(rows, itemRow{order: o, item: &o.Items[j], pos: int32(j)})
		}
	}
	return rows
}

// args returns the parameters of t's insert statement for rows: one array per column.
func (t *table[R]) args(rows []R) []any {
	args := make([]any, len(t.cols))
	for k := range t.cols {
		c := &t.cols[k]
		switch c.kind {
		case kindText:
			a := make([]string, len(rows))
			for i := range rows {
				a[i] = *c.str(&rows[i])
			}
			args[k] = pgdialect.Array(a)
		case kindInteger:
			a := make([]int64, len(rows)) // pgdialect formats []int64 without reflection
			for i := range rows {
				a[i] = int64(*c.i32(&rows[i]))
			}
			args[k] = pgdialect.Array(a)
		case kindBigint:
			a := make([]int64, len(rows))
			for i := range rows {
				a[i] = *c.i64(&rows[i])
			}
			args[k] = pgdialect.Array(a)
		case kindTimestamptz:
			a := make([]time.Time, len(rows))
			for i := range rows {
				a[i] = c.tm(&rows[i]).UTC()
			}
			args[k] = pgdialect.Array(a)
		}
	}
	return args
}

// names returns the names of t's columns of the given roles, each prefixed with prefix.
func (t *table[R]) names(prefix string, roles ...role) []string {
	var out []string
	for _, c := range t.cols {
		for _, r := range roles {
			if c.role == r {
				out = append(out, prefix+c.name)
				break
			}
		}
	}
	return out
}

// insertSQL returns INSERT INTO <table> <as> (<columns>) SELECT * FROM unnest(<one array per column>).
func (t *table[R]) insertSQL(as string) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(t.name)
	b.WriteString(as)
	b.WriteString(" (")
	b.WriteString(strings.Join(t.names("", key, data, source), ", "))
	b.WriteString(")\nSELECT * FROM unnest(")
	for k, c := range t.cols {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?::")
		b.WriteString(arrayType[c.kind])
	}
	b.WriteString(")")
	return b.String()
}

// setSQL returns the SET list "c = EXCLUDED.c, ..." of t's columns of the given roles.
func (t *table[R]) setSQL(roles ...role) string {
	names := t.names("", roles...)
	for i, n := range names {
		names[i] = n + " = EXCLUDED." + n
	}
	return strings.Join(names, ",\n\t")
}

// upsertSQL returns the insert statement of a part table (one row per order)
// replacing the data columns on conflict.
func (t *table[R]) upsertSQL() string {
	return t.insertSQL("") + "\nON CONFLICT (order_uid) DO UPDATE SET\n\t" + t.setSQL(data)
}

// TableRows is what the store writes into one table for a batch: its column
// names and its rows, in the order of the table's declaration in this package.
// Row(i) returns the values of row i (string, int32, int64 or time.Time, as
// pgx encodes them for the column types). It serves the COPY baselines of the
// benchmarks, which must write exactly the columns the store writes.
type TableRows struct {
	Table   string
	Columns []string
	Len     int
	Row     func(i int) []any
}

// BatchRows returns the rows UpsertBatch writes for recs (taken as they are,
// without de-duplication) into orders, delivery, payment and items, in this order.
func BatchRows(recs []orders.Record) []TableRows {
	return []TableRows{
		ordersTable.rows(recs), deliveryTable.rows(recs), paymentTable.rows(recs), itemsTable.rows(itemRows(recs)),
	}
}

func (t *table[R]) rows(rows []R) TableRows {
	return TableRows{
		Table:   t.name,
		Columns: t.names("", key, data, source),
		Len:     len(rows),
		Row: func(i int) []any {
			row := make([]any, len(t.cols))
			for k := range t.cols {
				row[k] = t.cols[k].value(&rows[i])
			}
			return row
		},
	}
}

// The write statements, derived from the declarations.
var (
	// upsertOrdersSQL replaces a stored order only with a version from another
	// partition or a strictly higher offset, so replays and redeliveries change
	// nothing. RETURNING lists the applied uids; inserted is false for replaced rows.
	upsertOrdersSQL = orderInsertSQL + ",\n\t" + ordersTable.setSQL(source) + `
WHERE EXCLUDED.source_partition <> o.source_partition OR EXCLUDED.source_offset > o.source_offset
RETURNING o.order_uid, (o.xmax = 0) AS inserted`

	// putOrderSQL replaces an order unconditionally but keeps the source position of
	// an existing row, so older Kafka versions replayed later are still refused.
	putOrderSQL = orderInsertSQL + `
RETURNING o.order_uid, (o.xmax = 0) AS inserted`

	// orderInsertSQL inserts orders or replaces their data columns.
	orderInsertSQL = ordersTable.insertSQL(" AS o") + "\nON CONFLICT (order_uid) DO UPDATE SET\n\t" +
		ordersTable.setSQL(data) + ",\n\tupdated_at = now()"

	insertDeliverySQL = deliveryTable.insertSQL("")
	upsertDeliverySQL = deliveryTable.upsertSQL()
	insertPaymentSQL  = paymentTable.insertSQL("")
	upsertPaymentSQL  = paymentTable.upsertSQL()
	insertItemsSQL    = itemsTable.insertSQL("")
)

const deleteItemsSQL = `DELETE FROM items WHERE order_uid = ANY(?::text[])`

// readColumns are the Scan targets of selectOrderSQL after o.seq and before the
// items: the key and data columns of orders and the data columns of delivery and
// payment, in the order of the SELECT list.
var readColumns = readList()

func readList() []column[orders.Record] {
	var cols []column[orders.Record]
	for _, c := range ordersTable.cols {
		if c.role != source {
			cols = append(cols, c)
		}
	}
	for _, t := range []*table[orders.Record]{&deliveryTable, &paymentTable} {
		for _, c := range t.cols {
			if c.role == data {
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// selectOrderSQL reads orders with their delivery, payment and items (as a JSON
// array in item order, keyed by the JSON names) in one statement; callers append
// WHERE/ORDER BY/LIMIT. Its columns are o.seq, readColumns and items.
var selectOrderSQL = func() string {
	var items []string
	for _, n := range itemsTable.names("", data) {
		items = append(items, "'"+n+"', i."+n)
	}
	return "SELECT o.seq, " + strings.Join(ordersTable.names("o.", key, data), ", ") + ",\n\t" +
		strings.Join(deliveryTable.names("d.", data), ", ") + ",\n\t" +
		strings.Join(paymentTable.names("p.", data), ", ") + `,
	(SELECT coalesce(json_agg(json_build_object(
		` + strings.Join(items, ", ") + `) ORDER BY i.position), '[]'::json)
	 FROM items i WHERE i.order_uid = o.order_uid) AS items
FROM orders o
JOIN delivery d ON d.order_uid = o.order_uid
JOIN payment p ON p.order_uid = o.order_uid
`
}()
