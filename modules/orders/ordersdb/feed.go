package ordersdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/modules/orders"
)

// FeedOptions tunes a Feed. The zero value gives the defaults.
type FeedOptions struct {
	// Poll is the longest time between two reads of the feed (default 200 ms);
	// a NOTIFY from a committing batch wakes the reader at once.
	Poll time.Duration
	// Retention is how long feed rows are kept (default 10 min). A reader that
	// could not read the feed for half of it may have missed purged rows, so it
	// forgets everything it cached (FeedHandler.Reset).
	Retention time.Duration
	Logger    *slog.Logger
}

// FeedHandler receives what a Feed reads.
type FeedHandler interface {
	// Changes is called with the changes of one read, in commit order of their
	// batches as far as the feed knows it (the same uid may come more than once;
	// apply each as "the database holds at least this version"). floor is the
	// primary's WAL position at the read: every change committed before it has
	// been delivered once Changes returns.
	Changes(changes []orders.Change, floor int64)
	// Reset is called when the reader may have missed changes (it could not read
	// the feed for longer than half the retention): forget every cached order.
	Reset()
}

// Feed reads the change feed (the order_changes rows the store's batches write)
// from the primary: every instance runs one, so that each hears of what any
// instance committed. A read returns the rows of the transactions at or past the
// oldest transaction that was still running at the previous read
// (pg_snapshot_xmin), so a row whose transaction took its id early and
// committed late is read when it commits, never skipped; rows read twice are
// delivered once.
//
// ConfirmedAt says up to when the reader is known to be up to date: the start of
// the last successful read, whose snapshot holds every commit before it.
type Feed struct {
	db   *bun.DB
	opts FeedOptions
	log  *slog.Logger

	xmin uint64           // the oldest transaction running at the last read
	seen map[int64]uint64 // ids of rows read with a txid >= xmin, and that txid

	confirmed atomic.Int64 // unix nanoseconds; 0 before the first read
	changes   atomic.Uint64
	rows      atomic.Uint64
	polls     atomic.Uint64
	failures  atomic.Uint64
	resets    atomic.Uint64
	lastErr   atomic.Pointer[string]
}

