package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sourcegraph/conc/pool"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/migrations"
	"github.com/orderflow/orders-service/modules/httpx"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/orders/ordershttp"
	flow "github.com/orderflow/orders-service/pipeline/ingest"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func cmdServe(ctx context.Context, args, environ []string, stderr io.Writer) error {
	cfg, _, err := loadConfig("serve", args, environ, stderr, nil)
	if err != nil {
		return err
	}
	if err := cfg.RequireDSN(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	return runService(ctx, cfg, log, nil)
}

// runService wires the modules together and runs them until ctx is cancelled or one
// of them fails: database (migrations), cache, HTTP API and the ingestion pipeline.
// ready, when not nil, is called once the HTTP listener accepts connections.
func runService(ctx context.Context, cfg configs.Config, log *slog.Logger, ready func(addr string)) error {
	shutdownTracing, err := setupTracing(ctx, cfg.Tracing, "order-service")
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.Background()) }()

	setMemoryLimit(cfg, log)

	db, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(), collectors.NewDBStatsCollector(db.DB, "orders"))
	reg.MustRegister(newBuildInfo(version))

	store, closeStore, err := newStore(cfg, db, reg, log)
	if err != nil {
		return err
	}
	defer closeStore() // before the primary pool closes (deferred earlier)
	slots := readSlots(cfg)
	store.LimitReads(slots, cfg.Postgres.ReadWait, cfg.Cache.DBTimeout)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "orders_db_reads_shed_total",
		Help: "API reads (cache misses, list pages) shed with 503 + Retry-After: no read slot of the primary's pool (postgres.read_slots) within postgres.read_wait.",
	}, func() float64 { return float64(store.Shed()) }))
	log.Info("db_read_slots", "slots", slots, "wait", cfg.Postgres.ReadWait.String(), "pool_size", cfg.Postgres.PoolSize)
	coh := newCoherence(cfg.Cache, db, log)
	cacheOpts := orderscache.Options{DBTimeout: cfg.Cache.DBTimeout, NegativeTTL: cfg.Cache.NegativeTTL}
	if coh == nil {
		store.WithoutChangeFeed()
	} else {
		cacheOpts.Coherent = coh.ok
		coh.floor = func(lsn int64) { store.SetReadFloor(ordersdb.LSN(uint64(lsn))) }
	}
	cache := orderscache.New(cfg.Cache.MaxBytes)
	cached := orderscache.NewStore(store, cache, cacheOpts)
	registerCacheMetrics(reg, cache)
	if coh != nil {
		coh.cached = cached
		coh.register(reg)
	}

	ingest, err := newIngest(cfg, store, cached, reg, log)
	if err != nil {
		return err
	}
	writer, err := newWriter(cfg, ingest, store.Primary()) // it waits for its own writes: never a replica
	if err != nil {
		ingest.Close()
		return err
	}
	defer writer.Close() // after HTTP stopped: no request waits any more

	app := ordershttp.NewApp(cached, ordershttp.AppConfig{
		HTTP: httpx.Config{
			ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout, IdleTimeout: cfg.HTTP.IdleTimeout,
			BodyLimit: cfg.HTTP.BodyLimit, Registerer: reg, Logger: log,
		},
		Ops: httpx.Ops{
			Ready: func(ctx context.Context) error {
				if err := db.PingContext(ctx); err != nil {
					return fmt.Errorf("postgres: %w", err)
				}
				return ingest.Ready()
			},
			Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
			PipelineStats: func(detailed bool) any {
				st := serviceStats{Stats: ingest.Snapshot(), Coherence: coh.stats(cached)}
				if !detailed { // error texts are for token holders
					st.Error = redactedError(st.Error)
					if st.Coherence.Feed != nil {
						st.Coherence.Feed.Error = redactedError(st.Coherence.Feed.Error)
					}
				}
				return st
			},
			ReadyDetails: func() any { return coh.stats(cached) },
			Trusted:      ordershttp.HasToken(cfg.API.Token),
		},
		Orders: ordershttp.Options{
			APIToken: cfg.API.Token, MaxBodyBytes: cfg.HTTP.BodyLimit, Writer: writer,
			ListConcurrency: cfg.API.ListConcurrency, ListWait: cfg.Postgres.ReadWait,
		},
		Kafka: kafkaedge.Views(cfg.Kafka),
	})

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", cfg.HTTP.Addr, err)
	}
	log.Info("service_started", "http_addr", ln.Addr().String(), "topic", cfg.Kafka.Topic, "group_id", cfg.Kafka.GroupID, "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}

	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
	p.Go(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- httpx.Serve(app, ln) }()
		select {
		case err := <-errc:
			return fmt.Errorf("http: %w", err)
		case <-ctx.Done():
		}
		// HTTP stops last among the long-running parts: the pipeline drains first.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := app.ShutdownWithContext(sctx); err != nil {
			log.Warn("http_shutdown", "error", err)
		}
		return nil
	})
	p.Go(func(ctx context.Context) error {
		if err := ingest.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("pipeline: %w", err)
		}
		return nil
	})
	if coh != nil {
		p.Go(coh.run)
	}
	if cfg.Cache.WarmupOnStart {
		p.Go(func(ctx context.Context) error {
			// The warm-up starts once the feed has been read: what it loads is then
			// never older than what the feed delivers after it.
			if coh != nil && !coh.waitConfirmed(ctx, 30*time.Second) {
				log.Warn("cache_warmup_skipped", "reason", "the change feed was not read within 30 s")
				return nil
			}
			t0 := time.Now()
			n, err := cached.Warmup(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("cache_warmup_failed", "error", err)
				return nil
			}
			log.Info("cache_warmed_up", "orders", n, "duration", time.Since(t0).String())
			return nil
		})
	}
	err = p.Wait()
	log.Info("service_stopped", "error", errString(err))
	return err
}

