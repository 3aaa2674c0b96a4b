package ordersdb

import (
	"time"

	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/orderflow/orders-service/modules/orders"
)

// The write path sends each table's rows as one array per column and expands them
// server-side with unnest: one statement per table, whatever the batch size, and
// far less parsing and planning than a multi-row VALUES list.

// orderColumns holds the orders-table rows of a batch, column by column.
type orderColumns struct {
	uid, track, entry, locale, signature, customer, service, shard []string
	smID                                                           []int64
	created                                                        []time.Time
	oof                                                            []string
	partition, offset                                              []int64
}

// partColumns holds the delivery, payment and items rows of a batch.
type partColumns struct {
	// delivery and payment: one row per order
	uid                                               []string
	name, phone, zip, city, address, region, email    []string
	txn, requestID, currency, provider, bank          []string
	amount, paymentDt, deliveryCost, goodsTotal, cfee []int64

	// items: one row per item
	itemUID                                  []string
	position, chrtID, price, sale, total, nm []int64
	status                                   []int64
	itemTrack, rid, itemName, size, brand    []string
}

func toOrderColumns(recs []orders.Record) orderColumns {
	n := len(recs)
	c := orderColumns{
		uid: make([]string, 0, n), track: make([]string, 0, n), entry: make([]string, 0, n),
		locale: make([]string, 0, n), signature: make([]string, 0, n), customer: make([]string, 0, n),
		service: make([]string, 0, n), shard: make([]string, 0, n), smID: make([]int64, 0, n),
		created: make([]time.Time, 0, n), oof: make([]string, 0, n),
		partition: make([]int64, 0, n), offset: make([]int64, 0, n),
	}
	for i := range recs {
		o := &recs[i].Order
		c.uid = append(c.uid, o.OrderUID)
		c.track = append(c.track, o.TrackNumber)
		c.entry = append(c.entry, o.Entry)
		c.locale = append(c.locale, o.Locale)
		c.signature = append(c.signature, o.InternalSignature)
		c.customer = append(c.customer, o.CustomerID)
		c.service = append(c.service, o.DeliveryService)
		c.shard = append(c.shard, o.ShardKey)
		c.smID = append(c.smID, o.SmID)
		c.created = append(c.created, o.DateCreated.UTC())
		c.oof = append(c.oof, o.OofShard)
		c.partition = append(c.partition, int64(recs[i].Source.Partition))
		c.offset = append(c.offset, recs[i].Source.Offset)
	}
	return c
}

func (c *orderColumns) args() []any {
	return []any{
		pgdialect.Array(c.uid), pgdialect.Array(c.track), pgdialect.Array(c.entry),
		pgdialect.Array(c.locale), pgdialect.Array(c.signature), pgdialect.Array(c.customer),
		pgdialect.Array(c.service), pgdialect.Array(c.shard), pgdialect.Array(c.smID),
		pgdialect.Array(c.created), pgdialect.Array(c.oof),
		pgdialect.Array(c.partition), pgdialect.Array(c.offset),
	}
}

