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
	// TransactionalID names the producer's transactions (required). Give each
	// running instance its own: a second producer with the same id fences the
	// first. A stable id (one per static group member) lets a restarted instance
	// abort its predecessor's open transaction at once instead of waiting for
	// TxnTimeout.
	TransactionalID string
	// TxnTimeout is the broker-side bound of one transaction (transaction.timeout.ms;
	// default 30 s): a transaction left open by a killed process is aborted by the
	// broker after it.
	TxnTimeout time.Duration
	// OpTimeout bounds one commit attempt (default 20 s); an attempt that times out
	// is resumed by the next commit.
	OpTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts to initialise the
	// transactional producer (defaults 100 ms and 10 s).
	RetryMin, RetryMax time.Duration
	// Overrides are extra librdkafka producer properties applied last.
	Overrides kafka.ConfigMap
}

// txnState is where the producer's transaction stands between commits.
type txnState int

const (
	txnIdle       txnState = iota // no transaction open
	txnOpen                       // begun within the current commit
	txnCommitting                 // CommitTransaction failed retriably: the outcome is unknown
	txnAborting                   // must be aborted before the next one begins
)

// DLQ writes dead letters exactly once: Send attaches the dead letter to its
// message's Ack instead of producing it, and the Source's committer produces the
// held dead letters below the committed offsets in one Kafka transaction with
// those offsets (SendOffsetsToTransaction, KIP-447 fencing by the group
// generation). A crash, a lost partition or a broker failure before the commit
// aborts both: the messages are consumed again and dead-lettered again, and
// read_committed readers of the DLQ never see the aborted copy. Commits with no
// dead letter in range stay plain consumer commits.
//
// Attach it to the Source with Source.UseDLQ. Safe for concurrent use.
type DLQ struct {
	cfg DLQConfig
	p   *kafka.Producer
	log *slog.Logger

	mu          sync.Mutex // serialises transactions
	inited      bool
	state       txnState
	pendingOffs []kafka.TopicPartition // offsets of the transaction whose outcome is unknown
	pendingN    int                    // its dead letters
	fatal       atomic.Pointer[error]  // set once: the producer failed for good

	countsMu  sync.Mutex
	byClass   map[string]uint64
	committed atomic.Uint64
	txns      atomic.Uint64
	aborts    atomic.Uint64

	ctx      context.Context
	stop     context.CancelFunc
	loops    sync.WaitGroup
	stopLogs func()
}

