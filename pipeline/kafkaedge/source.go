package kafkaedge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/orderflow/orders-service/pipeline"
)

// SourceConfig configures the consumer.
type SourceConfig struct {
	Brokers string // bootstrap servers, comma-separated
	Topic   string
	GroupID string
	// InstanceID makes the consumer a static group member (group.instance.id): a
	// restarted instance gets its partitions back at once instead of after the
	// session timeout. Empty: a dynamic member. Each running instance needs its own.
	InstanceID string
	// QueuedMaxKBytes bounds librdkafka's prefetch queue per partition
	// (queued.max.messages.kbytes; default 4096: thousands of orders each, and a
	// bounded C heap).
	QueuedMaxKBytes int
	// FetchMaxBytes bounds one fetch response (fetch.max.bytes; default 16 MiB).
	FetchMaxBytes int
	// PauseAfter is how long the pipeline's mailbox must stay full before the
	// assigned partitions are paused (default 2 s).
	PauseAfter time.Duration
	// StatsInterval is how often librdkafka reports statistics (lag, broker state; default 1 s).
	StatsInterval time.Duration
	// MaxInFlightBytes bounds the bytes of the messages handed to the pipeline
	// and not yet ended (key, value, headers and some overhead each; default
	// 16 MiB). At the bound the source fetches nothing new (its partitions are
	// paused) until messages end; a single larger message passes alone.
	MaxInFlightBytes int64
}

// Source consumes one topic as a member of a consumer group and hands each
// record to the pipeline as a Message whose Ack reports to the Committer. Run is
// the pipeline source; Close, Healthy and Lag are safe from other goroutines.
type Source struct {
	cfg SourceConfig
	c   *kafka.Consumer
	com *Committer
	log *slog.Logger

	// poll goroutine only
	paused bool

	budget *budget // the in-flight bytes (MaxInFlightBytes)

	unreadableRecords, fetchErrors atomic.Uint64

	mu        sync.Mutex
	lag       map[int32]int64
	brokersUp bool
	statsAt   time.Time
	closed    bool
	stopLogs  func()
	stopErr   error // why Run stopped by itself (ErrUnreadableRecords)
}

// Stopped returns why Run stopped fetching by itself, nil if it did not: the
// flow drains softly, then must fail with it.
func (s *Source) Stopped() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopErr
}

// withDefaults returns cfg with every unset field at its default.
func (cfg SourceConfig) withDefaults() SourceConfig {
	if cfg.QueuedMaxKBytes <= 0 {
		cfg.QueuedMaxKBytes = 4096
	}
	if cfg.FetchMaxBytes <= 0 {
		cfg.FetchMaxBytes = 16 << 20
	}
	if cfg.PauseAfter <= 0 {
		cfg.PauseAfter = 2 * time.Second
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = time.Second
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = 16 << 20
	}
	return cfg
}

// NewSource creates the consumer (it connects lazily; nothing is fetched before
// Run) and binds it to com, which commits its offsets.
func NewSource(cfg SourceConfig, com *Committer, log *slog.Logger) (*Source, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	cm := consumerConfig(cfg)
	stopLogs := forwardLogs(cm, log)
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		stopLogs()
		return nil, fmt.Errorf("new consumer: %w", err)
	}
	com.bind(c)
	return &Source{
		cfg: cfg, c: c, com: com, log: log, lag: map[int32]int64{}, stopLogs: stopLogs,
		budget: &budget{limit: cfg.MaxInFlightBytes},
	}, nil
}

