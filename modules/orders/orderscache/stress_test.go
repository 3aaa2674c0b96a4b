package orderscache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

// TestStressVersionsNeverGoBack runs a writer (batches of increasing versions,
// with deletes, duplicates and replays of old versions), readers whose
// read-throughs get slow answers that are older by the time they arrive, and
// warmups over slow pages, all at once, with negative entries expiring all along.
// Every lookup of a uid must observe a version at least as new as any lookup that
// completed before it started, with the JSON and ETag of that version; at the end
// every cached entry must be the database's version.
//
// In "invalidations", batches are filled right after their commit, through
// ApplyBatch or as the pipeline does, while entries keep leaving the cache
// (Invalidate). In "pipelined", as in the pipeline's stages, a batch is filled
// only after the next one has committed, so fills offer versions that reads may
// already have loaded newer; nothing leaves the cache but expired negative
// entries (an order that did could come back older until its next fill, see
// Store.Fill).
func TestStressVersionsNeverGoBack(t *testing.T) {
	t.Run("invalidations", func(t *testing.T) { stressVersions(t, false) })
	t.Run("pipelined", func(t *testing.T) { stressVersions(t, true) })
}

func stressVersions(t *testing.T, pipelined bool) {
	const (
		nUIDs   = 16
		batches = 3000
		readers = 4
	)
	ctx := context.Background()
	s, db := newStore(t, orderscache.Options{DBTimeout: 10 * time.Millisecond, NegativeTTL: time.Millisecond})
	jitter := func(ctx context.Context, most time.Duration) error {
		if rand.IntN(3) == 0 {
			return nil
		}
		return sleepCtx(ctx, rand.N(most))
	}
	db.setHooks(fakeHooks{
		afterGet:  func(ctx context.Context, _ string) error { return jitter(ctx, time.Millisecond) },
		afterList: func(ctx context.Context) error { return jitter(ctx, time.Millisecond) },
	})

	g := ordersgen.New(42)
	uids := make([]string, nUIDs)
	base := make(map[string]orders.Order, nUIDs)
	for i := range uids {
		o := g.Order()
		o.OrderUID = fmt.Sprintf("stress-%02d", i)
		uids[i] = o.OrderUID
		base[o.OrderUID] = o
	}
	version := func(uid string, off int64) orders.Record {
		o := base[uid]
		o.TrackNumber = "T" + strconv.FormatInt(off, 10)
		return rec(o, off)
	}

	// seen[i] is the newest offset a completed lookup of uids[i] observed
	var seen [nUIDs]atomic.Int64
	var lookups, checked, invalidations atomic.Int64
	observe := func(i int, before int64, v orders.Version) {
		if v.Offset < before {
			t.Errorf("%s: observed version %s after a lookup had observed 0.%d", uids[i], v, before)
		}
		for {
			cur := seen[i].Load()
			if v.Offset <= cur || seen[i].CompareAndSwap(cur, v.Offset) {
				return
			}
		}
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				runtime.Gosched()
				i := rand.IntN(nUIDs)
				before := seen[i].Load()
				lookups.Add(1)
				if rand.IntN(2) == 0 {
					e, _, err := s.GetJSON(ctx, uids[i])
					if err != nil {
						continue // not found carries no version here; timeouts
					}
					off := strconv.FormatInt(e.Version.Offset, 10)
					if !bytes.Contains(e.Body, []byte(`"track_number":"T`+off+`"`)) || string(e.ETag) != `"0.`+off+`"` {
						t.Errorf("%s: entry at %s has ETag %s and body %.120s", uids[i], e.Version, e.ETag, e.Body)
					}
					checked.Add(1)
					observe(i, before, e.Version)
					continue
				}
				_, v, err := s.Get(ctx, uids[i])
				if err != nil && !errors.Is(err, orders.ErrNotFound) {
					continue
				}
				checked.Add(1)
				observe(i, before, v)
			}
		})
	}
	wg.Go(func() { // warmups
		for {
			select {
			case <-done:
				return
			default:
			}
			_, _ = s.Warmup(ctx)
			time.Sleep(time.Millisecond)
		}
	})
	wg.Go(func() { // invalidations (or evictions): entries leave the cache
		if pipelined {
			return
		}
		for {
			select {
			case <-done:
				return
			default:
			}
			s.Invalidate(uids[rand.IntN(nUIDs)])
			invalidations.Add(1)
			runtime.Gosched()
		}
	})

	var off int64
	var lagging func() // the fill of the previous batch, when pipelined
	for b := range batches {
		var recs []orders.Record
		for range 1 + rand.IntN(4) {
			uid := uids[rand.IntN(nUIDs)]
			off++
			switch {
			case rand.IntN(6) == 0:
				recs = append(recs, tomb(uid, off))
			case off > 50 && rand.IntN(10) == 0: // a replayed old version
				recs = append(recs, version(uid, off-1-rand.Int64N(50)))
			default:
				recs = append(recs, version(uid, off))
			}
		}
		rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		switch {
		case pipelined:
			stored, err := db.ApplyBatch(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			if lagging != nil {
				lagging()
			}
			lagging = func() { s.Fill(recs, stored) }
		case b%2 == 0:
			if _, err := s.ApplyBatch(ctx, recs); err != nil {
				t.Fatal(err)
			}
		default: // the pipeline: the database store, then the cache stage
			stored, err := db.ApplyBatch(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			s.Fill(recs, stored)
		}
		if b%64 == 0 {
			time.Sleep(time.Millisecond) // let negative entries expire and loads land
		}
	}
	if lagging != nil {
		lagging()
	}
	close(done)
	wg.Wait()

	for i, uid := range uids {
		v, deleted, ok := db.state(uid)
		if !ok {
			t.Fatalf("%s never written", uid)
		}
		if e, ok := s.Cache().Get(uid); ok && (e.Version != v || e.Deleted != deleted) {
			t.Errorf("%s: cached %s (deleted=%v), the database holds %s (deleted=%v)", uid, e.Version, e.Deleted, v, deleted)
		}
		db.setHooks(fakeHooks{})
		_, got, err := s.Get(ctx, uid)
		if (err != nil) != deleted || got != v {
			t.Errorf("%s: Get = %s, %v; the database holds %s (deleted=%v)", uid, got, err, v, deleted)
		}
		observe(i, seen[i].Load(), got)
	}
	t.Logf("%d lookups, %d versions checked, %d database reads, %d listings, %d invalidations; cache %+v",
		lookups.Load(), checked.Load(), db.gets.Load(), db.lists.Load(), invalidations.Load(), s.Cache().Stats())
}
