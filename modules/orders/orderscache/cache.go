// Package orderscache keeps the pre-encoded JSON of orders, each with its version,
// in a byte-bounded otter cache and decorates a database orders.Store with it:
// reads go to the cache first and through to the database on a miss (one flight per
// key), and the versions a database write stores are then offered to the cache.
//
// Every write into the cache is set-if-newer, decided atomically against the entry
// the key holds (otter's Compute): no path replaces a newer version of an order,
// or of its tombstone, with an older one.
package orderscache

import (
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/maypok86/otter/v2"

	"github.com/orderflow/orders-service/modules/orders"
)

// EntryOverhead is the fixed number of bytes every entry is charged on top of the
// lengths of its uid and JSON: otter's node (with its expiration links), the Entry
// with its ETag, the string and slice headers and the hash table slot. It keeps a
// cache of many small orders, or of many negative entries, from exceeding its bound
// in real memory by much.
const EntryOverhead = 224

// clockResolution is how often the cache's clock reads the time. A cache with
// expiration reads its clock on every lookup, and the precise time costs a hit
// about as much as the rest of it; a coarse clock costs an atomic load. Entries
// may expire up to about this much early or late (see Store.tombstoneTTL).
const clockResolution = 10 * time.Millisecond

// never is the lifetime of an entry that does not expire: otter saturates the
// deadline at the largest time it can hold.
const never = time.Duration(math.MaxInt64)

// Entry is what the cache holds for one uid: the encoded JSON of an order at its
// version, or a negative entry (Deleted) saying that the uid has no order, with the
// version of its tombstone (the zero Version when the database knows nothing of
// the uid). Entries are immutable once created and shared by pointer: callers must
// not modify them or their bytes.
type Entry struct {
	// Body is the order's JSON; nil for a negative entry.
	Body []byte
	// Version is the version of the order or of its tombstone.
	Version orders.Version
	// ETag is the strong entity tag of Body, quoted: "partition.offset" of the
	// version, or for a version of no partition (Partition < 0, legacy rows) the
	// 64-bit xxhash of Body in hex, so that distinct contents never share a tag.
	// Nil for a negative entry.
	ETag []byte
	// VersionText is Version.String(), the X-Order-Version header of answers.
	VersionText []byte
	// Deleted marks a negative entry.
	Deleted bool

	// ttl is how long the entry lives after it is written: never for an order.
	ttl time.Duration
}

// newEntry returns the positive entry of an order encoded as body at version v.
func newEntry(body []byte, v orders.Version) *Entry {
	return &Entry{Body: body, Version: v, ETag: appendETag(make([]byte, 0, 24), body, v), VersionText: []byte(v.String()), ttl: never}
}

// newNegative returns a negative entry at version v (a tombstone's, or zero) that
// expires ttl after it is written.
func newNegative(v orders.Version, ttl time.Duration) *Entry {
	return &Entry{Version: v, Deleted: true, ttl: ttl}
}

// appendETag appends the strong entity tag of an order encoded as body at version
// v: the quoted "partition.offset" of v, or, when v has no partition (Partition < 0
// or the zero Version), the quoted 64-bit xxhash of body in hex. The two forms never
// collide: only the first holds a dot.
func appendETag(dst, body []byte, v orders.Version) []byte {
	dst = append(dst, '"')
	if v.Partition < 0 || v.IsZero() {
		const digits = "0123456789abcdef"
		sum := xxhash.Sum64(body)
		for shift := 60; shift >= 0; shift -= 4 {
			dst = append(dst, digits[(sum>>uint(shift))&0xf])
		}
	} else {
		dst = strconv.AppendInt(dst, int64(v.Partition), 10)
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, v.Offset, 10)
	}
	return append(dst, '"')
}

// Cache holds the entries of orders by uid, bounded by the total weight of its
// entries (see Weight). A hit returns the stored entry without copying or encoding.
// Negative entries expire (see Options.NegativeTTL); orders stay until evicted or
// invalidated. It is safe for concurrent use.
type Cache struct {
	c        *otter.Cache[string, *Entry]
	maxBytes int64

	evictions atomic.Uint64
	_         [56]byte // the read counters on cache lines of their own: written on every read
	hits      atomic.Uint64
	_         [56]byte
	miss      atomic.Uint64
	_         [56]byte
	negHits   atomic.Uint64
}

// Stats is a snapshot of the cache's counters; its JSON shape is the body of
// GET /api/v1/cache/stats.
type Stats struct {
	Entries  int64 `json:"entries"` // orders and negative entries
	Bytes    int64 `json:"bytes"`   // current total weight
	MaxBytes int64 `json:"max_bytes"`
	// Hits counts lookups answered with a cached order, Misses all other lookups
	// of a valid uid: those read through to the database and those answered "not
	// found" by a negative entry, which NegativeHits counts again. So the database
	// was asked Misses - NegativeHits times at most (concurrent misses of a uid share
	// one read).
	Hits         uint64  `json:"hits"`
	Misses       uint64  `json:"misses"`
	NegativeHits uint64  `json:"negative_hits"`
	HitRatio     float64 `json:"hit_ratio"` // Hits / (Hits + Misses)
	// Evictions counts entries evicted to keep the bound; expired negative
	// entries are not evictions.
	Evictions uint64 `json:"evictions"`
}

