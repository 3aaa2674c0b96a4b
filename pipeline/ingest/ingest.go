// Package ingest is the order ingestion flow: Kafka "orders" → decode → validate →
// batch → upsert (one transaction per batch) → cache → commit offsets, with
// decode/validation failures and poison orders dead-lettered to "orders-dlq".
//
// Delivery is at-least-once: a message's offset is committed only when it and
// every earlier message of its partition are durable in PostgreSQL or
// acknowledged by the DLQ. Every record is a version of its order (its Origin in
// the orders topic, see orders.Version); a tombstone (null value) deletes. The
// store applies only versions newer than what it holds, so redeliveries and
// replays never move an order back.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orders-service/modules/dberr"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/pipeline"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// item is one decoded message travelling through the flow: a version of an
// order, or a tombstone.
type item struct {
	msg     *kafkaedge.Message
	order   orders.Order // a tombstone has only OrderUID
	deleted bool         // a tombstone
	version orders.Version
	span    trace.SpanContext // the producer's span, from the message headers
	// prev is the next older version of the same uid in the batch: written in
	// this one's place if the database rejects this one.
	prev *item
	dead bool // dead-lettered by the upsert
}

// record is what the store writes for it.
func (it *item) record() orders.Record {
	return orders.Record{Order: it.order, Version: it.version, Deleted: it.deleted}
}

// batch is a group of items after the upsert: recs are the records written,
// stored what the store holds for their uids after each write.
type batch struct {
	items  []*item
	recs   []orders.Record
	stored []orders.Stored
}

// Ingest runs the flow. Create it with New, run it once with Run; Ready and Stats
// are safe for concurrent use at any time.
type Ingest struct {
	kafka kafkaedge.Config
	cfg   Config
	deps  Deps
	log   *slog.Logger
	src   *kafkaedge.Source
	com   *kafkaedge.Committer
	p     *pipeline.Pipeline
	store BatchWriter

	state     atomic.Value // string: new, starting, running, stopped, failed
	mu        sync.Mutex
	runErr    error
	closeOnce sync.Once
	// commitErr is the fatal error that stopped commitLoop, for the commit sink.
	commitErr atomic.Pointer[error]

	writes *waiters // API writes waiting for their records to be applied

	batches, written, applied, retries, splits, poison atomic.Uint64
	comb                                               *combiner // nil with one writer
	stale, tombstones, crossPartition, purged          atomic.Uint64
}

