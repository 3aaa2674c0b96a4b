// Package ordersdb is the PostgreSQL implementation of orders.Store, written with
// bun (pgdriver + pgdialect). Writes are bulk statements over array parameters
// (INSERT ... SELECT FROM unnest(...)), one transaction per batch, each row
// guarded by the version (orders.Version) of what is stored for its uid: an order,
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
	db, u, err := open(dsn, poolSize)
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
	db, _, err := open(dsn, poolSize)
	if err != nil {
		return nil, fmt.Errorf("open postgres replica: %w", err)
	}
	return db, nil
}

// open makes the pool of Open without connecting.
func open(dsn string, poolSize int) (*bun.DB, *url.URL, error) {
	if poolSize < 1 {
		return nil, nil, fmt.Errorf("pool size %d: want >= 1", poolSize)
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, nil, errors.New("invalid DSN: want postgres://user:pass@host:port/db?sslmode=disable")
	}
	connector, err := newConnector(withStatementTimeout(u))
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
func newConnector(dsn string) (c *pgdriver.Connector, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid DSN: %v", r)
		}
	}()
	return pgdriver.NewConnector(pgdriver.WithDSN(dsn)), nil
}