// New returns an empty cache whose entries weigh at most maxBytes in total (after
// otter's maintenance, which runs on writes). maxBytes must be positive; New panics
// otherwise, as the bound is validated with the configuration.
func New(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("orderscache: max bytes must be positive, got %d", maxBytes))
	}
	c := &Cache{maxBytes: maxBytes}
	c.c = otter.Must(&otter.Options[string, *Entry]{
		MaximumWeight: uint64(maxBytes),
		Clock:         otter.NewCoarseClock(clockResolution),
		Weigher:       func(uid string, e *Entry) uint32 { return Weight(uid, e.Body) },
		// Each entry carries its lifetime, counted from its last write. Writing
		// calculators leave reads alone: a hit does not touch the deadline.
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *Entry]) time.Duration {
			return e.Value.ttl
		}),
		// Runs under the key's lock, on every removal: only count.
		OnAtomicDeletion: func(e otter.DeletionEvent[string, *Entry]) {
			if e.Cause == otter.CauseOverflow {
				c.evictions.Add(1)
			}
		},
	})
	return c
}

// Weight is what an entry costs against the bound: len(body) + len(uid) +
// EntryOverhead, saturated at math.MaxUint32. A negative entry has no body.
func Weight(uid string, body []byte) uint32 {
	w := uint64(len(body)) + uint64(len(uid)) + EntryOverhead
	if w > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(w)
}

// Get returns the live entry of uid, an order or a negative entry, and counts the
// lookup: a hit if it is an order, a miss otherwise (and a negative hit if it is a
// negative entry). The entry is shared: do not modify it.
func (c *Cache) Get(uid string) (*Entry, bool) {
	e, ok := c.c.GetIfPresent(uid)
	switch {
	case !ok:
		c.miss.Add(1)
	case e.Deleted:
		c.miss.Add(1)
		c.negHits.Add(1)
	default:
		c.hits.Add(1)
	}
	return e, ok
}

// offer stores e as the entry of uid unless uid has a live entry at a version at
// least as new, atomically. It returns the entry uid holds afterwards (e or the
// one kept) and whether e was stored. An entry heavier than the whole bound is
// evicted at once. The cache keeps e: the caller must not modify it afterwards.
func (c *Cache) offer(uid string, e *Entry) (*Entry, bool) {
	return c.offerIf(uid, e, nil)
}

// offerIf is offer that also keeps the current entry when refuse, called under the
// key's lock with the version e would replace, returns true. refuse may only take
// locks of its own: it must not call the cache.
func (c *Cache) offerIf(uid string, e *Entry, refuse func() bool) (*Entry, bool) {
	stored := false
	cur, _ := c.c.Compute(uid, func(old *Entry, found bool) (*Entry, otter.ComputeOp) {
		if found && !e.Version.Newer(old.Version) {
			return old, otter.CancelOp
		}
		if refuse != nil && refuse() {
			if found {
				return old, otter.CancelOp
			}
			return nil, otter.CancelOp
		}
		stored = true
		return e, otter.WriteOp
	})
	if stored {
		return e, true
	}
	return cur, false
}

// invalidateOlder removes the entry of uid if it is older than v, atomically, and
// reports whether it did: the database holds v, which the cache does not know.
func (c *Cache) invalidateOlder(uid string, v orders.Version) bool {
	removed := false
	c.c.Compute(uid, func(old *Entry, found bool) (*Entry, otter.ComputeOp) {
		if found && v.Newer(old.Version) {
			removed = true
			return nil, otter.InvalidateOp
		}
		return old, otter.CancelOp
	})
	return removed
}

// Invalidate removes the entries of uids, if any: their next lookups read through
// to the database. Use Store.Invalidate when the cache has a Store: a Warmup
// running on it does not hear of this one (see Store.Warmup).
func (c *Cache) Invalidate(uids ...string) {
	for _, uid := range uids {
		c.c.Invalidate(uid)
	}
}

// Stats returns the current counters. Entries is the hash table's size; Bytes is
// the weight otter's eviction policy accounts, which trails the latest writes until
// otter's maintenance (scheduled by the writes themselves) has applied them; hits,
// misses and evictions are atomic counters.
func (c *Cache) Stats() Stats {
	hits, misses := c.hits.Load(), c.miss.Load()
	s := Stats{
		Entries:      int64(c.c.EstimatedSize()),
		Bytes:        int64(c.c.WeightedSize()),
		MaxBytes:     c.maxBytes,
		Hits:         hits,
		Misses:       misses,
		NegativeHits: c.negHits.Load(),
		Evictions:    c.evictions.Load(),
	}
	if total := hits + misses; total > 0 {
		s.HitRatio = float64(hits) / float64(total)
	}
	return s
}

// cleanUp runs otter's pending maintenance (evictions included) now.
func (c *Cache) cleanUp() {
	c.c.CleanUp()
}

// encode is the one place orders are turned into cached JSON: encoding/json's
// bytes, written by orders.EncodeJSON without reflection.
func encode(o *orders.Order) ([]byte, error) {
	body, err := orders.EncodeJSON(o)
	if err != nil {
		return nil, fmt.Errorf("encode order %q: %w", o.OrderUID, err)
	}
	return body, nil
}