func toPartColumns(recs []orders.Record) partColumns {
	n := len(recs)
	items := 0
	for i := range recs {
		items += len(recs[i].Order.Items)
	}
	s := func(k int) []string { return make([]string, 0, k) }
	d := func(k int) []int64 { return make([]int64, 0, k) }
	c := partColumns{
		uid: s(n), name: s(n), phone: s(n), zip: s(n), city: s(n), address: s(n), region: s(n), email: s(n),
		txn: s(n), requestID: s(n), currency: s(n), provider: s(n), bank: s(n),
		amount: d(n), paymentDt: d(n), deliveryCost: d(n), goodsTotal: d(n), cfee: d(n),
		itemUID: s(items), position: d(items), chrtID: d(items), price: d(items), sale: d(items),
		total: d(items), nm: d(items), status: d(items),
		itemTrack: s(items), rid: s(items), itemName: s(items), size: s(items), brand: s(items),
	}
	for i := range recs {
		o := &recs[i].Order
		c.uid = append(c.uid, o.OrderUID)

		dl := &o.Delivery
		c.name = append(c.name, dl.Name)
		c.phone = append(c.phone, dl.Phone)
		c.zip = append(c.zip, dl.Zip)
		c.city = append(c.city, dl.City)
		c.address = append(c.address, dl.Address)
		c.region = append(c.region, dl.Region)
		c.email = append(c.email, dl.Email)

		p := &o.Payment
		c.txn = append(c.txn, p.Transaction)
		c.requestID = append(c.requestID, p.RequestID)
		c.currency = append(c.currency, p.Currency)
		c.provider = append(c.provider, p.Provider)
		c.amount = append(c.amount, p.Amount)
		c.paymentDt = append(c.paymentDt, p.PaymentDt)
		c.bank = append(c.bank, p.Bank)
		c.deliveryCost = append(c.deliveryCost, p.DeliveryCost)
		c.goodsTotal = append(c.goodsTotal, p.GoodsTotal)
		c.cfee = append(c.cfee, p.CustomFee)

		for j := range o.Items {
			it := &o.Items[j]
			c.itemUID = append(c.itemUID, o.OrderUID)
			c.position = append(c.position, int64(j))
			c.chrtID = append(c.chrtID, it.ChrtID)
			c.itemTrack = append(c.itemTrack, it.TrackNumber)
			c.price = append(c.price, it.Price)
			c.rid = append(c.rid, it.Rid)
			c.itemName = append(c.itemName, it.Name)
			c.sale = append(c.sale, it.Sale)
			c.size = append(c.size, it.Size)
			c.total = append(c.total, it.TotalPrice)
			c.nm = append(c.nm, it.NmID)
			c.brand = append(c.brand, it.Brand)
			c.status = append(c.status, it.Status)
		}
	}
	return c
}

func (c *partColumns) deliveryArgs() []any {
	return []any{
		pgdialect.Array(c.uid), pgdialect.Array(c.name), pgdialect.Array(c.phone), pgdialect.Array(c.zip),
		pgdialect.Array(c.city), pgdialect.Array(c.address), pgdialect.Array(c.region), pgdialect.Array(c.email),
	}
}

func (c *partColumns) paymentArgs() []any {
	return []any{
		pgdialect.Array(c.uid), pgdialect.Array(c.txn), pgdialect.Array(c.requestID), pgdialect.Array(c.currency),
		pgdialect.Array(c.provider), pgdialect.Array(c.amount), pgdialect.Array(c.paymentDt), pgdialect.Array(c.bank),
		pgdialect.Array(c.deliveryCost), pgdialect.Array(c.goodsTotal), pgdialect.Array(c.cfee),
	}
}

func (c *partColumns) itemArgs() []any {
	return []any{
		pgdialect.Array(c.itemUID), pgdialect.Array(c.position), pgdialect.Array(c.chrtID),
		pgdialect.Array(c.itemTrack), pgdialect.Array(c.price), pgdialect.Array(c.rid),
		pgdialect.Array(c.itemName), pgdialect.Array(c.sale), pgdialect.Array(c.size),
		pgdialect.Array(c.total), pgdialect.Array(c.nm), pgdialect.Array(c.brand), pgdialect.Array(c.status),
	}
}

// orderDataSet is the SET list that replaces an order's data columns on conflict.
const orderDataSet = `track_number = EXCLUDED.track_number,
	entry = EXCLUDED.entry,
	locale = EXCLUDED.locale,
	internal_signature = EXCLUDED.internal_signature,
	customer_id = EXCLUDED.customer_id,
	delivery_service = EXCLUDED.delivery_service,
	shardkey = EXCLUDED.shardkey,
	sm_id = EXCLUDED.sm_id,
	date_created = EXCLUDED.date_created,
	oof_shard = EXCLUDED.oof_shard,
	updated_at = now()`