// Run subscribes and fetches messages into out until ctx ends (the soft stop),
// then returns nil without closing the consumer (Close does, after the pipeline
// drained and committed).
//
// Backpressure: when out is full, or the in-flight bytes are at
// MaxInFlightBytes, or the dead letters held for the next commit exceed the
// Committer's MaxHeldBytes, Run waits for room in short slices (so Poll still
// serves rebalances between them). It pauses every assigned partition (and goes
// on polling, so the group never evicts this member) at once when the held
// letters are at their bound or the messages polled while waiting pass a few
// MiB, else after PauseAfter (the pipeline is stuck, e.g. the database is down);
// it resumes when what waits has gone. Pausing for ordinary short stalls of
// small messages would be costly: a pause drops librdkafka's prefetched
// messages, which are fetched again after the resume. A fatal librdkafka error
// is returned.
func (s *Source) Run(ctx context.Context, out *pipeline.Emitter[*Message]) error {
	if err := s.c.Subscribe(s.cfg.Topic, s.rebalance); err != nil {
		return fmt.Errorf("subscribe %s: %w", s.cfg.Topic, err)
	}
	var pending []*Message // fetched, not yet accepted by out (in partition order)
	var pendingBytes int64
	pendingCap := min(8<<20, s.budget.limit/4)
	pop := func() {
		pendingBytes -= messageWeight(&pending[0].Record)
		pending[0] = nil
		pending = pending[1:]
	}
	var fullSince time.Time
	for ctx.Err() == nil {
		for len(pending) > 0 {
			m := pending[0]
			if m.Ack.Revoked() {
				m.Ack.free()
				pop()
				continue
			}
			letters := s.com.roomForLetters()
			if letters && s.charge(m) && (out.TryEmit(m) || (!s.paused && out.EmitWithin(ctx, m, emitSlice))) {
				pop()
				fullSince = time.Time{}
				continue
			}
			if fullSince.IsZero() {
				fullSince = time.Now()
			}
			// Blocked. Fetch nothing new (pause the partitions) at once when the
			// held dead letters are at their bound or what waits here passes
			// pendingCap; otherwise after PauseAfter (a pause drops librdkafka's
			// prefetched messages, which are fetched again: not for short stalls).
			if !s.paused && (!letters || pendingBytes > pendingCap || time.Since(fullSince) >= s.cfg.PauseAfter) {
				s.setPaused(true)
			}
			break
		}
		if len(pending) == 0 && s.paused {
			s.setPaused(false)
		}
		timeout := 100
		if len(pending) > 0 {
			timeout = 10
		}
		switch e := s.c.Poll(timeout).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				s.unreadable(e)
				continue
			}
			m := s.wrap(e)
			if len(pending) == 0 && s.com.roomForLetters() && s.charge(m) && out.TryEmit(m) {
				continue
			}
			pending = append(pending, m)
			pendingBytes += messageWeight(&m.Record)
		case *kafka.Stats:
			s.onStats(e.String())
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("consumer: %w", e)
			}
			if unreadableRecords(e) {
				// Fetch nothing more; what was handed out drains and commits
				// (a soft stop), then the flow fails with Stopped's error.
				s.unreadableRecords.Add(1)
				s.log.Error("kafka_records_unreadable", "err", e.Error(),
					"action", "the flow stops after draining what it holds: no record at or past this one is committed")
				s.mu.Lock()
				s.stopErr = fmt.Errorf("%w: %w", ErrUnreadableRecords, e)
				s.mu.Unlock()
				return nil
			}
			if e.Code() == kafka.ErrAllBrokersDown {
				s.mu.Lock()
				s.brokersUp = false
				s.mu.Unlock()
			}
			s.log.Warn("kafka_consumer_error", "code", e.Code().String(), "err", e)
		}
	}
	return nil
}

// ClassFetch is the error class of a dead letter for a record the client could
// not read (a record set failing its CRC, one it cannot decompress or parse).
const ClassFetch = "fetch"

// unreadable handles a fetched message that carries an error instead of a
// record. One with a position (librdkafka reports a corrupt or undecodable record
// set at its offset, then moves on) is dead-lettered there with what is known
// (class fetch), so the watermark passes it only once its letter is in the DLQ,
// never silently. One without a position is about the partition, not a record
// (an authorization failure, an offset reset): nothing is skipped; it is logged
// and counted.
func (s *Source) unreadable(e *kafka.Message) {
	err := e.TopicPartition.Error
	topic := ""
	if e.TopicPartition.Topic != nil {
		topic = *e.TopicPartition.Topic
	}
	if e.TopicPartition.Offset < 0 || e.TopicPartition.Partition < 0 || topic != s.cfg.Topic {
		s.fetchErrors.Add(1)
		s.log.Warn("kafka_fetch_error", "topic", topic, "partition", e.TopicPartition.Partition, "err", err)
		return
	}
	m := s.wrap(e)
	s.unreadableRecords.Add(1)
	s.log.Error("kafka_record_unreadable", "partition", m.Partition, "offset", m.Offset, "err", err,
		"action", "dead-lettered (class fetch): the watermark passes it once its letter is in the DLQ")
	m.Ack.DeadLetter(Failure{
		Class:  ClassFetch,
		Stage:  "fetch",
		Reason: fmt.Sprintf("the Kafka client could not read the record at %s/%d@%d: %v", topic, m.Partition, m.Offset, err),
	})
}

