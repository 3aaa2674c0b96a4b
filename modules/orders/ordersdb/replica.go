package ordersdb

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"

	"github.com/orderflow/orders-service/modules/orders"
)

// ReplicaOptions tune the use of a read replica (NewWithReplica). Zero fields take
// the defaults.
type ReplicaOptions struct {
	// ProbeInterval is how often the prober asks the replica how far it has
	// replayed (pg_last_wal_replay_lsn); default 250ms.
	ProbeInterval time.Duration
	// Backoff is how long a replica that failed a read is skipped, so reads do not
	// each pay for a dead server; default 1s. After it, the replica is used again
	// once the prober's last probe answered.
	Backoff time.Duration
	// Timeout bounds one read or probe on the replica (the caller's deadline, if
	// earlier, wins); a read that exceeds it is answered by the primary. Default 1s.
	Timeout time.Duration
	// Logger gets the replica's up/down transitions; nil: slog.Default().
	Logger *slog.Logger
}

func (o ReplicaOptions) withDefaults() ReplicaOptions {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 250 * time.Millisecond
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// ReplicaStats is a snapshot of the read replica's state (Store.ReplicaStats).
type ReplicaStats struct {
	// Configured is false for a Store without a replica; the rest is then zero.
	Configured bool `json:"configured"`
	// Up is true while reads may go to the replica: its last probe answered and
	// no read failed on it within the backoff.
	Up bool `json:"up"`
	// Standby is false when the last probe found a server not in recovery (a
	// primary), which is never behind.
	Standby bool `json:"standby"`
	// Floor is the read floor (SetReadFloor); Replayed is the replica's replay
	// position at its last answered probe.
	Floor    LSN `json:"floor"`
	Replayed LSN `json:"replayed"`
	// LagBytes is Floor - Replayed, 0 when the replica is at or past the floor.
	LagBytes uint64 `json:"lag_bytes"`
	// Reads answered by the replica; reads redone on (or sent to) the primary
	// because the replica was behind the floor; reads redone on the primary
	// because the replica failed.
	Reads       uint64 `json:"reads"`
	BehindFloor uint64 `json:"behind_floor"`
	Errors      uint64 `json:"errors"`
}

// replica is the read database of a Store and what is known about it.
type replica struct {
	db   *bun.DB
	opts ReplicaOptions
	get  lazyStmt // getSQL, prepared on the replica

	probed    atomic.Bool   // the last probe answered
	standby   atomic.Bool   // the last answered probe found a server in recovery
	replayed  atomic.Uint64 // replay position at the last answered probe (MaxUint64: not a standby)
	downUntil atomic.Int64  // unix nanoseconds: skipped until then after a failed read
	wasUp     atomic.Bool   // for logging transitions

	reads, behind, errs atomic.Uint64

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewWithReplica returns a Store over the primary db that also reads from read, a
// streaming standby of it (one server: see reached): Get (the cache's
// read-through) and List go to the replica when it has replayed the read floor
// (SetReadFloor) and is up; everything else, and every read the replica cannot
// answer, goes to db. It starts a prober (every opts.ProbeInterval); Close stops
// it. The caller still closes both pools, after Close.
func NewWithReplica(db, read *bun.DB, opts ReplicaOptions) *Store {
	s := New(db)
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{db: read, opts: opts, get: lazyStmt{sql: getSQL}, stop: cancel, done: make(chan struct{})}
	s.replica = r
	go r.run(ctx, s)
	return s
}

// Close stops the replica's prober and releases its prepared statement. It does
// not close the pools. A Store without a replica has nothing to close.
func (s *Store) Close() {
	r := s.replica
	if r == nil {
		return
	}
	r.closeOnce.Do(func() {
		r.stop()
		<-r.done
		r.get.close()
	})
}

// Primary returns a Store that reads and writes the primary only (no replica),
// sharing s's pool and prepared lookup: for callers that must see their own
// writes at once, such as the API writer waiting for its version.
func (s *Store) Primary() *Store {
	return &Store{db: s.db, get: s.get, quiet: s.quiet}
}

// SetReadFloor raises the read floor to l: from then on a replica read is used
// only if the replica has replayed at least l, else it is answered by the primary.
// A floor lower than the current one is ignored (the floor never goes down). With
// floor 0 (the start) the replica is always acceptable. Safe for concurrent use;
// called by whoever knows the primary's position (pg_current_wal_lsn) that reads
// must reflect.
func (s *Store) SetReadFloor(l LSN) {
	for {
		cur := s.floor.Load()
		if uint64(l) <= cur || s.floor.CompareAndSwap(cur, uint64(l)) {
			return
		}
	}
}

// ReadFloor returns the current read floor.
func (s *Store) ReadFloor() LSN { return LSN(s.floor.Load()) }

// ReplicaStats returns the replica's state and read counters.
func (s *Store) ReplicaStats() ReplicaStats {
	r := s.replica
	if r == nil {
		return ReplicaStats{}
	}
	st := ReplicaStats{
		Configured:  true,
		Up:          r.usable(),
		Standby:     r.standby.Load(),
		Floor:       s.ReadFloor(),
		Reads:       r.reads.Load(),
		BehindFloor: r.behind.Load(),
		Errors:      r.errs.Load(),
	}
	if replayed := r.replayed.Load(); st.Standby {
		st.Replayed = LSN(replayed)
		if uint64(st.Floor) > replayed {
			st.LagBytes = uint64(st.Floor) - replayed
		}
	}
	return st
}

// usable reports whether reads may try the replica.
func (r *replica) usable() bool {
	return r.probed.Load() && time.Now().UnixNano() >= r.downUntil.Load()
}

// caughtUp reports whether the last probe saw the replica at or past floor.
func (r *replica) caughtUp(floor LSN) bool { return r.replayed.Load() >= uint64(floor) }

// failed records a read that the replica could not answer: it is skipped for the
// backoff.
func (r *replica) failed(err error) {
	r.errs.Add(1)
	r.downUntil.Store(time.Now().Add(r.opts.Backoff).UnixNano())
	if r.wasUp.CompareAndSwap(true, false) {
		r.opts.Logger.Warn("db_replica_down", "reason", "read", "error", redact(err).Error(), "backoff", r.opts.Backoff.String())
	}
}

// run probes the replica until ctx ends.
func (r *replica) run(ctx context.Context, s *Store) {
	defer close(r.done)
	t := time.NewTicker(r.opts.ProbeInterval)
	defer t.Stop()
	for {
		r.probe(ctx)
		if up := r.usable(); up != r.wasUp.Load() {
			r.wasUp.Store(up)
			if up {
				st := s.ReplicaStats()
				r.opts.Logger.Info("db_replica_up", "replayed", st.Replayed.String(), "lag_bytes", st.LagBytes)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe asks the replica how far it has replayed. It goes around bun's query hook:
// four probes a second are not worth a span each.
func (r *replica) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if _, err := r.replay(pctx, true); err != nil {
		if ctx.Err() != nil {
			return // closing
		}
		if r.probed.Swap(false) && r.wasUp.CompareAndSwap(true, false) {
			r.opts.Logger.Warn("db_replica_down", "reason", "probe", "error", redact(err).Error())
		}
		return
	}
	r.probed.Store(true)
}

// replay asks the replica how far it has replayed (pg_last_wal_replay_lsn; a
// server not in recovery is never behind) and records it: the probe's answer
// as it is (a replaced server may be behind the last one), a read's only if
// higher (positions only grow on one standby; a slower asker must not lower it).
func (r *replica) replay(ctx context.Context, probe bool) (uint64, error) {
	var lsn sql.NullString
	if err := r.db.DB.QueryRowContext(ctx, "SELECT pg_last_wal_replay_lsn()::text").Scan(&lsn); err != nil {
		return 0, err
	}
	if !lsn.Valid {
		r.standby.Store(false)
		r.replayed.Store(math.MaxUint64)
		return math.MaxUint64, nil
	}
	l, err := ParseLSN(lsn.String)
	if err != nil {
		return 0, err
	}
	r.standby.Store(true)
	if probe {
		r.replayed.Store(uint64(l))
		return uint64(l), nil
	}
	for {
		cur := r.replayed.Load()
		if uint64(l) <= cur && cur != math.MaxUint64 || r.replayed.CompareAndSwap(cur, uint64(l)) {
			return uint64(l), nil
		}
	}
}

// reached reports whether the replica has replayed floor: as last recorded (a
// probe or an earlier read), or else as it answers now. Either answer was given
// before the read that follows takes its snapshot, so that read sees every
// commit before floor. (The check cannot be part of the read's own statement:
// a statement takes its snapshot first and evaluates pg_last_wal_replay_lsn()
// after, so replay crossing the floor in between passed the check with a
// snapshot short of it; TestReadReplica's racing case caught that.) Hence the
// read replica must be one server: a DSN that spreads connections over several
// standbys would check one and read another. err is the replica's failure.
func (r *replica) reached(ctx context.Context, floor LSN) (bool, error) {
	if r.caughtUp(floor) {
		return true, nil
	}
	replayed, err := r.replay(ctx, false)
	if err != nil {
		return false, err
	}
	return replayed >= uint64(floor), nil
}

// getReplica runs the lookup on the replica once it has replayed the read floor
// (reached). ok is false when the primary must answer: the replica is behind the
// floor or failed. err is set only when ctx ended (the caller gave up).
func (s *Store) getReplica(ctx context.Context, uid string) (list []orders.Record, seqs []int64, ok bool, err error) {
	r := s.replica
	rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if ok, err := r.usableAt(ctx, rctx, s.ReadFloor()); !ok {
		return nil, nil, false, err
	}
	list, seqs, err = r.get.query(rctx, r.db.DB, uid)
	if err != nil {
		return nil, nil, false, r.readFailed(ctx, err)
	}
	r.reads.Add(1)
	return list, seqs, true, nil
}

// listReplica runs List's query on the replica once it has replayed the read
// floor (reached). ok is false when the primary must answer; err is set only
// when ctx ended.
func (s *Store) listReplica(ctx context.Context, limit int, after int64) (page orders.Page, ok bool, err error) {
	r := s.replica
	rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if ok, err := r.usableAt(ctx, rctx, s.ReadFloor()); !ok {
		return orders.Page{}, false, err
	}
	page, err = list(rctx, r.db, limit, after)
	if err != nil {
		return orders.Page{}, false, r.readFailed(ctx, err)
	}
	r.reads.Add(1)
	return page, true, nil
}

// usableAt reports whether a read may go to the replica now, given floor
// (reached, bounded by rctx); a replica behind it or failing counts as such. err
// is set only when ctx, the caller's, ended.
func (r *replica) usableAt(ctx, rctx context.Context, floor LSN) (bool, error) {
	ok, err := r.reached(rctx, floor)
	if err != nil {
		return false, r.readFailed(ctx, err)
	}
	if !ok {
		r.behind.Add(1)
	}
	return ok, nil
}

// readFailed records a failed replica read, unless the caller gave up (ctx
// ended: its error is returned).
func (r *replica) readFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	r.failed(err)
	return nil
}

// lazyStmt is a statement prepared on first use (database/sql then prepares it on
// each connection as needed). A failed prepare is retried on the next call.
type lazyStmt struct {
	sql  string
	mu   sync.Mutex // serialises the first prepare
	stmt atomic.Pointer[sql.Stmt]
}

// prepared returns the statement, preparing it on db on first use.
func (l *lazyStmt) prepared(ctx context.Context, db *sql.DB) (*sql.Stmt, error) {
	if stmt := l.stmt.Load(); stmt != nil {
		return stmt, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if stmt := l.stmt.Load(); stmt != nil {
		return stmt, nil
	}
	stmt, err := db.PrepareContext(ctx, l.sql)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	l.stmt.Store(stmt)
	return stmt, nil
}

// query runs the statement with args and scans its rows (scanOrders).
func (l *lazyStmt) query(ctx context.Context, db *sql.DB, args ...any) ([]orders.Record, []int64, error) {
	stmt, err := l.prepared(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, nil, err
	}
	return scanOrders(rows)
}

func (l *lazyStmt) close() {
	if stmt := l.stmt.Swap(nil); stmt != nil {
		_ = stmt.Close()
	}
}

var (
	descReplicaReads = prometheus.NewDesc("orders_db_replica_reads_total",
		"Reads routed to the read replica, by outcome: replica (answered by it), behind_floor (answered by the primary: the replica had not replayed the read floor), replica_error (answered by the primary after the replica failed).",
		[]string{"outcome"}, nil)
	descReplicaLag = prometheus.NewDesc("orders_db_replica_lag_bytes",
		"Bytes of WAL between the read floor and the read replica's replay position at its last probe (0 when at or past the floor).", nil, nil)
	descReplicaUp = prometheus.NewDesc("orders_db_replica_up",
		"1 while reads may go to the read replica (its last probe answered and no read failed within the backoff).", nil, nil)
)

// Collector returns the Prometheus collector of the replica's metrics
// (orders_db_replica_*), read from ReplicaStats at scrape time. A Store without a
// replica exports nothing.
func (s *Store) Collector() prometheus.Collector { return replicaCollector{s} }

type replicaCollector struct{ s *Store }

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReplicaReads
	ch <- descReplicaLag
	ch <- descReplicaUp
}

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.ReplicaStats()
	if !st.Configured {
		return
	}
	ch <- prometheus.MustNewConstMetric(descReplicaReads, prometheus.CounterValue, float64(st.Reads), "replica")
	ch <- prometheus.MustNewConstMetric(descReplicaReads, prometheus.CounterValue, float64(st.BehindFloor), "behind_floor")
	ch <- prometheus.MustNewConstMetric(descReplicaReads, prometheus.CounterValue, float64(st.Errors), "replica_error")
	ch <- prometheus.MustNewConstMetric(descReplicaLag, prometheus.GaugeValue, float64(st.LagBytes))
	up := 0.0
	if st.Up {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descReplicaUp, prometheus.GaugeValue, up)
}
