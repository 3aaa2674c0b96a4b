package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/orderflow/orders-service/pipeline"
)

// CommitterConfig configures the Committer.
type CommitterConfig struct {
	Brokers  string
	Topic    string // the input topic, whose offsets it commits
	DLQTopic string // where dead letters go
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
	// Retry paces the attempts to initialise the transactional producer.
	Retry pipeline.Retry
	// MaxHeldBytes bounds the dead letters held for the next commit; above it the
	// Source fetches nothing new until a commit writes them (default 64 MiB).
	MaxHeldBytes int64
}

// txnState is where the producer's transaction stands between commits.
type txnState int

const (
	txnIdle       txnState = iota // no transaction open
	txnOpen                       // begun within the current commit
	txnCommitting                 // CommitTransaction failed retriably: the outcome is unknown
	txnAborting                   // must be aborted before the next one begins
)

// Committer ends what the Source handed out: it owns the per-partition watermarks
// of ended messages (see Ack), the dead letters held with them, the
// transactional producer that writes those, and every offset commit of the group
// member. A commit with no dead letter in range is a plain consumer commit; one
// with dead letters is one Kafka transaction (the dead letters, then the offsets
// with SendOffsetsToTransaction and the consumer's group metadata, so a member
// whose partitions moved on is fenced by its generation). A crash, a lost
// partition or a failed step aborts both: the messages are consumed again and
// dead-lettered again, and read_committed readers of the DLQ never see the
// aborted copy.
//
// Create it before the Source (NewSource binds the consumer to it) and close it
// after the Source. Safe for concurrent use.
type Committer struct {
	cfg    CommitterConfig
	p      *kafka.Producer
	log    *slog.Logger
	tr     *tracker
	member atomic.Pointer[groupMember] // the Source's consumer while it is open

	mu          sync.Mutex // serialises transactions
	inited      bool
	state       txnState
	pendingOffs []kafka.TopicPartition // offsets of the transaction whose outcome is unknown
	pendingN    int                    // its dead letters
	fatal       atomic.Pointer[error]  // set once: the producer failed for good

	committed atomic.Uint64
	txns      atomic.Uint64
	aborts    atomic.Uint64
	renewals  atomic.Uint64
	truncated atomic.Uint64

	// The commits' health: since when they fail (unix nanoseconds, 0 while they
	// succeed), the last failure, and whether it needs an operator.
	failingSince atomic.Int64
	lastFailure  atomic.Pointer[string]
	needsOp      atomic.Bool
	retryAt      atomic.Int64 // unix nanoseconds: Commit does nothing before it (backoff after a failure)
	backoff      atomic.Int64 // the current backoff (doubles per failure up to maxCommitBackoff)
	attempts     atomic.Int64 // Commit calls running
	attemptSince atomic.Int64 // unix nanoseconds: start of the oldest one running, 0 if none

	cm         kafka.ConfigMap // the producer's configuration, for renew
	stuckSince time.Time       // first failure of a run of failed transactional steps; guarded by mu
	unresolved bool            // renewed with pendingOffs of unknown outcome; guarded by mu

	ctx      context.Context
	stop     context.CancelFunc
	loops    sync.WaitGroup
	stopLogs func()
}

// groupMember is the consumer whose offsets a commit moves (a *kafka.Consumer).
type groupMember interface {
	CommitOffsets([]kafka.TopicPartition) ([]kafka.TopicPartition, error)
	GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error)
	Committed([]kafka.TopicPartition, int) ([]kafka.TopicPartition, error)
}

// withDefaults returns cfg with every unset field at its default.
func (cfg CommitterConfig) withDefaults() CommitterConfig {
	if cfg.TxnTimeout <= 0 {
		cfg.TxnTimeout = 30 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 20 * time.Second
	}
	if cfg.MaxHeldBytes <= 0 {
		cfg.MaxHeldBytes = 64 << 20
	}
	return cfg
}