// ErrUnreadableRecords stops the flow: the client could not read a record set
// (it failed its CRC, or cannot be decompressed or parsed) and reported it
// without its partition, so it cannot be dead-lettered. librdkafka then goes on
// parsing at a wrong position and resets the partition to its beginning, again
// and again; stopping instead commits what is done before the bad records, skips
// nothing, and says where they are (the offset is in the message). An operator
// restores the records, or moves the group past them
// (kafka-consumer-groups --reset-offsets --to-offset), and restarts.
var ErrUnreadableRecords = errors.New("kafka: records cannot be read (the flow stops so that none is skipped)")

// unreadableRecords reports whether a consumer error says fetched data cannot be read.
func unreadableRecords(e kafka.Error) bool {
	switch e.Code() {
	case kafka.ErrBadMsg, kafka.ErrBadCompression:
		return true
	case kafka.ErrNotImplemented:
		return strings.Contains(e.Error(), "MagicByte")
	}
	return false
}

// FetchErrors returns how many fetched messages carried an error: unreadable
// records (dead-lettered) and errors about a partition (logged).
func (s *Source) FetchErrors() (records, partitions uint64) {
	return s.unreadableRecords.Load(), s.fetchErrors.Load()
}

// emitSlice is how long Run waits for mailbox room before it polls again.
const emitSlice = 50 * time.Millisecond

// charge takes m's share of the in-flight bytes, once; false when they do not
// fit now.
func (s *Source) charge(m *Message) bool {
	a := m.Ack
	if a.budget != nil {
		return true // charged already
	}
	w := messageWeight(&m.Record)
	if !s.budget.take(w) {
		return false
	}
	a.budget, a.weight = s.budget, w
	return true
}

// InFlightBytes returns the bytes of the messages in flight and their bound.
func (s *Source) InFlightBytes() (used, limit int64) {
	return s.budget.used.Load(), s.budget.limit
}

// wrap converts a fetched record and registers it with the Committer.
func (s *Source) wrap(e *kafka.Message) *Message {
	m := &Message{Record: fromKafka(e)}
	s.com.track(m)
	return m
}

// setPaused pauses or resumes every assigned partition (poll goroutine only).
func (s *Source) setPaused(pause bool) {
	parts, err := s.c.Assignment()
	if err != nil {
		s.log.Warn("kafka_assignment_error", "err", err)
		return
	}
	if pause {
		err = s.c.Pause(parts)
	} else {
		err = s.c.Resume(parts)
	}
	if err != nil {
		s.log.Warn("kafka_pause_resume_error", "pause", pause, "err", err)
		return
	}
	s.paused = pause
	s.log.Debug("kafka_backpressure", "paused", pause, "partitions", len(parts))
}

// rebalance runs inside Poll (and Close). On revoke the Committer commits what is
// done for the revoked partitions, then forgets them so their in-flight results
// are dropped.
func (s *Source) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	cooperative := c.GetRebalanceProtocol() == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		ids := partitionIDs(e.Partitions)
		s.com.assign(ids)
		var err error
		if cooperative {
			err = c.IncrementalAssign(e.Partitions)
		} else {
			err = c.Assign(e.Partitions)
		}
		if err != nil {
			return fmt.Errorf("assign: %w", err)
		}
		if s.paused && len(e.Partitions) > 0 {
			if err := c.Pause(e.Partitions); err != nil {
				s.log.Warn("kafka_pause_error", "err", err)
			}
		}
		s.log.Info("kafka_partitions_assigned", "partitions", ids)
	case kafka.RevokedPartitions:
		ids := partitionIDs(e.Partitions)
		lost := c.AssignmentLost()
		s.com.revoke(ids, lost)
		var err error
		if cooperative {
			err = c.IncrementalUnassign(e.Partitions)
		} else {
			err = c.Unassign()
		}
		if err != nil {
			return fmt.Errorf("unassign: %w", err)
		}
		s.mu.Lock()
		for _, p := range ids {
			delete(s.lag, p)
		}
		s.mu.Unlock()
		s.log.Info("kafka_partitions_revoked", "partitions", ids, "lost", lost)
	}
	return nil
}