// redactedError replaces an internal error text for callers without the API
// token: they learn that there is an error, not what it says.
func redactedError(s string) string {
	if s == "" {
		return ""
	}
	return "(hidden: send the API token to see it)"
}

// serviceStats is GET /api/v1/pipeline/stats: the pipeline's statistics and
// the cache's coherence with the other instances.
type serviceStats struct {
	flow.Stats
	Coherence coherenceStats `json:"coherence"`
}

// setMemoryLimit gives the Go runtime its soft memory limit
// (configs.Config.GoMemoryLimit: cache + 128 MiB with the defaults), unless
// GOMEMLIMIT is set.
func setMemoryLimit(cfg configs.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.GoMemoryLimit()
	debug.SetMemoryLimit(limit)
	log.Info("memory_limit_set", "bytes", limit, "memory_need", cfg.MemoryNeed(), "note", "GOMEMLIMIT overrides")
}

// openDB connects to PostgreSQL and applies pending migrations (under an advisory
// lock, so instances starting together do not race) on connections of their own
// without timeouts: a long migration or another instance's lock is waited for.
func openDB(ctx context.Context, cfg configs.Config) (*bun.DB, error) {
	db, err := ordersdb.Open(ctx, cfg.Postgres.DSN, cfg.Postgres.PoolSize)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.Postgres.MigrateOnStart {
		if err := migrate(ctx, cfg.Postgres.DSN); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// migrate applies the pending migrations on a pool of their own (ordersdb.OpenForMigrations).
func migrate(ctx context.Context, dsn string) error {
	mdb, err := ordersdb.OpenForMigrations(ctx, dsn)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer mdb.Close()
	if err := migrations.Up(ctx, mdb); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// readSlots is how many of the primary pool's connections API reads may hold
// at once: postgres.read_slots, or (0) the pool less the batch writers' and
// three more (the change feed and its listener, the tombstone purge and
// migrations' checks, the readiness ping), at least 1.
func readSlots(cfg configs.Config) int {
	if cfg.Postgres.ReadSlots > 0 {
		return cfg.Postgres.ReadSlots
	}
	return max(1, cfg.Postgres.PoolSize-cfg.Pipeline.Writers-3)
}

// newStore returns the orders database store over db, with the read replica of
// postgres.read_dsn when it is set: a pool of half the primary's size (at least 2)
// opened without waiting for the replica; its metrics (orders_db_replica_*, and
// go_sql_*{db_name="orders_read"}) go to reg. closeStore stops the replica's prober
// and closes its pool; it does not close db.
func newStore(cfg configs.Config, db *bun.DB, reg prometheus.Registerer, log *slog.Logger) (store *ordersdb.Store, closeStore func(), err error) {
	if cfg.Postgres.ReadDSN == "" {
		return ordersdb.New(db), func() {}, nil
	}
	size := max(2, cfg.Postgres.PoolSize/2)
	read, err := ordersdb.OpenReplica(cfg.Postgres.ReadDSN, size)
	if err != nil {
		return nil, nil, fmt.Errorf("postgres.read_dsn: %w", err)
	}
	store = ordersdb.NewWithReplica(db, read, ordersdb.ReplicaOptions{Logger: log})
	reg.MustRegister(store.Collector(), collectors.NewDBStatsCollector(read.DB, "orders_read"))
	log.Info("db_replica_configured", "pool_size", size)
	return store, func() {
		store.Close()
		_ = read.Close()
	}, nil
}

// registerCacheMetrics exports the cache's own counters as Prometheus series.
func registerCacheMetrics(reg prometheus.Registerer, c *orderscache.Cache) {
	gauge := func(name, help string, f func(orderscache.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(c.Stats()) }))
	}
	counter := func(name, help string, f func(orderscache.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(c.Stats()) }))
	}
	gauge("orders_cache_entries", "Orders held in the cache.", func(s orderscache.Stats) float64 { return float64(s.Entries) })
	gauge("orders_cache_bytes", "Bytes of cached order JSON (the weighed size).", func(s orderscache.Stats) float64 { return float64(s.Bytes) })
	gauge("orders_cache_max_bytes", "The cache bound in bytes.", func(s orderscache.Stats) float64 { return float64(s.MaxBytes) })
	counter("orders_cache_hits_total", "Cache lookups answered from the cache.", func(s orderscache.Stats) float64 { return float64(s.Hits) })
	counter("orders_cache_misses_total", "Cache lookups not found in the cache.", func(s orderscache.Stats) float64 { return float64(s.Misses) })
	counter("orders_cache_evictions_total", "Entries evicted to stay within the bound.", func(s orderscache.Stats) float64 { return float64(s.Evictions) })
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
