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
	t.Run("ApplyThousandInOneCall", func(t *testing.T) { testApplyThousand(t, newStore(t)) })
	t.Run("EmptyBatch", func(t *testing.T) { testEmptyBatch(t, newStore(t)) })
	t.Run("SameBatchAgainChangesNothing", func(t *testing.T) { testSameBatchAgain(t, newStore(t)) })
	t.Run("StaleVersionDoesNotOverwrite", func(t *testing.T) { testStaleVersion(t, newStore(t)) })
	t.Run("NewestInBatchWins", func(t *testing.T) { testNewestInBatch(t, newStore(t)) })
	t.Run("CrossPartitionVersionsByTimeThenPartition", func(t *testing.T) { testCrossPartition(t, newStore(t)) })
	t.Run("ZeroVersionIsNeverWritten", func(t *testing.T) { testZeroVersion(t, newStore(t)) })
	t.Run("ReplacedOrderReplacesItems", func(t *testing.T) { testReplaceItems(t, newStore(t)) })
	t.Run("GetCanonicalEqualsModelJSON", func(t *testing.T) { testGetCanonical(t, newStore(t)) })
	t.Run("EveryFieldRoundTrips", func(t *testing.T) { testEveryField(t, newStore(t)) })
	t.Run("GetUnknown", func(t *testing.T) { testGetUnknown(t, newStore(t)) })
	t.Run("ListVisitsEachOrderOnceWhileInserting", func(t *testing.T) { testListPagination(t, newStore(t)) })
	t.Run("ListReturnsVersions", func(t *testing.T) { testListVersions(t, newStore(t)) })
	t.Run("ListRejectsBadInput", func(t *testing.T) { testListBadInput(t, newStore(t)) })
	t.Run("TombstoneDeletesAndRefusesOlder", func(t *testing.T) { testTombstoneDeletes(t, newStore(t)) })
	t.Run("NewerVersionAfterTombstoneRecreates", func(t *testing.T) { testRecreate(t, newStore(t)) })
	t.Run("TombstoneOfUnknownUID", func(t *testing.T) { testTombstoneUnknown(t, newStore(t)) })
	t.Run("TombstoneOlderThanOrderChangesNothing", func(t *testing.T) { testStaleTombstone(t, newStore(t)) })
	t.Run("OrdersAndTombstonesInOneBatch", func(t *testing.T) { testMixedBatch(t, newStore(t)) })
	t.Run("PurgeTombstones", func(t *testing.T) { testPurge(t, newStore(t)) })
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

// baseTime is the record time (Unix ms) of the versions made by at.
const baseTime = 1_764_000_000_000

// at returns the version at offset of partition, with a record time that grows
// with the offset. Tests of versions of different partitions use atTime.
func at(partition int32, offset int64) orders.Version {
	return orders.Version{Partition: partition, Offset: offset, Time: baseTime + offset}
}

// atTime returns the version at offset of partition with record time ms.
func atTime(partition int32, offset, ms int64) orders.Version {
	return orders.Version{Partition: partition, Offset: offset, Time: ms}
}

func rec(o orders.Order, v orders.Version) orders.Record {
	return orders.Record{Order: o, Version: v}
}

// tomb returns the tombstone of uid at version v.
func tomb(uid string, v orders.Version) orders.Record {
	return orders.Record{Order: orders.Order{OrderUID: uid}, Version: v, Deleted: true}
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

// get returns the order with uid and its version; any error fails the test.
func get(t *testing.T, s orders.Store, uid string) (orders.Order, orders.Version) {
	t.Helper()
	o, v, err := s.Get(context.Background(), uid)
	if err != nil {
		t.Fatalf("Get(%s): %v", uid, err)
	}
	return o, v
}

// requireOrder fails the test unless the store holds want at version v.
func requireOrder(t *testing.T, s orders.Store, want orders.Order, v orders.Version) {
	t.Helper()
	got, gotV := get(t, s, want.OrderUID)
	RequireEqual(t, got, want)
	if gotV != v {
		t.Fatalf("Get(%s) version %+v, want %+v", want.OrderUID, gotV, v)
	}
}

// requireGone fails the test unless Get(uid) gives ErrNotFound with version v
// (the tombstone's; zero when none is kept).
func requireGone(t *testing.T, s orders.Store, uid string, v orders.Version) {
	t.Helper()
	o, gotV, err := s.Get(context.Background(), uid)
	if !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("Get(%s) = order %q, error %v; want ErrNotFound", uid, o.OrderUID, err)
	}
	if gotV != v {
		t.Fatalf("Get(%s): ErrNotFound with version %+v, want %+v", uid, gotV, v)
	}
}

