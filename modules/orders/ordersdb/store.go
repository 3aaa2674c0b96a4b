package ordersdb

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/orderflow/orders-service/modules/orders"
)

// Store is the PostgreSQL orders.Store. It is safe for concurrent use.
type Store struct {
	db *bun.DB
	// quiet turns off the change feed's rows (see WithoutChangeFeed).
	quiet bool
	// smallBatch: batches of at most this many orders take applySmall.
	smallBatch int
	// get is getSQL prepared on db: the lookup is the cache-miss path of the API,
	// and a prepared statement skips parsing and planning the join on every call.
	get *lazyStmt

	floor   atomic.Uint64 // the read floor, an LSN (SetReadFloor)
	replica *replica      // nil: every read on db (NewWithReplica)

	gate *readGate // nil: reads unbounded (LimitReads)
}

func noop() {}

// readGate bounds the primary's connections that reads (Get, List) may hold at
// once, so that a flood of reads never takes the connections the batch writers,
// the change feed and the readiness check need. A read that finds no slot
// within wait is shed with orders.ErrOverloaded instead of queueing.
type readGate struct {
	slots   chan struct{}
	wait    time.Duration
	timeout time.Duration
	shed    atomic.Uint64
}

// LimitReads lets at most n reads (Get and List on the primary) hold a
// connection at once; a read waits at most wait for a slot, then fails with
// orders.ErrOverloaded; each read is bounded by timeout (0: the caller's
// deadline only). It returns s. Call it before the store is used.
func (s *Store) LimitReads(n int, wait, timeout time.Duration) *Store {
	s.gate = &readGate{slots: make(chan struct{}, max(n, 1)), wait: wait, timeout: timeout}
	return s
}

// Shed returns how many reads LimitReads shed.
func (s *Store) Shed() uint64 {
	if s.gate == nil {
		return 0
	}
	return s.gate.shed.Load()
}

// enter takes a read slot (or sheds the read) and bounds ctx by the read
// timeout; done gives the slot back.
func (g *readGate) enter(ctx context.Context) (context.Context, func(), error) {
	if g == nil {
		return ctx, noop, nil
	}
	select {
	case g.slots <- struct{}{}:
	default:
		t := time.NewTimer(g.wait)
		select {
		case g.slots <- struct{}{}:
			t.Stop()
		case <-t.C:
			g.shed.Add(1)
			return ctx, nil, orders.ErrOverloaded
		case <-ctx.Done():
			t.Stop()
			return ctx, nil, ctx.Err()
		}
	}
	cancel := func() {}
	if g.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
	}
	return ctx, func() { cancel(); <-g.slots }, nil
}

var _ orders.Store = (*Store)(nil)

// New returns a Store over db, whose schema must be migrated (package migrations).
// Its batches announce what they stored on the change feed (see Feed).
func New(db *bun.DB) *Store {
	return &Store{db: db, get: &lazyStmt{sql: getSQL}, smallBatch: smallBatch}
}

// WithoutChangeFeed makes s write no change-feed rows: for a single instance, or
// to measure what the feed costs. Call it before s is used.
func (s *Store) WithoutChangeFeed() *Store {
	s.quiet = true
	return s
}

// ApplyBatch implements orders.Store. Records are de-duplicated by uid (the newest
// version wins, the later record on a tie) and written in one transaction with one
// statement per table: the orders upsert is guarded by the versions of the stored
// orders and tombstones, and only the orders it applied get their delivery,
// payment and items replaced; the tombstones, when the batch has any, take one
// more statement. Rows are written in uid order so concurrent batches lock them in
// the same order. The result is in uid order; the stored versions of the uids the
// call did not change take one more query, only when there are such uids. The
// same transaction adds one row to the change feed with what is stored for every
// uid of the batch, changed or not (a redelivered batch re-announces what it
// re-applies), and notifies the feed's readers.
//
// A record with the zero Version is older than everything, so it is never written.
func (s *Store) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	recs = dedupe(recs)
	var stored []orders.Stored
	conn, err := s.db.Conn(ctx) // COPY needs the transaction's connection
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", redact(err))
	}
	defer func() { _ = conn.Close() }()
	if small(recs, s.smallBatch) {
		stored, err = applySmall(ctx, conn, recs, !s.quiet, false)
	} else {
		err = inTx(ctx, conn, func(tx batchTx) (string, error) {
			var err error
			if stored, err = applyBatch(ctx, tx, recs); err != nil || s.quiet {
				return "", err
			}
			if allStaged(recs, stored) {
				return announceStagedSQL, nil
			}
			return announceSQLFor(tx, stored)
		})
	}
	if err != nil {
		return nil, fmt.Errorf("apply batch: %w", redact(err))
	}
	return stored, nil
}

