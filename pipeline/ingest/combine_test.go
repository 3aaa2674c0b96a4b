package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
)

// laneBatch is a batch of n items with uids "<lane>-<i>".
func laneBatch(lane string, n int) *batch {
	b := &batch{}
	for i := range n {
		b.items = append(b.items, &item{order: orders.Order{OrderUID: fmt.Sprintf("%s-%d", lane, i)}})
	}
	return b
}

// fakeWriter records every write (the uids it was given) and, when gate is
// set, holds each write until the test sends on gate.
type fakeWriter struct {
	mu     sync.Mutex
	writes [][]string
	gate   chan error
	began  chan int // the number of items of each write, when it begins
}

func (w *fakeWriter) write(_ context.Context, b *batch) error {
	uids := make([]string, len(b.items))
	for i, it := range b.items {
		uids[i] = it.order.OrderUID
	}
	w.mu.Lock()
	w.writes = append(w.writes, uids)
	w.mu.Unlock()
	if w.began != nil {
		w.began <- len(uids)
	}
	if w.gate != nil {
		if err := <-w.gate; err != nil {
			return err
		}
	}
	// One record per uid (as newestByUID makes them), stored in reverse order,
	// as a store answering by uid may.
	seen := map[string]bool{}
	for i := len(b.items) - 1; i >= 0; i-- {
		uid := b.items[i].order.OrderUID
		if seen[uid] {
			continue
		}
		seen[uid] = true
		b.recs = append(b.recs, orders.Record{Order: orders.Order{OrderUID: uid}})
		b.stored = append(b.stored, orders.Stored{UID: uid, Changed: true})
	}
	return nil
}

