// Package storetest is the contract suite every orders.Store implementation must
// pass (the database store and the cached store alike). Call Run from a test of
// the implementation's package.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit"
)

// Run runs the contract suite. newStore must return a store over a fresh, empty,
// migrated database for each call (each subtest calls it once).
func Run(t *testing.T, newStore func(t *testing.T) orders.Store) {
	t.Run("UpsertThousandInOneCall", func(t *testing.T) { testUpsertThousand(t, newStore(t)) })
	t.Run("EmptyBatch", func(t *testing.T) { testEmptyBatch(t, newStore(t)) })
	t.Run("SameBatchAgainChangesNothing", func(t *testing.T) { testSameBatchAgain(t, newStore(t)) })
	t.Run("StaleVersionDoesNotOverwrite", func(t *testing.T) { testStaleVersion(t, newStore(t)) })
	t.Run("DuplicateUIDInBatch", func(t *testing.T) { testDuplicateInBatch(t, newStore(t)) })
	t.Run("ReplacedOrderReplacesItems", func(t *testing.T) { testReplaceItems(t, newStore(t)) })
	t.Run("GetCanonicalEqualsModelJSON", func(t *testing.T) { testGetCanonical(t, newStore(t)) })
	t.Run("EveryFieldRoundTrips", func(t *testing.T) { testEveryField(t, newStore(t)) })
	t.Run("GetUnknown", func(t *testing.T) { testGetUnknown(t, newStore(t)) })
	t.Run("ListVisitsEachOrderOnceWhileInserting", func(t *testing.T) { testListPagination(t, newStore(t)) })
	t.Run("ListRejectsBadInput", func(t *testing.T) { testListBadInput(t, newStore(t)) })
	t.Run("PutThenOlderReplayDoesNotUndo", func(t *testing.T) { testPutThenReplay(t, newStore(t)) })
	t.Run("PutCreates", func(t *testing.T) { testPutCreates(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
}

// NewOrder returns a valid order shaped like the canonical one with the given uid;
// variant changes every field (including the number of items, 1..3), so two
// variants of a uid differ everywhere.
func NewOrder(uid string, variant int) orders.Order {
	v := int64(variant)
	n := 1 + variant%3
	o := orders.Order{
		OrderUID:          uid,
		TrackNumber:       fmt.Sprintf("TRACK%d", variant),
		Entry:             "WBIL",
		Locale:            []string{"en", "ru", "de"}[variant%3],
		InternalSignature: fmt.Sprintf("sig-%d", variant),
		CustomerID:        fmt.Sprintf("customer-%d", variant),
		DeliveryService:   "meest",
		ShardKey:          fmt.Sprint(variant % 10),
		SmID:              99 + v,
		DateCreated:       time.Date(2021, 11, 26, 6, 22, 19, 0, time.UTC).Add(time.Duration(variant) * 1001 * time.Microsecond),
		OofShard:          fmt.Sprint(variant % 2),
		Delivery: orders.Delivery{
			Name:    fmt.Sprintf("Test Testov %d", variant),
			Phone:   "+9720000000",
			Zip:     fmt.Sprint(2639809 + variant),
			City:    "Kiryat Mozkin",
			Address: fmt.Sprintf("Ploshad Mira %d", 15+variant),
			Region:  "Kraiot",
			Email:   fmt.Sprintf("test%d@gmail.com", variant),
		},
		Payment: orders.Payment{
			Transaction:  uid,
			RequestID:    fmt.Sprint(variant),
			Currency:     "USD",
			Provider:     "wbpay",
			PaymentDt:    1637907727 + v,
			Bank:         "alpha",
			DeliveryCost: 1500 + v,
			CustomFee:    v % 7,
		},
	}
	for i := range n {
		price := 453 + v + int64(i)
		sale := (30 + v) % 100
		total := price * (100 - sale) / 100
		o.Items = append(o.Items, orders.Item{
			ChrtID:      9934930 + v*10 + int64(i),
			TrackNumber: o.TrackNumber,
			Price:       price,
			Rid:         fmt.Sprintf("rid-%s-%d-%d", uid, variant, i),
			Name:        fmt.Sprintf("Mascaras \"%d\" 'q' \\ {x,y}", i),
			Sale:        sale,
			Size:        "0",
			TotalPrice:  total,
			NmID:        2389212 + v,
			Brand:       "Vivienne Sabo",
			Status:      202,
		})
		o.Payment.GoodsTotal += total
	}
	o.Payment.Amount = o.Payment.GoodsTotal + o.Payment.DeliveryCost + o.Payment.CustomFee
	return o
}

func rec(o orders.Order, partition int32, offset int64) orders.Record {
	return orders.Record{Order: o, Source: orders.Source{Partition: partition, Offset: offset}}
}

// RequireEqual fails the test unless got and want encode to the same JSON.
func RequireEqual(t testing.TB, got, want orders.Order) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("order %s differs:\n got: %s\nwant: %s", want.OrderUID, g, w)
	}
}

func get(t *testing.T, s orders.Store, uid string) orders.Order {
	t.Helper()
	o, err := s.Get(context.Background(), uid)
	if err != nil {
		t.Fatalf("Get(%s): %v", uid, err)
	}
	return o
}

func upsert(t *testing.T, s orders.Store, recs ...orders.Record) []string {
	t.Helper()
	applied, err := s.UpsertBatch(context.Background(), recs)
	if err != nil {
		t.Fatalf("UpsertBatch: %v", err)
	}
	slices.Sort(applied)
	return applied
}

// listAll walks every page and returns the uids in listing order.
func listAll(t *testing.T, s orders.Store, limit int) []string {
	t.Helper()
	var uids []string
	cursor := ""
	for range 100000 {
		page, err := s.List(context.Background(), limit, cursor)
		if err != nil {
			t.Fatalf("List(%d, %q): %v", limit, cursor, err)
		}
		for _, o := range page.Orders {
			uids = append(uids, o.OrderUID)
		}
		if page.NextCursor == "" {
			return uids
		}
		cursor = page.NextCursor
	}
	t.Fatal("List never ended")
	return nil
}

func testUpsertThousand(t *testing.T, s orders.Store) {
	const n = 1000
	recs := make([]orders.Record, n)
	want := make([]string, n)
	for i := range recs {
		uid := fmt.Sprintf("bulk-%04d", i)
		recs[i] = rec(NewOrder(uid, i), 0, int64(i))
		want[i] = uid
	}
	applied := upsert(t, s, recs...)
	if !slices.Equal(applied, want) {
		t.Fatalf("applied %d uids, want all %d", len(applied), n)
	}
	for i := 0; i < n; i += 97 {
		RequireEqual(t, get(t, s, recs[i].Order.OrderUID), recs[i].Order)
	}
	if got := listAll(t, s, orders.MaxListLimit); len(got) != n {
		t.Fatalf("listing shows %d orders, want %d", len(got), n)
	}
}

func testEmptyBatch(t *testing.T, s orders.Store) {
	applied, err := s.UpsertBatch(context.Background(), nil)
	if err != nil || len(applied) != 0 {
		t.Fatalf("UpsertBatch(nil) = %v, %v; want nothing applied, no error", applied, err)
	}
}

func testSameBatchAgain(t *testing.T, s orders.Store) {
	var recs []orders.Record
	for i := range 50 {
		recs = append(recs, rec(NewOrder(fmt.Sprintf("again-%02d", i), i), int32(i%3), int64(100+i)))
	}
	if applied := upsert(t, s, recs...); len(applied) != len(recs) {
		t.Fatalf("first upsert applied %d, want %d", len(applied), len(recs))
	}
	listing := listAll(t, s, 7)
	if applied := upsert(t, s, recs...); len(applied) != 0 {
		t.Fatalf("same batch again applied %v, want nothing", applied)
	}
	for _, r := range recs {
		RequireEqual(t, get(t, s, r.Order.OrderUID), r.Order)
	}
	if again := listAll(t, s, 7); !slices.Equal(again, listing) {
		t.Fatalf("listing changed after a replayed batch:\nbefore %v\nafter  %v", listing, again)
	}
}

func testStaleVersion(t *testing.T, s orders.Store) {
	newer := NewOrder("stale-1", 2)
	upsert(t, s, rec(newer, 1, 10))

	if applied := upsert(t, s, rec(NewOrder("stale-1", 1), 1, 5)); len(applied) != 0 {
		t.Fatalf("older offset applied: %v", applied)
	}
	if applied := upsert(t, s, rec(NewOrder("stale-1", 3), 1, 10)); len(applied) != 0 {
		t.Fatalf("equal offset with other content applied: %v", applied)
	}
	RequireEqual(t, get(t, s, "stale-1"), newer)

	newest := NewOrder("stale-1", 4)
	if applied := upsert(t, s, rec(newest, 1, 11)); !slices.Equal(applied, []string{"stale-1"}) {
		t.Fatalf("newer offset: applied %v, want [stale-1]", applied)
	}
	RequireEqual(t, get(t, s, "stale-1"), newest)

	// In a mixed batch only the stale record is skipped.
	fresh := NewOrder("stale-2", 5)
	applied := upsert(t, s, rec(NewOrder("stale-1", 6), 1, 3), rec(fresh, 1, 12))
	if !slices.Equal(applied, []string{"stale-2"}) {
		t.Fatalf("mixed batch applied %v, want [stale-2]", applied)
	}
	RequireEqual(t, get(t, s, "stale-1"), newest)
	RequireEqual(t, get(t, s, "stale-2"), fresh)
}

func testDuplicateInBatch(t *testing.T, s orders.Store) {
	later := NewOrder("dup-1", 2)
	applied := upsert(t, s, rec(NewOrder("dup-1", 1), 0, 7), rec(later, 0, 7))
	if !slices.Equal(applied, []string{"dup-1"}) {
		t.Fatalf("applied %v, want [dup-1] once", applied)
	}
	RequireEqual(t, get(t, s, "dup-1"), later)

	highest := NewOrder("dup-2", 3)
	upsert(t, s, rec(highest, 0, 9), rec(NewOrder("dup-2", 4), 0, 8))
	RequireEqual(t, get(t, s, "dup-2"), highest)
}

func testReplaceItems(t *testing.T, s orders.Store) {
	three := NewOrder("items-1", 2) // 3 items
	upsert(t, s, rec(three, 0, 1))
	one := NewOrder("items-1", 3) // 1 item
	upsert(t, s, rec(one, 0, 2))
	got := get(t, s, "items-1")
	if len(got.Items) != 1 {
		t.Fatalf("after replacing a 3-item order with a 1-item one: %d items", len(got.Items))
	}
	RequireEqual(t, got, one)
}

func testGetCanonical(t *testing.T, s orders.Store) {
	o, raw := testkit.Canonical(t)
	upsert(t, s, rec(o, 0, 0))
	got, err := json.Marshal(get(t, s, o.OrderUID))
	if err != nil {
		t.Fatal(err)
	}
	if !testkit.SameJSON(t, got, raw) {
		t.Fatalf("stored canonical order differs from the sample:\n got: %s\nwant: %s", got, raw)
	}
}

// testEveryField writes orders whose every field is set (checked, so that a field
// added to the model but not to NewOrder is noticed) and reads them back equal,
// through UpsertBatch, Put, Get and List: a field the store does not write or
// read fails here.
func testEveryField(t *testing.T, s orders.Store) {
	ctx := context.Background()
	upserted, put := NewOrder("every-1", 1), NewOrder("every-2", 2)
	for _, o := range []orders.Order{upserted, put} {
		if zero := zeroFields(o); len(zero) > 0 {
			t.Fatalf("NewOrder(%q, ...) leaves %v unset: set them so that every field is round-tripped", o.OrderUID, zero)
		}
		if err := orders.Validate(&o); err != nil {
			t.Fatalf("NewOrder(%q, ...) is invalid: %v", o.OrderUID, err)
		}
	}
	upsert(t, s, rec(upserted, 3, 4))
	if err := s.Put(ctx, put); err != nil {
		t.Fatalf("Put: %v", err)
	}
	RequireEqual(t, get(t, s, upserted.OrderUID), upserted)
	RequireEqual(t, get(t, s, put.OrderUID), put)
	page, err := s.List(ctx, 2, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(page.Orders) != 2 {
		t.Fatalf("List: %d orders, want 2", len(page.Orders))
	}
	RequireEqual(t, page.Orders[0], put)
	RequireEqual(t, page.Orders[1], upserted)
}

// zeroFields returns the JSON paths of the fields of o that hold their zero value
// (in every element of an array: items[].name).
func zeroFields(o orders.Order) []string {
	var zero []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch {
		case v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[time.Time]():
			for i := range v.NumField() {
				name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
				if name == "-" || !v.Type().Field(i).IsExported() {
					continue
				}
				if path != "" {
					name = path + "." + name
				}
				walk(v.Field(i), name)
			}
		case v.Kind() == reflect.Slice:
			if v.Len() == 0 {
				zero = append(zero, path)
				return
			}
			// A field is unset when it is zero in every element.
			elem := reflect.New(v.Type().Elem()).Elem()
			for i := range v.Len() {
				mergeNonZero(elem, v.Index(i))
			}
			walk(elem, path+"[]")
		case v.IsZero():
			zero = append(zero, path)
		}
	}
	walk(reflect.ValueOf(o), "")
	return zero
}

// mergeNonZero sets the zero fields of dst (a struct) to those of src.
func mergeNonZero(dst, src reflect.Value) {
	for i := range dst.NumField() {
		if dst.Field(i).IsZero() && dst.Type().Field(i).IsExported() {
			dst.Field(i).Set(src.Field(i))
		}
	}
}

func testGetUnknown(t *testing.T, s orders.Store) {
	upsert(t, s, rec(NewOrder("known", 1), 0, 1))
	if _, err := s.Get(context.Background(), "unknown"); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("Get(unknown) error = %v, want ErrNotFound", err)
	}
}