// errProbeRollback ends ProbeWrite's transaction.
var errProbeRollback = errors.New("probe: roll back")

// ProbeWrite writes rec as ApplyBatch does (on the same path), in a transaction it always rolls
// back, and returns the error the write met (nil: the schema takes such an
// order now). The flow probes with a known-good order before it dead-letters
// one the database refused: when the known-good order fails the same way, the
// schema, not the data, is at fault.
func (s *Store) ProbeWrite(ctx context.Context, rec orders.Record) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("probe write: %w", redact(err))
	}
	defer func() { _ = conn.Close() }()
	recs := []orders.Record{rec}
	if small(recs, s.smallBatch) { // the path ApplyBatch would take
		if _, err := applySmall(ctx, conn, recs, false, true); err != nil {
			return fmt.Errorf("probe write: %w", redact(err))
		}
		return nil
	}
	err = inTx(ctx, conn, func(tx batchTx) (string, error) {
		if _, err := applyBatch(ctx, tx, recs); err != nil {
			return "", err
		}
		return "", errProbeRollback
	})
	if errors.Is(err, errProbeRollback) {
		return nil
	}
	return fmt.Errorf("probe write: %w", redact(err))
}

// batchTx is a batch's connection inside the transaction inTx opened on it
// (statements and COPY are sent on the connection).
type batchTx struct {
	bun.IDB
	conn bun.Conn
}

// inTx runs fn between a BEGIN and a COMMIT (ROLLBACK when fn fails) sent on
// conn as statements, not in a database/sql transaction. The BEGIN goes in one
// round trip with the creation of the orders' staging table (a no-op once the
// connection has it), and the statement fn returns, if any (the change feed's
// row), goes in one with the COMMIT: simple-protocol queries of several
// statements, which stop at the first error. A small batch is about ten round
// trips; these are two of them. COPY (pgdriver.CopyFrom)
// runs inside sql.Conn.Raw, and when the connection breaks under it (a write
// that sends nothing returns driver.ErrBadConn) database/sql closes the Conn,
// which waits until every user of the Conn is done, an open sql.Tx included:
// only the caller ends that Tx, so the call never returned. Found by
// TestPostgresOutageLosesNothing: PostgreSQL killed while a batch was between
// BEGIN and its COPY left that writer stuck for good (TestBrokenConnectionMidCopy).
// A connection whose ROLLBACK fails is discarded, never pooled mid-transaction.
func inTx(ctx context.Context, conn bun.Conn, fn func(batchTx) (atCommit string, err error)) error {
	if _, err := conn.ExecContext(ctx, beginSQL); err != nil {
		rollback(ctx, conn) // the BEGIN may have run and the staging statement failed
		return err
	}
	atCommit, err := fn(batchTx{conn, conn})
	if err == nil {
		commit := "COMMIT"
		if atCommit != "" {
			commit = atCommit + ";\nCOMMIT"
		}
		if _, err = conn.ExecContext(ctx, commit); err == nil {
			return nil
		}
	}
	rollback(ctx, conn)
	return err
}

// rollback ends conn's transaction, if any, or discards conn when it cannot. ctx
// may be over: the ROLLBACK gets its own bound.
func rollback(ctx context.Context, conn bun.Conn) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(rctx, "ROLLBACK"); err != nil {
		discard(conn)
	}
}

