// Package ingest is the order ingestion flow: Kafka "orders" → decode → validate →
// batch → upsert (one transaction per batch) → cache → commit offsets, with
// decode/validation failures and poison orders dead-lettered to "orders-dlq".
//
// Delivery is at-least-once: a message's offset is committed only when it and
// every earlier message of its partition are durable in PostgreSQL or
// acknowledged by the DLQ; the store's offset guard makes replays harmless.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// item is one decoded message travelling through the flow.
type item struct {
	msg   *kafkaedge.Message
	order orders.Order
	span  trace.SpanContext // the producer's span, from the message headers
}

// batch is a group of items after the upsert: recs are the records written (one
// per uid), applied the uids whose stored version changed.
type batch struct {
	items   []*item
	recs    []orders.Record
	applied []string
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

	state      atomic.Value // string: new, starting, running, stopped, failed
	mu         sync.Mutex
	runErr     error
	closeOnce  sync.Once
	lastCommit time.Time

	batches, written, applied, retries, splits, poison atomic.Uint64
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
	in := &Ingest{kafka: kafka, cfg: cfg, deps: deps, log: log, store: deps.Store}
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
	in.src, err = kafkaedge.NewSource(kafkaedge.SourceConfig{Brokers: kafka.Brokers, Topic: kafka.Topic, GroupID: kafka.GroupID, InstanceID: kafka.InstanceID}, in.com, log)
	if err != nil {
		in.com.Close()
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	in.p = pipeline.New(pipeline.Options{QueueCapacity: cfg.QueueCapacity, ShutdownTimeout: cfg.ShutdownTimeout, Metrics: engineMetrics})
	in.wire(in.p)
	return in, nil
}

// wire builds the flow; it reads like the diagram in the README.
func (in *Ingest) wire(p *pipeline.Pipeline) {
	batchCap := pipeline.Capacity(in.cfg.BatchQueueCapacity)
	fetched := pipeline.Source(p, "fetch", in.src.Run)
	decoded := pipeline.Map(p, "decode", fetched, in.decode, pipeline.OnReject(deadLetter("decode", messageAck)))
	valid := pipeline.Map(p, "validate", decoded, in.validate, pipeline.OnReject(deadLetter("validate", itemAck)))
	batches := pipeline.Batch(p, "batch", valid, pipeline.BatchPolicy[*item]{
		Count: in.cfg.BatchSize, Bytes: in.cfg.BatchBytes, Linger: in.cfg.BatchLinger,
		Size: func(it *item) int { return len(it.msg.Value) },
	})
	stored := pipeline.Map(p, "upsert", batches, in.upsert, batchCap)
	cached := pipeline.Map(p, "cache", stored, in.fill, batchCap)
	pipeline.Sink(p, "commit", cached, in.commit, batchCap,
		pipeline.Every(in.cfg.CommitInterval, in.commitTick), pipeline.OnClose(in.commitTick))
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
		err = in.p.Run(ctx)
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

// decode parses a message strictly and within the size bound; a bad message is
// rejected (dead-lettered with its decode error).
func (in *Ingest) decode(ctx context.Context, m *kafkaedge.Message, out *pipeline.Emitter[*item]) error {
	o, err := orders.Decode(m.Value, in.cfg.MaxMessageBytes)
	if err != nil {
		return pipeline.Reject(err)
	}
	it := &item{msg: m, order: o}
	if len(m.Headers) > 0 {
		it.span = trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), headerCarrier{&m.Record}))
	}
	return out.Emit(ctx, it)
}

// validate checks the business rules; an invalid order is rejected.
func (in *Ingest) validate(ctx context.Context, it *item, out *pipeline.Emitter[*item]) error {
	if err := orders.Validate(&it.order); err != nil {
		return pipeline.Reject(err)
	}
	return out.Emit(ctx, it)
}

// messageAck and itemAck give the Ack of what a stage rejects.
func messageAck(m *kafkaedge.Message) *kafkaedge.Ack { return m.Ack }
func itemAck(it *item) *kafkaedge.Ack                { return it.msg.Ack }

// deadLetter ends a message the stage rejected with a dead letter naming the
// error's class (decode, or the class of an *orders.InvalidError) and reason.
func deadLetter[T any](stage string, ack func(T) *kafkaedge.Ack) func(context.Context, T, error) error {
	return func(_ context.Context, v T, err error) error {
		class, reason := orders.ClassDecode, err.Error()
		if cause := errors.Unwrap(err); cause != nil {
			reason = cause.Error()
		}
		var inv *orders.InvalidError
		if errors.As(err, &inv) {
			class = inv.Class
		}
		ack(v).DeadLetter(kafkaedge.Failure{Class: class, Stage: stage, Reason: reason, Attempts: 1})
		return nil
	}
}