func testListPagination(t *testing.T, s orders.Store) {
	const total, limit = 230, 40
	// Uids sort in insertion order, so newest first is descending uid order.
	var want []string
	for b := 0; b < total; b += 60 {
		var batch []orders.Record
		for i := b; i < min(b+60, total); i++ {
			uid := fmt.Sprintf("page-%04d", i)
			batch = append(batch, rec(NewOrder(uid, i), 0, int64(i)))
			want = append(want, uid)
		}
		upsert(t, s, batch...)
	}
	slices.Reverse(want)

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		p, err := s.List(context.Background(), limit, cursor)
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(p.Orders) > limit {
			t.Fatalf("page %d has %d orders, limit %d", page, len(p.Orders), limit)
		}
		for _, o := range p.Orders {
			got = append(got, o.OrderUID)
		}
		if p.NextCursor == "" {
			break
		}
		if len(p.Orders) != limit {
			t.Fatalf("page %d has %d orders and a next cursor; only the last page may be short", page, len(p.Orders))
		}
		// New orders arrive between pages; they are newer than the cursor.
		var fresh []orders.Record
		for i := range 5 {
			fresh = append(fresh, rec(NewOrder(fmt.Sprintf("new-%02d-%d", page, i), i), 1, int64(page*10+i)))
		}
		upsert(t, s, fresh...)
		// An update of an already listed order does not move it.
		upsert(t, s, rec(NewOrder(want[0], 999), 0, int64(1000+page)))
		cursor = p.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("walk visited %d orders, want each of %d exactly once, newest first:\n got %v\nwant %v", len(got), len(want), got, want)
	}

	// A listing from the top shows the inserted ones first.
	p, err := s.List(context.Background(), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Orders) != 1 || p.Orders[0].OrderUID[:4] != "new-" {
		t.Fatalf("newest order is %v, want one inserted during the walk", p.Orders)
	}
	RequireEqual(t, get(t, s, p.Orders[0].OrderUID), p.Orders[0])
}