// NewDLQ creates the transactional producer (it connects lazily; Start
// initialises its transactions in the background).
func NewDLQ(cfg DLQConfig, log *slog.Logger) (*DLQ, error) {
	if cfg.TransactionalID == "" {
		return nil, errors.New("new dlq producer: transactional id: empty")
	}
	if cfg.TxnTimeout <= 0 {
		cfg.TxnTimeout = 30 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 20 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(10*time.Second, cfg.RetryMin)
	}
	if log == nil {
		log = slog.Default()
	}
	txnMs := int(cfg.TxnTimeout / time.Millisecond)
	cm := kafka.ConfigMap{
		"bootstrap.servers":          cfg.Brokers,
		"enable.metrics.push":        false, // no client telemetry push (KIP-714)
		"transactional.id":           cfg.TransactionalID,
		"transaction.timeout.ms":     txnMs,
		"message.timeout.ms":         txnMs,
		"enable.idempotence":         true,
		"acks":                       "all",
		"linger.ms":                  5,
		"compression.type":           "lz4",
		"message.max.bytes":          DLQMaxMessageBytes,
		"go.delivery.reports":        false, // CommitTransaction fails if any dead letter was not delivered
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
	d := &DLQ{cfg: cfg, p: p, log: log, byClass: map[string]uint64{}, ctx: ctx, stop: stop, stopLogs: stopLogs}
	d.loops.Go(d.events)
	return d, nil
}

// Start initialises the producer's transactions in the background, retrying with
// backoff while the broker is unreachable. It fences an earlier producer with
// the same transactional id and aborts its open transaction, which would
// otherwise hold the group's offsets unstable until TxnTimeout.
func (d *DLQ) Start() {
	d.loops.Go(func() {
		for attempt := 1; ; attempt++ {
			d.mu.Lock()
			err := d.init()
			d.mu.Unlock()
			if err == nil || d.Err() != nil {
				return
			}
			wait := d.backoff(attempt)
			d.log.Warn("dlq_init_transactions_failed", "attempt", attempt, "retry_in", wait, "err", err)
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	})
}

// init runs InitTransactions once. Caller holds mu.
func (d *DLQ) init() error {
	if d.inited {
		return nil
	}
	if err := d.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
	defer cancel()
	if err := d.p.InitTransactions(ctx); err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsFatal() {
			return d.setFatal(fmt.Errorf("dlq: init transactions: %w", err))
		}
		return fmt.Errorf("dlq: init transactions: %w", err)
	}
	d.inited = true
	d.log.Info("dlq_transactions_ready", "transactional_id", d.cfg.TransactionalID)
	return nil
}

// setFatal records the error that stopped the producer for good and returns it.
func (d *DLQ) setFatal(err error) error {
	d.fatal.CompareAndSwap(nil, &err)
	d.log.Error("dlq_producer_fatal", "err", err)
	return err
}

// Send dead-letters m: its key and value unchanged, its headers plus the x-*
// headers describing f. The dead letter is held with m's Ack (which it marks
// done) and produced by the commit that covers m's offset. It fails only when
// the producer was fenced or failed fatally; the flow must stop then.
func (d *DLQ) Send(_ context.Context, m *Message, f Failure) error {
	if err := d.Err(); err != nil {
		return err
	}
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
	dl := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &d.cfg.Topic, Partition: kafka.PartitionAny},
		Key:            m.Key,
		Value:          m.Value,
		Headers:        hdrs,
		Opaque:         letterRef{partition: m.Partition, offset: m.Offset},
	}
	if m.Ack.deadLetter(dl) {
		d.countsMu.Lock()
		d.byClass[f.Class]++
		d.countsMu.Unlock()
	}
	return nil
}

// Err returns the fatal error that stopped the producer (fenced by another
// instance with the same transactional id, for one), nil while it works.
func (d *DLQ) Err() error {
	if p := d.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// commit is the Source's commitFunc when the DLQ is attached: a plain consumer
// commit when no dead letter is in range, else one transaction with the dead
// letters and the offsets. A transaction whose commit timed out is finished
// first; its offsets are returned instead of offs (the caller retries offs on its
// next commit).
func (d *DLQ) commit(c groupMember, offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.OpTimeout)
	defer cancel()
	switch d.state {
	case txnCommitting:
		if err := d.p.CommitTransaction(ctx); err != nil {
			return nil, d.failed(ctx, "commit (resumed)", err)
		}
		prev, n := d.pendingOffs, d.pendingN
		d.finish(n)
		d.log.Info("dlq_transaction_resumed", "dead_letters", n)
		return prev, nil
	case txnAborting, txnOpen:
		if err := d.abort(ctx); err != nil {
			return nil, err
		}
	}
	if len(letters) == 0 {
		return c.CommitOffsets(offs)
	}
	if err := d.init(); err != nil {
		return nil, err
	}
	meta, err := c.GetConsumerGroupMetadata()
	if err != nil {
		return nil, fmt.Errorf("dlq: group metadata: %w", err)
	}
	if err := d.p.BeginTransaction(); err != nil {
		return nil, d.failed(ctx, "begin", err)
	}
	d.state = txnOpen
	for _, m := range letters {
		if err := d.produce(ctx, m); err != nil {
			return nil, d.failed(ctx, "produce", err)
		}
	}
	if err := d.p.Flush(int(d.cfg.OpTimeout / time.Millisecond)); err > 0 {
		return nil, d.failed(ctx, "produce", fmt.Errorf("%d dead letters not delivered in %s", err, d.cfg.OpTimeout))
	}
	crashPoint("txn-produced")
	if err := d.p.SendOffsetsToTransaction(ctx, offs, meta); err != nil {
		return nil, d.failed(ctx, "send offsets", err)
	}
	crashPoint("txn-offsets-sent")
	d.pendingOffs, d.pendingN = offs, len(letters)
	if err := d.p.CommitTransaction(ctx); err != nil {
		return nil, d.failed(ctx, "commit", err)
	}
	d.finish(len(letters))
	return offs, nil
}