// NewCommitter creates the committer and its transactional producer (it connects
// lazily; Start initialises its transactions in the background).
func NewCommitter(cfg CommitterConfig, log *slog.Logger) (*Committer, error) {
	if cfg.TransactionalID == "" {
		return nil, errors.New("new committer: transactional id: empty")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	cm := transactionalConfig(cfg)
	stopLogs := forwardLogs(cm, log)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		stopLogs()
		return nil, fmt.Errorf("new committer: producer: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Committer{cfg: cfg, p: p, cm: cm, log: log, tr: newTracker(cfg.Topic, cfg.DLQTopic), ctx: ctx, stop: stop, stopLogs: stopLogs}
	go c.events(p) // ends when p is closed (by Close, or after renew)
	return c, nil
}

// Start initialises the producer's transactions in the background, retrying with
// backoff while the broker is unreachable. It fences an earlier producer with
// the same transactional id and aborts its open transaction, which would
// otherwise hold the group's offsets unstable until TxnTimeout.
func (c *Committer) Start() {
	c.loops.Go(func() {
		b := c.cfg.Retry.Backoff()
		for attempt := 1; ; attempt++ {
			c.mu.Lock()
			err := c.init()
			c.mu.Unlock()
			if err == nil || c.Err() != nil {
				return
			}
			wait := b.Next()
			c.log.Warn("dlq_init_transactions_failed", "attempt", attempt, "retry_in", wait, "err", err)
			if pipeline.Sleep(c.ctx, wait) != nil {
				return
			}
		}
	})
}

// Commit commits the watermark of every owned partition that advanced, with the
// dead letters below it. A failed commit is logged and retried by the next one
// (its dead letters stay held); Commit returns an error only when the flow must
// stop: the producer was fenced by another instance with the same transactional
// id, or failed for good.
func (c *Committer) Commit() error {
	if at := c.retryAt.Load(); at != 0 && time.Now().UnixNano() < at {
		return nil // backing off after a failed commit; the next call past it retries
	}
	if c.attempts.Add(1) == 1 {
		c.attemptSince.Store(time.Now().UnixNano())
	}
	err := c.tr.commit(c.commitFunc())
	if c.attempts.Add(-1) == 0 {
		c.attemptSince.Store(0)
	}
	if err != nil {
		if ferr := c.Err(); ferr != nil {
			return ferr
		}
		c.failing(err)
		return nil
	}
	if c.failingSince.Swap(0) != 0 {
		c.needsOp.Store(false)
		c.retryAt.Store(0)
		c.backoff.Store(0)
		c.log.Info("commit_recovered")
	}
	return nil
}

// maxCommitBackoff caps the pause between failed commits, so that a commit path
// that cannot make progress does not open a transaction every 100 ms.
const maxCommitBackoff = 5 * time.Second

// failing records a failed commit: the start of a run of failures, the next
// backoff, the error (logged once per distinct text, so a stall does not flood
// the log).
func (c *Committer) failing(err error) {
	c.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	b := min(max(2*time.Duration(c.backoff.Load()), 100*time.Millisecond), maxCommitBackoff)
	c.backoff.Store(int64(b))
	c.retryAt.Store(time.Now().Add(b).UnixNano())
	c.needsOp.Store(errors.Is(err, ErrNeedsOperator))
	msg := err.Error()
	if prev := c.lastFailure.Swap(&msg); prev == nil || *prev != msg {
		c.log.Warn("commit_failed", "err", err, "needs_operator", errors.Is(err, ErrNeedsOperator))
	}
}

// FailingFor returns how long the commits have failed without a success in
// between (0 while they succeed).
// A commit still running counts from its start: a transaction whose letters
// the broker keeps refusing with a retriable error hangs for the whole
// OpTimeout before it fails.
func (c *Committer) FailingFor() time.Duration {
	if since := c.failingSince.Load(); since != 0 {
		return time.Since(time.Unix(0, since))
	}
	if since := c.attemptSince.Load(); since != 0 {
		return time.Since(time.Unix(0, since))
	}
	return 0
}

// Stalled returns an error when the commits cannot make progress: they have
// failed for longer than bound, or the last failure needs an operator (see
// ErrNeedsOperator). Offsets then stop, lag grows on every partition, and the
// held dead letters reach their bound and stop the fetching: /ready says so.
func (c *Committer) Stalled(bound time.Duration) error {
	d := c.FailingFor()
	if d == 0 || (d <= bound && !c.needsOp.Load()) {
		return nil
	}
	last := ""
	if p := c.lastFailure.Load(); p != nil {
		last = *p
	}
	return fmt.Errorf("kafka: no offset committed for %s: %s", d.Round(time.Second), last)
}

// Truncated returns how many dead letters were cut to fit the DLQ topic.
func (c *Committer) Truncated() uint64 { return c.truncated.Load() }

// bind sets the consumer whose offsets the committer commits (NewSource calls
// it; Source.Close unbinds it with nil once the consumer is closed).
func (c *Committer) bind(m groupMember) {
	if m == nil {
		c.member.Store(nil)
		return
	}
	c.member.Store(&m)
}

// commitFunc commits through the bound consumer.
func (c *Committer) commitFunc() commitFunc {
	return func(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
		m := c.member.Load()
		if m == nil {
			return nil, errors.New("commit: consumer closed")
		}
		return c.commit(*m, offs, letters)
	}
}

// assign starts tracking newly assigned partitions (from the rebalance callback).
func (c *Committer) assign(partitions []int32) { c.tr.assign(partitions) }

// revoke commits what is done for partitions (unless the assignment was lost),
// then forgets them (from the rebalance callback).
func (c *Committer) revoke(partitions []int32, lost bool) {
	if err := c.tr.revoke(partitions, lost, c.commitFunc()); err != nil {
		c.log.Warn("kafka_commit_on_revoke_failed", "partitions", partitions, "err", err)
	}
}

// track registers a fetched message; its Ack reports back here.
func (c *Committer) track(m *Message) {
	m.Ack = c.tr.track(m.Partition, m.Offset)
	m.Ack.rec = &m.Record
}

// roomForLetters reports whether the held dead letters are under MaxHeldBytes.
func (c *Committer) roomForLetters() bool { return c.tr.heldBytes.Load() < c.cfg.MaxHeldBytes }

// Offsets returns the committer's view of every owned partition.
func (c *Committer) Offsets() []PartitionOffsets { return c.tr.snapshot() }

// HeldDeadLetters returns how many dead letters wait for the commit that writes them.
func (c *Committer) HeldDeadLetters() int64 { return c.tr.held.Load() }

// DeadLetters returns the dead letters held so far, by class (a message
// dead-lettered again after a crash or a lost partition counts again).
func (c *Committer) DeadLetters() map[string]uint64 { return c.tr.classes() }

// Transactions returns how many dead letters were committed to the DLQ topic, in
// how many transactions, and how many transactions were aborted.
func (c *Committer) Transactions() (letters, committed, aborted uint64) {
	return c.committed.Load(), c.txns.Load(), c.aborts.Load()
}

// init runs InitTransactions once. Caller holds mu.
func (c *Committer) init() error {
	if c.inited {
		return nil
	}
	if err := c.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.OpTimeout)
	defer cancel()
	if err := c.p.InitTransactions(ctx); err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsFatal() {
			return c.setFatal(fmt.Errorf("dlq: init transactions: %w", err))
		}
		return fmt.Errorf("dlq: init transactions: %w", err)
	}
	c.inited = true
	c.log.Info("dlq_transactions_ready", "transactional_id", c.cfg.TransactionalID)
	return nil
}