func testListBadInput(t *testing.T, s orders.Store) {
	ctx := context.Background()
	upsert(t, s, rec(NewOrder("one", 1), 0, 1))
	for _, limit := range []int{0, -1, orders.MaxListLimit + 1} {
		if _, err := s.List(ctx, limit, ""); !errors.Is(err, orders.ErrInvalidLimit) {
			t.Errorf("List(limit %d) error = %v, want ErrInvalidLimit", limit, err)
		}
	}
	for _, c := range []string{"!!!", "not-a-cursor", "djE6", "djE6LTE", "djE6YWJj", "MTIz"} {
		if _, err := s.List(ctx, 10, c); !errors.Is(err, orders.ErrInvalidCursor) {
			t.Errorf("List(cursor %q) error = %v, want ErrInvalidCursor", c, err)
		}
	}
	p, err := s.List(ctx, orders.MaxListLimit, "")
	if err != nil || len(p.Orders) != 1 || p.NextCursor != "" {
		t.Fatalf("List(max) = %d orders, cursor %q, err %v; want 1 order and no cursor", len(p.Orders), p.NextCursor, err)
	}
}

func testPutThenReplay(t *testing.T, s orders.Store) {
	ctx := context.Background()
	v1 := NewOrder("put-1", 2) // 3 items
	upsert(t, s, rec(v1, 2, 10))

	edited := NewOrder("put-1", 3) // 1 item
	if err := s.Put(ctx, edited); err != nil {
		t.Fatal(err)
	}
	RequireEqual(t, get(t, s, "put-1"), edited)

	// Kafka redelivers the version already stored, and an older one.
	if applied := upsert(t, s, rec(v1, 2, 10), rec(NewOrder("put-1", 1), 2, 4)); len(applied) != 0 {
		t.Fatalf("replay after Put applied %v", applied)
	}
	if applied := upsert(t, s, rec(NewOrder("put-1", 1), 2, 4)); len(applied) != 0 {
		t.Fatalf("older replay after Put applied %v", applied)
	}
	RequireEqual(t, get(t, s, "put-1"), edited)

	// A genuinely newer Kafka version still wins over the edit.
	v5 := NewOrder("put-1", 5)
	if applied := upsert(t, s, rec(v5, 2, 11)); !slices.Equal(applied, []string{"put-1"}) {
		t.Fatalf("newer version after Put: applied %v", applied)
	}
	RequireEqual(t, get(t, s, "put-1"), v5)
}