// groupMember is the consumer whose offsets a commit moves (a *kafka.Consumer).
type groupMember interface {
	CommitOffsets([]kafka.TopicPartition) ([]kafka.TopicPartition, error)
	GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error)
}

// idle forgets the transaction that just ended. Caller holds mu.
func (d *DLQ) idle() { d.state, d.pendingOffs, d.pendingN = txnIdle, nil, 0 }

// finish records a committed transaction. Caller holds mu.
func (d *DLQ) finish(letters int) {
	d.idle()
	d.committed.Add(uint64(letters))
	d.txns.Add(1)
}

// failed handles an error of the transaction step op: a fatal error stops the
// producer for good; a retriable failure of CommitTransaction leaves the
// transaction to be committed again by the next commit (its outcome is unknown);
// anything else aborts it. Caller holds mu.
func (d *DLQ) failed(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("dlq transaction %s: %w", op, err)
	var kerr kafka.Error
	isKafka := errors.As(err, &kerr)
	switch {
	case isKafka && kerr.IsFatal():
		return d.setFatal(err)
	case d.pendingOffs != nil && isKafka && kerr.IsRetriable() && !kerr.TxnRequiresAbort():
		d.state = txnCommitting
		d.log.Warn("dlq_commit_outcome_unknown", "err", err)
		return err
	}
	d.state = txnAborting
	if aerr := d.abort(ctx); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// abort aborts the open transaction; on failure the next commit tries again.
// Caller holds mu.
func (d *DLQ) abort(ctx context.Context) error {
	if err := d.p.AbortTransaction(ctx); err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsFatal() {
			return d.setFatal(fmt.Errorf("dlq transaction abort: %w", err))
		}
		d.state = txnAborting
		return fmt.Errorf("dlq transaction abort: %w", err)
	}
	d.idle()
	d.aborts.Add(1)
	d.log.Warn("dlq_transaction_aborted")
	return nil
}

// produce hands m to librdkafka, waiting while its queue is full.
func (d *DLQ) produce(ctx context.Context, m *kafka.Message) error {
	for {
		err := d.p.Produce(m, nil)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
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

// events drains the producer's event channel (errors; delivery reports are off).
func (d *DLQ) events() {
	for ev := range d.p.Events() {
		if e, ok := ev.(kafka.Error); ok {
			d.log.Warn("dlq_producer_error", "code", e.Code().String(), "err", e)
		}
	}
}

// Counts returns the dead letters handed to the DLQ so far, by class (a message
// dead-lettered again after a crash or a lost partition counts again).
func (d *DLQ) Counts() map[string]uint64 {
	d.countsMu.Lock()
	defer d.countsMu.Unlock()
	return maps.Clone(d.byClass)
}

// Committed returns how many dead letters were committed to the DLQ topic, and
// in how many transactions; Aborted how many transactions were aborted.
func (d *DLQ) Committed() (letters, txns uint64) { return d.committed.Load(), d.txns.Load() }

// Aborted returns how many transactions were aborted.
func (d *DLQ) Aborted() uint64 { return d.aborts.Load() }

// Close closes the producer; call it after the Source was closed (its last
// commits use the producer). An open transaction is aborted by the broker.
func (d *DLQ) Close() {
	d.stop()
	d.mu.Lock()
	if d.state == txnCommitting || d.state == txnAborting {
		d.log.Warn("dlq_close_with_unfinished_transaction", "state", int(d.state))
	}
	d.mu.Unlock()
	d.p.Close()
	d.loops.Wait()
	d.stopLogs()
}