const orderInsert = `INSERT INTO orders AS o (order_uid, track_number, entry, locale, internal_signature,
	customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard, source_partition, source_offset)
SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
	?::text[], ?::text[], ?::text[], ?::bigint[], ?::timestamptz[], ?::text[], ?::int[], ?::bigint[])
ON CONFLICT (order_uid) DO UPDATE SET ` + orderDataSet

// upsertOrdersSQL replaces a stored order only with a version from another
// partition or a strictly higher offset, so replays and redeliveries change
// nothing. RETURNING lists the applied uids; inserted is false for replaced rows.
const upsertOrdersSQL = orderInsert + `,
	source_partition = EXCLUDED.source_partition,
	source_offset = EXCLUDED.source_offset
WHERE EXCLUDED.source_partition <> o.source_partition OR EXCLUDED.source_offset > o.source_offset
RETURNING o.order_uid, (o.xmax = 0) AS inserted`

// putOrderSQL replaces an order unconditionally but keeps the source position of
// an existing row, so older Kafka versions replayed later are still refused.
const putOrderSQL = orderInsert + `
RETURNING o.order_uid, (o.xmax = 0) AS inserted`

const insertDeliverySQL = `INSERT INTO delivery (order_uid, name, phone, zip, city, address, region, email)
SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])`

const upsertDeliverySQL = insertDeliverySQL + `
ON CONFLICT (order_uid) DO UPDATE SET
	name = EXCLUDED.name, phone = EXCLUDED.phone, zip = EXCLUDED.zip, city = EXCLUDED.city,
	address = EXCLUDED.address, region = EXCLUDED.region, email = EXCLUDED.email`

const insertPaymentSQL = `INSERT INTO payment (order_uid, transaction, request_id, currency, provider, amount,
	payment_dt, bank, delivery_cost, goods_total, custom_fee)
SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[],
	?::bigint[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[])`

const upsertPaymentSQL = insertPaymentSQL + `
ON CONFLICT (order_uid) DO UPDATE SET
	transaction = EXCLUDED.transaction, request_id = EXCLUDED.request_id, currency = EXCLUDED.currency,
	provider = EXCLUDED.provider, amount = EXCLUDED.amount, payment_dt = EXCLUDED.payment_dt,
	bank = EXCLUDED.bank, delivery_cost = EXCLUDED.delivery_cost, goods_total = EXCLUDED.goods_total,
	custom_fee = EXCLUDED.custom_fee`

const deleteItemsSQL = `DELETE FROM items WHERE order_uid = ANY(?::text[])`

const insertItemsSQL = `INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name,
	sale, size, total_price, nm_id, brand, status)
SELECT * FROM unnest(?::text[], ?::int[], ?::bigint[], ?::text[], ?::bigint[], ?::text[], ?::text[],
	?::bigint[], ?::text[], ?::bigint[], ?::bigint[], ?::text[], ?::bigint[])`

// selectOrderSQL reads orders with their delivery, payment and items (as a JSON
// array in item order) in one statement; callers append WHERE/ORDER BY/LIMIT.
const selectOrderSQL = `SELECT o.seq, o.order_uid, o.track_number, o.entry, o.locale, o.internal_signature,
	o.customer_id, o.delivery_service, o.shardkey, o.sm_id, o.date_created, o.oof_shard,
	d.name, d.phone, d.zip, d.city, d.address, d.region, d.email,
	p.transaction, p.request_id, p.currency, p.provider, p.amount, p.payment_dt, p.bank,
	p.delivery_cost, p.goods_total, p.custom_fee,
	(SELECT coalesce(json_agg(json_build_object(
		'chrt_id', i.chrt_id, 'track_number', i.track_number, 'price', i.price, 'rid', i.rid,
		'name', i.name, 'sale', i.sale, 'size', i.size, 'total_price', i.total_price,
		'nm_id', i.nm_id, 'brand', i.brand, 'status', i.status) ORDER BY i.position), '[]'::json)
	 FROM items i WHERE i.order_uid = o.order_uid) AS items
FROM orders o
JOIN delivery d ON d.order_uid = o.order_uid
JOIN payment p ON p.order_uid = o.order_uid
`
