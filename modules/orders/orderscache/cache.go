// Package orderscache keeps the pre-encoded JSON of orders in a byte-bounded otter
// cache and decorates a database orders.Store with it: reads go to the cache first
// and through to the database on a miss (one flight per key), writes go to the
// database first and then update the cache.
package orderscache

import (
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"

	"github.com/orderflow/orders-service/modules/orders"
)

// EntryOverhead is the fixed number of bytes every entry is charged on top of the
// lengths of its uid and JSON: otter's node, the string and slice headers and the
// hash table slot. It keeps a cache of many small orders from exceeding its bound
// in real memory by much.
const EntryOverhead = 128

// Cache holds the encoded JSON of orders by uid, bounded by the total weight of its
// entries (see Weight). A hit returns the stored bytes without copying or encoding;
// callers must not modify them. It is safe for concurrent use.
type Cache struct {
	c        *otter.Cache[string, []byte]
	maxBytes int64
	rec      *evictionRecorder

	hits atomic.Uint64
	_    [56]byte // hits and misses on separate cache lines: both are written on every read
	miss atomic.Uint64
}

// Stats is a snapshot of the cache's counters; its JSON shape is the body of
// GET /api/v1/cache/stats.
type Stats struct {
	Entries   int64   `json:"entries"`
	Bytes     int64   `json:"bytes"` // current total weight
	MaxBytes  int64   `json:"max_bytes"`
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	HitRatio  float64 `json:"hit_ratio"`
	Evictions uint64  `json:"evictions"`
}

// New returns an empty cache whose entries weigh at most maxBytes in total (after
// otter's maintenance, which runs on writes). maxBytes must be positive; New panics
// otherwise, as the bound is validated with the configuration.
func New(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("orderscache: max bytes must be positive, got %d", maxBytes))
	}
	rec := &evictionRecorder{}
	c := otter.Must(&otter.Options[string, []byte]{
		MaximumWeight: uint64(maxBytes),
		Weigher:       func(uid string, body []byte) uint32 { return Weight(uid, body) },
		StatsRecorder: rec,
	})
	return &Cache{c: c, maxBytes: maxBytes, rec: rec}
}

// Weight is what an entry costs against the bound: len(body) + len(uid) +
// EntryOverhead, saturated at math.MaxUint32.
func Weight(uid string, body []byte) uint32 {
	w := uint64(len(body)) + uint64(len(uid)) + EntryOverhead
	if w > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(w)
}

// Get returns the cached JSON of uid and counts a hit or a miss. The returned bytes
// are shared: do not modify them.
func (c *Cache) Get(uid string) ([]byte, bool) {
	body, ok := c.c.GetIfPresent(uid)
	c.count(ok)
	return body, ok
}

// count records one lookup as a hit or a miss.
func (c *Cache) count(hit bool) {
	if hit {
		c.hits.Add(1)
	} else {
		c.miss.Add(1)
	}
}

// Set stores body as the JSON of uid, replacing any previous entry. The cache keeps
// body: the caller must not modify it afterwards. An entry heavier than the whole
// bound is evicted at once.
func (c *Cache) Set(uid string, body []byte) {
	c.c.Set(uid, body)
}

// SetOrder encodes o with encoding/json once and stores the result under o.OrderUID.
func (c *Cache) SetOrder(o *orders.Order) error {
	body, err := encode(o)
	if err != nil {
		return err
	}
	c.Set(o.OrderUID, body)
	return nil
}

// setIfAbsent stores body unless uid already has an entry: an entry written by a
// database write is at least as new as a version read before it.
func (c *Cache) setIfAbsent(uid string, body []byte) {
	c.c.SetIfAbsent(uid, body)
}

// Invalidate removes the entry of uid, if any.
func (c *Cache) Invalidate(uid string) {
	c.c.Invalidate(uid)
}

// Stats returns the current counters. Entries is the hash table's size; Bytes is
// the weight otter's eviction policy accounts, which trails the latest writes until
// otter's maintenance (scheduled by the writes themselves) has applied them; hits,
// misses and evictions are atomic counters.
func (c *Cache) Stats() Stats {
	hits, misses := c.hits.Load(), c.miss.Load()
	s := Stats{
		Entries:   int64(c.c.EstimatedSize()),
		Bytes:     int64(c.c.WeightedSize()),
		MaxBytes:  c.maxBytes,
		Hits:      hits,
		Misses:    misses,
		Evictions: c.rec.evictions.Load(),
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

// encode is the one place orders are turned into cached JSON.
func encode(o *orders.Order) ([]byte, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode order %q: %w", o.OrderUID, err)
	}
	return body, nil
}

// evictionRecorder is otter's stats recorder: it counts size evictions only. Hits
// and misses are counted by Cache itself, so that a read-through lookup, which
// asks otter twice, counts once.
type evictionRecorder struct {
	evictions atomic.Uint64
}

var _ stats.Recorder = (*evictionRecorder)(nil)

func (r *evictionRecorder) RecordHits(int)                  {}
func (r *evictionRecorder) RecordMisses(int)                {}
func (r *evictionRecorder) RecordEviction(uint32)           { r.evictions.Add(1) }
func (r *evictionRecorder) RecordLoadSuccess(time.Duration) {}
func (r *evictionRecorder) RecordLoadFailure(time.Duration) {}
