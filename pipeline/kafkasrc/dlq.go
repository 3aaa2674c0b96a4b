package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// DLQ header names (part of the outside contract).
const (
	HeaderError           = "x-error"
	HeaderErrorClass      = "x-error-class"
	HeaderStage           = "x-stage"
	HeaderSourceTopic     = "x-source-topic"
	HeaderSourcePartition = "x-source-partition"
	HeaderSourceOffset    = "x-source-offset"
	HeaderAttempts        = "x-attempts"
)

// DLQMaxMessageBytes is the largest dead letter the DLQ producer sends
// (message.max.bytes); topics created for dead letters should allow it.
const DLQMaxMessageBytes = 16 << 20

// Failure says why a message is dead-lettered.
type Failure struct {
	Class    string // decode, validation, data, ...
	Stage    string // the stage that gave up on it
	Reason   string
	Attempts int
}

// DLQConfig configures the dead-letter producer.
type DLQConfig struct {
	Brokers string
	Topic   string
	// RetryMin and RetryMax bound the backoff between attempts of a failed produce
	// (defaults 100 ms and 10 s).
	RetryMin, RetryMax time.Duration
	// Overrides are extra librdkafka producer properties applied last.
	Overrides kafka.ConfigMap
}

// DLQ produces dead letters with an idempotent producer (acks=all). A message's
// Ack is marked done only when the broker acknowledged its dead letter; a failed
// produce is retried with backoff until it succeeds or the DLQ is closed, never
// dropped. Safe for concurrent use.
type DLQ struct {
	cfg  DLQConfig
	p    *kafka.Producer
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc
	loop chan struct{}

	pending atomic.Int64
	mu      sync.Mutex
	byClass map[string]uint64
	wake    chan struct{}

	stopLogs func()
}

type dead struct {
	src      *Message
	msg      *kafka.Message
	failures int
}

// NewDLQ creates the producer and starts its delivery-report loop.
func NewDLQ(cfg DLQConfig, log *slog.Logger) (*DLQ, error) {
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(10*time.Second, cfg.RetryMin)
	}
	if log == nil {
		log = slog.Default()
	}
	cm := kafka.ConfigMap{
		"bootstrap.servers":          cfg.Brokers,
		"enable.metrics.push":        false, // no client telemetry push (KIP-714)
		"enable.idempotence":         true,
		"acks":                       "all",
		"linger.ms":                  5,
		"compression.type":           "lz4",
		"message.max.bytes":          DLQMaxMessageBytes,
		"message.timeout.ms":         60000,
		"go.delivery.report.fields":  "none",
		"queue.buffering.max.kbytes": 65536,
	}
	stopLogs := forwardLogs(cm, log)
	maps.Copy(cm, cfg.Overrides)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		stopLogs()
		return nil, fmt.Errorf("new dlq producer: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	d := &DLQ{
		cfg: cfg, p: p, log: log, ctx: ctx, stop: stop, loop: make(chan struct{}), stopLogs: stopLogs,
		byClass: map[string]uint64{}, wake: make(chan struct{}, 1),
	}
	go d.deliveries()
	return d, nil
}

// Send produces the dead letter of m: its key and value unchanged, its headers plus
// the x-* headers describing f. It returns once librdkafka accepted the record
// (blocking while its queue is full); the acknowledgement completes m.Ack later.
// It returns an error only when ctx ends or the DLQ is closed first.
func (d *DLQ) Send(ctx context.Context, m *Message, f Failure) error {
	hdrs := make([]kafka.Header, 0, len(m.Headers)+7)
	hdrs = append(hdrs, m.Headers...)
	hdrs = append(hdrs,
		kafka.Header{Key: HeaderError, Value: []byte(f.Reason)},
		kafka.Header{Key: HeaderErrorClass, Value: []byte(f.Class)},
		kafka.Header{Key: HeaderStage, Value: []byte(f.Stage)},
		kafka.Header{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderSourcePartition, Value: []byte(strconv.FormatInt(int64(m.Partition), 10))},
		kafka.Header{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
		kafka.Header{Key: HeaderAttempts, Value: []byte(strconv.Itoa(max(f.Attempts, 1)))},
	)
	dl := &dead{src: m}
	dl.msg = &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &d.cfg.Topic, Partition: kafka.PartitionAny},
		Key:            m.Key,
		Value:          m.Value,
		Headers:        hdrs,
		Opaque:         dl,
	}
	d.pending.Add(1)
	d.mu.Lock()
	d.byClass[f.Class]++
	d.mu.Unlock()
	if err := d.produce(ctx, dl); err != nil {
		d.pending.Add(-1)
		return fmt.Errorf("dlq send: %w", err)
	}
	return nil
}

// produce hands dl to librdkafka, waiting while its queue is full and retrying
// other errors with backoff, until ctx or the DLQ ends.
func (d *DLQ) produce(ctx context.Context, dl *dead) error {
	for attempt := 0; ; attempt++ {
		err := d.p.Produce(dl.msg, nil)
		if err == nil {
			return nil
		}
		wait := 5 * time.Millisecond
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			wait = d.backoff(attempt + 1)
			d.log.Error("dlq_produce_failed", "source_partition", dl.src.Partition, "source_offset", dl.src.Offset, "retry_in", wait, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.ctx.Done():
			return errors.New("dlq closed")
		case <-time.After(wait):
		}
	}
}

func (d *DLQ) backoff(n int) time.Duration {
	b := d.cfg.RetryMin << min(n, 20)
	if b <= 0 || b > d.cfg.RetryMax {
		b = d.cfg.RetryMax
	}
	return b/2 + rand.N(b/2+1)
}

func (d *DLQ) deliveries() {
	defer close(d.loop)
	for ev := range d.p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			dl, ok := e.Opaque.(*dead)
			if !ok {
				continue
			}
			if err := e.TopicPartition.Error; err != nil {
				dl.failures++
				wait := d.backoff(dl.failures)
				d.log.Error("dlq_delivery_failed", "source_partition", dl.src.Partition, "source_offset", dl.src.Offset, "retry_in", wait, "err", err)
				time.AfterFunc(wait, func() {
					if perr := d.produce(d.ctx, dl); perr != nil {
						d.log.Error("dlq_dropped_on_close", "source_partition", dl.src.Partition, "source_offset", dl.src.Offset)
						d.settle()
					}
				})
				continue
			}
			dl.src.Ack.Done()
			d.settle()
		case kafka.Error:
			d.log.Warn("dlq_producer_error", "code", e.Code().String(), "err", e)
		}
	}
}

func (d *DLQ) settle() {
	d.pending.Add(-1)
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Pending returns the number of dead letters not yet acknowledged.
func (d *DLQ) Pending() int64 { return d.pending.Load() }

// Counts returns the dead letters sent so far, by class.
func (d *DLQ) Counts() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.byClass)
}

// Flush waits until every dead letter sent so far is acknowledged, or ctx ends.
func (d *DLQ) Flush(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for d.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlq flush: %d unacknowledged: %w", d.pending.Load(), ctx.Err())
		case <-d.wake:
		case <-t.C:
		}
	}
	return nil
}

// Close waits up to timeout for outstanding dead letters, then closes the producer.
// Unacknowledged dead letters leave their messages uncommitted (they are redelivered).
func (d *DLQ) Close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.Flush(ctx); err != nil {
		d.log.Warn("dlq_close", "err", err)
	}
	d.stop()
	d.p.Close()
	<-d.loop
	d.stopLogs()
}
