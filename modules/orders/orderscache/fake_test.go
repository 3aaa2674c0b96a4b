package orderscache_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
)

// fakeStore is an in-memory orders.Store that keeps the versioned contract: a
// record is written only if it is newer than what the uid holds (an order or a
// tombstone), tombstones are kept until purged, the listing is newest first by
// first ingestion. It stores orders in the database's form (date_created in UTC,
// microsecond precision), as ordersdb does.
//
// Hooks, all optional, run outside its lock. afterGet runs once a Get has read
// the uid's state, before it returns it: it may block or sleep (an answer that is
// older by the time it arrives) and an error it returns fails the Get. afterList
// does the same for List. applyErr makes ApplyBatch fail; with applyAnyway it
// writes the batch first (a commit whose outcome the caller cannot know).
type fakeStore struct {
	mu    sync.Mutex
	rows  map[string]*fakeRow
	seq   int64
	hooks fakeHooks

	gets, lists, applies atomic.Int64
}

type fakeHooks struct {
	afterGet    func(ctx context.Context, uid string) error
	afterList   func(ctx context.Context) error
	applyErr    error
	applyAnyway bool
}

type fakeRow struct {
	order     orders.Order // zero when deleted
	version   orders.Version
	deleted   bool
	deletedAt time.Time
	seq       int64 // first ingestion, for the listing
}

var _ orders.Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore { return &fakeStore{rows: make(map[string]*fakeRow)} }

// setHooks replaces the hooks; safe while the store is in use.
func (f *fakeStore) setHooks(h fakeHooks) {
	f.mu.Lock()
	f.hooks = h
	f.mu.Unlock()
}

func (f *fakeStore) getHooks() fakeHooks {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hooks
}

// state returns what uid holds: its version, whether that is a tombstone, and
// whether anything is known of it.
func (f *fakeStore) state(uid string) (v orders.Version, deleted, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rows[uid]
	if !ok {
		return orders.Version{}, false, false
	}
	return r.version, r.deleted, true
}

func (f *fakeStore) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	f.applies.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h := f.getHooks()
	if h.applyErr != nil && !h.applyAnyway {
		return nil, h.applyErr
	}
	f.mu.Lock()
	newest := make(map[string]int, len(recs))
	var order []string
	for i := range recs {
		uid := recs[i].UID()
		j, seen := newest[uid]
		if !seen {
			order = append(order, uid)
		}
		if !seen || recs[i].Version.Newer(recs[j].Version) {
			newest[uid] = i
		}
	}
	stored := make([]orders.Stored, 0, len(order))
	for _, uid := range order {
		rec := &recs[newest[uid]]
		r, exists := f.rows[uid]
		changed := !exists || rec.Version.Newer(r.version)
		if changed {
			if !exists {
				f.seq++
				r = &fakeRow{seq: f.seq}
				f.rows[uid] = r
			}
			r.version, r.deleted = rec.Version, rec.Deleted
			if rec.Deleted {
				r.order, r.deletedAt = orders.Order{}, time.Now()
			} else {
				r.order = rec.Order
				r.order.DateCreated = r.order.DateCreated.UTC().Truncate(time.Microsecond)
			}
		}
		stored = append(stored, orders.Stored{UID: uid, Version: r.version, Deleted: r.deleted, Changed: changed})
	}
	f.mu.Unlock()
	if h.applyErr != nil {
		return nil, h.applyErr
	}
	return stored, nil
}

func (f *fakeStore) Get(ctx context.Context, uid string) (orders.Order, orders.Version, error) {
	f.gets.Add(1)
	if err := ctx.Err(); err != nil {
		return orders.Order{}, orders.Version{}, err
	}
	f.mu.Lock()
	r, ok := f.rows[uid]
	var (
		o   orders.Order
		v   orders.Version
		err error
	)
	switch {
	case !ok:
		err = orders.ErrNotFound
	case r.deleted:
		v, err = r.version, orders.ErrNotFound
	default:
		o, v = r.order, r.version
	}
	h := f.hooks
	f.mu.Unlock()
	if h.afterGet != nil {
		if herr := h.afterGet(ctx, uid); herr != nil {
			return orders.Order{}, orders.Version{}, herr
		}
	}
	return o, v, err
}

func (f *fakeStore) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	f.lists.Add(1)
	if limit < 1 || limit > orders.MaxListLimit {
		return orders.Page{}, orders.ErrInvalidLimit
	}
	after := int64(1 << 62)
	if cursor != "" {
		n, err := strconv.ParseInt(cursor, 10, 64)
		if err != nil {
			return orders.Page{}, orders.ErrInvalidCursor
		}
		after = n
	}
	if err := ctx.Err(); err != nil {
		return orders.Page{}, err
	}
	f.mu.Lock()
	var rows []*fakeRow
	for _, r := range f.rows {
		if !r.deleted && r.seq < after {
			rows = append(rows, r)
		}
	}
	slices.SortFunc(rows, func(a, b *fakeRow) int { return int(b.seq - a.seq) })
	var page orders.Page
	for _, r := range rows[:min(limit, len(rows))] {
		page.Orders = append(page.Orders, r.order)
		page.Versions = append(page.Versions, r.version)
	}
	if len(rows) > limit {
		page.NextCursor = strconv.FormatInt(rows[limit-1].seq, 10)
	}
	h := f.hooks
	f.mu.Unlock()
	if h.afterList != nil {
		if err := h.afterList(ctx); err != nil {
			return orders.Page{}, err
		}
	}
	return page, nil
}

func (f *fakeStore) PurgeTombstones(ctx context.Context, cutoff time.Time, purged func([]string)) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var uids []string
	for uid, r := range f.rows {
		if r.deleted && r.deletedAt.Before(cutoff) {
			delete(f.rows, uid)
			uids = append(uids, uid)
		}
	}
	if purged != nil && len(uids) > 0 {
		purged(uids)
	}
	return int64(len(uids)), nil
}

// errDown is the error of a database that does not answer.
var errDown = errors.New("fake database down")

// sleepCtx waits d or until ctx ends, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