// apply writes recs with ApplyBatch, checks that the result has exactly one
// Stored per uid of recs, and returns them by uid.
func apply(t *testing.T, s orders.Store, recs ...orders.Record) map[string]orders.Stored {
	t.Helper()
	stored, err := s.ApplyBatch(context.Background(), recs)
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	uids := map[string]bool{}
	for i := range recs {
		uids[recs[i].UID()] = true
	}
	byUID := make(map[string]orders.Stored, len(stored))
	for _, st := range stored {
		if !uids[st.UID] {
			t.Fatalf("ApplyBatch returned %+v: uid not in the batch", st)
		}
		if _, dup := byUID[st.UID]; dup {
			t.Fatalf("ApplyBatch returned uid %s twice: %+v", st.UID, stored)
		}
		byUID[st.UID] = st
	}
	if len(byUID) != len(uids) {
		t.Fatalf("ApplyBatch returned %d results for %d uids: %+v", len(byUID), len(uids), stored)
	}
	return byUID
}

// requireStored fails the test unless got is what the store holds for uid
// (version v, deleted or not) and changed says whether the call wrote it.
func requireStored(t *testing.T, got map[string]orders.Stored, uid string, v orders.Version, deleted, changed bool) {
	t.Helper()
	want := orders.Stored{UID: uid, Version: v, Deleted: deleted, Changed: changed, Previous: got[uid].Previous}
	if got[uid] != want { // Previous is checked by testCrossPartition
		t.Fatalf("ApplyBatch result for %s: %+v, want %+v", uid, got[uid], want)
	}
}

// changedUIDs returns the sorted uids of stored that the call changed.
func changedUIDs(stored map[string]orders.Stored) []string {
	var uids []string
	for uid, st := range stored {
		if st.Changed {
			uids = append(uids, uid)
		}
	}
	slices.Sort(uids)
	return uids
}

