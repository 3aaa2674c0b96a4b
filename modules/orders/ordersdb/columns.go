package ordersdb

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orders-service/modules/orders"
)

// The columns the store writes are declared once per table below (ordersTable,
// deliveryTable, paymentTable, itemsTable; tombstonesTable is the key and source
// columns of ordersTable). Everything else is derived from these declarations when
// the package is initialised: the write statements, their ON CONFLICT update lists
// and version guards, the lookup's SELECT list and its Scan targets, and the
// column lists of the COPY baselines of the benchmarks (BatchRows).
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
	kindInteger:     "integer[]",
	kindBigint:      "bigint[]",
	kindTimestamptz: "timestamptz[]",
}

// role says how the statements treat a column.
type role uint8

const (
	// data is a field of the model: written, replaced on conflict, read back.
	data role = iota
	// key identifies the row (order_uid; the position of an item): written, never
	// updated, read back only from orders and order_tombstones.
	key
	// source is the version of the stored order or tombstone (orders.Version;
	// orders and order_tombstones only): written, replaced only by the guarded
	// upserts, read back as the version.
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
		integer("source_partition", func(r *orders.Record) *int32 { return &r.Version.Partition }).as(source),
		bigint("source_offset", func(r *orders.Record) *int64 { return &r.Version.Offset }).as(source),
		bigint("source_time", func(r *orders.Record) *int64 { return &r.Version.Time }).as(source),
	}}

	// tombstonesTable holds the version of each deleted order: the key and source
	// columns of orders (deleted_at is filled by the database).
	tombstonesTable = table[orders.Record]{name: "order_tombstones", cols: ordersTable.only(key, source)}

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

// only returns t's columns of the given roles, in declaration order.
func (t *table[R]) only(roles ...role) []column[R] {
	var out []column[R]
	for _, c := range t.cols {
		if slices.Contains(roles, c.role) {
			out = append(out, c)
		}
	}
	return out
}

// names returns the names of t's columns of the given roles, each prefixed with prefix.
func (t *table[R]) names(prefix string, roles ...role) []string {
	var out []string
	for _, c := range t.only(roles...) {
		out = append(out, prefix+c.name)
	}
	return out
}

// unnestSQL returns unnest(<one array parameter per column>) AS v(<columns>):
// the rows of the parameters of args, as a relation v with t's columns.
func (t *table[R]) unnestSQL() string {
	var b strings.Builder
	b.WriteString("unnest(")
	for k, c := range t.cols {
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString("?::")
		b.WriteString(arrayType[c.kind])
	}
	b.WriteString(") AS v(")
	b.WriteString(strings.Join(t.names("", key, data, source), ", "))
	b.WriteString(")")
	return b.String()
}

// insertFromSQL returns INSERT INTO <table> <as> (<columns>) SELECT * FROM <from>,
// from being a relation aliased v with t's columns.
func (t *table[R]) insertFromSQL(as, from string) string {
	return "INSERT INTO " + t.name + as + " (" + strings.Join(t.names("", key, data, source), ", ") +
		")\nSELECT * FROM " + from
}

// stagingSQL creates the temporary table into which a batch's rows of t are
// copied before one statement moves them (it lives as long as the connection;
// its rows as long as the transaction).
func (t *table[R]) stagingSQL(name string) string {
	cols := make([]string, len(t.cols))
	for k, c := range t.cols {
		cols[k] = c.name + " " + strings.TrimSuffix(arrayType[c.kind], "[]") + " NOT NULL"
	}
	return "CREATE TEMPORARY TABLE IF NOT EXISTS " + name + " (" + strings.Join(cols, ", ") + ") ON COMMIT DELETE ROWS"
}

// setSQL returns the SET list "c = EXCLUDED.c, ..." of t's columns of the given roles.
func (t *table[R]) setSQL(roles ...role) string {
	names := t.names("", roles...)
	for i, n := range names {
		names[i] = n + " = EXCLUDED." + n
	}
	return strings.Join(names, ",\n\t")
}

// TableRows is what the store writes into one table for a batch: its column
// names and its rows, in the order of the table's declaration in this package.
// Row(i) returns the values of row i (string, int32, int64 or time.Time, as
// pgx encodes them for the column types). It serves the COPY baselines of the
// benchmarks, which must write exactly the columns the store writes.
type TableRows struct {
	Table   string
	Columns []string
	Types   []string // the SQL type of each column: text, integer, bigint or timestamptz
	Len     int
	Row     func(i int) []any
}

