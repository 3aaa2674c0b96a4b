package orderscache

import (
	"context"
	"fmt"

	"github.com/orderflow/orders-service/modules/orders"
)

// Warmup loads the newest orders (pages of orders.MaxListLimit, each read within
// Options.DBTimeout) into the cache until the next one would take the total weight
// of the loaded orders over the cache's bound, or there are no more orders. It
// returns how many orders of that newest-first prefix the cache holds afterwards.
// Each order is offered at the version the page gives: a cached entry at least as
// new (an order, or a negative entry of a later delete) is kept.
//
// A page may be older than writes that complete while Warmup runs, and set-if-newer
// alone does not stop it from bringing an older version back if the newer entry
// left the cache in between (evicted, invalidated, or a negative entry expired). So
// Warmup watches the writes that start after it (Fill and Invalidate note their
// uids, see note) and does not offer an order that a write since then stored at a
// newer version or invalidated; the check is made under the key's lock, together
// with the offer. Tombstones' negative entries outlive a page read anyway (they
// live at least 2*DBTimeout).
func (s *Store) Warmup(ctx context.Context) (loaded int, err error) {
	w := s.startWatch()
	defer s.stopWatch(w)
	var weight int64
	cursor := ""
	for {
		page, err := s.listPage(ctx, cursor)
		if err != nil {
			return loaded, fmt.Errorf("warmup: %w", err)
		}
		if len(page.Versions) != len(page.Orders) {
			return loaded, fmt.Errorf("warmup: a page of %d orders has %d versions", len(page.Orders), len(page.Versions))
		}
		for i := range page.Orders {
			o, v := &page.Orders[i], page.Versions[i]
			body, err := encode(o)
			if err != nil {
				return loaded, fmt.Errorf("warmup: %w", err)
			}
			ow := int64(Weight(o.OrderUID, body))
			if weight+ow > s.cache.maxBytes {
				return loaded, nil
			}
			weight += ow
			uid := o.OrderUID
			cur, _ := s.cache.offerIf(uid, newEntry(body, v), func() bool { return s.changedSince(w, uid, v) })
			if cur != nil && !cur.Deleted {
				loaded++
			}
		}
		if page.NextCursor == "" || len(page.Orders) == 0 {
			return loaded, nil
		}
		cursor = page.NextCursor
	}
}

// listPage reads one page of the newest-first listing within the database timeout.
func (s *Store) listPage(ctx context.Context, cursor string) (orders.Page, error) {
	ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
	defer cancel()
	return s.db.List(ctx, orders.MaxListLimit, cursor)
}

// watch is what one running Warmup has seen written since it started: per uid,
// the newest version a write stored, or that it was invalidated. Guarded by the
// store's watchMu.
type watch struct {
	seen map[string]noted
}

type noted struct {
	version     orders.Version
	invalidated bool
}

// startWatch registers a watch. A write whose check of s.watching comes after
// this notes its uids in it; one whose check comes before committed to the
// database before the warmup's first page read, which therefore sees it.
func (s *Store) startWatch() *watch {
	w := &watch{seen: make(map[string]noted)}
	s.watchMu.Lock()
	s.watches[w] = struct{}{}
	s.watching.Add(1)
	s.watchMu.Unlock()
	return w
}

func (s *Store) stopWatch(w *watch) {
	s.watchMu.Lock()
	delete(s.watches, w)
	s.watching.Add(-1)
	s.watchMu.Unlock()
}

// note records a write of uid in every running warmup's watch: stored at version
// v, or invalidated. It is called before the write changes the cache.
func (s *Store) note(uid string, v orders.Version, invalidated bool) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watches {
		n := w.seen[uid]
		if invalidated {
			n.invalidated = true
		} else if v.Newer(n.version) {
			n.version = v
		}
		w.seen[uid] = n
	}
}

// changedSince reports whether a write since w started invalidated uid or stored a
// version newer than v. It runs under the key's lock in the cache and takes only
// watchMu, which note never holds while it calls the cache.
func (s *Store) changedSince(w *watch, uid string, v orders.Version) bool {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	n, ok := w.seen[uid]
	return ok && (n.invalidated || n.version.Newer(v))
}