// discard closes conn's driver connection instead of returning it to the pool.
func discard(conn bun.Conn) { _ = conn.Raw(func(any) error { return driver.ErrBadConn }) }

// copyIn writes rows into table into (t's own or a staging table with its
// columns) with COPY.
func copyIn[R any](ctx context.Context, tx batchTx, t *table[R], into string, rows []R) error {
	buf := t.copyText(make([]byte, 0, 256*len(rows)), rows)
	if _, err := pgdriver.CopyFrom(ctx, tx.conn, bytes.NewReader(buf), t.copySQL(into)); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	return nil
}

// applyBatch writes recs, de-duplicated and sorted by uid, in tx and returns what
// is stored for each of them.
func applyBatch(ctx context.Context, tx batchTx, recs []orders.Record) ([]orders.Stored, error) {
	ords := recs // the ingest's batches: all orders
	var tombs []orders.Record
	if slices.ContainsFunc(recs, notAnOrder) {
		ords = make([]orders.Record, 0, len(recs))
		for _, r := range recs {
			switch {
			case r.Version.IsZero(): // never newer than what is stored
			case r.Deleted:
				tombs = append(tombs, r)
			default:
				ords = append(ords, r)
			}
		}
	}
	var applied []string
	var prev map[string]orders.Version
	if len(ords) > 0 {
		var err error
		if applied, prev, err = writeOrders(ctx, tx, ords); err != nil {
			return nil, err
		}
	}
	if len(tombs) > 0 {
		deleted, err := writeTombstones(ctx, tx, tombs)
		if err != nil {
			return nil, err
		}
		applied = append(applied, deleted...)
	}

	return storedOf(ctx, tx, recs, applied, prev)
}

// storedOf returns, in the order of recs, what is stored for each record of a
// batch that applied the uids applied (prev: the versions they replaced on
// another partition); the uids it did not change take one more query, in tx.
func storedOf(ctx context.Context, tx bun.IDB, recs []orders.Record, applied []string, prev map[string]orders.Version) ([]orders.Stored, error) {
	out := make([]orders.Stored, len(recs))
	if len(applied) == len(recs) { // the hot path: everything written
		for i := range recs {
			out[i] = orders.Stored{UID: recs[i].UID(), Version: recs[i].Version, Deleted: recs[i].Deleted, Changed: true, Previous: prev[recs[i].UID()]}
		}
		return out, nil
	}
	changed := make(map[string]struct{}, len(applied))
	for _, uid := range applied {
		changed[uid] = struct{}{}
	}
	var unchanged []string
	for i := range recs {
		if _, ok := changed[recs[i].UID()]; ok {
			out[i] = orders.Stored{UID: recs[i].UID(), Version: recs[i].Version, Deleted: recs[i].Deleted, Changed: true, Previous: prev[recs[i].UID()]}
		} else {
			unchanged = append(unchanged, recs[i].UID())
		}
	}
	current, err := readStored(ctx, tx, unchanged)
	if err != nil {
		return nil, err
	}
	for i := range recs {
		if !out[i].Changed {
			out[i] = current[recs[i].UID()]
			out[i].UID = recs[i].UID()
		}
	}
	return out, nil
}

// smallBatch is the default of Store.smallBatch: a batch of at most this many
// orders (and no tombstones) is written by applySmall in two round trips instead
// of COPY's ten or so. Below it the round trips cost more than formatting the
// rows into the statements and PostgreSQL parsing them; above it COPY's cheaper
// parsing wins. BenchmarkApplySmallBatches, transaction p50 of the two round
// trips / COPY (2026-12-03): 0.71 for 1 order, 0.65 for 10, 0.77 for 50, 0.94
// for 100 and 200, then 1.07 for 500, 1.10 for 1,000.
const smallBatch = 128

// notAnOrder reports a record applySmall does not write: a tombstone, or an
// order at the zero Version.
func notAnOrder(r orders.Record) bool { return r.Deleted || r.Version.IsZero() }

