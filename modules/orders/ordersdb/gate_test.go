package ordersdb

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
)

// Reads beyond the slots are shed (after a bounded wait); each read gets
// the read timeout as its deadline; a freed slot admits the next read.
func TestReadGate(t *testing.T) {
	g := &readGate{slots: make(chan struct{}, 1), wait: 20 * time.Millisecond, timeout: time.Second}
	ctx, done, err := g.enter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Second {
		t.Fatalf("read without the read timeout as its deadline: %v %v", d, ok)
	}
	if _, _, err := g.enter(context.Background()); !errors.Is(err, orders.ErrOverloaded) {
		t.Fatalf("a read past the slots: %v, want ErrOverloaded", err)
	}
	if g.shed.Load() != 1 {
		t.Fatalf("shed %d, want 1", g.shed.Load())
	}
	go func() { time.Sleep(5 * time.Millisecond); done() }()
	_, done2, err := g.enter(context.Background())
	if err != nil {
		t.Fatalf("a read while a slot frees within the wait: %v", err)
	}
	done2()
	var nilGate *readGate
	if _, d, err := nilGate.enter(context.Background()); err != nil || d == nil {
		t.Fatal("no gate: reads pass")
	}
}