// setFatal records the error that stopped the producer for good and returns it.
func (c *Committer) setFatal(err error) error {
	c.fatal.CompareAndSwap(nil, &err)
	c.log.Error("dlq_producer_fatal", "err", err)
	return err
}

// Err returns the fatal error that stopped the producer (fenced by another
// instance with the same transactional id, for one), nil while it works.
func (c *Committer) Err() error {
	if p := c.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// commit is one commit through member: a plain consumer commit when no dead
// letter is in range, else one transaction with the dead letters and the
// offsets. A transaction whose commit timed out is finished first; its offsets
// are returned instead of offs (the tracker retries offs on its next commit).
func (c *Committer) commit(member groupMember, offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.OpTimeout)
	defer cancel()
	if c.state != txnIdle && !c.stuckSince.IsZero() && time.Since(c.stuckSince) > c.cfg.TxnTimeout {
		// The producer has not finished a transaction for longer than the broker
		// keeps one open: librdkafka can stay stuck after a broker restart (its
		// requests to the coordinator queued, never sent). A new producer with the
		// same transactional id ends whatever is open.
		if err := c.renew(fmt.Errorf("no transactional step succeeded for %s (state %d)", time.Since(c.stuckSince).Round(time.Second), c.state)); err != nil {
			return nil, err
		}
	}
	if c.unresolved {
		return c.resolve(member)
	}
	switch c.state {
	case txnCommitting:
		if err := c.p.CommitTransaction(ctx); err != nil {
			return nil, c.failed(ctx, "commit (resumed)", err)
		}
		prev, n := c.pendingOffs, c.pendingN
		c.finish(n)
		c.log.Info("dlq_transaction_resumed", "dead_letters", n)
		return prev, nil
	case txnAborting, txnOpen:
		if err := c.abort(ctx); err != nil {
			return nil, err
		}
	}
	if len(letters) == 0 {
		res, err := member.CommitOffsets(offs)
		if err == nil {
			c.stuckSince = time.Time{}
		}
		return res, err
	}
	if err := c.init(); err != nil {
		return nil, err
	}
	meta, err := member.GetConsumerGroupMetadata()
	if err != nil {
		return nil, fmt.Errorf("dlq: group metadata: %w", err)
	}
	if err := c.p.BeginTransaction(); err != nil {
		return nil, c.failed(ctx, "begin", err)
	}
	c.state = txnOpen
	reports := make(chan kafka.Event, len(letters))
	for _, m := range letters {
		err := c.produce(ctx, m, reports)
		for err != nil && letterTooLarge(err) { // over the producer's own message.max.bytes
			fitted, ok := c.fit(m, err)
			if !ok {
				break
			}
			m = fitted
			err = c.produce(ctx, m, reports)
		}
		if err != nil {
			return nil, c.failed(ctx, "produce", c.classify(err))
		}
	}
	if n := c.p.Flush(int(c.cfg.OpTimeout / time.Millisecond)); n > 0 {
		return nil, c.failed(ctx, "produce", fmt.Errorf("%d dead letters not delivered in %s", n, c.cfg.OpTimeout))
	}
	if err := c.undelivered(reports); err != nil {
		return nil, c.failed(ctx, "produce", err)
	}
	crashPoint("txn-produced")
	if err := c.p.SendOffsetsToTransaction(ctx, offs, meta); err != nil {
		return nil, c.failed(ctx, "send offsets", err)
	}
	crashPoint("txn-offsets-sent")
	c.pendingOffs, c.pendingN = offs, len(letters)
	if err := c.p.CommitTransaction(ctx); err != nil {
		return nil, c.failed(ctx, "commit", err)
	}
	c.finish(len(letters))
	return offs, nil
}