// New builds the flow and its Kafka clients (they connect lazily) from the kafka
// and pipeline sections of a valid configuration. Call Run once, or Close if Run
// will not be called.
func New(kafka kafkaedge.Config, cfg Config, deps Deps) (*Ingest, error) {
	if deps.Store == nil {
		return nil, errors.New("ingest: new: Store is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	log := deps.Logger.With("component", "ingest")
	in := &Ingest{kafka: kafka, cfg: cfg, deps: deps, log: log, store: deps.Store, writes: newWaiters()}
	in.state.Store("new")

	var engineMetrics *pipeline.Metrics
	if deps.Metrics != nil {
		m, err := newMetrics(deps.Metrics, in)
		if err != nil {
			return nil, fmt.Errorf("ingest: new: %w", err)
		}
		engineMetrics = m.engine
		in.store = m.timed(deps.Store)
	}
	var err error
	in.com, err = kafkaedge.NewCommitter(kafkaedge.CommitterConfig{
		Brokers: kafka.Brokers, Topic: kafka.Topic, DLQTopic: kafka.DLQTopic,
		TransactionalID: kafka.TransactionalID(), Retry: cfg.Retry(),
	}, log)
	if err != nil {
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	in.src, err = kafkaedge.NewSource(kafkaedge.SourceConfig{
		Brokers: kafka.Brokers, Topic: kafka.Topic, GroupID: kafka.GroupID, InstanceID: kafka.InstanceID,
		MaxInFlightBytes: cfg.MaxInFlightBytes,
	}, in.com, log)
	if err != nil {
		in.com.Close()
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	in.p = pipeline.New(pipeline.Options{QueueCapacity: cfg.QueueCapacity, ShutdownTimeout: cfg.ShutdownTimeout, Metrics: engineMetrics})
	in.wire(in.p)
	return in, nil
}

// wire builds the flow; it reads like the diagram in the README. With several
// writers, the validated orders are routed by partition to that many lanes, each
// with its own batch and upsert stages (and database connection), so batches of
// different partitions are written side by side while each partition keeps its
// order; the lanes join again before the cache.
func (in *Ingest) wire(p *pipeline.Pipeline) {
	batchCap := pipeline.Capacity(in.cfg.BatchQueueCapacity)
	fetched := pipeline.Source(p, "fetch", in.src.Run)
	decoded := pipeline.Map(p, "decode", fetched, in.decode, pipeline.OnReject(rejected(in, "decode", messageOf)))
	valid := pipeline.Map(p, "validate", decoded, in.validate, pipeline.OnReject(rejected(in, "validate", itemMessage)))
	policy := pipeline.BatchPolicy[*item]{
		Count: in.cfg.BatchSize, Bytes: in.cfg.BatchBytes,
		Linger: in.cfg.BatchLinger, Adaptive: in.cfg.BatchLinger == 0,
		Size: func(it *item) int { return len(it.msg.Value) },
	}
	var stored *pipeline.Link[*batch]
	if w := in.cfg.writers(); w == 1 {
		batches := pipeline.Batch(p, "batch", valid, policy)
		stored = pipeline.Map(p, "upsert", batches, in.upsert, batchCap)
	} else {
		// the lanes share the per-message mailbox budget of one batch stage
		laneCap := pipeline.Capacity(max(in.cfg.QueueCapacity/w, 1))
		// small batches of the lanes are written together, backlog batches side by side
		big := combineBelow
		if n := in.cfg.BatchSize; n > 0 && n < big {
			big = n
		}
		if combineLanes {
			in.comb = newCombiner(big)
		}
		lanes := pipeline.Shard(p, "route", valid, w, func(it *item) int { return int(it.msg.Partition) })
		written := make([]*pipeline.Link[*batch], w)
		for i, lane := range lanes {
			batches := pipeline.Batch(p, fmt.Sprintf("batch-%d", i+1), lane, policy, laneCap)
			written[i] = pipeline.Map(p, fmt.Sprintf("upsert-%d", i+1), batches, in.upsert, batchCap)
		}
		stored = pipeline.Merge(p, "merge", written, batchCap)
	}
	cached := pipeline.Map(p, "cache", stored, in.fill, batchCap)
	pipeline.Sink(p, "commit", cached, in.commit, batchCap,
		pipeline.Every(in.cfg.CommitInterval, in.commitFailed), pipeline.OnClose(in.finalCommit))
}

// Run ensures the topics (when configured), runs the flow until ctx is cancelled,
// then stops softly: stop fetching, drain, flush, commit, close the Kafka clients,
// all bounded by ShutdownTimeout. It returns nil after a clean stop, the error
// that stopped the flow otherwise (a fatal database error, a fatal Kafka error,
// ErrHardStop). Run may be called once.
func (in *Ingest) Run(ctx context.Context) error {
	if !in.state.CompareAndSwap("new", "starting") {
		return errors.New("ingest: run: already started")
	}
	kafkaedge.EnsureTopics(ctx, in.kafka, in.cfg.Retry(), in.log)
	var err error
	if ctx.Err() == nil {
		in.state.Store("running")
		in.com.Start()
		in.log.Info("ingest_started", "topic", in.kafka.Topic, "group", in.kafka.GroupID, "dlq", in.kafka.DLQTopic, "instance", in.kafka.InstanceID)
		purgeCtx, stopPurge := context.WithCancel(ctx)
		purged, committing := make(chan struct{}), make(chan struct{})
		go func() { defer close(purged); in.purgeTombstones(purgeCtx) }()
		// the commits go on while the flow drains after ctx ends
		commitCtx, stopCommits := context.WithCancel(context.WithoutCancel(ctx))
		go func() { defer close(committing); in.commitLoop(commitCtx) }()
		err = in.p.Run(ctx)
		if err == nil {
			err = in.src.Stopped() // the source stopped by itself; the rest drained
		}
		stopPurge()
		stopCommits()
		<-purged
		<-committing
		if err == nil {
			err = in.commitFailed(ctx) // failed after the commit stage had closed
		}
	}
	in.release()
	in.mu.Lock()
	in.runErr = err
	in.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		in.state.Store("failed")
		in.log.Error("ingest_failed", "err", err)
		return fmt.Errorf("ingest: %w", err)
	}
	in.state.Store("stopped")
	if err != nil {
		in.log.Warn("ingest_stopped", "err", err)
		return fmt.Errorf("ingest: %w", err)
	}
	in.log.Info("ingest_stopped")
	return nil
}

// Close releases the Kafka clients of a flow whose Run was never called. Run
// releases them itself; Close after Run is a no-op.
func (in *Ingest) Close() { in.release() }

// release closes the Kafka clients in the direction the data flows: the Source
// (its last commits go through the Committer), then the Committer.
func (in *Ingest) release() {
	in.closeOnce.Do(func() {
		if err := in.src.Close(); err != nil {
			in.log.Warn("kafka_close", "err", err)
		}
		in.com.Close()
	})
}

// Ready returns nil while the flow runs and the broker is reachable.
func (in *Ingest) Ready() error {
	switch s := in.state.Load().(string); s {
	case "running":
		if !in.p.Running() {
			return errors.New("ingest: pipeline not running")
		}
		if err := in.com.Stalled(in.cfg.commitStallBound()); err != nil {
			return fmt.Errorf("ingest: commits stalled: %w", err)
		}
		return in.src.Healthy()
	case "failed", "stopped":
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.runErr != nil {
			return fmt.Errorf("ingest: %s: %w", s, in.runErr)
		}
		return fmt.Errorf("ingest: %s", s)
	default:
		return fmt.Errorf("ingest: %s", s)
	}
}

// decode parses a message strictly and within the size bound, or takes it as a
// tombstone (null value, the uid as key), and gives it its version (the
// record's Origin). A bad message is rejected (dead-lettered with its error):
// undecodable, or a tombstone without a valid uid key.
func (in *Ingest) decode(ctx context.Context, m *kafkaedge.Message, out *pipeline.Emitter[*item]) error {
	part, off, ts := m.Origin()
	it := &item{msg: m, version: orders.Version{Partition: part, Offset: off, Time: ts.UnixMilli()}}
	if m.Value == nil {
		if !orders.ValidUID(string(m.Key)) {
			return pipeline.Reject(&orders.InvalidError{
				Class:  orders.ClassKey,
				Reason: fmt.Sprintf("a tombstone (null value) must have the order uid as its key, got %s", quoteKey(m.Key)),
			})
		}
		it.order.OrderUID, it.deleted = string(m.Key), true
	} else {
		o, err := orders.Decode(m.Value, in.cfg.MaxMessageBytes)
		if err != nil {
			return pipeline.Reject(err)
		}
		it.order = o
	}
	if len(m.Headers) > 0 {
		it.span = trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), headerCarrier{&m.Record}))
	}
	return out.Emit(ctx, it)
}

