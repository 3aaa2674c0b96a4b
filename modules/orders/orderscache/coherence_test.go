package orderscache_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

// TestChangesFromAnotherInstance checks the change feed's effect: instance B
// holds an order at v1, instance A commits v2 (and later a delete); until B hears
// of it, B still answers v1 from its cache; once B applies the change, it reads
// the newer version through. A change older than B's entry leaves it alone.
func TestChangesFromAnotherInstance(t *testing.T) {
	db := newFakeStore()
	a := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	b := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{})
	o1 := ordersgen.New(41).Order()
	o2 := o1
	o2.TrackNumber = "SECOND"

	apply(t, a, rec(o1, 1))
	wantEntry(t, b, o1, at(1), false) // B reads it through
	wantEntry(t, b, o1, at(1), true)  // and holds it

	apply(t, a, rec(o2, 2))
	wantEntry(t, b, o1, at(1), true) // B has not heard of v2 yet

	b.Changes([]orders.Change{{UID: o1.OrderUID, Version: at(2)}})
	wantEntry(t, b, o2, at(2), false)
	wantEntry(t, b, o2, at(2), true)

	b.Changes([]orders.Change{{UID: o1.OrderUID, Version: at(1)}}) // older: a late or repeated change
	wantEntry(t, b, o2, at(2), true)

	apply(t, a, tomb(o1.OrderUID, 3))
	b.Changes([]orders.Change{{UID: o1.OrderUID, Version: at(3), Deleted: true}})
	wantNotFound(t, b, o1.OrderUID, at(3))

	// Reset forgets everything.
	other := ordersgen.New(42).Order()
	apply(t, b, rec(other, 4))
	wantEntry(t, b, other, at(4), true)
	b.Reset()
	wantEntry(t, b, other, at(4), false)
}

// TestBypassWhileIncoherent checks that while Options.Coherent reports false,
// lookups read the database and cache nothing, and are counted.
func TestBypassWhileIncoherent(t *testing.T) {
	db := newFakeStore()
	var coherent atomic.Bool
	s := orderscache.NewStore(db, orderscache.New(64<<20), orderscache.Options{Coherent: coherent.Load})
	o := ordersgen.New(43).Order()
	apply(t, s, rec(o, 1)) // filled into the cache
	gets := db.gets.Load()
	for range 3 {
		wantEntry(t, s, o, at(1), false)
	}
	if n := db.gets.Load() - gets; n != 3 {
		t.Fatalf("%d database reads for 3 bypassed lookups, want 3", n)
	}
	if s.Bypassed() != 3 {
		t.Fatalf("Bypassed() = %d, want 3", s.Bypassed())
	}
	if _, _, err := s.GetJSON(context.Background(), "unknown-uid-1"); !errors.Is(err, orders.ErrNotFound) {
		t.Fatalf("bypassed lookup of an unknown uid: %v", err)
	}
	coherent.Store(true)
	wantEntry(t, s, o, at(1), true) // the entry filled before is used again
}