// waitPending waits until n batches wait in c for the next joint write.
func waitPending(t *testing.T, c *combiner, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d batches pending, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// uidsOf returns the uids of b's records and of its stored versions, sorted.
func uidsOf(b *batch) (recs, stored []string) {
	for i := range b.recs {
		recs = append(recs, b.recs[i].UID())
	}
	for _, s := range b.stored {
		stored = append(stored, s.UID)
	}
	slices.Sort(recs)
	slices.Sort(stored)
	return recs, stored
}

func itemUIDs(b *batch) []string {
	var uids []string
	for _, it := range b.items {
		uids = append(uids, it.order.OrderUID)
	}
	slices.Sort(uids)
	return uids
}

// Small batches handed in while a write is under way are written together in
// the next one, and each lane gets back the records and versions of its own
// orders, no other's.
func TestCombinerJoinsSmallBatchesAndSplitsTheOutcome(t *testing.T) {
	c := newCombiner(10)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	ctx := context.Background()
	first := laneBatch("a", 2)
	errs := make(chan error, 4)
	go func() { errs <- c.write(ctx, first, w.write) }()
	if n := <-w.began; n != 2 {
		t.Fatalf("first write has %d items, want 2 (written at once, alone)", n)
	}
	others := []*batch{laneBatch("b", 3), laneBatch("c", 1), laneBatch("d", 9)}
	for _, b := range others {
		go func() { errs <- c.write(ctx, b, w.write) }()
	}
	waitPending(t, c, 3)
	w.gate <- nil // the first write ends: one of the waiting lanes leads the rest
	if n := <-w.began; n != 13 {
		t.Fatalf("second write has %d items, want 13 (the three waiting batches together)", n)
	}
	w.gate <- nil
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(w.writes) != 2 {
		t.Fatalf("%d writes, want 2: %v", len(w.writes), w.writes)
	}
	if got := c.joints(); got != 1 {
		t.Errorf("joint writes %d, want 1", got)
	}
	for _, b := range append(others, first) {
		recs, stored := uidsOf(b)
		want := itemUIDs(b)
		if !slices.Equal(recs, want) || !slices.Equal(stored, want) {
			t.Errorf("batch %v got records %v and stored %v, want its own uids", want, recs, stored)
		}
	}
}

// A batch of big items or more (a backlog) is written at once beside a write
// under way, without waiting for it, and a small one is written beside big ones
// (a lane draining a backlog does not hold back a quiet lane).
func TestCombinerWritesBigBatchesSideBySide(t *testing.T) {
	c := newCombiner(4)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- c.write(ctx, laneBatch("a", 4), w.write) }()
	<-w.began
	for i, b := range []*batch{laneBatch("b", 5), laneBatch("c", 1)} {
		go func() { errs <- c.write(ctx, b, w.write) }()
		select {
		case n := <-w.began:
			if n != len(b.items) {
				t.Fatalf("write %d has %d items, want %d", i+2, n, len(b.items))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a batch of %d items waited for the big writes under way", len(b.items))
		}
	}
	for range 3 {
		w.gate <- nil
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// The error of a joint write is every lane's in it, and the combiner goes on
// writing afterwards.
func TestCombinerJointErrorReachesEveryLane(t *testing.T) {
	c := newCombiner(10)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- c.write(ctx, laneBatch("a", 1), w.write) }()
	<-w.began
	bs := []*batch{laneBatch("b", 1), laneBatch("c", 1)}
	for _, b := range bs {
		go func() { errs <- c.write(ctx, b, w.write) }()
	}
	waitPending(t, c, 2)
	w.gate <- nil
	<-w.began
	boom := errors.New("boom")
	w.gate <- boom
	var failed int
	for range 3 {
		if err := <-errs; errors.Is(err, boom) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 2 {
		t.Fatalf("%d lanes got the joint write's error, want 2", failed)
	}
	for _, b := range bs {
		if len(b.recs) != 0 || len(b.stored) != 0 {
			t.Errorf("a failed write filled batch %v", itemUIDs(b))
		}
	}
	w.gate = nil
	if err := c.write(ctx, laneBatch("d", 1), w.write); err != nil {
		t.Fatal(err)
	}
}

// Many lanes writing at once, small and big batches mixed: every batch is
// written exactly once, gets back exactly its own orders, and a lane's batches
// are written in the order the lane handed them in.
func TestCombinerConcurrentLanes(t *testing.T) {
	c := newCombiner(8)
	w := &fakeWriter{}
	ctx := context.Background()
	const lanes, perLane = 4, 200
	var wg sync.WaitGroup
	for l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perLane {
				b := laneBatch(fmt.Sprintf("l%d/%03d", l, k), 1+(k*7+l)%12)
				if err := c.write(ctx, b, w.write); err != nil {
					t.Error(err)
					return
				}
				recs, stored := uidsOf(b)
				if want := itemUIDs(b); !slices.Equal(recs, want) || !slices.Equal(stored, want) {
					t.Errorf("lane %d batch %d: records %v stored %v, want %v", l, k, recs, stored, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	last := map[string]string{} // lane → its last batch written
	for _, uids := range w.writes {
		for _, u := range uids {
			seen[u]++
			l, k := u[:2], u[3:6] // "l<lane>/<batch>-<i>"
			if prev := last[l]; k < prev {
				t.Fatalf("lane %s: batch %s written after %s", l, k, prev)
			}
			last[l] = k
		}
	}
	total := 0
	for l := range lanes {
		for k := range perLane {
			total += 1 + (k*7+l)%12
		}
	}
	if len(seen) != total {
		t.Fatalf("%d uids written, want %d", len(seen), total)
	}
	for u, n := range seen {
		if n != 1 {
			t.Fatalf("%s written %d times", u, n)
		}
	}
}

// An order re-keyed to another partition has items in two lanes: a joint write
// stores it once, and both lanes get its outcome (the API write waiting on
// either lane is answered, the cache filled).
func TestCombinerSharedUIDReachesBothLanes(t *testing.T) {
	c := newCombiner(10)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- c.write(ctx, laneBatch("a", 1), w.write) }()
	<-w.began
	b1, b2 := laneBatch("b", 1), laneBatch("c", 1)
	shared := func() *item { return &item{order: orders.Order{OrderUID: "re-keyed"}} }
	b1.items = append(b1.items, shared())
	b2.items = append(b2.items, shared())
	for _, b := range []*batch{b1, b2} {
		go func() { errs <- c.write(ctx, b, w.write) }()
	}
	waitPending(t, c, 2)
	w.gate <- nil
	<-w.began
	w.gate <- nil
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []*batch{b1, b2} {
		recs, stored := uidsOf(b)
		if want := itemUIDs(b); !slices.Equal(recs, want) || !slices.Equal(stored, want) {
			t.Errorf("batch %v got records %v and stored %v", want, recs, stored)
		}
	}
}

// A lane whose write panics still ends the joint write: the lanes in it get
// errJointAborted and the next small batch is written, instead of every lane
// waiting forever (the pipeline recovers the panic and stops the flow).
func TestCombinerPanicInAJointWriteReleasesTheLanes(t *testing.T) {
	c := newCombiner(10)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- c.write(ctx, laneBatch("a", 1), w.write) }()
	<-w.began
	for _, l := range []string{"b", "c"} {
		go func() {
			defer func() {
				if r := recover(); r != nil {
					errs <- fmt.Errorf("panic: %v", r)
				}
			}()
			errs <- c.write(ctx, laneBatch(l, 1), func(ctx context.Context, b *batch) error {
				if len(b.items) > 1 {
					panic("boom")
				}
				return w.write(ctx, b)
			})
		}()
	}
	waitPending(t, c, 2)
	w.gate <- nil
	var aborted, panicked int
	for range 3 {
		select {
		case err := <-errs:
			switch {
			case errors.Is(err, errJointAborted):
				aborted++
			case err != nil && strings.HasPrefix(err.Error(), "panic"):
				panicked++
			case err != nil:
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a lane still waits after the joint write panicked")
		}
	}
	if aborted != 1 || panicked != 1 {
		t.Fatalf("aborted %d, panicked %d: want 1 and 1", aborted, panicked)
	}
	w.gate = nil
	if err := c.write(ctx, laneBatch("d", 1), w.write); err != nil {
		t.Fatal(err)
	}
}

// A lane waiting for its turn leaves when its context ends, and its batch is
// not written afterwards.
func TestCombinerWaitingLaneLeavesOnCancel(t *testing.T) {
	c := newCombiner(10)
	w := &fakeWriter{gate: make(chan error), began: make(chan int, 8)}
	errs := make(chan error, 2)
	go func() { errs <- c.write(context.Background(), laneBatch("a", 1), w.write) }()
	<-w.began
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errs <- c.write(ctx, laneBatch("b", 1), w.write) }()
	waitPending(t, c, 1)
	cancel()
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting lane: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting lane did not leave when its context ended")
	}
	waitPending(t, c, 0)
	w.gate <- nil
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 {
		t.Fatalf("%d writes, want 1 (the cancelled batch is not written): %v", len(w.writes), w.writes)
	}
}