// quoteKey quotes a record key for an error message, cut at 80 bytes.
func quoteKey(k []byte) string {
	if len(k) > 80 {
		return strconv.Quote(string(k[:80])) + "..."
	}
	return strconv.Quote(string(k))
}

// validate checks the business rules, then that the record's key, if it has
// one, is the order's uid (the key decides the partition, hence the order of
// the versions); a bad order is rejected.
func (in *Ingest) validate(ctx context.Context, it *item, out *pipeline.Emitter[*item]) error {
	if it.deleted {
		return out.Emit(ctx, it)
	}
	if err := orders.Validate(&it.order); err != nil {
		return pipeline.Reject(err)
	}
	if k := it.msg.Key; len(k) > 0 && string(k) != it.order.OrderUID {
		return pipeline.Reject(&orders.InvalidError{
			Class: orders.ClassKey, Field: "order_uid",
			Reason: fmt.Sprintf("the record key %s is not the order_uid %q", quoteKey(k), it.order.OrderUID),
		})
	}
	return out.Emit(ctx, it)
}

// messageOf and itemMessage give the message of what a stage rejects.
func messageOf(m *kafkaedge.Message) *kafkaedge.Message { return m }
func itemMessage(it *item) *kafkaedge.Message           { return it.msg }

// rejected ends a message the stage rejected with a dead letter naming the
// error's class (decode, or the class of an *orders.InvalidError) and reason.
func rejected[T any](in *Ingest, stage string, msg func(T) *kafkaedge.Message) func(context.Context, T, error) error {
	return func(_ context.Context, v T, err error) error {
		class, reason := orders.ClassDecode, err.Error()
		if cause := errors.Unwrap(err); cause != nil {
			reason = cause.Error()
		}
		var inv *orders.InvalidError
		if errors.As(err, &inv) {
			class = inv.Class
		}
		in.deadLetter(msg(v), kafkaedge.Failure{Class: class, Stage: stage, Reason: reason, Attempts: 1})
		return nil
	}
}

