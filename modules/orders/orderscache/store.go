package orderscache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/orderflow/orders-service/modules/orders"
)

// Defaults of Options.
const (
	DefaultDBTimeout   = 2 * time.Second
	DefaultNegativeTTL = 2 * time.Second
	// negativeMaxEntries bounds the negative cache: 64Ki uids of at most 64 bytes.
	negativeMaxEntries = 1 << 16
)

// Options tunes a Store. The zero value gives the defaults.
type Options struct {
	// DBTimeout bounds each read-through database call, so that a read answers
	// quickly with an error while the database is down. 0 means DefaultDBTimeout.
	DBTimeout time.Duration
	// NegativeTTL is how long a uid the database does not know is remembered as
	// missing, so a flood of unknown uids does not reach the database. 0 means
	// DefaultNegativeTTL; a negative value disables the negative cache.
	NegativeTTL time.Duration
}

// Store decorates a database orders.Store with a Cache, behind the same
// orders.Store interface. Reads look in the cache first and read through to the
// database on a miss; writes go to the database first and update the cache only
// after they succeed. It is safe for concurrent use.
type Store struct {
	db        orders.Store
	cache     *Cache
	neg       *otter.Cache[string, struct{}] // nil when disabled
	dbTimeout time.Duration
	loader    otter.Loader[string, []byte]
}

var _ orders.Store = (*Store)(nil)

// NewStore returns db decorated with c. The store does not own db or c.
func NewStore(db orders.Store, c *Cache, opts Options) *Store {
	s := &Store{db: db, cache: c, dbTimeout: opts.DBTimeout}
	if s.dbTimeout <= 0 {
		s.dbTimeout = DefaultDBTimeout
	}
	ttl := opts.NegativeTTL
	if ttl == 0 {
		ttl = DefaultNegativeTTL
	}
	if ttl > 0 {
		s.neg = otter.Must(&otter.Options[string, struct{}]{
			MaximumSize:      negativeMaxEntries,
			ExpiryCalculator: otter.ExpiryWriting[string, struct{}](ttl),
		})
	}
	s.loader = otter.LoaderFunc[string, []byte](s.load)
	return s
}

// Cache returns the cache the store fills.
func (s *Store) Cache() *Cache { return s.cache }

// GetJSON returns the encoded JSON of the order with uid. A cache hit returns the
// cached bytes (hit = true; do not modify them). On a miss it reads through to the
// database, one query per key however many callers miss it at once, and caches the
// result. An unknown uid gives orders.ErrNotFound and is remembered as missing for
// Options.NegativeTTL; an invalid uid gives orders.ErrInvalidUID without touching
// the database. Any other error is a database failure (bounded by Options.DBTimeout).
func (s *Store) GetJSON(ctx context.Context, uid string) (body []byte, hit bool, err error) {
	if !orders.ValidUID(uid) {
		return nil, false, orders.ErrInvalidUID
	}
	if body, ok := s.cache.c.GetIfPresent(uid); ok {
		s.cache.count(true)
		return body, true, nil
	}
	s.cache.count(false)
	if s.knownMissing(uid) {
		return nil, false, orders.ErrNotFound
	}
	// otter's loading Get is the single flight: concurrent misses of uid wait for one
	// load, and a write or invalidation of uid during the load discards the loaded
	// (possibly older) value instead of caching it.
	body, err = s.cache.c.Get(ctx, uid, s.loader)
	if err != nil {
		if errors.Is(err, otter.ErrNotFound) {
			return nil, false, orders.ErrNotFound
		}
		return nil, false, fmt.Errorf("get order json: %w", err)
	}
	return body, false, nil
}

// load reads one order from the database for the cache; it runs once per flight.
func (s *Store) load(ctx context.Context, uid string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	o, err := s.db.Get(ctx, uid)
	if errors.Is(err, orders.ErrNotFound) {
		s.rememberMissing(uid)
		return nil, otter.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read through: %w", err)
	}
	return encode(&o)
}

// knownMissing reports whether uid was recently found missing.
func (s *Store) knownMissing(uid string) bool {
	if s.neg == nil {
		return false
	}
	_, ok := s.neg.GetIfPresent(uid)
	return ok
}

// rememberMissing records uid as missing for the negative TTL.
func (s *Store) rememberMissing(uid string) {
	if s.neg != nil {
		s.neg.Set(uid, struct{}{})
	}
}

// forgetMissing drops a negative entry once uid has a stored version.
func (s *Store) forgetMissing(uid string) {
	if s.neg != nil {
		s.neg.Invalidate(uid)
	}
}

// cacheStored puts the stored version o of an order into the cache, after its
// database write, and drops its negative entry. If o cannot be encoded, the entry
// is invalidated instead so that the next read goes to the database.
func (s *Store) cacheStored(o *orders.Order) {
	stored := storedForm(o)
	body, err := encode(&stored)
	if err != nil {
		slog.Warn("order_cache_encode_failed", "order_uid", o.OrderUID, "err", err)
		s.cache.Invalidate(o.OrderUID)
	} else {
		s.cache.Set(o.OrderUID, body)
	}
	// after the positive entry: a read between the two finds the order
	s.forgetMissing(o.OrderUID)
}

