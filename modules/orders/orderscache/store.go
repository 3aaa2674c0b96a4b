package orderscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/orderflow/orders-service/modules/orders"
)

// Defaults of Options.
const (
	DefaultDBTimeout   = 2 * time.Second
	DefaultNegativeTTL = 2 * time.Second
)

// Options tunes a Store. The zero value gives the defaults.
type Options struct {
	// DBTimeout bounds each read-through database call and each page of Warmup, so
	// that a read answers quickly with an error while the database is down. 0 means
	// DefaultDBTimeout.
	DBTimeout time.Duration
	// NegativeTTL is how long a uid the database does not know is remembered as
	// missing, so a flood of unknown uids does not reach the database. 0 means
	// DefaultNegativeTTL; a negative value disables those negative entries.
	//
	// A deleted order's negative entry, which carries its tombstone's version,
	// lives at least max(NegativeTTL, 2*DBTimeout), whatever NegativeTTL says:
	// it refuses the older versions that reads started before the delete may
	// still bring.
	NegativeTTL time.Duration
	// Coherent, when not nil, reports whether the cache can be trusted to hold no
	// version older than one committed (the change feed between instances is read
	// up to date within its bound). While it reports false, lookups bypass the
	// cache: they read the database and cache nothing (Stats.Bypassed counts
	// them). Nil: always trusted (one instance).
	Coherent func() bool
}

// Store decorates a database orders.Store with a Cache, behind the same
// orders.Store interface. Reads look in the cache first and read through to the
// database on a miss; writes go to the database first and offer what it stored to
// the cache after they succeed. It is safe for concurrent use.
type Store struct {
	db        orders.Store
	cache     *Cache
	dbTimeout time.Duration
	// unknownTTL is the lifetime of an unknown uid's negative entry (< 0: none is
	// kept), tombstoneTTL that of a tombstone's.
	unknownTTL, tombstoneTTL time.Duration
	loader                   otter.Loader[string, *Entry]
	coherent                 func() bool
	bypassed                 atomic.Uint64

	// watching counts the running warmups; watches holds their watches, guarded by
	// watchMu (see Warmup).
	watching atomic.Int32
	watchMu  sync.Mutex
	watches  map[*watch]struct{}
}

var _ orders.Store = (*Store)(nil)

// NewStore returns db decorated with c. The store does not own db or c.
func NewStore(db orders.Store, c *Cache, opts Options) *Store {
	s := &Store{db: db, cache: c, dbTimeout: opts.DBTimeout, watches: make(map[*watch]struct{}), coherent: opts.Coherent}
	if s.dbTimeout <= 0 {
		s.dbTimeout = DefaultDBTimeout
	}
	s.unknownTTL = opts.NegativeTTL
	if s.unknownTTL == 0 {
		s.unknownTTL = DefaultNegativeTTL
	}
	// plus the clock's resolution, by which an entry may expire early
	s.tombstoneTTL = max(s.unknownTTL, 2*s.dbTimeout) + clockResolution
	s.loader = otter.LoaderFunc[string, *Entry](s.load)
	return s
}

// Cache returns the cache the store fills.
func (s *Store) Cache() *Cache { return s.cache }

// GetJSON returns the cached entry of the order with uid: its JSON, version and
// ETag. A cache hit returns the cached entry (hit = true; do not modify it). On a
// miss it reads through to the database, one query per key however many callers
// miss it at once, and caches the result unless the key got an entry meanwhile.
// A deleted or unknown uid gives orders.ErrNotFound and is remembered as missing
// (see Options.NegativeTTL); an invalid uid gives orders.ErrInvalidUID without
// touching the database. Any other error is a database failure (bounded by
// Options.DBTimeout). uid may point into a buffer the caller reuses afterwards
// (a request's): the store copies it where it keeps it.
func (s *Store) GetJSON(ctx context.Context, uid string) (e *Entry, hit bool, err error) {
	e, hit, err = s.entry(ctx, uid)
	if err != nil {
		return nil, false, err
	}
	if e.Deleted {
		return nil, false, orders.ErrNotFound
	}
	return e, hit, nil
}

