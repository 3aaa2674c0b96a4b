package orderscache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

// totalWeight sums the weights of the entries present, independently of otter's
// own accounting.
func totalWeight(c *Cache) int64 {
	var sum int64
	for uid, e := range c.c.All() {
		sum += int64(Weight(uid, e.Body))
	}
	return sum
}

// peek returns the live entry of uid without counting a lookup.
func (c *Cache) peek(uid string) (*Entry, bool) {
	e, ok := c.c.GetEntryQuietly(uid)
	if !ok {
		return nil, false
	}
	return e.Value, true
}

// at returns the version at offset off of partition 0.
func at(off int64) orders.Version {
	return orders.Version{Partition: 0, Offset: off, Time: 1_700_000_000_000 + off}
}

func TestWeight(t *testing.T) {
	if got, want := Weight("ab", make([]byte, 10)), uint32(12+EntryOverhead); got != want {
		t.Fatalf("Weight = %d, want %d", got, want)
	}
	if got, want := Weight("ab", nil), uint32(2+EntryOverhead); got != want {
		t.Fatalf("Weight of a negative entry = %d, want %d", got, want)
	}
}

func TestNewRejectsNonPositiveBound(t *testing.T) {
	for _, n := range []int64{0, -1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%d) did not panic", n)
				}
			}()
			New(n)
		}()
	}
}

func TestByteBound(t *testing.T) {
	const maxBytes = 64 << 10
	c := New(maxBytes)
	body := bytes.Repeat([]byte("x"), 500)
	const n = 1000 // ~800 KiB offered, twelve times the bound
	for i := range n {
		c.offer(fmt.Sprintf("order-%04d", i), newEntry(body, at(int64(i+1))))
		if i%50 == 49 {
			c.cleanUp()
			if s := c.Stats(); s.Bytes > maxBytes {
				t.Fatalf("after %d offers: bytes %d > max %d", i+1, s.Bytes, maxBytes)
			}
		}
	}
	c.cleanUp()
	s := c.Stats()
	if s.Bytes > maxBytes || s.MaxBytes != maxBytes {
		t.Fatalf("stats %+v: want bytes <= max_bytes = %d", s, maxBytes)
	}
	if sum := totalWeight(c); sum > maxBytes || sum != s.Bytes {
		t.Fatalf("entries weigh %d, stats say %d, bound %d", sum, s.Bytes, maxBytes)
	}
	perEntry := int64(Weight("order-0000", body))
	if s.Entries == 0 || s.Entries > maxBytes/perEntry {
		t.Fatalf("entries = %d, want 1..%d", s.Entries, maxBytes/perEntry)
	}
	if s.Evictions < uint64(n-s.Entries) {
		t.Fatalf("evictions = %d, want >= %d", s.Evictions, n-s.Entries)
	}
}

func TestEntryLargerThanBoundIsNotKept(t *testing.T) {
	c := New(1 << 10)
	c.offer("small", newEntry([]byte(`{}`), at(1)))
	c.offer("huge", newEntry(make([]byte, 4<<10), at(1)))
	c.cleanUp()
	if _, ok := c.Get("huge"); ok {
		t.Fatal("an entry heavier than the whole bound is cached")
	}
	if s := c.Stats(); s.Bytes > 1<<10 {
		t.Fatalf("bytes %d over the bound", s.Bytes)
	}
}

func TestConcurrentUseKeepsBound(t *testing.T) {
	const maxBytes = 32 << 10
	c := New(maxBytes)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			body := bytes.Repeat([]byte{'a' + byte(w)}, 300)
			for i := range 2000 {
				uid := fmt.Sprintf("u%d-%d", w, i%300)
				switch i % 4 {
				case 0:
					c.offer(uid, newEntry(body, at(int64(i+1))))
				case 1:
					if got, ok := c.Get(uid); ok && !bytes.Equal(got.Body, body) {
						t.Errorf("Get(%s) returned another writer's body", uid)
						return
					}
				case 2:
					c.offer(uid, newNegative(at(int64(i+1)), time.Hour))
				case 3:
					c.Invalidate(uid)
				}
			}
		})
	}
	wg.Wait()
	c.cleanUp()
	if s := c.Stats(); s.Bytes > maxBytes || totalWeight(c) != s.Bytes {
		t.Fatalf("stats %+v, entries weigh %d: bound %d broken", s, totalWeight(c), maxBytes)
	}
}