// idle forgets the transaction that just ended. Caller holds mu.
func (c *Committer) idle() {
	c.state, c.pendingOffs, c.pendingN = txnIdle, nil, 0
	c.stuckSince = time.Time{}
}

// finish records a committed transaction. Caller holds mu.
func (c *Committer) finish(letters int) {
	c.idle()
	c.committed.Add(uint64(letters))
	c.txns.Add(1)
}

// failed handles an error of the transaction step op: a fatal error stops the
// producer for good; a retriable failure of CommitTransaction leaves the
// transaction to be committed again by the next commit (its outcome is unknown);
// anything else aborts it. Caller holds mu.
func (c *Committer) failed(ctx context.Context, op string, err error) error {
	err = fmt.Errorf("dlq transaction %s: %w", op, err)
	if c.stuckSince.IsZero() {
		c.stuckSince = time.Now()
	}
	var kerr kafka.Error
	isKafka := errors.As(err, &kerr)
	switch {
	case isKafka && kerr.IsFatal():
		return c.fatalOrRenew(err)
	case c.pendingOffs != nil && isKafka && kerr.IsRetriable() && !kerr.TxnRequiresAbort():
		c.state = txnCommitting
		c.log.Warn("dlq_commit_outcome_unknown", "err", err)
		return err
	}
	c.state = txnAborting
	if aerr := c.abort(ctx); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// abort aborts the open transaction; on failure the next commit tries again.
// Caller holds mu.
func (c *Committer) abort(ctx context.Context) error {
	if err := c.p.AbortTransaction(ctx); err != nil {
		if c.stuckSince.IsZero() {
			c.stuckSince = time.Now()
		}
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsFatal() {
			return c.fatalOrRenew(fmt.Errorf("dlq transaction abort: %w", err))
		}
		c.state = txnAborting
		return fmt.Errorf("dlq transaction abort: %w", err)
	}
	c.idle()
	c.aborts.Add(1)
	c.log.Warn("dlq_transaction_aborted")
	return nil
}

// produce hands m to librdkafka, waiting while its queue is full; its delivery
// report goes to reports.
func (c *Committer) produce(ctx context.Context, m *kafka.Message, reports chan kafka.Event) error {
	for {
		err := c.p.Produce(m, reports)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return err
		}
		if pipeline.Sleep(ctx, 5*time.Millisecond) != nil {
			return ctx.Err()
		}
	}
}