// entry returns the entry of uid, an order or a negative one, from the cache or
// read through to the database; hit reports a cached order.
func (s *Store) entry(ctx context.Context, uid string) (e *Entry, hit bool, err error) {
	if !orders.ValidUID(uid) {
		return nil, false, orders.ErrInvalidUID
	}
	if s.coherent != nil && !s.coherent() {
		return s.bypass(ctx, strings.Clone(uid))
	}
	if e, ok := s.cache.Get(uid); ok {
		return e, !e.Deleted, nil
	}
	// A miss may keep uid (as the key of the entry loaded): own it. A hit, the
	// common case, copies nothing.
	uid = strings.Clone(uid)
	// otter's loading Get is the single flight: concurrent misses of uid wait for one
	// load. The load's result is written only over an absent (or expired) key, and
	// only if no write or invalidation of uid came since the load started: if one
	// did, Get returns the entry it left (or loads again). So a load, which may have
	// read an older version, never replaces an entry. See load.
	e, err = s.cache.c.Get(ctx, uid, s.loader)
	if err != nil {
		if errors.Is(err, otter.ErrNotFound) {
			return unknown, false, nil
		}
		return nil, false, fmt.Errorf("get order json: %w", err)
	}
	return e, false, nil
}

// bypass reads uid from the database without the cache (see Options.Coherent).
func (s *Store) bypass(ctx context.Context, uid string) (*Entry, bool, error) {
	s.bypassed.Add(1)
	e, err := s.load(ctx, uid)
	if errors.Is(err, otter.ErrNotFound) {
		return unknown, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get order json: %w", err)
	}
	return e, false, nil
}

// Bypassed returns how many lookups bypassed the cache (see Options.Coherent).
func (s *Store) Bypassed() uint64 { return s.bypassed.Load() }

// Changes applies the change feed between instances: the database holds at
// least each change's version of its uid, so a cached entry of an older version
// is dropped (the next lookup reads it through). Newer or equal entries stay. A
// load in flight when an entry is dropped is not cached (see load).
func (s *Store) Changes(changes []orders.Change) {
	watched := s.watching.Load() > 0
	for _, c := range changes {
		if c.Version.IsZero() {
			continue
		}
		if watched {
			s.note(c.UID, c.Version, false)
		}
		s.cache.invalidateOlder(c.UID, c.Version)
	}
}

// Reset drops every entry: the change feed may have been missed.
func (s *Store) Reset() {
	s.cache.c.InvalidateAll()
}

// unknown is the entry of a uid the database does not know when no negative entry
// is kept for it.
var unknown = newNegative(orders.Version{}, 0)

// load reads one order from the database for the cache; it runs once per flight.
// An unknown uid gives a negative entry (otter.ErrNotFound, which caches nothing,
// when they are disabled), a deleted one a negative entry at its tombstone.
//
// otter (v2.4.0) writes what load returns only if uid is still absent and no
// write or invalidation of uid came from the cache's API since the load was
// registered, before load ran: those cancel the load, and its callers get the
// entry uid has. Every write of a newer version (offer, invalidateOlder,
// Invalidate) is such a write, and a version written before the load registered is
// in the database when load reads it. So an older version read here is never
// written over, or after, a newer one.
func (s *Store) load(ctx context.Context, uid string) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	o, v, err := s.db.Get(ctx, uid)
	if errors.Is(err, orders.ErrNotFound) {
		if !v.IsZero() {
			return newNegative(v, s.tombstoneTTL), nil
		}
		if s.unknownTTL < 0 {
			return nil, otter.ErrNotFound
		}
		return newNegative(v, s.unknownTTL), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read through: %w", err)
	}
	body, err := encode(&o)
	if err != nil {
		return nil, err
	}
	return newEntry(body, v), nil
}

// storedForm returns a copy of o as the database gives it back, so that a cache hit
// answers the same JSON as a read-through: PostgreSQL keeps date_created as a
// timestamptz with microsecond precision and the database store reads it in UTC.
func storedForm(o *orders.Order) orders.Order {
	c := *o
	c.DateCreated = c.DateCreated.UTC().Truncate(time.Microsecond)
	return c
}

// storedEntry returns the entry of rec as the database stores it.
func (s *Store) storedEntry(rec *orders.Record) (*Entry, error) {
	if rec.Deleted {
		return newNegative(rec.Version, s.tombstoneTTL), nil
	}
	stored := storedForm(&rec.Order)
	body, err := encode(&stored)
	if err != nil {
		return nil, err
	}
	return newEntry(body, rec.Version), nil
}