func TestHitsAndMisses(t *testing.T) {
	c := New(1 << 20)
	if s := c.Stats(); s.Hits != 0 || s.Misses != 0 || s.HitRatio != 0 {
		t.Fatalf("fresh cache stats %+v", s)
	}
	if _, ok := c.Get("a"); ok {
		t.Fatal("hit on an empty cache")
	}
	body := []byte(`{"order_uid":"a"}`)
	c.offer("a", newEntry(body, at(1)))
	for range 3 {
		got, ok := c.Get("a")
		if !ok || string(got.Body) != string(body) {
			t.Fatalf("Get(a) = %+v, %v", got, ok)
		}
	}
	c.offer("gone", newNegative(at(2), time.Hour))
	if e, ok := c.Get("gone"); !ok || !e.Deleted {
		t.Fatalf("Get(gone) = %+v, %v: want the negative entry", e, ok)
	}
	c.cleanUp() // Bytes counts writes once otter's maintenance has applied them
	s := c.Stats()
	if s.Hits != 3 || s.Misses != 2 || s.NegativeHits != 1 || s.HitRatio != 0.6 || s.Entries != 2 {
		t.Fatalf("stats %+v: want 3 hits, 2 misses (1 negative), ratio 0.6, 2 entries", s)
	}
	if want := int64(Weight("a", body) + Weight("gone", nil)); s.Bytes != want {
		t.Fatalf("bytes = %d, want %d", s.Bytes, want)
	}
}

func TestInvalidate(t *testing.T) {
	c := New(1 << 20)
	c.offer("a", newEntry([]byte("1"), at(1)))
	c.offer("b", newEntry([]byte("2"), at(1)))
	c.offer("c", newNegative(at(1), time.Hour))
	c.Invalidate("a", "c")
	c.Invalidate("missing") // no effect, no panic
	if _, ok := c.Get("a"); ok {
		t.Fatal("a is still cached after Invalidate")
	}
	if _, ok := c.Get("c"); ok {
		t.Fatal("c's negative entry is still cached after Invalidate")
	}
	if got, ok := c.Get("b"); !ok || string(got.Body) != "2" {
		t.Fatalf("Get(b) = %+v, %v: Invalidate(a) touched b", got, ok)
	}
	c.cleanUp()
	if s := c.Stats(); s.Entries != 1 || s.Bytes != int64(Weight("b", []byte("2"))) {
		t.Fatalf("stats %+v after invalidating two of three", s)
	}
}

// TestOfferSetIfNewer: an offer replaces only an older entry, positive or
// negative; an equal version keeps the entry there.
func TestOfferSetIfNewer(t *testing.T) {
	c := New(1 << 20)
	v5 := newEntry([]byte(`5`), at(5))
	if cur, ok := c.offer("a", v5); !ok || cur != v5 {
		t.Fatalf("offer to an empty key: %p %v", cur, ok)
	}
	for _, e := range []*Entry{newEntry([]byte(`5'`), at(5)), newEntry([]byte(`4`), at(4)), newNegative(at(3), time.Hour)} {
		if cur, ok := c.offer("a", e); ok || cur != v5 {
			t.Fatalf("offer of %s over 0.5 stored it (%v) or returned %p, want the kept %p", e.Version, ok, cur, v5)
		}
	}
	if got, _ := c.peek("a"); got != v5 {
		t.Fatal("entry changed by refused offers")
	}
	tomb := newNegative(at(7), time.Hour)
	if _, ok := c.offer("a", tomb); !ok {
		t.Fatal("a newer tombstone was refused")
	}
	if _, ok := c.offer("a", newEntry([]byte(`6`), at(6))); ok {
		t.Fatal("an older order replaced a tombstone's negative entry")
	}
	v8 := newEntry([]byte(`8`), at(8))
	if _, ok := c.offer("a", v8); !ok {
		t.Fatal("a newer order was refused by an older tombstone")
	}

	// an unknown uid's negative entry (zero version) yields to any version
	for i, v := range []orders.Version{{Partition: 0, Offset: 0, Time: 1}, {Partition: -1}, {Partition: 3, Offset: 1}} {
		uid := fmt.Sprintf("u%d", i)
		c.offer(uid, newNegative(orders.Version{}, time.Hour))
		if _, ok := c.offer(uid, newEntry([]byte(`{}`), v)); !ok {
			t.Fatalf("version %+v refused by an unknown uid's negative entry", v)
		}
	}

	// invalidateOlder removes only what is older
	if c.invalidateOlder("a", at(8)) || c.invalidateOlder("a", at(2)) {
		t.Fatal("invalidateOlder removed an entry as new as the version")
	}
	if got, _ := c.peek("a"); got != v8 {
		t.Fatal("entry changed")
	}
	if !c.invalidateOlder("a", at(9)) {
		t.Fatal("invalidateOlder kept an older entry")
	}
	if _, ok := c.peek("a"); ok {
		t.Fatal("entry still cached")
	}
	if c.invalidateOlder("absent", at(9)) {
		t.Fatal("invalidateOlder of an absent key reports a removal")
	}
	if _, ok := c.peek("absent"); ok {
		t.Fatal("invalidateOlder created an entry")
	}
}

