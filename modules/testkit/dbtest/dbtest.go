// Package dbtest gives a test a fresh PostgreSQL database with the schema
// migrated, a bun pool on it and the orders database store: the one way tests
// open a database.
//
//	db := dbtest.New(t)                       // on the shared test server
//	db := dbtest.New(t, dbtest.On(cluster))   // on a dedicated cluster (crash tests, benchmarks)
//	s := db.Store                             // *ordersdb.Store over db.Bun
//
// The package's tests must call testenv.Main from TestMain.
package dbtest

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/migrations"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// DefaultPoolSize is the pool size of New without Pool.
const DefaultPoolSize = 4

// openTimeout bounds opening the pool and migrating.
const openTimeout = 60 * time.Second

// DB is one test's database.
type DB struct {
	// DSN connects to the database (for the service binary, pgx or another pool).
	DSN string
	// Bun is a pool on the database (ordersdb.Open: statement timeout, query
	// spans), closed in t.Cleanup.
	Bun *bun.DB
	// Store is the orders database store over Bun.
	Store *ordersdb.Store
}

type config struct {
	cluster    *testenv.Cluster
	poolSize   int
	unmigrated bool
}

// Option changes what New provides.
type Option func(*config)

// On creates the database on cluster instead of the shared test server
// (testenv.PostgresDSN).
func On(cluster *testenv.Cluster) Option { return func(c *config) { c.cluster = cluster } }

// Pool sets the size of the pool in DB.Bun (default DefaultPoolSize; 1 is fine:
// the migrations run on a pool of at least two).
func Pool(size int) Option { return func(c *config) { c.poolSize = size } }

// Unmigrated leaves the database empty, for tests of the migrations themselves.
func Unmigrated() Option { return func(c *config) { c.unmigrated = true } }

// New creates a fresh database for tb (dropped when tb ends), opens a pool on it
// and applies the migrations. It fails the test when any step fails.
func New(tb testing.TB, opts ...Option) *DB {
	tb.Helper()
	cfg := config{poolSize: DefaultPoolSize}
	for _, o := range opts {
		o(&cfg)
	}
	var dsn string
	if cfg.cluster != nil {
		dsn = cfg.cluster.CreateDB(tb)
	} else {
		dsn = testenv.PostgresDSN(tb)
	}
	// migrations.Up holds an advisory lock on one connection while it migrates on
	// another: open with at least two, then shrink the pool.
	db := open(tb, dsn, max(cfg.poolSize, 2))
	if !cfg.unmigrated {
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		if err := migrations.Up(ctx, db); err != nil {
			tb.Fatalf("dbtest: migrate: %v", err)
		}
	}
	db.SetMaxOpenConns(cfg.poolSize)
	db.SetMaxIdleConns(cfg.poolSize)
	return &DB{DSN: dsn, Bun: db, Store: ordersdb.New(db)}
}

// OpenPool opens another pool of size connections on the database, closed in
// tb.Cleanup: a second service instance, or a baseline with a pool of its own.
func (d *DB) OpenPool(tb testing.TB, size int) *bun.DB {
	tb.Helper()
	return open(tb, d.DSN, size)
}

func open(tb testing.TB, dsn string, size int) *bun.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	db, err := ordersdb.Open(ctx, dsn, size)
	if err != nil {
		tb.Fatalf("dbtest: open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}