// small reports whether recs take applySmall: at most limit orders, no tombstones
// or zero versions, at most 4*limit items, and text that COPY would store the same
// (no NUL byte, valid UTF-8: formatted into an array literal, a NUL would be
// dropped and invalid UTF-8 replaced, where COPY refuses both).
func small(recs []orders.Record, limit int) bool {
	if len(recs) > limit || slices.ContainsFunc(recs, notAnOrder) {
		return false
	}
	items := 0
	for i := range recs {
		items += len(recs[i].Order.Items)
	}
	if items > 4*limit {
		return false
	}
	return cleanText(&ordersTable, recs) && cleanText(&deliveryTable, recs) &&
		cleanText(&paymentTable, recs) && cleanText(&itemsTable, itemRows(recs))
}

// cleanText reports whether every text column of rows is valid UTF-8 without NUL.
func cleanText[R any](t *table[R], rows []R) bool {
	for k := range t.cols {
		c := &t.cols[k]
		if c.kind != kindText {
			continue
		}
		for i := range rows {
			if s := *c.str(&rows[i]); !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				return false
			}
		}
	}
	return true
}

// applySmall writes a batch of orders that small accepts as applyBatch and inTx
// do, in two simple-protocol queries: BEGIN with the orders statement, whose rows
// say what it applied; then the replaced orders' parts deleted, the applied
// orders' delivery, payment and items inserted, the change feed's row (announce)
// and COMMIT (ROLLBACK for a probe: then nothing is announced). The rows go as
// array parameters (unnest) that bun formats into the statements; the query hooks
// (tracing) see the statements' templates, never the orders' data. A query stops
// at its first failing statement, so a failure never reaches the COMMIT; the
// transaction is then rolled back (or the connection discarded). Uids the batch
// did not change take one more query (storedOf), before the second.
func applySmall(ctx context.Context, conn bun.Conn, recs []orders.Record, announce, probe bool) (stored []orders.Stored, err error) {
	defer func() {
		if err != nil {
			rollback(ctx, conn)
		}
	}()
	rows, err := conn.QueryContext(ctx, "BEGIN;\n"+applyOrdersUnnestSQL, ordersTable.args(recs)...)
	if err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	applied, replaced, prev, err := scanApplied(rows)
	if err != nil {
		return nil, err
	}
	if stored, err = storedOf(ctx, conn, recs, applied, prev); err != nil {
		return nil, err
	}
	stmts := make([]string, 0, 7)
	var args []any
	add := func(q string, a ...any) {
		stmts = append(stmts, q)
		args = append(args, a...)
	}
	if len(applied) > 0 {
		written := onlyApplied(recs, applied)
		if len(replaced) > 0 {
			slices.Sort(replaced)
			a := pgdialect.Array(replaced)
			add(deletePartsSQL, a, a, a)
		}
		add(insertDeliverySQL, deliveryTable.args(written)...)
		add(insertPaymentSQL, paymentTable.args(written)...)
		if items := itemRows(written); len(items) > 0 {
			add(insertItemsSQL, itemsTable.args(items)...)
		}
	}
	end := "COMMIT"
	if probe {
		end = "ROLLBACK"
	} else if announce {
		if q, a := announceFor(stored); q != "" {
			add(q, a...)
		}
	}
	stmts = append(stmts, end)
	if _, err := conn.ExecContext(ctx, strings.Join(stmts, ";\n"), args...); err != nil {
		return nil, fmt.Errorf("parts: %w", err)
	}
	return stored, nil
}

// scanApplied reads the rows of the orders statement (applyOrdersSQL or
// applyOrdersUnnestSQL) and closes them: the applied uids, those of them that
// replaced a stored order (their former parts must go), and the versions they
// replaced on another partition.
func scanApplied(rows *sql.Rows) (applied, replaced []string, prev map[string]orders.Version, err error) {
	defer rows.Close()
	for rows.Next() {
		var uid string
		var inserted bool
		var previous sql.NullString
		if err := rows.Scan(&uid, &inserted, &previous); err != nil {
			return nil, nil, nil, fmt.Errorf("orders: scan: %w", err)
		}
		applied = append(applied, uid)
		if !inserted {
			replaced = append(replaced, uid)
		}
		if previous.Valid {
			v, err := parseStoredVersion(previous.String)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("orders: previous version of %s: %w", uid, err)
			}
			if prev == nil {
				prev = make(map[string]orders.Version)
			}
			prev[uid] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("orders: %w", err)
	}
	return applied, replaced, prev, nil
}