func testPutCreates(t *testing.T, s orders.Store) {
	ctx := context.Background()
	o := NewOrder("put-new", 4)
	if err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	RequireEqual(t, get(t, s, "put-new"), o)
	o2 := NewOrder("put-new", 5)
	if err := s.Put(ctx, o2); err != nil {
		t.Fatal(err)
	}
	RequireEqual(t, get(t, s, "put-new"), o2)
	p, err := s.List(ctx, 10, "")
	if err != nil || len(p.Orders) != 1 {
		t.Fatalf("List after two Puts of one uid: %d orders, err %v; want 1", len(p.Orders), err)
	}
}

func testDelete(t *testing.T, s orders.Store) {
	ctx := context.Background()
	upsert(t, s, rec(NewOrder("del-1", 2), 0, 1), rec(NewOrder("del-2", 3), 0, 2))
	if err := s.Delete(ctx, "del-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "del-1"); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "del-1"); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("second Delete: %v, want ErrNotFound", err)
	}
	if got := listAll(t, s, 10); !slices.Equal(got, []string{"del-2"}) {
		t.Fatalf("listing after Delete: %v, want [del-2]", got)
	}
	// The uid can be ingested again after a delete.
	again := NewOrder("del-1", 4)
	upsert(t, s, rec(again, 0, 3))
	RequireEqual(t, get(t, s, "del-1"), again)
}