// storedForm returns a copy of o as the database gives it back, so that a cache hit
// answers the same JSON as a read-through: PostgreSQL keeps date_created as a
// timestamptz with microsecond precision and the database store reads it in UTC.
func storedForm(o *orders.Order) orders.Order {
	c := *o
	c.DateCreated = c.DateCreated.UTC().Truncate(time.Microsecond)
	return c
}

// Warmup loads the newest orders (pages of orders.MaxListLimit) into the cache
// until the next one would take the total weight of the loaded orders over the
// cache's bound, or there are no more orders. It returns how many orders are
// cached from that newest-first prefix. Orders already cached keep their entry,
// which is at least as new; orders recently found missing are skipped.
func (s *Store) Warmup(ctx context.Context) (loaded int, err error) {
	var weight int64
	cursor := ""
	for {
		page, err := s.db.List(ctx, orders.MaxListLimit, cursor)
		if err != nil {
			return loaded, fmt.Errorf("warmup: %w", err)
		}
		for i := range page.Orders {
			o := &page.Orders[i]
			body, err := encode(o)
			if err != nil {
				return loaded, fmt.Errorf("warmup: %w", err)
			}
			w := int64(Weight(o.OrderUID, body))
			if weight+w > s.cache.maxBytes {
				return loaded, nil
			}
			weight += w
			if s.knownMissing(o.OrderUID) {
				continue
			}
			s.cache.setIfAbsent(o.OrderUID, body)
			// A Delete marks the uid missing before it invalidates the entry, so an
			// order deleted after this page was read is either invalidated by the
			// Delete or seen as missing here.
			if s.knownMissing(o.OrderUID) {
				s.cache.Invalidate(o.OrderUID)
				continue
			}
			loaded++
		}
		if page.NextCursor == "" || len(page.Orders) == 0 {
			return loaded, nil
		}
		cursor = page.NextCursor
	}
}

// Fill caches the stored versions of a batch after its database commit: for each
// uid in applied, the order of the record the store kept for it (the highest
// offset in recs, the last of equals), and drops their negative entries. It is the
// pipeline's cache stage; UpsertBatch calls it itself.
func (s *Store) Fill(recs []orders.Record, applied []string) {
	if len(applied) == 0 {
		return
	}
	want := make(map[string]int, len(applied)) // uid -> index of its record in recs, -1 none yet
	for _, uid := range applied {
		want[uid] = -1
	}
	for i := range recs {
		uid := recs[i].Order.OrderUID
		cur, ok := want[uid]
		if !ok {
			continue
		}
		if cur < 0 || recs[i].Source.Offset >= recs[cur].Source.Offset {
			want[uid] = i
		}
	}
	for uid, i := range want {
		if i < 0 {
			// applied names an order the batch does not hold: do not guess its version
			s.cache.Invalidate(uid)
			s.forgetMissing(uid)
			continue
		}
		s.cacheStored(&recs[i].Order)
	}
}

// UpsertBatch writes recs to the database and then caches the applied versions
// (Fill). On error the cache entries of all uids in recs are invalidated, since a
// failed commit may still have been applied. Errors are the database store's.
func (s *Store) UpsertBatch(ctx context.Context, recs []orders.Record) ([]string, error) {
	applied, err := s.db.UpsertBatch(ctx, recs)
	if err != nil {
		for i := range recs {
			s.cache.Invalidate(recs[i].Order.OrderUID)
		}
		return applied, err
	}
	s.Fill(recs, applied)
	return applied, nil
}

// Get returns the order with uid through the cache: a hit decodes the cached
// JSON, a miss reads through as GetJSON does. Errors are those of GetJSON.
func (s *Store) Get(ctx context.Context, uid string) (orders.Order, error) {
	body, _, err := s.GetJSON(ctx, uid)
	if err != nil {
		return orders.Order{}, err
	}
	var o orders.Order
	if err := json.Unmarshal(body, &o); err != nil {
		return orders.Order{}, fmt.Errorf("get: decode cached order: %w", err)
	}
	return o, nil
}

// List delegates to the database store: listings are not cached.
func (s *Store) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	return s.db.List(ctx, limit, cursor)
}

// Put writes o to the database and then caches it. On error the entry is
// invalidated, since a failed commit may still have been applied. Errors are the
// database store's.
func (s *Store) Put(ctx context.Context, o orders.Order) error {
	if err := s.db.Put(ctx, o); err != nil {
		s.cache.Invalidate(o.OrderUID)
		return err
	}
	s.cacheStored(&o)
	return nil
}

// Delete removes the order from the database and then from the cache; the cache
// entry is invalidated whatever the outcome, and a deleted or unknown uid is
// remembered as missing. Errors are the database store's (orders.ErrNotFound for
// an unknown uid).
func (s *Store) Delete(ctx context.Context, uid string) error {
	err := s.db.Delete(ctx, uid)
	// missing first, then invalidate: see Warmup
	if (err == nil || errors.Is(err, orders.ErrNotFound)) && orders.ValidUID(uid) {
		s.rememberMissing(uid)
	}
	s.cache.Invalidate(uid)
	return err
}