// Fill offers the cache what a batch's database write stored: it is the
// pipeline's cache stage after the commit, and ApplyBatch calls it itself. For
// each element of stored whose version is that of a record of recs of its uid,
// that record's order (or, for a tombstone, a negative entry) is offered: it
// replaces the cached entry only if that is older. When stored holds a version
// recs do not (the database kept a newer version written by another batch), the
// cached entry is invalidated if it is older than that version, and left alone
// otherwise. Stored elements at the zero Version say nothing and are skipped.
//
// Fills of a uid must come in the order of their commits, as the pipeline's
// cache stage and ApplyBatch make them. A fill may still come after a later
// commit of the same uid (the pipeline writes the next batch while it fills this
// one); set-if-newer then keeps any newer entry a read loaded meanwhile, but if
// that entry also left the cache before the fill (evicted, invalidated), the
// fill's older version is cached until the later commit's own fill replaces it.
func (s *Store) Fill(recs []orders.Record, stored []orders.Stored) {
	if len(stored) == 0 {
		return
	}
	type key struct {
		uid       string
		partition int32
		offset    int64
	}
	byVersion := make(map[key]int, len(recs))
	for i := range recs {
		v := recs[i].Version
		byVersion[key{recs[i].UID(), v.Partition, v.Offset}] = i
	}
	watched := s.watching.Load() > 0
	for _, st := range stored {
		if st.Version.IsZero() {
			continue
		}
		if watched {
			s.note(st.UID, st.Version, false)
		}
		i, ok := byVersion[key{st.UID, st.Version.Partition, st.Version.Offset}]
		if !ok || recs[i].Deleted != st.Deleted {
			s.cache.invalidateOlder(st.UID, st.Version)
			continue
		}
		e, err := s.storedEntry(&recs[i])
		if err != nil {
			slog.Warn("order_cache_encode_failed", "order_uid", st.UID, "err", err)
			s.cache.invalidateOlder(st.UID, st.Version)
			continue
		}
		s.cache.offer(st.UID, e)
	}
}

// ApplyBatch writes recs to the database and then offers what it stored to the
// cache (Fill). On error the cache entries of all uids in recs are invalidated,
// since a failed commit may still have been applied. Errors are the database
// store's.
func (s *Store) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	stored, err := s.db.ApplyBatch(ctx, recs)
	if err != nil {
		uids := make([]string, len(recs))
		for i := range recs {
			uids[i] = recs[i].UID()
		}
		s.Invalidate(uids...)
		return stored, err
	}
	s.Fill(recs, stored)
	return stored, nil
}

// Invalidate removes the cache entries of uids, orders and negative entries
// alike: their next reads go to the database. For when the database may hold
// versions the cache was not offered.
func (s *Store) Invalidate(uids ...string) {
	if s.watching.Load() > 0 {
		for _, uid := range uids {
			s.note(uid, orders.Version{}, true)
		}
	}
	s.cache.Invalidate(uids...)
}

// Get returns the order with uid and its version through the cache, as GetJSON
// reads it: a hit decodes the cached JSON. A deleted or unknown uid gives
// orders.ErrNotFound with the version of its tombstone (zero if none is known).
// Other errors are those of GetJSON.
func (s *Store) Get(ctx context.Context, uid string) (orders.Order, orders.Version, error) {
	e, _, err := s.entry(ctx, uid)
	if err != nil {
		return orders.Order{}, orders.Version{}, err
	}
	if e.Deleted {
		return orders.Order{}, e.Version, orders.ErrNotFound
	}
	var o orders.Order
	if err := json.Unmarshal(e.Body, &o); err != nil {
		return orders.Order{}, orders.Version{}, fmt.Errorf("get: decode cached order: %w", err)
	}
	return o, e.Version, nil
}

// List delegates to the database store: listings are not cached.
func (s *Store) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	return s.db.List(ctx, limit, cursor)
}

// PurgeTombstones delegates to the database store and drops the cached entries of
// the purged uids: a negative entry carries its tombstone's version and would
// refuse the older versions the database accepts again once it is purged.
func (s *Store) PurgeTombstones(ctx context.Context, cutoff time.Time, purged func(uids []string)) (int64, error) {
	return s.db.PurgeTombstones(ctx, cutoff, func(uids []string) {
		s.Invalidate(uids...)
		if purged != nil {
			purged(uids)
		}
	})
}