// deadLetter ends m with a dead letter and answers its API write, if any.
func (in *Ingest) deadLetter(m *kafkaedge.Message, f kafkaedge.Failure) {
	m.Ack.DeadLetter(f)
	in.writes.resolve(&m.Record, writeOutcome{failure: &f})
}

// upsert writes a batch: per uid its newest version (older ones in the batch
// stand behind it in case the database rejects it), transient errors retried
// with backoff forever, data errors bisected down to the poison records, which
// are dead-lettered; a fatal error stops the flow.
func (in *Ingest) upsert(ctx context.Context, items []*item, out *pipeline.Emitter[*batch]) error {
	b := &batch{items: make([]*item, 0, len(items))}
	for _, it := range items {
		if it.msg.Ack.Revoked() { // partition given away: its results are never committed
			it.msg.Ack.Done() // only gives its in-flight bytes back
			continue
		}
		b.items = append(b.items, it)
	}
	if len(b.items) == 0 {
		return nil
	}
	ctx, span := otel.Tracer("github.com/orderflow/orders-service/pipeline/ingest").Start(ctx, "ingest.upsert_batch",
		trace.WithLinks(links(b.items)...), trace.WithAttributes(attribute.Int("batch.size", len(b.items))))
	defer span.End()
	in.batches.Add(1)
	var err error
	if in.comb != nil {
		err = in.comb.write(ctx, b, in.writeAll)
	} else {
		err = in.writeAll(ctx, b)
	}
	if err != nil {
		span.RecordError(err)
		return err
	}
	return out.Emit(ctx, b)
}

// writeAll stores the items of b (the newest version per uid, the older ones
// behind it) and fills b with their records and what is stored.
func (in *Ingest) writeAll(ctx context.Context, b *batch) error {
	return in.write(ctx, b, newestByUID(b.items), 0)
}

// newestByUID returns, per order uid, the item with the newest version (the
// later one in the batch among equal versions), and links each one's older
// versions behind it through prev, newest first.
func newestByUID(items []*item) []*item {
	head := make(map[string]*item, len(items))
	out := make([]*item, 0, len(items))
	for _, it := range items {
		it.prev = nil
		h, seen := head[it.order.OrderUID]
		if !seen {
			head[it.order.OrderUID] = it
			out = append(out, it)
			continue
		}
		if it.version.Compare(h.version) >= 0 {
			it.prev = h
			head[it.order.OrderUID] = it
			continue
		}
		at := h // insert it below the first version it is not older than
		for at.prev != nil && it.version.Compare(at.prev.version) < 0 {
			at = at.prev
		}
		it.prev, at.prev = at.prev, it
	}
	for i, it := range out {
		out[i] = head[it.order.OrderUID]
	}
	return out
}