// onlyApplied returns the records of recs whose uid is in applied: recs itself
// when all are.
func onlyApplied(recs []orders.Record, applied []string) []orders.Record {
	if len(applied) == len(recs) {
		return recs
	}
	keep := make(map[string]struct{}, len(applied))
	for _, uid := range applied {
		keep[uid] = struct{}{}
	}
	return slices.DeleteFunc(slices.Clone(recs), func(r orders.Record) bool {
		_, ok := keep[r.Order.OrderUID]
		return !ok
	})
}

// formatSQL formats q with args as db's dialect does, into the statement's text.
func formatSQL(db bun.IDB, q string, args ...any) (s string, err error) {
	defer func() { // bun formats the arrays; a failure is a panic there
		if r := recover(); r != nil {
			s, err = "", fmt.Errorf("format: %v", r)
		}
	}()
	return db.NewRaw(q, args...).String(), nil
}

// writeOrders runs applyOrdersSQL for recs and then replaces the delivery, payment
// and items of the orders it applied. It returns those uids and, for those that
// replaced a version on another partition, that version.
func writeOrders(ctx context.Context, tx batchTx, recs []orders.Record) (applied []string, prev map[string]orders.Version, err error) {
	// inTx's BEGIN created the staging table (or found it)
	if err := copyIn(ctx, tx, &ordersTable, ordersStaging, recs); err != nil {
		return nil, nil, err
	}
	rows, err := tx.QueryContext(ctx, applyOrdersSQL)
	if err != nil {
		return nil, nil, fmt.Errorf("orders: %w", err)
	}
	applied, replaced, prev, err := scanApplied(rows)
	if err != nil {
		return nil, nil, err
	}
	if len(applied) == 0 {
		return applied, prev, nil
	}
	recs = onlyApplied(recs, applied)
	if len(replaced) > 0 { // their former parts go; the new ones are inserted like those of new orders
		slices.Sort(replaced)
		a := pgdialect.Array(replaced)
		if _, err := tx.ExecContext(ctx, deletePartsSQL, a, a, a); err != nil {
			return nil, nil, fmt.Errorf("delete parts: %w", err)
		}
	}
	if err := copyIn(ctx, tx, &deliveryTable, deliveryTable.name, recs); err != nil {
		return nil, nil, err
	}
	if err := copyIn(ctx, tx, &paymentTable, paymentTable.name, recs); err != nil {
		return nil, nil, err
	}
	if items := itemRows(recs); len(items) > 0 {
		if err := copyIn(ctx, tx, &itemsTable, itemsTable.name, items); err != nil {
			return nil, nil, err
		}
	}
	return applied, prev, nil
}

// writeTombstones runs applyTombstonesSQL for recs and returns the uids whose
// tombstone it stored.
func writeTombstones(ctx context.Context, tx batchTx, recs []orders.Record) ([]string, error) {
	var applied []string
	if err := tx.NewRaw(applyTombstonesSQL, tombstonesTable.args(recs)...).Scan(ctx, &applied); err != nil {
		return nil, fmt.Errorf("tombstones: %w", err)
	}
	return applied, nil
}

// readStored returns what is stored for uids: the version of the order, else of
// the tombstone (Deleted); uids with neither are absent.
func readStored(ctx context.Context, tx bun.IDB, uids []string) (map[string]orders.Stored, error) {
	rows, err := tx.QueryContext(ctx, storedSQL, pgdialect.Array(uids), pgdialect.Array(uids))
	if err != nil {
		return nil, fmt.Errorf("stored versions: %w", err)
	}
	defer rows.Close()
	out := make(map[string]orders.Stored, len(uids))
	for rows.Next() {
		var st orders.Stored
		v := &st.Version
		if err := rows.Scan(&st.UID, &v.Partition, &v.Offset, &v.Time, &st.Deleted); err != nil {
			return nil, fmt.Errorf("stored versions: scan: %w", err)
		}
		if prev, ok := out[st.UID]; ok && !prev.Deleted {
			continue // an order and a tombstone left behind by its re-creation: the order is stored
		}
		out[st.UID] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("stored versions: %w", err)
	}
	return out, nil
}