func TestETag(t *testing.T) {
	body := []byte(`{"order_uid":"a"}`)
	e := newEntry(body, orders.Version{Partition: 0, Offset: 1045, Time: 99})
	if string(e.ETag) != `"0.1045"` || e.Deleted || !bytes.Equal(e.Body, body) {
		t.Fatalf("entry %+v: want ETag \"0.1045\"", e)
	}
	if e := newEntry(body, orders.Version{Partition: 12, Offset: 7}); string(e.ETag) != `"12.7"` {
		t.Fatalf("ETag %s, want \"12.7\"", e.ETag)
	}
	// legacy versions: a hash of the content
	hashTag := regexp.MustCompile(`^"[0-9a-f]{16}"$`)
	legacy := orders.Version{Partition: -1}
	a, b := newEntry(body, legacy), newEntry([]byte(`{"order_uid":"b"}`), legacy)
	if !hashTag.Match(a.ETag) || !hashTag.Match(b.ETag) || bytes.Equal(a.ETag, b.ETag) {
		t.Fatalf("legacy ETags %s, %s: want distinct quoted 16-digit hashes", a.ETag, b.ETag)
	}
	if again := newEntry(bytes.Clone(body), orders.Version{Partition: -1, Offset: 5}); !bytes.Equal(again.ETag, a.ETag) {
		t.Fatalf("legacy ETag of the same content differs: %s, %s", again.ETag, a.ETag)
	}
	if n := newNegative(at(3), time.Second); n.ETag != nil || n.Body != nil || !n.Deleted {
		t.Fatalf("negative entry %+v", n)
	}
}

// TestNegativeEntriesExpire: negative entries live their ttl, counted from their
// write; orders do not expire, also when they replace a negative entry, and an
// expiry is not an eviction.
func TestNegativeEntriesExpire(t *testing.T) {
	c := New(1 << 20)
	const ttl = 50 * time.Millisecond
	c.offer("neg", newNegative(at(1), ttl))
	c.offer("pos", newEntry([]byte(`{}`), at(1)))
	c.offer("revived", newNegative(at(1), ttl))
	c.offer("revived", newEntry([]byte(`{}`), at(2)))
	if _, ok := c.peek("neg"); !ok {
		t.Fatal("negative entry gone at once")
	}
	time.Sleep(ttl + 30*time.Millisecond)
	if e, ok := c.Get("neg"); ok {
		t.Fatalf("negative entry %+v still there after its ttl", e)
	}
	// an expired entry is absent for offers too: an older version may be written
	if _, ok := c.offer("neg", newEntry([]byte(`{}`), at(0))); !ok {
		t.Fatal("offer refused by an expired entry")
	}
	for _, uid := range []string{"pos", "revived"} {
		if e, ok := c.Get(uid); !ok || e.Deleted {
			t.Fatalf("%s: %+v, %v: an order expired", uid, e, ok)
		}
	}
	c.cleanUp()
	if s := c.Stats(); s.Evictions != 0 {
		t.Fatalf("stats %+v: an expiry counted as an eviction", s)
	}
}

func TestStatsJSONShape(t *testing.T) {
	raw, err := json.Marshal(New(100).Stats())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"entries", "bytes", "max_bytes", "hits", "misses", "negative_hits", "hit_ratio", "evictions"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats JSON %s lacks %q", raw, k)
		}
	}
}

func BenchmarkCacheGetHit(b *testing.B) {
	c := New(64 << 20)
	g := ordersgen.New(10)
	const keys = 1024
	uids := make([]string, keys)
	for i := range uids {
		o := g.Order()
		body, err := encode(&o)
		if err != nil {
			b.Fatal(err)
		}
		c.offer(o.OrderUID, newEntry(body, at(int64(i+1))))
		uids[i] = o.OrderUID
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(uids[i&(keys-1)]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}