// BatchRows returns the rows ApplyBatch writes for recs when all are new orders
// (taken as they are: without de-duplication, Deleted ignored) into orders,
// delivery, payment and items, in this order.
func BatchRows(recs []orders.Record) []TableRows {
	return []TableRows{
		ordersTable.rows(recs), deliveryTable.rows(recs), paymentTable.rows(recs), itemsTable.rows(itemRows(recs)),
	}
}

func (t *table[R]) rows(rows []R) TableRows {
	types := make([]string, len(t.cols))
	for k, c := range t.cols {
		types[k] = strings.TrimSuffix(arrayType[c.kind], "[]")
	}
	return TableRows{
		Table:   t.name,
		Columns: t.names("", key, data, source),
		Types:   types,
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

// newerSQL returns the condition "the version of row a is newer than that of row
// b", a and b being aliases of rows with the source columns (orders, tombstones,
// EXCLUDED, the unnested parameters v). It is orders.Version.Compare: the zero
// version (0, 0, 0) is older than every other; on one partition the higher offset
// is newer; across partitions the later time, then the higher partition.
// Versions written before source_time existed have time 0 (partition -1 for the
// orders written through the former API) and compare the same way.
func newerSQL(a, b string) string {
	return strings.NewReplacer("{a}", a, "{b}", b).Replace(`(({a}.source_partition, {a}.source_offset, {a}.source_time) <> (0, 0, 0) AND (
		({b}.source_partition, {b}.source_offset, {b}.source_time) = (0, 0, 0)
		OR ({a}.source_partition = {b}.source_partition AND {a}.source_offset > {b}.source_offset)
		OR ({a}.source_partition <> {b}.source_partition
			AND ({a}.source_time, {a}.source_partition) > ({b}.source_time, {b}.source_partition))))`)
}

// ordersStaging is the temporary table a batch's orders are copied into.
const ordersStaging = "orders_in"

// applyOrdersFrom returns applyOrdersSQL reading the orders from from, a relation
// aliased v with the columns of orders.
func applyOrdersFrom(from string) string {
	return ordersTable.insertFromSQL(" AS o", from) + `
WHERE ` + notRefusedBySQL("order_tombstones", "t") + `
ON CONFLICT (order_uid) DO UPDATE SET
	` + ordersTable.setSQL(data) + ",\n\tupdated_at = now(),\n\t" + ordersTable.setSQL(source) + `
WHERE ` + newerSQL("EXCLUDED", "o") + `
RETURNING o.order_uid, (o.xmax = 0) AS inserted,
	CASE WHEN o.xmax <> 0 THEN (SELECT p.source_partition || '.' || p.source_offset || '.' || p.source_time
		FROM orders p WHERE p.order_uid = o.order_uid AND p.source_partition <> o.source_partition) END AS previous`
}

// notRefusedBySQL returns the condition "no row of table (aliased as) alias with
// the uid of v is at least as new as v". It is a correlated scalar subquery, one
// primary-key lookup per row of v, rather than NOT EXISTS: PostgreSQL turns NOT
// EXISTS into an anti join, which it may plan as a hash of the whole table, built
// for every batch (65 ms for 100,000 tombstones against 2 ms of lookups).
func notRefusedBySQL(table, alias string) string {
	return `(SELECT true FROM ` + table + ` ` + alias + ` WHERE ` + alias + `.order_uid = v.order_uid AND NOT ` +
		newerSQL("v", alias) + `) IS NULL`
}

// The write statements, derived from the declarations.
var (
	// applyOrdersSQL inserts or replaces orders, each only when it is newer than
	// the stored order (the ON CONFLICT guard) and than the tombstone of its uid
	// (the WHERE; a tombstone may be older than a stored order, never newer:
	// applyTombstonesSQL deletes the older orders). Replays, redeliveries and
	// retries change nothing. RETURNING lists the applied uids; inserted is false
	// for replaced rows, and previous is, for a replaced row whose former version
	// was on another partition, that version as "partition.offset.time" (the
	// subquery reads the statement's snapshot, so it sees the row as it was; it
	// runs only for replaced rows). The batch's orders are read from
	// ordersStaging, filled by COPY: a COPY of text rows costs the server far
	// less than the same rows as array parameters (parsed, then unnested).
	applyOrdersSQL = applyOrdersFrom(ordersStaging + " AS v")
	// The statements of a small batch (see smallBatch): the orders statement and
	// the parts' inserts read the rows from array parameters (unnest), formatted
	// into the statement text, so that a batch's statements go in two round trips.
	applyOrdersUnnestSQL = applyOrdersFrom(ordersTable.unnestSQL())
	insertDeliverySQL    = deliveryTable.insertFromSQL("", deliveryTable.unnestSQL())
	insertPaymentSQL     = paymentTable.insertFromSQL("", paymentTable.unnestSQL())
	insertItemsSQL       = itemsTable.insertFromSQL("", itemsTable.unnestSQL())
	// stageOrdersSQL creates ordersStaging when the connection has not got it.
	stageOrdersSQL = ordersTable.stagingSQL(ordersStaging)
	// beginSQL opens a batch's transaction and makes sure of the staging table,
	// in one round trip.
	beginSQL = "BEGIN;\n" + stageOrdersSQL

	// applyTombstonesSQL deletes the orders older than their tombstone (their
	// parts go with them: ON DELETE CASCADE) and stores each tombstone unless an
	// order at least as new remains, replacing an older tombstone. A tombstone of
	// a uid never seen is stored too, so that the order arriving later, older, is
	// refused. RETURNING lists the stored tombstones. The DELETE and the INSERT see
	// the same snapshot: the INSERT's condition is the DELETE's negation.
	applyTombstonesSQL = `WITH v AS (SELECT * FROM ` + tombstonesTable.unnestSQL() + `),
deleted AS (DELETE FROM orders o USING v WHERE o.order_uid = v.order_uid AND ` + newerSQL("v", "o") + `)
INSERT INTO order_tombstones AS t (` + strings.Join(tombstonesTable.names("", key, source), ", ") + `)
SELECT * FROM v
WHERE ` + notRefusedBySQL("orders", "o") + `
ON CONFLICT (order_uid) DO UPDATE SET
	` + tombstonesTable.setSQL(source) + `,
	deleted_at = now()
WHERE ` + newerSQL("EXCLUDED", "t") + `
RETURNING t.order_uid`

	// storedSQL reads the versions stored for the uids of a text[] parameter given
	// twice: a row per order (deleted false) and per tombstone (deleted true).
	storedSQL = "SELECT " + strings.Join(tombstonesTable.names("", key, source), ", ") + ", false AS deleted FROM orders WHERE order_uid = ANY(?::text[])\n" +
		"UNION ALL\nSELECT " + strings.Join(tombstonesTable.names("", key, source), ", ") + ", true FROM order_tombstones WHERE order_uid = ANY(?::text[])"
)

const (
	// deletePartsSQL deletes the delivery, payment and items of the orders of a
	// text[] of uids, given three times (the orders a batch replaced: their new
	// parts follow). Its placeholders are sequential, so that applySmall can send
	// it in one template with the statements after it.
	deletePartsSQL = `WITH d AS (DELETE FROM delivery WHERE order_uid = ANY(?::text[])),
p AS (DELETE FROM payment WHERE order_uid = ANY(?::text[]))
DELETE FROM items WHERE order_uid = ANY(?::text[])`

	purgeTombstonesSQL = `DELETE FROM order_tombstones WHERE order_uid IN (
	SELECT order_uid FROM order_tombstones WHERE deleted_at < ? ORDER BY order_uid LIMIT ? FOR UPDATE SKIP LOCKED)
RETURNING order_uid`
)

// readColumns are the Scan targets of selectOrderSQL after o.seq and before the
// items: the columns of orders (key, data and source: the version) and the data
// columns of delivery and payment, in the order of the SELECT list.
var readColumns = readList()

// readColumn is a column of a table read by selectOrderSQL, aliased as "<alias>.<name>".
type readColumn struct {
	column[orders.Record]
	alias string
}

func readList() []readColumn {
	var cols []readColumn
	for _, c := range ordersTable.cols {
		cols = append(cols, readColumn{c, "o"})
	}
	for _, t := range []struct {
		alias string
		table *table[orders.Record]
	}{{"d", &deliveryTable}, {"p", &paymentTable}} {
		for _, c := range t.table.only(data) {
			cols = append(cols, readColumn{c, t.alias})
		}
	}
	return cols
}

// zeroSQL is a constant of each kind, for the columns a tombstone has not.
var zeroSQL = [...]string{
	kindText:        "''::text",
	kindInteger:     "0::int",
	kindBigint:      "0::bigint",
	kindTimestamptz: "'epoch'::timestamptz",
}

// selectOrderSQL reads orders with their delivery, payment and items (as a JSON
// array in item order, keyed by the JSON names) in one statement; callers append
// WHERE/ORDER BY/LIMIT. Its columns are o.seq, readColumns and items.
var selectOrderSQL = func() string {
	var items, cols []string
	for _, n := range itemsTable.names("", data) {
		items = append(items, "'"+n+"', i."+n)
	}
	for _, c := range readColumns {
		cols = append(cols, c.alias+"."+c.name)
	}
	return "SELECT o.seq, " + strings.Join(cols, ", ") + `,
	(SELECT coalesce(json_agg(json_build_object(
		` + strings.Join(items, ", ") + `) ORDER BY i.position), '[]'::json)
	 FROM items i WHERE i.order_uid = o.order_uid) AS items
FROM orders o
JOIN delivery d ON d.order_uid = o.order_uid
JOIN payment p ON p.order_uid = o.order_uid
`
}()

// getSQL is the lookup by uid ($1): the order as selectOrderSQL reads it, and the
// tombstone of the uid as a row of the same columns with seq 0 (never a sequence
// number), the uid and version in the columns of orders and zero values in the
// others. Each of the two parts is one index lookup; usually at most one finds a
// row (both do for an order re-created after a delete: the order is the newer).
var getSQL = lookupSQL("")

// lookupSQL is getSQL with cond appended to the WHERE clause of both parts.
func lookupSQL(cond string) string {
	cols := []string{"0::bigint"}
	for _, c := range readColumns {
		if c.alias == "o" && c.role != data {
			cols = append(cols, "t."+c.name)
		} else {
			cols = append(cols, zeroSQL[c.kind])
		}
	}
	cols = append(cols, "'[]'::json")
	return selectOrderSQL + "WHERE o.order_uid = $1" + cond + "\nUNION ALL\nSELECT " + strings.Join(cols, ", ") +
		"\nFROM order_tombstones t WHERE t.order_uid = $1" + cond
}

// copySQL returns COPY <into> (<columns>) FROM STDIN, the statement that reads
// what copyText writes for t (into is t's name or a staging table's).
func (t *table[R]) copySQL(into string) string {
	return "COPY " + into + " (" + strings.Join(t.names("", key, data, source), ", ") + ") FROM STDIN"
}

// copyText appends rows to buf in COPY's text format: one line per row, the
// columns in declaration order separated by tabs. Text is escaped (backslash,
// newline, carriage return, tab); times are written as the dialect writes them
// (UTC, microseconds), so COPY stores exactly what the unnest statements do.
func (t *table[R]) copyText(buf []byte, rows []R) []byte {
	for i := range rows {
		for k := range t.cols {
			if k > 0 {
				buf = append(buf, '\t')
			}
			c := &t.cols[k]
			switch c.kind {
			case kindText:
				buf = appendCopyText(buf, *c.str(&rows[i]))
			case kindInteger:
				buf = strconv.AppendInt(buf, int64(*c.i32(&rows[i])), 10)
			case kindBigint:
				buf = strconv.AppendInt(buf, *c.i64(&rows[i]), 10)
			case kindTimestamptz:
				buf = c.tm(&rows[i]).UTC().AppendFormat(buf, "2006-01-02 15:04:05.999999-07:00")
			}
		}
		buf = append(buf, '\n')
	}
	return buf
}

// appendCopyText appends s escaped for COPY's text format.
func appendCopyText(buf []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var esc byte
		switch s[i] {
		case '\\':
			esc = '\\'
		case '\n':
			esc = 'n'
		case '\r':
			esc = 'r'
		case '\t':
			esc = 't'
		default:
			continue
		}
		buf = append(buf, s[start:i]...)
		buf = append(buf, '\\', esc)
		start = i + 1
	}
	return append(buf, s[start:]...)
}