// dedupe keeps one record per uid: the newest (orders.Version.Compare), the later
// one on a tie. The result is sorted by uid and does not alias recs.
func dedupe(recs []orders.Record) []orders.Record {
	// winners and the sort work on indexes: a Record is a few hundred bytes,
	// and sorting them by value was a visible part of the write's CPU
	keep := make([]int, 0, len(recs))
	at := make(map[string]int, len(recs))
	for i := range recs {
		k, seen := at[recs[i].Order.OrderUID]
		if !seen {
			at[recs[i].Order.OrderUID] = len(keep)
			keep = append(keep, i)
			continue
		}
		if recs[i].Version.Compare(recs[keep[k]].Version) >= 0 {
			keep[k] = i
		}
	}
	slices.SortFunc(keep, func(a, b int) int { return cmp.Compare(recs[a].Order.OrderUID, recs[b].Order.OrderUID) })
	out := make([]orders.Record, len(keep))
	for k, i := range keep {
		out[k] = recs[i]
	}
	return out
}

// Get implements orders.Store in one round trip, which also reads the tombstone
// (getSQL). A malformed uid gives orders.ErrInvalidUID. With a replica that is up,
// it reads the replica, with the read floor checked in the same round trip, and
// only a replica behind the floor or failing costs a second one, on the primary.
func (s *Store) Get(ctx context.Context, uid string) (orders.Order, orders.Version, error) {
	if !orders.ValidUID(uid) {
		return orders.Order{}, orders.Version{}, fmt.Errorf("get: %w", orders.ErrInvalidUID)
	}
	if s.replica != nil && s.replica.usable() {
		list, seqs, ok, err := s.getReplica(ctx, uid)
		if err != nil {
			return orders.Order{}, orders.Version{}, fmt.Errorf("get: %w", err)
		}
		if ok {
			return found(list, seqs)
		}
	}
	ctx, done, err := s.gate.enter(ctx)
	if err != nil {
		return orders.Order{}, orders.Version{}, fmt.Errorf("get: %w", err)
	}
	defer done()
	list, seqs, err := s.get.query(ctx, s.db.DB, uid)
	if err != nil {
		return orders.Order{}, orders.Version{}, fmt.Errorf("get: %w", err)
	}
	return found(list, seqs)
}

// found turns the rows of getSQL into Get's answer.
func found(list []orders.Record, seqs []int64) (orders.Order, orders.Version, error) {
	var tombstone orders.Version
	for i := range list {
		if seqs[i] != 0 { // the order; a tombstone next to it is older
			return list[i].Order, list[i].Version, nil
		}
		tombstone = list[i].Version
	}
	return orders.Order{}, tombstone, orders.ErrNotFound
}

// List implements orders.Store with keyset pagination on the insertion sequence,
// in one round trip per page. The page's last order is never repeated on the next
// page, and orders inserted while paging are newer than every cursor, so a walk
// visits each order that existed when it started exactly once (unless deleted; an
// order re-created after a delete is listed as new). With a replica, the page is
// read there when the prober last saw it up and at or past the read floor.
func (s *Store) List(ctx context.Context, limit int, cursor string) (orders.Page, error) {
	if limit < 1 || limit > orders.MaxListLimit {
		return orders.Page{}, fmt.Errorf("list: %w", orders.ErrInvalidLimit)
	}
	var after int64
	if cursor != "" {
		var err error
		if after, err = decodeCursor(cursor); err != nil {
			return orders.Page{}, fmt.Errorf("list: %w", err)
		}
	}
	if s.replica != nil && s.replica.usable() {
		page, ok, err := s.listReplica(ctx, limit, after)
		if err != nil {
			return orders.Page{}, fmt.Errorf("list: %w", err)
		}
		if ok {
			return page, nil
		}
	}
	ctx, done, err := s.gate.enter(ctx)
	if err != nil {
		return orders.Page{}, fmt.Errorf("list: %w", err)
	}
	defer done()
	page, err := list(ctx, s.db, limit, after)
	if err != nil {
		return orders.Page{}, fmt.Errorf("list: %w", err)
	}
	return page, nil
}

