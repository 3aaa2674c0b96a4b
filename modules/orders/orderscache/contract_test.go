package orderscache_test

import (
	"testing"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
	"github.com/orderflow/orders-service/modules/testkit/storetest"
)

// TestContract runs the orders.Store contract over the cached store in front of
// the real database: every read of the contract goes through the cache, so a
// cache that served an older version than the one stored fails it.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orders.Store {
		return orderscache.NewStore(dbtest.New(t).Store, orderscache.New(16<<20), orderscache.Options{})
	})
}
