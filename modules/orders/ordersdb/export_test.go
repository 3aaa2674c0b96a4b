package ordersdb

import (
	"context"

	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/orders"
)

// NewerSQL exposes newerSQL to the tests of package ordersdb_test.
var NewerSQL = newerSQL

// ApplyOrdersSQL exposes the orders statement of ApplyBatch, for plan checks.
var ApplyOrdersSQL = applyOrdersSQL

// StageOrders copies recs into the staging table of the orders statement on
// conn, as ApplyBatch does; call it in a transaction (the rows go at its end).
func StageOrders(ctx context.Context, conn bun.Conn, recs []orders.Record) error {
	if _, err := conn.ExecContext(ctx, stageOrdersSQL); err != nil {
		return err
	}
	return copyIn(ctx, batchTx{conn: conn}, &ordersTable, ordersStaging, recs)
}

// StageInTx runs, in the batch transaction of ApplyBatch (inTx, whose BEGIN
// creates the orders staging table), between, then the COPY of recs into the
// staging table, and returns what the transaction returned.
func StageInTx(ctx context.Context, conn bun.Conn, between func() error, recs []orders.Record) error {
	return inTx(ctx, conn, func(tx batchTx) (string, error) {
		if err := between(); err != nil {
			return "", err
		}
		return "", copyIn(ctx, tx, &ordersTable, ordersStaging, recs)
	})
}

// SetSmallBatch sets the most orders a batch may hold to be written in two round
// trips (applySmall); 0: every batch is written with COPY. It returns s.
func (s *Store) SetSmallBatch(n int) *Store {
	s.smallBatch = n
	return s
}