// listAll walks every page and returns the uids in listing order. It checks that
// each page has one version per order.
func listAll(t *testing.T, s orders.Store, limit int) []string {
	t.Helper()
	var uids []string
	cursor := ""
	for range 100000 {
		page, err := s.List(context.Background(), limit, cursor)
		if err != nil {
			t.Fatalf("List(%d, %q): %v", limit, cursor, err)
		}
		if len(page.Versions) != len(page.Orders) {
			t.Fatalf("List: %d orders, %d versions", len(page.Orders), len(page.Versions))
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

func testApplyThousand(t *testing.T, s orders.Store) {
	const n = 1000
	recs := make([]orders.Record, n)
	for i := range recs {
		recs[i] = rec(NewOrder(fmt.Sprintf("bulk-%04d", i), i), at(0, int64(i)))
	}
	stored := apply(t, s, recs...)
	for _, r := range recs {
		requireStored(t, stored, r.UID(), r.Version, false, true)
	}
	for i := 0; i < n; i += 97 {
		requireOrder(t, s, recs[i].Order, recs[i].Version)
	}
	if got := listAll(t, s, orders.MaxListLimit); len(got) != n {
		t.Fatalf("listing shows %d orders, want %d", len(got), n)
	}
}

func testEmptyBatch(t *testing.T, s orders.Store) {
	for _, recs := range [][]orders.Record{nil, {}} {
		stored, err := s.ApplyBatch(context.Background(), recs)
		if err != nil || len(stored) != 0 {
			t.Fatalf("ApplyBatch(%#v) = %v, %v; want nothing, no error", recs, stored, err)
		}
	}
}

// testSameBatchAgain applies a batch twice, as a retry after a commit whose
// outcome was unknown does: the second call changes nothing and reports the
// versions the first one stored.
func testSameBatchAgain(t *testing.T, s orders.Store) {
	var recs []orders.Record
	for i := range 50 {
		uid := fmt.Sprintf("again-%02d", i)
		v := at(int32(i%3), int64(100+i))
		if i%5 == 4 {
			recs = append(recs, tomb(uid, v))
		} else {
			recs = append(recs, rec(NewOrder(uid, i), v))
		}
	}
	first := apply(t, s, recs...)
	for _, r := range recs {
		requireStored(t, first, r.UID(), r.Version, r.Deleted, true)
	}
	listing := listAll(t, s, 7)
	again := apply(t, s, recs...)
	for _, r := range recs {
		requireStored(t, again, r.UID(), r.Version, r.Deleted, false)
		if r.Deleted {
			requireGone(t, s, r.UID(), r.Version)
		} else {
			requireOrder(t, s, r.Order, r.Version)
		}
	}
	if after := listAll(t, s, 7); !slices.Equal(after, listing) {
		t.Fatalf("listing changed after a replayed batch:\nbefore %v\nafter  %v", listing, after)
	}
}

func testStaleVersion(t *testing.T, s orders.Store) {
	newer := NewOrder("stale-1", 2)
	apply(t, s, rec(newer, at(1, 10)))

	stored := apply(t, s, rec(NewOrder("stale-1", 1), at(1, 5)))
	requireStored(t, stored, "stale-1", at(1, 10), false, false)
	stored = apply(t, s, rec(NewOrder("stale-1", 3), at(1, 10)))
	requireStored(t, stored, "stale-1", at(1, 10), false, false) // equal version, other content
	requireOrder(t, s, newer, at(1, 10))

	newest := NewOrder("stale-1", 4)
	stored = apply(t, s, rec(newest, at(1, 11)))
	requireStored(t, stored, "stale-1", at(1, 11), false, true)
	requireOrder(t, s, newest, at(1, 11))

	// In a mixed batch only the stale record is skipped.
	fresh := NewOrder("stale-2", 5)
	stored = apply(t, s, rec(NewOrder("stale-1", 6), at(1, 3)), rec(fresh, at(1, 12)))
	requireStored(t, stored, "stale-1", at(1, 11), false, false)
	requireStored(t, stored, "stale-2", at(1, 12), false, true)
	requireOrder(t, s, newest, at(1, 11))
	requireOrder(t, s, fresh, at(1, 12))
}

func testNewestInBatch(t *testing.T, s orders.Store) {
	// The same version twice: the later record wins.
	later := NewOrder("dup-1", 2)
	stored := apply(t, s, rec(NewOrder("dup-1", 1), at(0, 7)), rec(later, at(0, 7)))
	requireStored(t, stored, "dup-1", at(0, 7), false, true)
	requireOrder(t, s, later, at(0, 7))

	// The highest offset wins wherever it is in the batch.
	highest := NewOrder("dup-2", 3)
	stored = apply(t, s, rec(highest, at(0, 9)), rec(NewOrder("dup-2", 4), at(0, 8)))
	requireStored(t, stored, "dup-2", at(0, 9), false, true)
	requireOrder(t, s, highest, at(0, 9))

	// Across partitions the later record time wins, whatever the offsets.
	newest := NewOrder("dup-3", 5)
	stored = apply(t, s, rec(newest, atTime(1, 5, 2000)), rec(NewOrder("dup-3", 6), atTime(0, 9, 1000)))
	requireStored(t, stored, "dup-3", atTime(1, 5, 2000), false, true)
	requireOrder(t, s, newest, atTime(1, 5, 2000))

	// A tombstone newer than an order of the same batch deletes it, and the reverse.
	stored = apply(t, s,
		rec(NewOrder("dup-4", 1), at(0, 20)), tomb("dup-4", at(0, 21)),
		tomb("dup-5", at(0, 22)), rec(NewOrder("dup-5", 2), at(0, 23)))
	requireStored(t, stored, "dup-4", at(0, 21), true, true)
	requireStored(t, stored, "dup-5", at(0, 23), false, true)
	requireGone(t, s, "dup-4", at(0, 21))
	requireOrder(t, s, NewOrder("dup-5", 2), at(0, 23))
}

// testCrossPartition checks that versions of different partitions are ordered by
// record time, then by partition, against stored orders and tombstones, while
// versions of one partition are ordered by offset only.
func testCrossPartition(t *testing.T, s orders.Store) {
	const uid = "cross-1"
	apply(t, s, rec(NewOrder(uid, 1), atTime(1, 100, 1000)))
	steps := []struct {
		v        orders.Version
		deleted  bool
		applied  bool
		previous orders.Version // the replaced order's version, when on another partition
	}{
		{atTime(2, 1, 999), false, false, orders.Version{}},       // earlier time, higher partition
		{atTime(0, 5000, 1000), false, false, orders.Version{}},   // same time, lower partition
		{atTime(2, 1, 1000), false, true, atTime(1, 100, 1000)},   // same time, higher partition
		{atTime(1, 101, 1), false, false, orders.Version{}},       // earlier time; offsets of different partitions do not count
		{atTime(1, 200, 1001), false, true, atTime(2, 1, 1000)},   // later time
		{atTime(1, 199, 5000), false, false, orders.Version{}},    // same partition: the offset decides, not the time
		{atTime(1, 201, 5000), false, true, orders.Version{}},     // same partition, newer: nothing crossed
		{atTime(3, 0, 5000), true, true, orders.Version{}},        // a tombstone, same time, higher partition
		{atTime(0, 999999, 5000), false, false, orders.Version{}}, // older than the tombstone
		{atTime(3, 1, 1), false, true, orders.Version{}},          // same partition as the tombstone, higher offset
	}
	current, deleted := atTime(1, 100, 1000), false
	for i, st := range steps {
		r := rec(NewOrder(uid, 10+i), st.v)
		if st.deleted {
			r = tomb(uid, st.v)
		}
		stored := apply(t, s, r)
		if st.applied {
			current, deleted = st.v, st.deleted
		}
		requireStored(t, stored, uid, current, deleted, st.applied)
		if !st.deleted && stored[uid].Previous != st.previous {
			t.Fatalf("step %d (%+v): Previous %+v, want %+v", i, st.v, stored[uid].Previous, st.previous)
		}
		if deleted {
			requireGone(t, s, uid, current)
		} else if st.applied {
			requireOrder(t, s, r.Order, current)
		}
	}
}

// testZeroVersion checks that a record at the zero Version, which is older than
// every version and the same as "nothing known", is never written.
func testZeroVersion(t *testing.T, s orders.Store) {
	stored := apply(t, s, rec(NewOrder("zero-1", 1), orders.Version{}), tomb("zero-2", orders.Version{}))
	requireStored(t, stored, "zero-1", orders.Version{}, false, false)
	requireStored(t, stored, "zero-2", orders.Version{}, false, false)
	requireGone(t, s, "zero-1", orders.Version{})

	o := NewOrder("zero-3", 2)
	apply(t, s, rec(o, at(0, 0)))
	stored = apply(t, s, tomb("zero-3", orders.Version{}), rec(NewOrder("zero-4", 3), at(0, 1)))
	requireStored(t, stored, "zero-3", at(0, 0), false, false)
	requireStored(t, stored, "zero-4", at(0, 1), false, true)
	requireOrder(t, s, o, at(0, 0))
}

func testReplaceItems(t *testing.T, s orders.Store) {
	three := NewOrder("items-1", 2) // 3 items
	apply(t, s, rec(three, at(0, 1)))
	one := NewOrder("items-1", 3) // 1 item
	apply(t, s, rec(one, at(0, 2)))
	got, _ := get(t, s, "items-1")
	if len(got.Items) != 1 {
		t.Fatalf("after replacing a 3-item order with a 1-item one: %d items", len(got.Items))
	}
	RequireEqual(t, got, one)
}

func testGetCanonical(t *testing.T, s orders.Store) {
	o, raw := testkit.Canonical(t)
	apply(t, s, rec(o, at(0, 0)))
	stored, _ := get(t, s, o.OrderUID)
	got, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !testkit.SameJSON(t, got, raw) {
		t.Fatalf("stored canonical order differs from the sample:\n got: %s\nwant: %s", got, raw)
	}
}

// testEveryField writes orders whose every field is set (checked, so that a field
// added to the model but not to NewOrder is noticed) and reads them back equal,
// through ApplyBatch, Get and List: a field the store does not write or read
// fails here.
func testEveryField(t *testing.T, s orders.Store) {
	ctx := context.Background()
	first, second := NewOrder("every-1", 1), NewOrder("every-2", 2)
	for _, o := range []orders.Order{first, second} {
		if zero := zeroFields(o); len(zero) > 0 {
			t.Fatalf("NewOrder(%q, ...) leaves %v unset: set them so that every field is round-tripped", o.OrderUID, zero)
		}
		if err := orders.Validate(&o); err != nil {
			t.Fatalf("NewOrder(%q, ...) is invalid: %v", o.OrderUID, err)
		}
	}
	v1, v2 := atTime(3, 4, baseTime+5), atTime(6, 7, baseTime+8)
	apply(t, s, rec(first, v1))
	apply(t, s, rec(second, v2))
	requireOrder(t, s, first, v1)
	requireOrder(t, s, second, v2)
	page, err := s.List(ctx, 2, "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(page.Orders) != 2 || len(page.Versions) != 2 {
		t.Fatalf("List: %d orders, %d versions; want 2", len(page.Orders), len(page.Versions))
	}
	RequireEqual(t, page.Orders[0], second)
	RequireEqual(t, page.Orders[1], first)
	if page.Versions[0] != v2 || page.Versions[1] != v1 {
		t.Fatalf("List versions %+v, want [%+v %+v]", page.Versions, v2, v1)
	}
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
	apply(t, s, rec(NewOrder("known", 1), at(0, 1)))
	requireGone(t, s, "unknown", orders.Version{})
}

func testListPagination(t *testing.T, s orders.Store) {
	const total, limit = 230, 40
	// Uids sort in insertion order, so newest first is descending uid order.
	var want []string
	for b := 0; b < total; b += 60 {
		var batch []orders.Record
		for i := b; i < min(b+60, total); i++ {
			uid := fmt.Sprintf("page-%04d", i)
			batch = append(batch, rec(NewOrder(uid, i), at(0, int64(i))))
			want = append(want, uid)
		}
		apply(t, s, batch...)
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
		if len(p.Versions) != len(p.Orders) {
			t.Fatalf("page %d has %d orders and %d versions", page, len(p.Orders), len(p.Versions))
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
			fresh = append(fresh, rec(NewOrder(fmt.Sprintf("new-%02d-%d", page, i), i), at(1, int64(page*10+i))))
		}
		apply(t, s, fresh...)
		// An update of an already listed order does not move it.
		apply(t, s, rec(NewOrder(want[0], 999), at(0, int64(1000+page))))
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
	requireOrder(t, s, p.Orders[0], p.Versions[0])
}

// testListVersions checks that each listed order comes with its stored version,
// also after the order is replaced.
func testListVersions(t *testing.T, s orders.Store) {
	ctx := context.Background()
	want := map[string]orders.Version{
		"lv-1": atTime(0, 3, baseTime+30),
		"lv-2": atTime(1, 2, baseTime+20),
		"lv-3": atTime(2, 1, baseTime+10),
	}
	for uid, v := range want {
		apply(t, s, rec(NewOrder(uid, int(v.Offset)), v))
	}
	want["lv-2"] = atTime(1, 9, baseTime+90)
	apply(t, s, rec(NewOrder("lv-2", 9), want["lv-2"]))
	for _, limit := range []int{1, 2, 10} {
		seen := 0
		cursor := ""
		for {
			p, err := s.List(ctx, limit, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Versions) != len(p.Orders) {
				t.Fatalf("List(%d): %d orders, %d versions", limit, len(p.Orders), len(p.Versions))
			}
			for i, o := range p.Orders {
				if p.Versions[i] != want[o.OrderUID] {
					t.Fatalf("List(%d): %s listed at version %+v, want %+v", limit, o.OrderUID, p.Versions[i], want[o.OrderUID])
				}
				seen++
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if seen != len(want) {
			t.Fatalf("List(%d) listed %d orders, want %d", limit, seen, len(want))
		}
	}
}

func testListBadInput(t *testing.T, s orders.Store) {
	ctx := context.Background()
	apply(t, s, rec(NewOrder("one", 1), at(0, 1)))
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

func testTombstoneDeletes(t *testing.T, s orders.Store) {
	keep := NewOrder("del-2", 3)
	apply(t, s, rec(NewOrder("del-1", 2), at(0, 1)), rec(keep, at(0, 2)))

	stored := apply(t, s, tomb("del-1", at(0, 5)))
	requireStored(t, stored, "del-1", at(0, 5), true, true)
	requireGone(t, s, "del-1", at(0, 5))
	if got := listAll(t, s, 10); !slices.Equal(got, []string{"del-2"}) {
		t.Fatalf("listing after the delete: %v, want [del-2]", got)
	}

	// Versions older than the delete arriving later (a replay, a redelivery), the
	// delete again, and an older delete change nothing.
	for _, r := range []orders.Record{
		rec(NewOrder("del-1", 4), at(0, 3)),
		rec(NewOrder("del-1", 2), at(0, 1)),
		tomb("del-1", at(0, 5)),
		tomb("del-1", at(0, 4)),
	} {
		stored := apply(t, s, r)
		requireStored(t, stored, "del-1", at(0, 5), true, false)
		requireGone(t, s, "del-1", at(0, 5))
	}
	if got := listAll(t, s, 10); !slices.Equal(got, []string{"del-2"}) {
		t.Fatalf("listing after older versions of a deleted order: %v, want [del-2]", got)
	}
	requireOrder(t, s, keep, at(0, 2))
}

func testRecreate(t *testing.T, s orders.Store) {
	apply(t, s, rec(NewOrder("re-1", 2), at(0, 1)), rec(NewOrder("re-2", 1), at(0, 2)))
	apply(t, s, tomb("re-1", at(0, 5)))

	again := NewOrder("re-1", 3) // another number of items than the deleted one
	stored := apply(t, s, rec(again, at(0, 7)))
	requireStored(t, stored, "re-1", at(0, 7), false, true)
	requireOrder(t, s, again, at(0, 7))
	// A re-created order is listed as new.
	if got := listAll(t, s, 10); !slices.Equal(got, []string{"re-1", "re-2"}) {
		t.Fatalf("listing after re-creation: %v, want [re-1 re-2]", got)
	}

	// Older versions, of the order or of a delete, between the two change nothing.
	for _, r := range []orders.Record{rec(NewOrder("re-1", 4), at(0, 6)), tomb("re-1", at(0, 6)), tomb("re-1", at(0, 5))} {
		stored := apply(t, s, r)
		requireStored(t, stored, "re-1", at(0, 7), false, false)
		requireOrder(t, s, again, at(0, 7))
	}

	// A newer delete deletes it again.
	stored = apply(t, s, tomb("re-1", at(0, 8)))
	requireStored(t, stored, "re-1", at(0, 8), true, true)
	requireGone(t, s, "re-1", at(0, 8))
}

// testTombstoneUnknown checks that the delete of a uid never seen is kept, so that
// the order, arriving later but older, is refused.
func testTombstoneUnknown(t *testing.T, s orders.Store) {
	stored := apply(t, s, tomb("ghost", at(2, 10)))
	requireStored(t, stored, "ghost", at(2, 10), true, true)
	requireGone(t, s, "ghost", at(2, 10))

	stored = apply(t, s, rec(NewOrder("ghost", 1), at(2, 9)))
	requireStored(t, stored, "ghost", at(2, 10), true, false)
	requireGone(t, s, "ghost", at(2, 10))
	if got := listAll(t, s, 10); len(got) != 0 {
		t.Fatalf("listing shows %v, want nothing", got)
	}

	later := NewOrder("ghost", 2)
	stored = apply(t, s, rec(later, at(2, 11)))
	requireStored(t, stored, "ghost", at(2, 11), false, true)
	requireOrder(t, s, later, at(2, 11))
}

func testStaleTombstone(t *testing.T, s orders.Store) {
	o := NewOrder("live-1", 2)
	apply(t, s, rec(o, at(0, 10)))
	for _, v := range []orders.Version{at(0, 4), at(0, 10)} {
		stored := apply(t, s, tomb("live-1", v))
		requireStored(t, stored, "live-1", at(0, 10), false, false)
		requireOrder(t, s, o, at(0, 10))
	}
}

func testMixedBatch(t *testing.T, s orders.Store) {
	a, b, c := NewOrder("mix-a", 1), NewOrder("mix-b", 2), NewOrder("mix-c", 3)
	apply(t, s, rec(a, at(0, 10)), rec(b, at(0, 10)), rec(c, at(0, 10)), tomb("mix-d", at(0, 10)))

	b2, e := NewOrder("mix-b", 4), NewOrder("mix-e", 5)
	stored := apply(t, s,
		tomb("mix-f", at(0, 1)),              // a uid never seen
		rec(e, at(0, 1)),                     // new
		rec(NewOrder("mix-d", 6), at(0, 9)),  // older than its delete
		tomb("mix-c", at(0, 9)),              // older than the order
		rec(b2, at(0, 11)),                   // replaces
		tomb("mix-a", at(0, 11)),             // deletes
		rec(NewOrder("mix-a", 7), at(0, 10)), // the same uid, older than the delete
		rec(NewOrder("mix-g", 8), at(0, 12)), // a new order deleted in the same batch
		tomb("mix-g", at(0, 13)),
	)
	requireStored(t, stored, "mix-a", at(0, 11), true, true)
	requireStored(t, stored, "mix-b", at(0, 11), false, true)
	requireStored(t, stored, "mix-c", at(0, 10), false, false)
	requireStored(t, stored, "mix-d", at(0, 10), true, false)
	requireStored(t, stored, "mix-e", at(0, 1), false, true)
	requireStored(t, stored, "mix-f", at(0, 1), true, true)
	requireStored(t, stored, "mix-g", at(0, 13), true, true)
	if got := changedUIDs(stored); !slices.Equal(got, []string{"mix-a", "mix-b", "mix-e", "mix-f", "mix-g"}) {
		t.Fatalf("changed %v", got)
	}

	requireGone(t, s, "mix-a", at(0, 11))
	requireOrder(t, s, b2, at(0, 11))
	requireOrder(t, s, c, at(0, 10))
	requireGone(t, s, "mix-d", at(0, 10))
	requireOrder(t, s, e, at(0, 1))
	requireGone(t, s, "mix-f", at(0, 1))
	requireGone(t, s, "mix-g", at(0, 13))
	if got := listAll(t, s, 10); !slices.Equal(got, []string{"mix-e", "mix-c", "mix-b"}) {
		t.Fatalf("listing %v, want [mix-e mix-c mix-b]", got)
	}
}

// testPurge checks that PurgeTombstones forgets the deletes applied before the
// cutoff only, and the documented consequence: a version older than a forgotten
// delete is accepted again.
func testPurge(t *testing.T, s orders.Store) {
	ctx := context.Background()
	purge := func(cutoff time.Time) int64 {
		t.Helper()
		n, err := s.PurgeTombstones(ctx, cutoff, nil)
		if err != nil {
			t.Fatalf("PurgeTombstones: %v", err)
		}
		return n
	}
	if n := purge(time.Now().Add(time.Hour)); n != 0 {
		t.Fatalf("purge of an empty store removed %d", n)
	}
	apply(t, s, rec(NewOrder("old-1", 1), at(0, 1)), rec(NewOrder("kept", 2), at(0, 2)))
	apply(t, s, tomb("old-1", at(0, 10)), tomb("old-2", at(0, 11)))
	// The store's clock (the database's) need not be this process's exactly.
	time.Sleep(250 * time.Millisecond)
	cutoff := time.Now()
	time.Sleep(250 * time.Millisecond)
	apply(t, s, tomb("new-1", at(0, 12)))

	if n := purge(cutoff.Add(-time.Hour)); n != 0 {
		t.Fatalf("purge before every delete removed %d", n)
	}
	if n := purge(cutoff); n != 2 {
		t.Fatalf("purge removed %d tombstones, want 2 (old-1, old-2)", n)
	}
	if n := purge(cutoff); n != 0 {
		t.Fatalf("second purge removed %d", n)
	}
	requireGone(t, s, "old-1", orders.Version{})
	requireGone(t, s, "old-2", orders.Version{})
	requireGone(t, s, "new-1", at(0, 12))
	requireOrder(t, s, NewOrder("kept", 2), at(0, 2))

	// Forgotten deletes no longer refuse older versions; a kept one still does.
	old := NewOrder("old-1", 3)
	stored := apply(t, s, rec(old, at(0, 5)), rec(NewOrder("new-1", 4), at(0, 5)))
	requireStored(t, stored, "old-1", at(0, 5), false, true)
	requireStored(t, stored, "new-1", at(0, 12), true, false)
	requireOrder(t, s, old, at(0, 5))
}