// upsert writes a batch: its records de-duplicated by uid (the latest wins),
// transient errors retried with backoff forever, data errors bisected down to the
// poison orders, which are dead-lettered; a fatal error stops the flow.
func (in *Ingest) upsert(ctx context.Context, items []*item, out *pipeline.Emitter[*batch]) error {
	b := &batch{items: make([]*item, 0, len(items))}
	for _, it := range items {
		if !it.msg.Ack.Revoked() { // partition given away: its results are never committed
			b.items = append(b.items, it)
		}
	}
	if len(b.items) == 0 {
		return nil
	}
	ctx, span := otel.Tracer("github.com/orderflow/orders-service/pipeline/ingest").Start(ctx, "ingest.upsert_batch",
		trace.WithLinks(links(b.items)...), trace.WithAttributes(attribute.Int("batch.size", len(b.items))))
	defer span.End()
	in.batches.Add(1)
	if err := in.write(ctx, b, latestByUID(b.items), 0); err != nil {
		span.RecordError(err)
		return err
	}
	return out.Emit(ctx, b)
}

// latestByUID keeps, per order uid, the last item of the batch (the highest
// offset of its partition), in batch order.
func latestByUID(items []*item) []*item {
	last := make(map[string]int, len(items))
	for i, it := range items {
		last[it.order.OrderUID] = i
	}
	out := make([]*item, 0, len(last))
	for i, it := range items {
		if last[it.order.OrderUID] == i {
			out = append(out, it)
		}
	}
	return out
}

func (in *Ingest) write(ctx context.Context, out *batch, part []*item, tries int) error {
	recs := make([]orders.Record, len(part))
	for i, it := range part {
		recs[i] = orders.Record{Order: it.order, Source: orders.Source{Partition: it.msg.Partition, Offset: it.msg.Offset}}
	}
	b := in.cfg.Retry().Backoff()
	for attempt := 1; ; attempt++ {
		applied, err := in.store.UpsertBatch(ctx, recs)
		if err == nil {
			out.recs = append(out.recs, recs...)
			out.applied = append(out.applied, applied...)
			in.written.Add(uint64(len(recs)))
			in.applied.Add(uint64(len(applied)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch dberr.Classify(err) {
		case dberr.Transient:
			in.retries.Add(1)
			wait := b.Next()
			in.log.WarnContext(ctx, "upsert_retry", "orders", len(recs), "attempt", attempt, "retry_in", wait, "err", err)
			if err := pipeline.Sleep(ctx, wait); err != nil {
				return err
			}
		case dberr.Data:
			if len(part) == 1 {
				it := part[0]
				in.poison.Add(1)
				in.log.WarnContext(ctx, "upsert_poison_order", "partition", it.msg.Partition, "offset", it.msg.Offset, "err", err)
				it.msg.Ack.DeadLetter(kafkaedge.Failure{Class: "data", Stage: "upsert", Reason: err.Error(), Attempts: tries + attempt})
				return nil
			}
			in.splits.Add(1)
			mid := len(part) / 2
			if err := in.write(ctx, out, part[:mid], tries+attempt); err != nil {
				return err
			}
			return in.write(ctx, out, part[mid:], tries+attempt)
		default:
			return fmt.Errorf("upsert: %w", err)
		}
	}
}

// fill puts the committed versions in the cache (after the database commit).
func (in *Ingest) fill(ctx context.Context, b *batch, out *pipeline.Emitter[*batch]) error {
	if in.deps.Cache != nil && len(b.applied) > 0 {
		in.deps.Cache.Fill(b.recs, b.applied)
	}
	return out.Emit(ctx, b)
}

// commit ends the batch's messages as stored (Done is a no-op for the ones the
// upsert dead-lettered) and commits the watermarks at most every CommitInterval.
func (in *Ingest) commit(ctx context.Context, b *batch) error {
	for _, it := range b.items {
		it.msg.Ack.Done()
	}
	if time.Since(in.lastCommit) < in.cfg.CommitInterval {
		return nil
	}
	return in.commitTick(ctx)
}

// commitTick commits what is done; only a fatal commit error stops the flow.
func (in *Ingest) commitTick(context.Context) error {
	in.lastCommit = time.Now()
	return in.com.Commit()
}