func partitionIDs(tps []kafka.TopicPartition) []int32 {
	ids := make([]int32, len(tps))
	for i, tp := range tps {
		ids[i] = tp.Partition
	}
	return ids
}

// Lag returns the consumer lag per owned partition (high watermark minus committed
// offset) from the latest librdkafka statistics.
func (s *Source) Lag() map[int32]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.lag)
}

// Healthy returns nil when the consumer runs and librdkafka's recent statistics
// show at least one broker connection up.
func (s *Source) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("kafka: consumer closed")
	case s.statsAt.IsZero():
		return errors.New("kafka: no broker statistics yet")
	case time.Since(s.statsAt) > 5*s.cfg.StatsInterval+5*time.Second:
		return fmt.Errorf("kafka: no statistics since %s", s.statsAt.Format(time.RFC3339))
	case !s.brokersUp:
		return errors.New("kafka: no broker connection up")
	}
	return nil
}

// Close commits what is done, leaves the group (revoking, which commits again)
// and closes the consumer. Call it once, after Run returned, and before the
// Committer's Close. It returns a fatal error of the Committer, or the
// consumer's close error.
func (s *Source) Close() error {
	cerr := s.com.Commit()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.c.Close()
	s.com.bind(nil)
	s.stopLogs()
	if err != nil {
		return fmt.Errorf("close consumer: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("close: final commit: %w", cerr)
	}
	return nil
}

// rdStats is the part of librdkafka's statistics JSON the source reads.
type rdStats struct {
	Brokers map[string]struct {
		State  string `json:"state"`
		NodeID int    `json:"nodeid"`
	} `json:"brokers"`
	Topics map[string]struct {
		Partitions map[string]struct {
			ConsumerLag int64 `json:"consumer_lag"`
			HiOffset    int64 `json:"hi_offset"`
			LsOffset    int64 `json:"ls_offset"`
			Committed   int64 `json:"committed_offset"`
		} `json:"partitions"`
	} `json:"topics"`
}

func (s *Source) onStats(raw string) {
	var st rdStats
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		s.log.Warn("kafka_stats_decode_failed", "err", err)
		return
	}
	up := false
	for _, b := range st.Brokers {
		if b.NodeID >= 0 && b.State == "UP" {
			up = true
		}
	}
	// The committer's own committed offsets: a commit that carries dead letters
	// is a transaction (SendOffsetsToTransaction), which librdkafka's statistics
	// do not see, so their committed_offset can lag behind the group's.
	committed := map[int32]int64{}
	for _, po := range s.com.Offsets() {
		committed[po.Partition] = po.Committed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.brokersUp, s.statsAt = up, time.Now()
	if t, ok := st.Topics[s.cfg.Topic]; ok {
		for k, p := range t.Partitions {
			id, err := strconv.ParseInt(k, 10, 32)
			if err != nil || id < 0 {
				continue
			}
			ours, owned := committed[int32(id)]
			if !owned {
				continue
			}
			lag := partitionLag(p.ConsumerLag, p.HiOffset, p.LsOffset, max(p.Committed, ours))
			s.lag[int32(id)] = lag
		}
	}
}

// partitionLag is a partition's consumer lag: its end (the last stable offset
// under read_committed, else the high watermark) minus the committed offset,
// everything when nothing is committed yet; librdkafka's own figure when it
// knows no end.
func partitionLag(rdLag, hi, ls, committed int64) int64 {
	end := hi
	if ls >= 0 {
		end = ls
	}
	switch {
	case end < 0:
		return rdLag
	case committed < 0:
		return end
	default:
		return max(end-committed, 0)
	}
}
