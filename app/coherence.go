package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
)

// coherence keeps this instance's cache coherent with what any instance
// commits: it reads the change feed (ordersdb.Feed) and drops the cached
// versions older than the announced ones, and it tells the cache whether it can
// be trusted (the feed was confirmed up to date within cache.coherence_bound).
type coherence struct {
	feed   *ordersdb.Feed
	cached *orderscache.Store
	bound  time.Duration
	log    *slog.Logger
	// floor receives the primary's WAL position of each read (the read replica's
	// floor); nil without a replica.
	floor func(lsn int64)

	trusted atomic.Bool // last value of ok, to log the transitions
}

// newCoherence returns the coherence of cached over db, or nil when the feed is
// off (cache.feed: false; one instance).
func newCoherence(cfg configs.Cache, db *bun.DB, log *slog.Logger) *coherence {
	if !cfg.Feed {
		return nil
	}
	return &coherence{
		feed:  ordersdb.NewFeed(db, ordersdb.FeedOptions{Poll: cfg.FeedPoll, Retention: cfg.FeedRetention, Logger: log}),
		bound: cfg.CoherenceBound,
		log:   log.With("component", "coherence"),
	}
}

// ok reports whether the cache can be trusted: the feed was read up to date
// within the bound. It is the cache's Options.Coherent.
func (c *coherence) ok() bool {
	ok := c.feed.Lag(time.Now()) <= c.bound
	if c.trusted.Load() != ok && c.trusted.CompareAndSwap(!ok, ok) { // no write on the hot path
		if ok {
			c.log.Info("cache_trusted", "reason", "the change feed is read up to date")
		} else {
			c.log.Warn("cache_bypassed", "reason", "the change feed was not confirmed up to date within the bound",
				"bound", c.bound.String(), "feed_lag", c.feed.Lag(time.Now()).String())
		}
	}
	return ok
}

// Changes implements ordersdb.FeedHandler.
func (c *coherence) Changes(changes []orders.Change, floor int64) {
	if c.floor != nil {
		c.floor(floor) // before the entries are dropped: their reloads must see it
	}
	c.cached.Changes(changes)
}

// Reset implements ordersdb.FeedHandler.
func (c *coherence) Reset() { c.cached.Reset() }

// run starts the feed (retrying while the database does not answer) and reads
// it until ctx ends.
func (c *coherence) run(ctx context.Context) error {
	for {
		lsn, err := c.feed.Start(ctx)
		if err == nil {
			if c.floor != nil {
				c.floor(lsn) // replica reads before the first read of the feed are not older than the start
			}
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.log.Warn("change_feed_start_failed", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	return c.feed.Run(ctx, c)
}

// waitConfirmed waits until the feed has been read once (or ctx ends, or limit).
func (c *coherence) waitConfirmed(ctx context.Context, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for c.feed.ConfirmedAt().IsZero() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// register registers the feed's metrics and orders_cache_bypassed.
func (c *coherence) register(reg prometheus.Registerer) {
	c.feed.Register(reg)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orders_cache_bypassed",
		Help: "1 while this instance does not trust its cache (the change feed not confirmed up to date within cache.coherence_bound): lookups read the database.",
	}, func() float64 {
		if c.feed.Lag(time.Now()) > c.bound {
			return 1
		}
		return 0
	}))
}

// coherenceStats is the coherence part of /ready's details and the pipeline stats.
type coherenceStats struct {
	// Cache is "trusted", "bypassed" (the feed is not confirmed up to date within
	// the bound: lookups read the database) or "single-instance" (no feed).
	Cache        string              `json:"cache"`
	BoundSeconds float64             `json:"bound_seconds,omitempty"`
	Feed         *ordersdb.FeedStats `json:"feed,omitempty"`
	Bypassed     uint64              `json:"bypassed_lookups"`
}

// stats returns the coherence state; c may be nil (no feed).
func (c *coherence) stats(cached *orderscache.Store) coherenceStats {
	if c == nil {
		return coherenceStats{Cache: "single-instance", Bypassed: cached.Bypassed()}
	}
	st := c.feed.Stats()
	out := coherenceStats{Cache: "trusted", BoundSeconds: c.bound.Seconds(), Feed: &st, Bypassed: cached.Bypassed()}
	if c.feed.Lag(time.Now()) > c.bound {
		out.Cache = "bypassed"
	}
	return out
}
