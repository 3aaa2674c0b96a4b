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
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/pipeline"
	"github.com/orderflow/orders-service/pipeline/kafkasrc"
)

// item is one decoded message travelling through the flow.
type item struct {
	msg   *kafkasrc.Message
	order orders.Order
	span  trace.SpanContext // the producer's span, from the message headers
	dead  bool              // dead-lettered by the upsert stage; its DLQ ack completes it
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
	cfg   Config
	deps  Deps
	log   *slog.Logger
	src   *kafkasrc.Source
	dlq   *kafkasrc.DLQ
	p     *pipeline.Pipeline
	store BatchWriter

	state      atomic.Value // string: new, starting, running, stopped, failed
	mu         sync.Mutex
	runErr     error
	closeOnce  sync.Once
	lastCommit time.Time

	batches, written, applied, retries, splits, poison atomic.Uint64
}

// New builds the flow and its Kafka clients (they connect lazily). Call Run once,
// or Close if Run will not be called.
func New(cfg Config, deps Deps) (*Ingest, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Classify == nil {
		return nil, errors.New("ingest: new: Store and Classify are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	log := deps.Logger.With("component", "ingest")
	in := &Ingest{cfg: cfg, deps: deps, log: log, store: deps.Store}
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
	in.src, err = kafkasrc.NewSource(kafkasrc.SourceConfig{Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.GroupID, InstanceID: cfg.InstanceID}, log)
	if err != nil {
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	in.dlq, err = kafkasrc.NewDLQ(kafkasrc.DLQConfig{
		Brokers: cfg.Brokers, Topic: cfg.DLQTopic, TransactionalID: cfg.transactionalID(),
		RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
	}, log)
	if err != nil {
		in.src.Close()
		return nil, fmt.Errorf("ingest: new: %w", err)
	}
	in.src.UseDLQ(in.dlq)
	in.p = pipeline.New(pipeline.Options{QueueCapacity: cfg.QueueCapacity, ShutdownTimeout: cfg.ShutdownTimeout, Metrics: engineMetrics})
	in.wire(in.p)
	return in, nil
}

// wire builds the flow; it reads like the diagram in ARCHITECTURE.md.
func (in *Ingest) wire(p *pipeline.Pipeline) {
	batchCap := pipeline.Capacity(in.cfg.BatchQueueCapacity)
	fetched := pipeline.Source(p, "fetch", in.src.Run)
	decoded := pipeline.Map(p, "decode", fetched, in.decode, pipeline.OnReject(in.rejectMessage("decode")))
	valid := pipeline.Map(p, "validate", decoded, in.validate, pipeline.OnReject(in.rejectItem("validate")))
	batches := pipeline.Batch(p, "batch", valid, pipeline.BatchPolicy[*item]{
		Count: in.cfg.BatchSize, Bytes: in.cfg.BatchBytes, Linger: in.cfg.BatchLinger,
		Size: func(it *item) int { return len(it.msg.Value) },
	})
	stored := pipeline.Map(p, "upsert", batches, in.upsert, batchCap)
	cached := pipeline.Map(p, "cache", stored, in.fill, batchCap)
	pipeline.Sink(p, "commit", cached, in.commit, batchCap,
		pipeline.Every(in.cfg.CommitInterval, in.commitTick), pipeline.OnClose(in.commitTick)) // after the last batch: commit what is done, with its dead letters
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
	err := in.ensureTopics(ctx)
	if err == nil {
		in.state.Store("running")
		in.dlq.Start()
		in.log.Info("ingest_started", "topic", in.cfg.Topic, "group", in.cfg.GroupID, "dlq", in.cfg.DLQTopic, "instance", in.cfg.InstanceID)
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

func (in *Ingest) release() {
	in.closeOnce.Do(func() {
		if err := in.src.Close(); err != nil { // its last commits use the DLQ's producer
			in.log.Warn("kafka_close", "err", err)
		}
		in.dlq.Close()
	})
}

func (in *Ingest) ensureTopics(ctx context.Context) error {
	if !in.cfg.CreateTopics {
		return nil
	}
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := kafkasrc.EnsureTopics(tctx, in.cfg.Brokers,
			kafkasrc.Topic{Name: in.cfg.Topic, Partitions: in.cfg.Partitions, ReplicationFactor: in.cfg.ReplicationFactor},
			kafkasrc.Topic{
				Name: in.cfg.DLQTopic, Partitions: in.cfg.Partitions, ReplicationFactor: in.cfg.ReplicationFactor,
				// Dead letters include oversized messages: allow what the DLQ producer allows.
				Config: map[string]string{"max.message.bytes": strconv.Itoa(kafkasrc.DLQMaxMessageBytes)},
			})
		cancel()
		if err == nil {
			return nil
		}
		wait := in.backoff(attempt)
		in.log.Warn("ensure_topics_failed", "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil // stopped before starting: a clean stop
		case <-time.After(wait):
		}
	}
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
func (in *Ingest) decode(ctx context.Context, m *kafkasrc.Message, out *pipeline.Emitter[*item]) error {
	o, err := orders.Decode(m.Value, in.cfg.MaxMessageBytes)
	if err != nil {
		return pipeline.Reject(err)
	}
	it := &item{msg: m, order: o}
	if len(m.Headers) > 0 {
		it.span = trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), headerCarrier(m.Headers)))
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

func (in *Ingest) rejectMessage(stage string) func(context.Context, *kafkasrc.Message, error) error {
	return func(ctx context.Context, m *kafkasrc.Message, err error) error {
		class, reason := orders.ClassDecode, err.Error()
		if cause := errors.Unwrap(err); cause != nil {
			reason = cause.Error()
		}
		var inv *orders.InvalidError
		if errors.As(err, &inv) {
			class = inv.Class
		}
		return in.dlq.Send(ctx, m, kafkasrc.Failure{Class: class, Stage: stage, Reason: reason, Attempts: 1})
	}
}

func (in *Ingest) rejectItem(stage string) func(context.Context, *item, error) error {
	rm := in.rejectMessage(stage)
	return func(ctx context.Context, it *item, err error) error { return rm(ctx, it.msg, err) }
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

func (in *Ingest) write(ctx context.Context, b *batch, part []*item, tries int) error {
	recs := make([]orders.Record, len(part))
	for i, it := range part {
		recs[i] = orders.Record{Order: it.order, Source: orders.Source{Partition: it.msg.Partition, Offset: it.msg.Offset}}
	}
	for attempt := 1; ; attempt++ {
		applied, err := in.store.UpsertBatch(ctx, recs)
		if err == nil {
			b.recs = append(b.recs, recs...)
			b.applied = append(b.applied, applied...)
			in.written.Add(uint64(len(recs)))
			in.applied.Add(uint64(len(applied)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch in.deps.Classify(err) {
		case Transient:
			in.retries.Add(1)
			wait := in.backoff(attempt)
			in.log.WarnContext(ctx, "upsert_retry", "orders", len(recs), "attempt", attempt, "retry_in", wait, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		case Data:
			if len(part) == 1 {
				it := part[0]
				it.dead = true
				in.poison.Add(1)
				in.log.WarnContext(ctx, "upsert_poison_order", "partition", it.msg.Partition, "offset", it.msg.Offset, "err", err)
				return in.dlq.Send(ctx, it.msg, kafkasrc.Failure{Class: "data", Stage: "upsert", Reason: err.Error(), Attempts: tries + attempt})
			}
			in.splits.Add(1)
			mid := len(part) / 2
			if err := in.write(ctx, b, part[:mid], tries+attempt); err != nil {
				return err
			}
			return in.write(ctx, b, part[mid:], tries+attempt)
		default:
			return fmt.Errorf("upsert: %w", err)
		}
	}
}

// backoff is capped exponential with jitter: in [d/2, d], d = min(RetryMax, RetryMin·2^(n-1)).
func (in *Ingest) backoff(n int) time.Duration {
	d := in.cfg.RetryMin << min(n-1, 30)
	if d <= 0 || d > in.cfg.RetryMax {
		d = in.cfg.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

// fill puts the committed versions in the cache (after the database commit).
func (in *Ingest) fill(ctx context.Context, b *batch, out *pipeline.Emitter[*batch]) error {
	if in.deps.Cache != nil && len(b.applied) > 0 {
		in.deps.Cache.Fill(b.recs, b.applied)
	}
	return out.Emit(ctx, b)
}

// commit completes the batch's messages (dead-lettered ones were completed by the
// DLQ, which holds their dead letters for the commit) and commits the watermarks
// at most every CommitInterval.
func (in *Ingest) commit(ctx context.Context, b *batch) error {
	for _, it := range b.items {
		if !it.dead {
			it.msg.Ack.Done()
		}
	}
	if time.Since(in.lastCommit) < in.cfg.CommitInterval {
		return nil
	}
	return in.commitTick(ctx)
}

func (in *Ingest) commitTick(context.Context) error {
	in.lastCommit = time.Now()
	if err := in.src.Commit(); err != nil {
		if ferr := in.dlq.Err(); ferr != nil {
			return ferr // fenced by another producer with our transactional id: stop
		}
		in.log.Warn("commit_failed", "err", err) // retried on the next tick
	}
	return nil
}