// list reads the page of at most limit orders older than after (0: the newest) on db.
func list(ctx context.Context, db *bun.DB, limit int, after int64) (orders.Page, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if after == 0 {
		rows, err = db.QueryContext(ctx, selectOrderSQL+"ORDER BY o.seq DESC LIMIT ?", limit+1)
	} else {
		rows, err = db.QueryContext(ctx, selectOrderSQL+"WHERE o.seq < ? ORDER BY o.seq DESC LIMIT ?", after, limit+1)
	}
	if err != nil {
		return orders.Page{}, err
	}
	list, seqs, err := scanOrders(rows)
	if err != nil {
		return orders.Page{}, err
	}
	var page orders.Page
	if len(list) > limit {
		list = list[:limit]
		page.NextCursor = encodeCursor(seqs[limit-1])
	}
	page.Orders = make([]orders.Order, len(list))
	page.Versions = make([]orders.Version, len(list))
	for i := range list {
		page.Orders[i], page.Versions[i] = list[i].Order, list[i].Version
	}
	return page, nil
}

// PurgeTombstones implements orders.Store. Once a tombstone is purged, a version
// of its order older than the delete is accepted again (a replay from before the
// delete re-creates the order), so the cutoff must be older than any replay.
//
// It deletes purgeChunk tombstones per statement, so that a purge after a mass
// delete neither holds locks on all of them in one transaction nor returns them
// all at once.
func (s *Store) PurgeTombstones(ctx context.Context, cutoff time.Time, purged func(uids []string)) (int64, error) {
	var n int64
	for {
		var uids []string
		if err := s.db.NewRaw(purgeTombstonesSQL, cutoff, purgeChunk).Scan(ctx, &uids); err != nil {
			return n, fmt.Errorf("purge tombstones: %w", err)
		}
		n += int64(len(uids))
		if purged != nil && len(uids) > 0 {
			purged(uids)
		}
		if len(uids) < purgeChunk {
			return n, nil
		}
	}
}

// purgeChunk is the number of tombstones PurgeTombstones deletes per statement.
const purgeChunk = 10_000

// scanOrders reads rows of selectOrderSQL (or getSQL) and closes them. It returns
// the orders with their versions, and their sequence numbers.
func scanOrders(rows *sql.Rows) ([]orders.Record, []int64, error) {
	defer rows.Close()
	var (
		list  []orders.Record
		seqs  []int64
		rec   orders.Record // each row is scanned into rec, then copied out
		seq   int64
		items []byte
	)
	dest := make([]any, 0, len(readColumns)+2)
	dest = append(dest, &seq)
	for i := range readColumns {
		dest = append(dest, readColumns[i].ptr(&rec))
	}
	dest = append(dest, &items)
	for rows.Next() {
		rec = orders.Record{}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("scan: %w", err)
		}
		for i := range readColumns {
			if c := &readColumns[i]; c.kind == kindTimestamptz {
				t := c.tm(&rec)
				*t = t.UTC()
			}
		}
		o := &rec.Order
		if err := json.Unmarshal(items, &o.Items); err != nil {
			return nil, nil, fmt.Errorf("scan items of %s: %w", o.OrderUID, err)
		}
		list = append(list, rec)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	return list, seqs, nil
}

// parseStoredVersion parses the "partition.offset.time" text of applyOrdersSQL.
func parseStoredVersion(s string) (orders.Version, error) {
	var v orders.Version
	if n, err := fmt.Sscanf(s, "%d.%d.%d", &v.Partition, &v.Offset, &v.Time); err != nil || n != 3 {
		return orders.Version{}, fmt.Errorf("malformed version %q", s)
	}
	return v, nil
}

