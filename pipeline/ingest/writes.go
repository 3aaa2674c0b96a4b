package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// API writes go through the log: PUT appends the order, DELETE a tombstone, to
// the orders topic (key = uid), so Kafka alone orders every version of an order
// whoever writes it. The request then waits, boundedly, until the version is
// applied: by this instance's flow (which answers it by the x-write-id header,
// after the database commit and the cache fill), or by whichever instance owns
// the uid's partition (seen by polling the database for a version at least as
// new, whose result is offered to this instance's cache).

// writeOutcome is how the flow ended an API write's record: applied at version
// (stored is what the store holds for the uid now), or dead-lettered (failure).
type writeOutcome struct {
	version orders.Version
	stored  orders.Stored
	failure *kafkaedge.Failure
}

// waiters are the API writes of this process waiting for their records, by
// write id. resolve is called for every record the flow ends, so it costs one
// atomic load while nothing waits.
type waiters struct {
	n  atomic.Int64
	mu sync.Mutex
	m  map[string]chan writeOutcome
}

func newWaiters() *waiters { return &waiters{m: map[string]chan writeOutcome{}} }

func (w *waiters) waiting() bool { return w.n.Load() > 0 }

// add registers a write id and returns the channel its outcome arrives on.
func (w *waiters) add(id string) chan writeOutcome {
	ch := make(chan writeOutcome, 1)
	w.mu.Lock()
	w.m[id] = ch
	w.mu.Unlock()
	w.n.Add(1)
	return ch
}

// remove forgets a write id (answered, timed out or cancelled).
func (w *waiters) remove(id string) {
	w.mu.Lock()
	if _, ok := w.m[id]; ok {
		delete(w.m, id)
		w.n.Add(-1)
	}
	w.mu.Unlock()
}

// resolve answers the write that appended r, if it waits here.
func (w *waiters) resolve(r *kafkaedge.Record, o writeOutcome) {
	if !w.waiting() {
		return
	}
	id := r.Header(kafkaedge.HeaderWriteID)
	if id == "" {
		return
	}
	w.mu.Lock()
	ch, ok := w.m[id]
	if ok {
		delete(w.m, id)
		w.n.Add(-1)
	}
	w.mu.Unlock()
	if ok {
		ch <- o
	}
}

// VersionReader reads what the primary database holds for a uid (orders.Store's Get).
type VersionReader interface {
	Get(ctx context.Context, uid string) (orders.Order, orders.Version, error)
}

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Brokers and Topic are where the orders topic is.
	Brokers, Topic string
	// AppendTimeout bounds the broker's acknowledgement of an appended record;
	// past it the write fails with orders.ErrLogUnavailable.
	AppendTimeout time.Duration
	// ApplyWait bounds the wait for the version to be applied; past it the write
	// answers *orders.PendingError (HTTP 202).
	ApplyWait time.Duration
	// Poll is how often the database is asked whether another instance applied
	// the version.
	Poll time.Duration
}

// Writer performs the API's writes through the log. It is safe for concurrent
// use; Close it after the HTTP server stopped.
type Writer struct {
	in    *Ingest
	app   *kafkaedge.Appender
	db    VersionReader
	cache CacheFiller // may be nil
	cfg   WriterConfig
	log   *slog.Logger
}

// NewWriter returns the Writer of in's flow; db is the primary database store.
func (in *Ingest) NewWriter(cfg WriterConfig, db VersionReader) (*Writer, error) {
	app, err := kafkaedge.NewAppender(cfg.Brokers, "order-service-api", cfg.AppendTimeout)
	if err != nil {
		return nil, fmt.Errorf("api writer: %w", err)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	return &Writer{in: in, app: app, db: db, cache: in.deps.Cache, cfg: cfg, log: in.log.With("component", "api_writes")}, nil
}

// Close waits briefly for records in flight and closes the producer.
func (w *Writer) Close() { w.app.Close(5 * time.Second) }

// Put appends o (raw is its JSON as received and validated) as the order's
// next version and waits until it is applied. It returns the version it got;
// errors are orders.ErrLogUnavailable, *orders.PendingError (appended, not yet
// applied), *orders.RejectedError (dead-lettered) or ctx's.
func (w *Writer) Put(ctx context.Context, raw []byte, o orders.Order) (orders.Version, error) {
	return w.append(ctx, o.OrderUID, raw)
}

// Delete appends a tombstone for uid and waits until it is applied. An order
// the database does not hold gives orders.ErrNotFound and appends nothing.
// Other errors are Put's.
func (w *Writer) Delete(ctx context.Context, uid string) (orders.Version, error) {
	if !orders.ValidUID(uid) {
		return orders.Version{}, orders.ErrInvalidUID
	}
	gctx, cancel := context.WithTimeout(ctx, w.cfg.ApplyWait) // every request path has a deadline
	_, _, err := w.db.Get(gctx, uid)
	cancel()
	if err != nil {
		return orders.Version{}, err
	}
	return w.append(ctx, uid, nil)
}

func (w *Writer) append(ctx context.Context, uid string, value []byte) (orders.Version, error) {
	id := newWriteID()
	headers := []kafkaedge.Header{{Key: kafkaedge.HeaderWriteID, Value: []byte(id)}}
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	for k, v := range carrier {
		headers = append(headers, kafkaedge.Header{Key: k, Value: []byte(v)})
	}
	done := w.in.writes.add(id)
	defer w.in.writes.remove(id)
	at, err := w.app.Append(ctx, w.cfg.Topic, []byte(uid), value, headers)
	if err != nil {
		w.log.WarnContext(ctx, "api_write_not_appended", "order_uid", uid, "err", err)
		if ctx.Err() != nil {
			return orders.Version{}, ctx.Err()
		}
		return orders.Version{}, fmt.Errorf("%w: %w", orders.ErrLogUnavailable, err)
	}
	ts := at.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	v := orders.Version{Partition: at.Partition, Offset: at.Offset, Time: ts.UnixMilli()}
	return v, w.await(ctx, uid, v, done)
}

// await waits for the outcome of the write of uid at version v: from this
// instance's flow, or from the database when another instance applied it.
func (w *Writer) await(ctx context.Context, uid string, v orders.Version, done <-chan writeOutcome) error {
	deadline := time.NewTimer(w.cfg.ApplyWait)
	defer deadline.Stop()
	poll := time.NewTicker(w.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case o := <-done:
			if o.failure != nil {
				return &orders.RejectedError{Class: o.failure.Class, Reason: o.failure.Reason}
			}
			return nil
		case <-poll.C:
			if w.appliedElsewhere(ctx, uid, v) {
				return nil
			}
		case <-deadline.C:
			return &orders.PendingError{UID: uid, Version: v}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appliedElsewhere reports whether the database holds v or a newer version of
// uid; if so, it offers what it read to the cache, so that this instance
// answers a read after the write with it (the cache keeps a newer entry).
func (w *Writer) appliedElsewhere(ctx context.Context, uid string, v orders.Version) bool {
	o, cur, err := w.db.Get(ctx, uid)
	deleted := errors.Is(err, orders.ErrNotFound)
	if err != nil && !deleted {
		return false
	}
	if cur.IsZero() || cur.Compare(v) < 0 {
		return false
	}
	if w.cache != nil {
		if deleted {
			o = orders.Order{OrderUID: uid}
		}
		w.cache.Fill([]orders.Record{{Order: o, Version: cur, Deleted: deleted}},
			[]orders.Stored{{UID: uid, Version: cur, Deleted: deleted}})
	}
	return true
}

// newWriteID returns 16 random hex digits.
func newWriteID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