// write stores the records of part (one per uid) in one transaction and appends
// them and their outcome to out.
func (in *Ingest) write(ctx context.Context, out *batch, part []*item, tries int) error {
	recs := make([]orders.Record, len(part))
	for i, it := range part {
		recs[i] = it.record()
	}
	b := in.cfg.Retry().Backoff()
	uncertain := false // a failed attempt may have committed
	for attempt := 1; ; attempt++ {
		stored, err := in.store.ApplyBatch(ctx, recs)
		if err == nil {
			out.recs = append(out.recs, recs...)
			out.stored = append(out.stored, stored...)
			in.written.Add(uint64(len(recs)))
			in.account(ctx, recs, stored)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch dberr.Classify(err) {
		case dberr.Transient:
			// A retry of a batch that did commit finds its versions stored and
			// reports them unchanged but equal, so the cache still gets them.
			uncertain = true
			in.retries.Add(1)
			wait := b.Next()
			in.log.WarnContext(ctx, "upsert_retry", "orders", len(recs), "attempt", attempt, "retry_in", wait, "err", err)
			if err := pipeline.Sleep(ctx, wait); err != nil {
				return err
			}
		case dberr.Data:
			if len(part) == 1 {
				// Before this order goes to the DLQ: does a known-good order fail
				// the same way? Then the schema is at fault (a new NOT NULL
				// column, a changed type), not the data, and every order would
				// be dead-lettered: stop instead.
				perr := in.probeSchema(ctx)
				if perr != nil && ctx.Err() != nil {
					return ctx.Err()
				}
				switch {
				case perr == nil: // the schema takes orders: this one is poison
				case dberr.Classify(perr) == dberr.Transient: // cannot tell now: retry the order later
					uncertain = true
					wait := b.Next()
					in.log.WarnContext(ctx, "upsert_probe_retry", "attempt", attempt, "retry_in", wait, "err", perr)
					if err := pipeline.Sleep(ctx, wait); err != nil {
						return err
					}
					continue
				default:
					in.log.ErrorContext(ctx, "upsert_schema_refuses_orders", "err", err, "probe_err", perr,
						"action", "the flow stops instead of dead-lettering every order: migrate or fix the schema, then restart")
					return fmt.Errorf("%w: a known-good order fails too (%w); the order at %d@%d: %w",
						ErrSchemaRefusesOrders, perr, part[0].msg.Partition, part[0].msg.Offset, err)
				}
				it := part[0]
				in.poison.Add(1)
				it.dead = true
				in.log.WarnContext(ctx, "upsert_poison_order", "partition", it.msg.Partition, "offset", it.msg.Offset, "version", it.version.String(), "err", err)
				in.deadLetter(it.msg, kafkaedge.Failure{Class: "data", Stage: "upsert", Reason: err.Error(), Attempts: tries + attempt})
				if it.prev != nil { // the next older version of the uid takes its place
					return in.write(ctx, out, []*item{it.prev}, tries+attempt)
				}
				return nil
			}
			in.splits.Add(1)
			mid := len(part) / 2
			if err := in.write(ctx, out, part[:mid], tries+attempt); err != nil {
				return err
			}
			return in.write(ctx, out, part[mid:], tries+attempt)
		default:
			if uncertain && in.deps.Cache != nil {
				// the flow stops; whatever committed must not be hidden by older entries
				uids := make([]string, len(recs))
				for i := range recs {
					uids[i] = recs[i].UID()
				}
				in.deps.Cache.Invalidate(uids...)
			}
			return fmt.Errorf("upsert: %w", err)
		}
	}
}

// ErrSchemaRefusesOrders stops the flow: the database refuses a known-good
// order (the canonical sample) as it refused an order of a batch, so the schema
// is at fault and dead-lettering would take every order.
var ErrSchemaRefusesOrders = errors.New("the database schema refuses valid orders")

// probeSchema writes the canonical sample order (under a uid of its own, at
// version 0@0) and rolls it back: nil when the schema takes it, the write's
// error otherwise.
func (in *Ingest) probeSchema(ctx context.Context) error {
	var o orders.Order
	if err := json.Unmarshal(orders.Sample(), &o); err != nil {
		return fmt.Errorf("probe: the sample order: %w", err)
	}
	o.OrderUID = "schema-probe-" + newWriteID()
	o.Payment.Transaction = o.OrderUID
	return in.store.ProbeWrite(ctx, orders.Record{Order: o, Version: orders.Version{Partition: 0, Offset: 0, Time: time.Now().UnixMilli()}})
}

// account counts what a write did and logs the versions it compared across
// partitions (the same uid on two partitions: defined, see orders.Version, but
// worth an operator's attention).
func (in *Ingest) account(ctx context.Context, recs []orders.Record, stored []orders.Stored) {
	byUID := make(map[string]*orders.Record, len(recs))
	for i := range recs {
		byUID[recs[i].UID()] = &recs[i]
	}
	var applied, stale, tombstones uint64
	for _, s := range stored {
		r := byUID[s.UID]
		if r == nil {
			continue
		}
		switch {
		case s.Changed:
			applied++
			if r.Deleted {
				tombstones++
			}
		case s.Version != r.Version:
			stale++
		}
		if prev := s.Previous; prev.CrossPartition(r.Version) || (!s.Changed && s.Version.CrossPartition(r.Version)) {
			in.crossPartition.Add(1)
			other := s.Version
			if s.Changed {
				other = prev
			}
			in.log.WarnContext(ctx, "order_version_cross_partition", "order_uid", s.UID,
				"version", r.Version.String(), "version_time", r.Version.Time,
				"other", other.String(), "other_time", other.Time, "applied", s.Changed,
				"rule", "versions on different partitions are ordered by record timestamp, then partition")
		}
	}
	in.applied.Add(applied)
	in.stale.Add(stale)
	in.tombstones.Add(tombstones)
}

// fill puts the committed versions in the cache (after the database commit),
// then answers the API writes of the batch.
func (in *Ingest) fill(ctx context.Context, b *batch, out *pipeline.Emitter[*batch]) error {
	if in.deps.Cache != nil && len(b.stored) > 0 {
		in.deps.Cache.Fill(b.recs, b.stored)
	}
	if in.writes.waiting() {
		stored := make(map[string]orders.Stored, len(b.stored))
		for _, s := range b.stored {
			if cur, ok := stored[s.UID]; !ok || s.Version.Newer(cur.Version) {
				stored[s.UID] = s
			}
		}
		for _, it := range b.items {
			if !it.dead {
				in.writes.resolve(&it.msg.Record, writeOutcome{version: it.version, stored: stored[it.order.OrderUID]})
			}
		}
	}
	return out.Emit(ctx, b)
}

// purgeTombstones forgets tombstones older than the retention, every
// TombstonePurgeInterval, until ctx ends.
func (in *Ingest) purgeTombstones(ctx context.Context) {
	if in.cfg.TombstoneRetention <= 0 {
		return
	}
	t := time.NewTicker(in.cfg.TombstonePurgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := in.store.PurgeTombstones(ctx, time.Now().Add(-in.cfg.TombstoneRetention), nil)
		switch {
		case err != nil && ctx.Err() == nil:
			in.log.WarnContext(ctx, "tombstone_purge_failed", "err", err)
		case n > 0:
			in.purged.Add(uint64(n))
			in.log.InfoContext(ctx, "tombstones_purged", "count", n, "retention", in.cfg.TombstoneRetention)
		}
	}
}

// commit ends the batch's messages as stored (Done is a no-op for the ones the
// upsert dead-lettered); commitLoop commits their watermarks. It returns the
// fatal commit error, if any, which stops the flow.
func (in *Ingest) commit(ctx context.Context, b *batch) error {
	for _, it := range b.items {
		it.msg.Ack.Done()
	}
	return in.commitFailed(ctx)
}

// commitLoop commits what is done every CommitInterval, on a goroutine of its
// own, until ctx ends or a commit fails fatally (kept in commitErr). A commit is
// a Kafka transaction, several round trips to the broker (its first in a run
// takes a few hundred ms), and when the commit sink ran it, the batches behind it
// waited: the cache stage, then the writers, stopped while it ran, which was the
// tail of the freshness benchmark. Only messages that are done (stored and
// filled) are committed, whichever goroutine commits them.
func (in *Ingest) commitLoop(ctx context.Context) {
	defer func() { // as the pipeline's stages do: a panic fails the flow, cleanly
		if r := recover(); r != nil {
			err := fmt.Errorf("commit: panic: %v", r)
			in.commitErr.Store(&err)
		}
	}()
	every := in.cfg.CommitInterval
	if every <= 0 { // a valid configuration has a positive one
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := in.com.Commit(); err != nil {
			in.commitErr.Store(&err)
			return
		}
	}
}

// commitFailed returns the fatal error that stopped commitLoop, if any: only
// such an error stops the flow (others are retried by the next commit).
func (in *Ingest) commitFailed(context.Context) error {
	if err := in.commitErr.Load(); err != nil {
		return *err
	}
	return nil
}

// finalCommit commits what is done once the flow has drained.
func (in *Ingest) finalCommit(ctx context.Context) error {
	if err := in.commitFailed(ctx); err != nil {
		return err
	}
	return in.com.Commit()
}
