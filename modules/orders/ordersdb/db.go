// Package ordersdb is the PostgreSQL implementation of orders.Store, written with
// bun (pgdriver + pgdialect). Writes are one transaction per batch: the rows are
// COPYed (the orders into a staging table, then one guarded INSERT ... SELECT),
// each order guarded by the version (orders.Version) of what is stored for its uid: an order,
// or the tombstone a delete leaves in order_tombstones. Reads load an order with
// its delivery, payment, items and version in one round trip.
package ordersdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/extra/bunotel"
)

// pingTimeout bounds the connectivity check of Open.
const pingTimeout = 5 * time.Second

// Open connects to the PostgreSQL server at dsn (postgres://user:pass@host:port/db?sslmode=...)
// with a pool of at most poolSize connections, checks the connection with a
// ping bounded by 5s (and by ctx), and returns the handle, with OpenTelemetry
// query spans enabled. The caller closes it. Errors never contain the password.
func Open(ctx context.Context, dsn string, poolSize int) (*bun.DB, error) {
	return openChecked(ctx, dsn, poolSize, false)
}

// OpenForMigrations is Open for the migrator: two connections (the advisory
// lock's and the migration's) without statement timeout or read timeout, since
// a migration may rightly run for minutes (CREATE INDEX CONCURRENTLY on a large
// table) and waiting for another instance's migration to release the lock is
// not an error. It is separate from the service's pool, so a pool of one
// connection does not deadlock the migrator against its own lock. The caller
// closes it once the migrations are done.
func OpenForMigrations(ctx context.Context, dsn string) (*bun.DB, error) {
	return openChecked(ctx, dsn, 2, true)
}

func openChecked(ctx context.Context, dsn string, poolSize int, unbounded bool) (*bun.DB, error) {
	db, u, err := open(dsn, poolSize, unbounded)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres: ping %s%s: %w", u.Host, u.Path, err)
	}
	return db, nil
}

// OpenReplica is Open for a read replica (NewWithReplica): it checks the DSN but
// does not connect, so a replica that is down at start delays nothing; the store's
// prober connects and finds out when it answers. The caller closes it.
func OpenReplica(dsn string, poolSize int) (*bun.DB, error) {
	db, _, err := open(dsn, poolSize, false)
	if err != nil {
		return nil, fmt.Errorf("open postgres replica: %w", err)
	}
	return db, nil
}

// open makes the pool of Open without connecting; unbounded: without statement
// and read timeouts (OpenForMigrations).
func open(dsn string, poolSize int, unbounded bool) (*bun.DB, *url.URL, error) {
	if poolSize < 1 {
		return nil, nil, fmt.Errorf("pool size %d: want >= 1", poolSize)
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, nil, errors.New("invalid DSN: want postgres://user:pass@host:port/db?sslmode=disable")
	}
	withTimeout, extra := withStatementTimeout(u), []pgdriver.Option(nil)
	if unbounded {
		q := u.Query()
		q.Set("statement_timeout", "0")
		c := *u
		c.RawQuery = q.Encode()
		withTimeout, extra = c.String(), []pgdriver.Option{pgdriver.WithReadTimeout(0)}
	}
	connector, err := newConnector(withTimeout, extra...)
	if err != nil {
		return nil, nil, err
	}
	sqldb := sql.OpenDB(connector)
	sqldb.SetMaxOpenConns(poolSize)
	sqldb.SetMaxIdleConns(poolSize)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)

	dbName := strings.TrimPrefix(u.Path, "/")
	db := bun.NewDB(sqldb, pgdialect.New()).WithQueryHook(bunotel.NewQueryHook(bunotel.WithDBName(dbName)))
	return db, u, nil
}

// DefaultStatementTimeout is the server-side statement_timeout set on every
// connection unless the DSN names one. It is just under pgdriver's 10 s read
// timeout, so a statement the client gives up on (e.g. one waiting on a long table
// lock) is also cancelled by the server instead of holding a connection.
const DefaultStatementTimeout = 9 * time.Second

// withStatementTimeout returns the DSN with statement_timeout added when absent.
func withStatementTimeout(u *url.URL) string {
	q := u.Query()
	if q.Get("statement_timeout") == "" {
		q.Set("statement_timeout", fmt.Sprint(DefaultStatementTimeout.Milliseconds()))
	}
	c := *u
	c.RawQuery = q.Encode()
	return c.String()
}

// newConnector turns the panic pgdriver raises on an unusable DSN into an error.
func newConnector(dsn string, opts ...pgdriver.Option) (c *pgdriver.Connector, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid DSN: %v", r)
		}
	}()
	return pgdriver.NewConnector(append([]pgdriver.Option{pgdriver.WithDSN(dsn)}, opts...)...), nil
}