// undelivered reads the delivery reports of a transaction's dead letters (all
// in reports once Flush returned) and returns the first failure, classified.
// Each letter refused as too large is replaced, among the held letters, by a
// smaller one (fitLetter) for the next attempt: so that one letter the DLQ topic
// cannot take never holds back every commit.
func (c *Committer) undelivered(reports chan kafka.Event) error {
	var first error
	for {
		select {
		case ev := <-reports:
			m, ok := ev.(*kafka.Message)
			if !ok || m.TopicPartition.Error == nil {
				continue
			}
			err := m.TopicPartition.Error
			if letterTooLarge(err) {
				if held := c.tr.heldLetter(m.Opaque); held != nil {
					c.fit(held, err)
				}
			}
			if first == nil {
				first = c.classify(fmt.Errorf("dead letter of %s: %w", refText(m.Opaque), err))
			}
		default:
			return first
		}
	}
}

// fit replaces the held letter m, refused as too large (why), by a smaller one
// (fitLetter) and returns it; ok is false when nothing is left to cut.
func (c *Committer) fit(m *kafka.Message, why error) (*kafka.Message, bool) {
	fitted, ok := fitLetter(m)
	if !ok {
		return m, false
	}
	if c.tr.replaceLetter(fitted) {
		c.truncated.Add(1)
		c.log.Warn("dlq_letter_truncated", "source", refText(m.Opaque), "value_bytes", len(m.Value),
			"kept_bytes", len(fitted.Value), "err", why)
	}
	return fitted, true
}

// refText names a letter's source position ("partition@offset").
func refText(opaque any) string {
	if ref, ok := opaque.(letterRef); ok {
		return strconv.Itoa(int(ref.partition)) + "@" + strconv.FormatInt(ref.offset, 10)
	}
	return "?"
}

// letterTooLarge reports whether err refuses a record for its size.
func letterTooLarge(err error) bool {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrRecordListTooLarge, kafka.ErrInvalidMsgSize:
		return true
	}
	return false
}

// ErrNeedsOperator marks a commit failure that retrying alone does not end: the
// DLQ topic or the transactional id is not authorised, a broker policy refuses
// the letters, the topic does not take them. The commits are retried (the
// operator may fix it), and the Committer reports itself stalled at once.
var ErrNeedsOperator = errors.New("needs an operator")

// classify wraps err with ErrNeedsOperator when retrying cannot help.
func (c *Committer) classify(err error) error {
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return err
	}
	switch kerr.Code() {
	case kafka.ErrTopicAuthorizationFailed, kafka.ErrClusterAuthorizationFailed,
		kafka.ErrTransactionalIDAuthorizationFailed, kafka.ErrGroupAuthorizationFailed,
		kafka.ErrPolicyViolation, kafka.ErrInvalidRecord, kafka.ErrTopicException,
		kafka.ErrUnsupportedForMessageFormat, kafka.ErrInvalidRequiredAcks:
		return fmt.Errorf("%w: %w", ErrNeedsOperator, err)
	}
	return err
}

