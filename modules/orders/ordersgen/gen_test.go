package ordersgen_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
)

func TestValidOrdersPass(t *testing.T) {
	g := ordersgen.New(42)
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		o, b := g.Valid()
		if seen[o.OrderUID] {
			t.Fatalf("uid %s generated twice", o.OrderUID)
		}
		seen[o.OrderUID] = true
		if _, err := orders.Parse(b, orders.DefaultMaxMessageBytes); err != nil {
			t.Fatalf("generated order %d invalid: %v\n%s", i, err, b)
		}
		if n := len(o.Items); n < 1 || n > 5 {
			t.Fatalf("%d items", n)
		}
	}
}

func TestInvalidKindsFail(t *testing.T) {
	g := ordersgen.New(7)
	for _, kind := range ordersgen.Kinds {
		for i := 0; i < 20; i++ {
			_, b := g.Invalid(kind, orders.DefaultMaxMessageBytes)
			_, err := orders.Parse(b, orders.DefaultMaxMessageBytes)
			var ie *orders.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("%s: want *InvalidError, got %v", kind, err)
			}
		}
	}
}

func TestSeedReproducible(t *testing.T) {
	_, a := ordersgen.New(99).Valid()
	_, b := ordersgen.New(99).Valid()
	if !bytes.Equal(a, b) {
		t.Fatal("same seed gave different orders")
	}
}