// announceSQLFor returns the statement that adds the change-feed row of a batch
// (empty when there is nothing to announce): every uid with what the database
// holds for it, run in the batch's transaction just before its COMMIT (inTx sends
// them together), and wakes the readers (NOTIFY, sent at commit; one per batch,
// never one per order). The versions are read back in the statement from what
// the batch left (by primary key), so the only parameter is the uids: text
// arrays cost their parse on every statement.
func announceSQLFor(tx bun.IDB, stored []orders.Stored) (q string, err error) {
	q, args := announceFor(stored)
	if q == "" {
		return "", nil
	}
	if q, err = formatSQL(tx, q, args...); err != nil {
		return "", fmt.Errorf("change feed: %w", err)
	}
	return q, nil
}

// announceFor returns the statement of announceSQLFor unformatted, with its
// arguments ("" when there is nothing to announce).
func announceFor(stored []orders.Stored) (string, []any) {
	uids := make([]string, 0, len(stored))
	tombs := false
	for i := range stored {
		if !stored[i].Version.IsZero() {
			uids = append(uids, stored[i].UID)
			tombs = tombs || stored[i].Deleted
		}
	}
	if len(uids) == 0 {
		return "", nil
	}
	if tombs {
		return announceAllSQL, []any{pgdialect.Array(uids), pgdialect.Array(uids)}
	}
	return announceOrdersSQL, []any{pgdialect.Array(uids)}
}

// allStaged reports whether the batch recs (deduplicated) stored exactly what
// the staging table holds: every record an order at a non-zero version, each
// applied. The feed row can then be read from the staging table (announceStagedSQL)
// instead of looking every uid up in orders: the common case of a backlog batch.
func allStaged(recs []orders.Record, stored []orders.Stored) bool {
	if len(stored) != len(recs) || slices.ContainsFunc(recs, notAnOrder) {
		return false
	}
	for i := range stored {
		if !stored[i].Changed || stored[i].Deleted || stored[i].Version != recs[i].Version {
			return false
		}
	}
	return true
}

// FeedChannel is the NOTIFY channel of the change feed.
const FeedChannel = "order_changes"

// announceOrdersSQL inserts the change-feed row of a batch without tombstones
// (the versions of the orders of a text[] of uids) and notifies FeedChannel with
// its id; announceAllSQL adds the tombstones of uids without an order (it takes
// the uids twice).
var (
	announceOrdersSQL = announceSQL(`SELECT order_uid, source_partition, source_offset, source_time, false AS deleted
		FROM orders WHERE order_uid = ANY(?::text[])`)
	// announceStagedSQL announces the batch's orders as the staging table holds
	// them, for a batch whose every order was applied (allStaged): no parameter,
	// no lookup in orders (issue 14: the lookups of 1,000 uids were 15 % of a
	// batch's time in BenchmarkApplyBatchStatements).
	announceStagedSQL = announceSQL(`SELECT order_uid, source_partition, source_offset, source_time, false AS deleted
		FROM ` + ordersStaging)
	announceAllSQL = announceSQL(`SELECT order_uid, source_partition, source_offset, source_time, false AS deleted
		FROM orders WHERE order_uid = ANY(?::text[])
		UNION ALL
		SELECT t.order_uid, t.source_partition, t.source_offset, t.source_time, true
		FROM order_tombstones t WHERE t.order_uid = ANY(?::text[])
			AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_uid = t.order_uid)`)
)

func announceSQL(stored string) string {
	return `WITH s AS (` + stored + `),
c AS (
	INSERT INTO order_changes (uids, partitions, offsets, times, deleted)
	SELECT array_agg(order_uid), array_agg(source_partition), array_agg(source_offset), array_agg(source_time), array_agg(deleted)
	FROM s HAVING count(*) > 0
	RETURNING id)
SELECT pg_notify('` + FeedChannel + `', id::text) FROM c`
}