// fatalOrRenew handles a fatal error of the producer. Fenced (another producer
// took the transactional id: another process of this instance) is fatal for the
// flow; any other fatal error (e.g. INVALID_TXN_STATE after a broker restart, a
// librdkafka state the producer cannot leave) gets a new producer, and the flow
// goes on: the dead letters of the failed transaction are still held. Caller
// holds mu.
func (c *Committer) fatalOrRenew(err error) error {
	var kerr kafka.Error
	if errors.As(err, &kerr) && (kerr.Code() == kafka.ErrFenced || kerr.Code() == kafka.ErrProducerFenced) {
		return c.setFatal(err)
	}
	if rerr := c.renew(err); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err // this commit failed; the next one uses the new producer
}

// renew replaces the transactional producer by a new one with the same
// transactional id, whose InitTransactions (at the next commit) fences the old
// one and ends its open transaction. A transaction whose commit outcome was
// unknown is resolved after that from the group's committed offsets (see
// resolve). Caller holds mu.
func (c *Committer) renew(reason error) error {
	p, err := kafka.NewProducer(&c.cm)
	if err != nil {
		return c.setFatal(fmt.Errorf("dlq: renew producer: %w", err))
	}
	old := c.p
	c.p = p
	go c.events(p)
	go func() { // never blocks the flow: the old producer may be stuck
		_ = old.Purge(kafka.PurgeQueue | kafka.PurgeInFlight | kafka.PurgeNonBlocking)
		old.Close()
	}()
	c.inited = false
	c.unresolved = c.state == txnCommitting && c.pendingOffs != nil
	if !c.unresolved {
		c.idle()
	}
	c.stuckSince = time.Time{}
	c.renewals.Add(1)
	c.log.Warn("dlq_producer_renewed", "reason", reason.Error(), "unknown_outcome", c.unresolved)
	return nil
}

// resolve finds out, once the new producer's InitTransactions has ended the old
// transaction, whether the transaction of unknown outcome committed: the group's
// committed offsets then reach its offsets. If so, its offsets are returned (its
// dead letters are written: the tracker forgets them); if not, it was aborted and
// its dead letters, still held, go into the next transaction. Caller holds mu.
func (c *Committer) resolve(member groupMember) ([]kafka.TopicPartition, error) {
	if err := c.init(); err != nil {
		return nil, err
	}
	committed, err := member.Committed(c.pendingOffs, int(c.cfg.OpTimeout/time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("dlq: committed offsets after renewing the producer: %w", err)
	}
	want := map[int32]kafka.Offset{}
	for _, tp := range c.pendingOffs {
		want[tp.Partition] = tp.Offset
	}
	landed := len(committed) == len(want)
	for _, tp := range committed {
		if tp.Error != nil || tp.Offset < want[tp.Partition] {
			landed = false
		}
	}
	prev, n := c.pendingOffs, c.pendingN
	c.unresolved = false
	if landed {
		c.finish(n)
		c.log.Info("dlq_transaction_resolved", "committed", true, "dead_letters", n)
		return prev, nil
	}
	c.idle()
	c.log.Info("dlq_transaction_resolved", "committed", false, "dead_letters", n)
	return nil, errors.New("dlq: the transaction of unknown outcome was aborted; its dead letters go into the next one")
}

// Renewals returns how many times the transactional producer was replaced.
func (c *Committer) Renewals() uint64 { return c.renewals.Load() }

// events drains a producer's event channel (errors; delivery reports are off).
func (c *Committer) events(p *kafka.Producer) {
	for ev := range p.Events() {
		if e, ok := ev.(kafka.Error); ok {
			c.log.Warn("dlq_producer_error", "code", e.Code().String(), "err", e)
		}
	}
}

// Close closes the producer. Close the Source first: leaving the group commits
// through the Committer. An open transaction is aborted by the broker.
func (c *Committer) Close() {
	c.stop()
	c.mu.Lock()
	if c.state == txnCommitting || c.state == txnAborting {
		c.log.Warn("dlq_close_with_unfinished_transaction", "state", int(c.state))
	}
	c.mu.Unlock()
	c.p.Close()
	c.loops.Wait()
	c.stopLogs()
}
