package orderscache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit"
)

// totalWeight sums the weights of the entries present, independently of otter's
// own accounting.
func totalWeight(c *Cache) int64 {
	var sum int64
	for uid, body := range c.c.All() {
		sum += int64(Weight(uid, body))
	}
	return sum
}

func TestWeight(t *testing.T) {
	if got, want := Weight("ab", make([]byte, 10)), uint32(12+EntryOverhead); got != want {
		t.Fatalf("Weight = %d, want %d", got, want)
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
	const n = 1000 // ~600 KiB offered, ten times the bound
	for i := range n {
		c.Set(fmt.Sprintf("order-%04d", i), body)
		if i%50 == 49 {
			c.cleanUp()
			if s := c.Stats(); s.Bytes > maxBytes {
				t.Fatalf("after %d sets: bytes %d > max %d", i+1, s.Bytes, maxBytes)
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
	c.Set("small", []byte(`{}`))
	c.Set("huge", make([]byte, 4<<10))
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
				switch i % 3 {
				case 0:
					c.Set(uid, body)
				case 1:
					if got, ok := c.Get(uid); ok && !bytes.Equal(got, body) {
						t.Errorf("Get(%s) returned another writer's body", uid)
						return
					}
				case 2:
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
	c.Set("a", []byte(`{"order_uid":"a"}`))
	for range 3 {
		got, ok := c.Get("a")
		if !ok || string(got) != `{"order_uid":"a"}` {
			t.Fatalf("Get(a) = %q, %v", got, ok)
		}
	}
	c.cleanUp() // Bytes counts writes once otter's maintenance has applied them
	s := c.Stats()
	if s.Hits != 3 || s.Misses != 1 || s.HitRatio != 0.75 || s.Entries != 1 {
		t.Fatalf("stats %+v: want 3 hits, 1 miss, ratio 0.75, 1 entry", s)
	}
	if want := int64(Weight("a", []byte(`{"order_uid":"a"}`))); s.Bytes != want {
		t.Fatalf("bytes = %d, want %d", s.Bytes, want)
	}
}

func TestInvalidate(t *testing.T) {
	c := New(1 << 20)
	c.Set("a", []byte("1"))
	c.Set("b", []byte("2"))
	c.Invalidate("a")
	c.Invalidate("missing") // no effect, no panic
	if _, ok := c.Get("a"); ok {
		t.Fatal("a is still cached after Invalidate")
	}
	if got, ok := c.Get("b"); !ok || string(got) != "2" {
		t.Fatalf("Get(b) = %q, %v: Invalidate(a) touched b", got, ok)
	}
	c.cleanUp()
	if s := c.Stats(); s.Entries != 1 || s.Bytes != int64(Weight("b", []byte("2"))) {
		t.Fatalf("stats %+v after invalidating one of two", s)
	}
}

func TestSetOrderEncodesTheOrder(t *testing.T) {
	o, raw := testkit.Canonical(t)
	c := New(1 << 20)
	if err := c.SetOrder(&o); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Get(o.OrderUID)
	if !ok {
		t.Fatal("SetOrder did not cache under order_uid")
	}
	// the same names, types and values as the ingested JSON
	var want, have any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("cached bytes are not JSON: %v", err)
	}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("cached JSON differs from the sample:\n got %s\nwant %s", got, raw)
	}
	var back orders.Order
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, o) {
		t.Fatalf("decoded cached order %+v != %+v", back, o)
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
	for _, k := range []string{"entries", "bytes", "max_bytes", "hits", "misses", "hit_ratio", "evictions"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats JSON %s lacks %q", raw, k)
		}
	}
}