// NewFeed returns a reader of the change feed in db (the primary).
func NewFeed(db *bun.DB, opts FeedOptions) *Feed {
	if opts.Poll <= 0 {
		opts.Poll = 200 * time.Millisecond
	}
	if opts.Retention <= 0 {
		opts.Retention = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Feed{db: db, opts: opts, log: opts.Logger.With("component", "change_feed"), seen: map[int64]uint64{}}
}

// Start takes the feed's starting point: changes committed from now on are
// delivered by Run. Call it before the cache is filled from the database (a
// warm-up), so that what the warm-up reads is never newer than what Run then
// delivers without being delivered.
//
// It returns the primary's WAL position at that point: a read replica that has
// replayed it holds every commit before the start.
func (f *Feed) Start(ctx context.Context) (lsn int64, err error) {
	var xmin string
	if err := f.db.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
		(pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&xmin, &lsn); err != nil {
		return 0, fmt.Errorf("change feed: start: %w", err)
	}
	x, err := strconv.ParseUint(xmin, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("change feed: start: xmin %q: %w", xmin, err)
	}
	f.xmin = x
	return lsn, nil
}

// Run reads the feed until ctx ends, on every NOTIFY and at least every Poll,
// and purges rows older than the retention about every tenth of it. Failed
// reads are retried at the next tick; ConfirmedAt stops advancing meanwhile.
// Start must have been called.
func (f *Feed) Run(ctx context.Context, h FeedHandler) error {
	wake := make(chan struct{}, 1)
	ln := pgdriver.NewListener(f.db)
	defer func() { _ = ln.Close() }()
	go f.listen(ctx, ln, wake)

	tick := time.NewTicker(f.opts.Poll)
	defer tick.Stop()
	purgeEvery := max(f.opts.Retention/10, time.Second)
	nextPurge := time.Now().Add(purgeEvery)
	for {
		f.read(ctx, h)
		if time.Now().After(nextPurge) {
			f.purge(ctx)
			nextPurge = time.Now().Add(purgeEvery)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-tick.C:
		}
	}
}

// listen forwards the feed's notifications to wake (coalesced); pgdriver's
// listener reconnects on its own.
func (f *Feed) listen(ctx context.Context, ln *pgdriver.Listener, wake chan<- struct{}) {
	for {
		err := ln.Listen(ctx, FeedChannel)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		f.log.Warn("change_feed_listen_failed", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	for {
		if _, _, err := ln.Receive(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			// the listener reconnects and re-listens; the ticker covers the gap
			select {
			case <-ctx.Done():
				return
			case <-time.After(f.opts.Poll):
			}
			continue
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// feedSQL reads, in one snapshot, the oldest running transaction, the WAL
// position and the rows of transactions at or past the previous oldest.
const feedSQL = `WITH s AS MATERIALIZED (
	SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
		(pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS lsn)
SELECT s.xmin, s.lsn, c.id, c.txid::text, c.uids, c.partitions, c.offsets, c.times, c.deleted
FROM s LEFT JOIN order_changes c ON c.txid >= ?::xid8
ORDER BY c.id`

// read does one read of the feed and delivers what it finds.
func (f *Feed) read(ctx context.Context, h FeedHandler) {
	started := time.Now()
	changes, lsn, err := f.query(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		f.failures.Add(1)
		msg := err.Error()
		if prev := f.lastErr.Swap(&msg); prev == nil || *prev != msg {
			f.log.Warn("change_feed_read_failed", "err", err)
		}
		return
	}
	f.polls.Add(1)
	if f.lastErr.Swap(nil) != nil {
		f.log.Info("change_feed_read_recovered")
	}
	if c := f.confirmed.Load(); c != 0 && started.Sub(time.Unix(0, c)) > f.opts.Retention/2 {
		f.resets.Add(1)
		f.log.Warn("change_feed_gap", "unread_for", started.Sub(time.Unix(0, c)).String(),
			"action", "the cache is emptied: changes may have been purged unread")
		h.Reset()
	}
	h.Changes(changes, lsn)
	f.changes.Add(uint64(len(changes)))
	f.confirmed.Store(started.UnixNano())
}

// query runs feedSQL and returns the new changes and the WAL position.
func (f *Feed) query(ctx context.Context) ([]orders.Change, int64, error) {
	rows, err := f.db.QueryContext(ctx, feedSQL, strconv.FormatUint(f.xmin, 10))
	if err != nil {
		return nil, 0, fmt.Errorf("change feed: %w", err)
	}
	defer rows.Close()
	var (
		changes []orders.Change
		xmin    string
		lsn     int64
	)
	for rows.Next() {
		var (
			id, txid    sql.NullString
			uids        []string
			parts       []int64
			offs, times []int64
			deleted     []bool
		)
		if err := rows.Scan(&xmin, &lsn, &id, &txid, pgdialect.Array(&uids), pgdialect.Array(&parts),
			pgdialect.Array(&offs), pgdialect.Array(&times), pgdialect.Array(&deleted)); err != nil {
			return nil, 0, fmt.Errorf("change feed: scan: %w", err)
		}
		if !id.Valid {
			continue // no row: the LEFT JOIN's one row of s
		}
		rowID, err1 := strconv.ParseInt(id.String, 10, 64)
		tx, err2 := strconv.ParseUint(txid.String, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, 0, fmt.Errorf("change feed: row %s: %w", id.String, err)
		}
		if _, dup := f.seen[rowID]; dup {
			continue
		}
		if len(parts) != len(uids) || len(offs) != len(uids) || len(times) != len(uids) || len(deleted) != len(uids) {
			return nil, 0, fmt.Errorf("change feed: row %d: arrays of different lengths", rowID)
		}
		f.seen[rowID] = tx
		f.rows.Add(1)
		for i, uid := range uids {
			changes = append(changes, orders.Change{
				UID:     uid,
				Version: orders.Version{Partition: int32(parts[i]), Offset: offs[i], Time: times[i]},
				Deleted: deleted[i],
			})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("change feed: %w", err)
	}
	x, err := strconv.ParseUint(xmin, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("change feed: xmin %q: %w", xmin, err)
	}
	// Rows of transactions older than the new xmin are never read again.
	f.xmin = x
	for id, tx := range f.seen {
		if tx < x {
			delete(f.seen, id)
		}
	}
	return changes, lsn, nil
}

// purge deletes the rows older than the retention.
func (f *Feed) purge(ctx context.Context) {
	res, err := f.db.ExecContext(ctx, `DELETE FROM order_changes WHERE created_at < now() - ?::interval`,
		strconv.FormatInt(f.opts.Retention.Microseconds(), 10)+" microseconds")
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("change_feed_purge_failed", "err", err)
		}
		return
	}
	if n, _ := res.RowsAffected(); n > 0 {
		f.log.Debug("change_feed_purged", "rows", n)
	}
}

// ConfirmedAt returns the start of the last successful read (zero before the
// first): every change committed before it has been delivered.
func (f *Feed) ConfirmedAt() time.Time {
	if c := f.confirmed.Load(); c != 0 {
		return time.Unix(0, c)
	}
	return time.Time{}
}

// Lag returns how long ago ConfirmedAt was (since the process started the feed
// when it never read).
func (f *Feed) Lag(now time.Time) time.Duration {
	c := f.confirmed.Load()
	if c == 0 {
		return time.Duration(1<<63 - 1)
	}
	return now.Sub(time.Unix(0, c))
}

// FeedStats is a snapshot of a Feed.
type FeedStats struct {
	LagSeconds float64 `json:"lag_seconds"`
	Changes    uint64  `json:"changes"`
	Rows       uint64  `json:"rows"`
	Reads      uint64  `json:"reads"`
	Failures   uint64  `json:"failures"`
	Resets     uint64  `json:"resets"`
	Error      string  `json:"error,omitempty"`
}

// Stats returns the feed's counters and lag.
func (f *Feed) Stats() FeedStats {
	st := FeedStats{
		Changes: f.changes.Load(), Rows: f.rows.Load(), Reads: f.polls.Load(),
		Failures: f.failures.Load(), Resets: f.resets.Load(),
	}
	if lag := f.Lag(time.Now()); lag < time.Duration(1<<63-1) {
		st.LagSeconds = lag.Seconds()
	} else {
		st.LagSeconds = -1
	}
	if e := f.lastErr.Load(); e != nil {
		st.Error = *e
	}
	return st
}

// Register registers the feed's metrics: orders_feed_lag_seconds,
// orders_feed_changes_total and orders_feed_polls_total{outcome}.
func (f *Feed) Register(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "orders_feed_lag_seconds",
			Help: "Seconds since this instance last confirmed it had read the change feed up to date (since start when it never did).",
		}, func() float64 {
			if f.confirmed.Load() == 0 {
				return time.Since(startTime).Seconds()
			}
			return f.Lag(time.Now()).Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "orders_feed_changes_total",
			Help: "Changes (uids with their stored version) this instance read from the change feed.",
		}, func() float64 { return float64(f.changes.Load()) }),
	)
	polls := prometheus.NewDesc("orders_feed_polls_total", "Reads of the change feed, by outcome.", []string{"outcome"}, nil)
	reg.MustRegister(collectorFunc{desc: polls, collect: func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(polls, prometheus.CounterValue, float64(f.polls.Load()), "ok")
		ch <- prometheus.MustNewConstMetric(polls, prometheus.CounterValue, float64(f.failures.Load()), "error")
	}})
}

// startTime is when the process loaded this package.
var startTime = time.Now()

// collectorFunc is a prometheus.Collector of one description.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
