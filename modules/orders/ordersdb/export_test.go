package ordersdb

import "github.com/orderflow/orders-service/modules/orders"

// NewerSQL exposes newerSQL to the tests of package ordersdb_test.
var NewerSQL = newerSQL

// ApplyOrdersSQL and OrdersArgs expose the orders statement of ApplyBatch and
// its parameters, for plan checks.
var ApplyOrdersSQL = applyOrdersSQL

func OrdersArgs(recs []orders.Record) []any { return ordersTable.args(recs) }
