package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/orderflow/orders-service/pipeline"
)

// Config is the kafka section of the service configuration (its defaults and
// validation are the configuration's: configs/default.yaml and configs.Validate).
type Config struct {
	Brokers    string `koanf:"brokers"`     // bootstrap servers, comma-separated
	Topic      string `koanf:"topic"`       // input topic
	DLQTopic   string `koanf:"dlq_topic"`   // dead-letter topic
	GroupID    string `koanf:"group_id"`    // consumer group
	InstanceID string `koanf:"instance_id"` // static group member id; empty: a dynamic member
	// CreateTopics creates the input and DLQ topics when missing, with Partitions
	// partitions and ReplicationFactor replicas.
	CreateTopics      bool `koanf:"create_topics"`
	Partitions        int  `koanf:"partitions"`
	ReplicationFactor int  `koanf:"replication_factor"`

	// The connection's security, librdkafka's security.protocol (plaintext,
	// ssl, sasl_plaintext, sasl_ssl), sasl.* and ssl.* properties; see
	// Security. Empty fields leave librdkafka's defaults.
	SecurityProtocol       string `koanf:"security_protocol"`
	SASLMechanism          string `koanf:"sasl_mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	SASLUsername           string `koanf:"sasl_username"`
	SASLPassword           string `koanf:"sasl_password"`
	SSLCALocation          string `koanf:"ssl_ca_location"`          // PEM file of the CA(s) that signed the brokers' certificates
	SSLCertificateLocation string `koanf:"ssl_certificate_location"` // client certificate (mutual TLS)
	SSLKeyLocation         string `koanf:"ssl_key_location"`         // client key (mutual TLS)
	SSLKeyPassword         string `koanf:"ssl_key_password"`

	// Consumer and Producer are librdkafka properties passed through to every
	// consumer and every producer of the service (see UseProperties), by their
	// librdkafka names (fetch.max.bytes, compression.type). The configuration
	// loads them from kafka.consumer.* and kafka.producer.* and validates them
	// with CheckProperties.
	Consumer map[string]string `koanf:"consumer"`
	Producer map[string]string `koanf:"producer"`
}

// Security returns the librdkafka properties of c's security settings (none
// for the defaults: plaintext).
func (c Config) Security() map[string]string {
	props := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			props[k] = v
		}
	}
	set("security.protocol", c.SecurityProtocol)
	set("sasl.mechanism", c.SASLMechanism)
	set("sasl.username", c.SASLUsername)
	set("sasl.password", c.SASLPassword)
	set("ssl.ca.location", c.SSLCALocation)
	set("ssl.certificate.location", c.SSLCertificateLocation)
	set("ssl.key.location", c.SSLKeyLocation)
	set("ssl.key.password", c.SSLKeyPassword)
	return props
}

// security holds the security properties every client gets (UseSecurity).
var security atomic.Pointer[map[string]string]

// UseSecurity makes every Kafka client the package builds from now on use c's
// security settings (Config.Security): the consumer, the transactional
// producer, the API's appender, the admin client and the tools' producer and
// reader. The service calls it once, after loading its configuration.
func UseSecurity(c Config) {
	props := c.Security()
	security.Store(&props)
}

// settings are what every client of the process gets besides its own
// settings: the security properties (UseSecurity) and the pass-through ones
// (UseProperties). CheckProperties builds the clients' maps from a
// configuration's settings before they are in use.
type settings struct {
	security map[string]string
	props    map[ClientKind]map[string]string
}

// current returns the settings in use.
func current() settings {
	var s settings
	if p := security.Load(); p != nil {
		s.security = *p
	}
	if p := properties.Load(); p != nil {
		s.props = *p
	}
	return s
}

// common are the settings of every client of the service.
func common(brokers string) kafka.ConfigMap { return current().common(brokers) }

func (s settings) common(brokers string) kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":   brokers,
		"enable.metrics.push": false, // no client telemetry push (KIP-714)
	}
	for k, v := range s.security {
		cm[k] = v
	}
	return cm
}

// withProperties adds the pass-through properties of kind to cm. A property
// replaces the service's setting of it under another name too (linger.ms for
// queue.buffering.max.ms): with both in one map, librdkafka would take
// whichever it is handed last.
func (s settings) withProperties(kind ClientKind, cm kafka.ConfigMap) kafka.ConfigMap {
	for k, v := range s.props[kind] {
		for _, a := range aliases[k] {
			delete(cm, a)
		}
		cm[k] = v
	}
	return cm
}

// consumerConfig is the group consumer of the Source.
func consumerConfig(cfg SourceConfig) kafka.ConfigMap { return current().consumer(cfg) }

func (s settings) consumer(cfg SourceConfig) kafka.ConfigMap {
	cm := s.common(cfg.Brokers)
	maps.Copy(cm, kafka.ConfigMap{
		"group.id":                      cfg.GroupID,
		"partition.assignment.strategy": "cooperative-sticky",
		"enable.auto.commit":            false,
		"enable.auto.offset.store":      false,
		"auto.offset.reset":             "earliest",
		// session.timeout.ms stays at librdkafka's 45 s: a shorter session turns a
		// brief broker outage into a lost assignment, whose uncommitted messages are
		// redelivered (and bad ones dead-lettered again). The price: a member killed
		// with SIGKILL keeps its partitions until the session expires.
		"enable.partition.eof": false,
		// A record set that fails its CRC is reported with its offset (and
		// dead-lettered, class fetch) instead of decoded as if it were sound.
		"check.crcs":                 true,
		"queued.max.messages.kbytes": cfg.QueuedMaxKBytes,
		"fetch.max.bytes":            cfg.FetchMaxBytes,
		"statistics.interval.ms":     int(cfg.StatsInterval / time.Millisecond),
		// Skip the records of aborted transactions (orders may come from transactional producers).
		"isolation.level": "read_committed",
	})
	if cfg.InstanceID != "" {
		cm["group.instance.id"] = cfg.InstanceID
	}
	return s.withProperties(KindConsumer, cm)
}

// transactionalConfig is the Committer's producer of dead letters.
func transactionalConfig(cfg CommitterConfig) kafka.ConfigMap { return current().transactional(cfg) }

func (s settings) transactional(cfg CommitterConfig) kafka.ConfigMap {
	txnMs := int(cfg.TxnTimeout / time.Millisecond)
	cm := s.common(cfg.Brokers)
	maps.Copy(cm, kafka.ConfigMap{
		"transactional.id":           cfg.TransactionalID,
		"transaction.timeout.ms":     txnMs,
		"message.timeout.ms":         txnMs,
		"enable.idempotence":         true,
		"acks":                       "all",
		"linger.ms":                  5,
		"compression.type":           "lz4",
		"message.max.bytes":          MaxRecordBytes,
		"go.delivery.reports":        false, // each transaction reads its letters' reports on its own channel
		"go.delivery.report.fields":  "none",
		"queue.buffering.max.kbytes": 65536,
	})
	return s.withProperties(KindProducer, cm)
}

// EnsureTopics creates the input and DLQ topics of cfg when they do not exist
// (existing ones are left as they are), retrying with retry's backoff until the
// broker answers or ctx ends. The DLQ topic allows records of MaxRecordBytes. It
// does nothing unless cfg.CreateTopics.
func EnsureTopics(ctx context.Context, cfg Config, retry pipeline.Retry, log *slog.Logger) {
	if !cfg.CreateTopics {
		return
	}
	b := retry.Backoff()
	for attempt := 1; ; attempt++ {
		tctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := createTopics(tctx, cfg.Brokers,
			kafka.TopicSpecification{Topic: cfg.Topic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor},
			kafka.TopicSpecification{
				Topic: cfg.DLQTopic, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
				Config: map[string]string{"max.message.bytes": strconv.Itoa(MaxRecordBytes)},
			})
		cancel()
		if err == nil {
			return
		}
		wait := b.Next()
		log.Warn("ensure_topics_failed", "attempt", attempt, "retry_in", wait, "err", err)
		if pipeline.Sleep(ctx, wait) != nil {
			return // stopped before starting: a clean stop
		}
	}
}

// createTopics creates the topics that do not exist yet and returns the first
// error other than "already exists".
func createTopics(ctx context.Context, brokers string, specs ...kafka.TopicSpecification) error {
	cm := common(brokers)
	adm, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return fmt.Errorf("ensure topics: admin client: %w", err)
	}
	defer adm.Close()
	for i := range specs {
		specs[i].NumPartitions = max(specs[i].NumPartitions, 1)
		specs[i].ReplicationFactor = max(specs[i].ReplicationFactor, 1)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	res, err := adm.CreateTopics(ctx, specs, kafka.SetAdminOperationTimeout(timeout))
	if err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	var errs []error
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			errs = append(errs, fmt.Errorf("create topic %s: %w", r.Topic, r.Error))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ensure topics: %w", errors.Join(errs...))
	}
	return nil
}

// Producer is the idempotent producer of the produce and dlq replay tools: Send
// hands records over asynchronously, Close waits for their acknowledgements.
type Producer struct {
	p             *kafka.Producer
	acked, failed atomic.Int64
	firstErr      atomic.Pointer[string]
	events        chan struct{} // closed when the delivery reports are drained
}

// producerConfig is every producer of records of the orders topic: idempotent,
// acks=all, lz4, records up to MaxRecordBytes, and keys partitioned with
// murmur2 like the Java client, Kafka Connect and Kafka Streams, so that the
// versions of an order share a partition whoever produces them.
func producerConfig(brokers, clientID string) kafka.ConfigMap {
	return current().producer(brokers, clientID)
}

func (s settings) producer(brokers, clientID string) kafka.ConfigMap {
	cm := s.common(brokers)
	maps.Copy(cm, kafka.ConfigMap{
		"enable.idempotence": true,
		"acks":               "all",
		"linger.ms":          5,
		"compression.type":   "lz4",
		"message.max.bytes":  MaxRecordBytes,
		"client.id":          clientID,
		"partitioner":        "murmur2_random",
	})
	return s.withProperties(KindProducer, cm)
}

// NewProducer creates a producer (see producerConfig).
func NewProducer(brokers, clientID string) (*Producer, error) {
	cm := producerConfig(brokers, clientID)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	pr := &Producer{p: p, events: make(chan struct{})}
	go func() {
		defer close(pr.events)
		for e := range p.Events() {
			m, ok := e.(*kafka.Message)
			if !ok {
				continue
			}
			if m.TopicPartition.Error != nil {
				pr.failed.Add(1)
				msg := strings.TrimSpace(m.TopicPartition.Error.Error())
				pr.firstErr.CompareAndSwap(nil, &msg)
			} else {
				pr.acked.Add(1)
			}
		}
	}()
	return pr, nil
}

// Send hands one record to the producer, waiting while its queue is full.
func (p *Producer) Send(ctx context.Context, topic string, key, value []byte, headers []Header) error {
	m := toKafka(topic, key, value, headers)
	for {
		err := p.p.Produce(m, nil)
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || ke.Code() != kafka.ErrQueueFull {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.p.Flush(100)
	}
}

// Acked returns how many records were acknowledged, and how many failed, so far.
func (p *Producer) Acked() (acked, failed int64) { return p.acked.Load(), p.failed.Load() }

// Flush waits up to timeout for outstanding records and returns how many remain.
func (p *Producer) Flush(timeout time.Duration) int {
	return p.p.Flush(int(timeout / time.Millisecond))
}

// Close closes the producer (call Flush first to wait for acknowledgements) and
// returns the first delivery error, nil when every record was acknowledged.
func (p *Producer) Close() error {
	p.p.Close()
	<-p.events
	if msg := p.firstErr.Load(); msg != nil {
		return fmt.Errorf("%d records failed, first: %s", p.failed.Load(), *msg)
	}
	return nil
}

// Appender appends single records and waits for each one's acknowledgement: the
// API's writes to the orders topic. It is safe for concurrent use.
type Appender struct {
	p      *kafka.Producer
	events chan struct{}
}

// Appended is where an appended record landed.
type Appended struct {
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// ErrNotAppended wraps every failure to append: the broker did not take the
// record (unreachable, timed out, refused).
var ErrNotAppended = errors.New("record not appended")

// NewAppender creates an Appender (see producerConfig) whose records are given
// up, with ErrNotAppended, when not acknowledged within timeout.
func NewAppender(brokers, clientID string, timeout time.Duration) (*Appender, error) {
	cm := current().appender(brokers, clientID, timeout)
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("appender: %w", err)
	}
	a := &Appender{p: p, events: make(chan struct{})}
	go func() { // librdkafka's own events (errors are logged by the delivery reports)
		defer close(a.events)
		for range p.Events() {
		}
	}()
	return a, nil
}

// appender is the Appender's producer: producerConfig with a short linger and
// timeout as its message timeout.
func (s settings) appender(brokers, clientID string, timeout time.Duration) kafka.ConfigMap {
	cm := s.producer(brokers, clientID)
	maps.Copy(cm, kafka.ConfigMap{
		"linger.ms":          1,
		"message.timeout.ms": max(int(timeout/time.Millisecond), 1),
	})
	return s.withProperties(KindProducer, cm) // after the appender's linger.ms: a pass-through one wins
}

// Append produces one record (value nil: a tombstone) and waits for its
// acknowledgement or ctx. A failure wraps ErrNotAppended.
func (a *Appender) Append(ctx context.Context, topic string, key, value []byte, headers []Header) (Appended, error) {
	m := toKafka(topic, key, value, headers)
	// The record's timestamp is set here, so that the version Append reports is
	// the one consumers read (CreateTime topics keep it); a LogAppendTime topic's
	// broker time comes back in the delivery report.
	created := time.Now().Truncate(time.Millisecond)
	m.Timestamp, m.TimestampType = created, kafka.TimestampCreateTime
	done := make(chan kafka.Event, 1)
	if err := a.p.Produce(m, done); err != nil {
		return Appended{}, fmt.Errorf("%w: %w", ErrNotAppended, err)
	}
	select {
	case <-ctx.Done():
		return Appended{}, fmt.Errorf("%w: %w", ErrNotAppended, ctx.Err())
	case e := <-done:
		r, ok := e.(*kafka.Message)
		if !ok {
			return Appended{}, fmt.Errorf("%w: unexpected event %v", ErrNotAppended, e)
		}
		if r.TopicPartition.Error != nil {
			return Appended{}, fmt.Errorf("%w: %w", ErrNotAppended, r.TopicPartition.Error)
		}
		ts := created
		if r.TimestampType == kafka.TimestampLogAppendTime {
			ts = r.Timestamp
		}
		return Appended{Partition: r.TopicPartition.Partition, Offset: int64(r.TopicPartition.Offset), Timestamp: ts}, nil
	}
}

// Close waits up to timeout for records in flight, then closes the producer.
func (a *Appender) Close(timeout time.Duration) {
	a.p.Flush(int(timeout / time.Millisecond))
	a.p.Close()
	<-a.events
}

// ProduceOne sends one record and waits (up to 30 s) for its acknowledgement.
func ProduceOne(ctx context.Context, brokers, topic string, key, value []byte) error {
	p, err := NewProducer(brokers, "order-service-tool")
	if err != nil {
		return err
	}
	if err := p.Send(ctx, topic, key, value, nil); err != nil {
		_ = p.Close()
		return err
	}
	if p.Flush(30*time.Second) > 0 {
		_ = p.Close()
		return errors.New("no acknowledgement within 30 s")
	}
	return p.Close()
}

// ReadOptions select the records ReadTopic returns.
type ReadOptions struct {
	Brokers   string
	Topic     string
	Partition int   // only this partition; -1: all
	From      int64 // only offsets >= From
	To        int64 // only offsets <= To; -1: up to the end
	// Newest, when > 0, reads only the last Newest offsets of each partition
	// (from its end offset at call time less Newest): the newest records.
	Newest int64
	// Keep, when set, filters the records read.
	Keep func(*Record) bool
}

// TopicRead is what ReadTopicSize returns: the records read and the size of the
// partitions read (the sum of their high less low watermarks at call time; in a
// topic written in transactions this counts the transaction markers too, so it
// is an upper bound of the records it holds).
type TopicRead struct {
	Records []Record
	Size    int64
}

// ReadTopic reads the committed records of a topic (isolation read_committed:
// dead letters of aborted transactions are not dead letters) that match o, from
// the start to the end offsets at call time, with no consumer group and nothing
// committed, ordered by partition and offset.
func ReadTopic(ctx context.Context, o ReadOptions) ([]Record, error) {
	r, err := ReadTopicSize(ctx, o)
	return r.Records, err
}

// ReadBufferBytes bounds the buffers of ReadTopic's consumer (librdkafka's
// prefetch queue, a fetch response and a partition's share of it), like the
// pipeline bounds its own: librdkafka's defaults (64 MiB queue, 50 MiB fetch)
// would let one read hold ~100 MiB of C memory. A record larger than the bound
// still passes, alone.
const ReadBufferBytes = 1 << 20

// ReadTopicSize is ReadTopic that also returns the size of the partitions read.
// Its broker requests are bounded by ctx's deadline (10 s at most each); its
// consumer's buffers by ReadBufferBytes.
func ReadTopicSize(ctx context.Context, o ReadOptions) (TopicRead, error) {
	var res TopicRead
	cm := current().reader(o.Brokers)
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return res, fmt.Errorf("read %s: consumer: %w", o.Topic, err)
	}
	defer func() { _ = c.Close() }()
	md, err := c.GetMetadata(&o.Topic, false, timeoutMs(ctx))
	if err != nil {
		return res, fmt.Errorf("read %s: metadata: %w", o.Topic, err)
	}
	tm, ok := md.Topics[o.Topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
		return res, fmt.Errorf("read %s: topic does not exist", o.Topic)
	}
	var assign []kafka.TopicPartition
	remaining := map[int32]int64{} // partition -> last offset to read
	for _, p := range tm.Partitions {
		if o.Partition >= 0 && p.ID != int32(o.Partition) {
			continue
		}
		low, high, err := c.QueryWatermarkOffsets(o.Topic, p.ID, timeoutMs(ctx))
		if err != nil {
			return res, fmt.Errorf("read %s/%d: offsets: %w", o.Topic, p.ID, err)
		}
		res.Size += high - low
		start := max(low, o.From)
		if o.Newest > 0 {
			start = max(start, high-o.Newest)
		}
		end := high - 1
		if o.To >= 0 && o.To < end {
			end = o.To
		}
		if start > end {
			continue
		}
		remaining[p.ID] = end
		assign = append(assign, kafka.TopicPartition{Topic: &o.Topic, Partition: p.ID, Offset: kafka.Offset(start)})
	}
	if len(assign) == 0 {
		return res, nil
	}
	if err := c.Assign(assign); err != nil {
		return res, fmt.Errorf("read %s: assign: %w", o.Topic, err)
	}
	var out []Record
	idle := time.Now()
	for len(remaining) > 0 {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if time.Since(idle) > 30*time.Second {
			return res, fmt.Errorf("read %s: no progress for 30 s", o.Topic)
		}
		switch e := c.Poll(200).(type) {
		case *kafka.Message:
			idle = time.Now()
			r := fromKafka(e)
			end, ok := remaining[r.Partition]
			if !ok || r.Offset > end {
				continue
			}
			if r.Offset == end {
				delete(remaining, r.Partition)
			}
			if o.Keep == nil || o.Keep(&r) {
				out = append(out, r)
			}
		case kafka.PartitionEOF:
			delete(remaining, e.Partition)
		case kafka.Error:
			if e.IsFatal() {
				return res, fmt.Errorf("read %s: %w", o.Topic, e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	res.Records = out
	return res, nil
}

// reader is ReadTopic's consumer: no group offsets, the end of each partition
// reported, committed records only. A read ends at each partition's end, which
// it learns from a fetch that finds nothing more (the last offsets of a
// transactional topic are commit markers, never delivered): the broker answers
// such a fetch after fetch.wait.max.ms, 500 ms by default, and librdkafka waits
// fetch.queue.backoff.ms (1 s) before a partition's next fetch once its small
// queue (ReadBufferBytes) has filled, so a DLQ read on an idle app dev took
// 0.5–2 s; with 10 ms each, 30–115 ms.
func (s settings) reader(brokers string) kafka.ConfigMap {
	cm := s.common(brokers)
	maps.Copy(cm, kafka.ConfigMap{
		"group.id": "orders-dlq-tool", "enable.auto.commit": false,
		"enable.partition.eof": true, "auto.offset.reset": "earliest",
		"fetch.wait.max.ms":          10,
		"fetch.queue.backoff.ms":     10,
		"isolation.level":            "read_committed",
		"queued.max.messages.kbytes": ReadBufferBytes >> 10,
		"fetch.max.bytes":            ReadBufferBytes,
		"max.partition.fetch.bytes":  ReadBufferBytes,
	})
	cm = s.withProperties(KindConsumer, cm)
	// librdkafka wants fetch.max.bytes >= message.max.bytes: a larger
	// kafka.consumer.message.max.bytes raises the reader's fetch bound with it.
	if v, err := strconv.Atoi(fmt.Sprint(cm["message.max.bytes"])); err == nil && v > ReadBufferBytes {
		if f, err := strconv.Atoi(fmt.Sprint(cm["fetch.max.bytes"])); err == nil && f < v {
			cm["fetch.max.bytes"] = v
		}
	}
	return cm
}

// timeoutDuration is a blocking client call's timeout: 10 s, or less when ctx
// ends sooner (at least 1 ms); timeoutMs is the same in milliseconds.
func timeoutDuration(ctx context.Context) time.Duration {
	t := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, max(time.Until(dl), time.Millisecond))
	}
	return t
}

func timeoutMs(ctx context.Context) int { return int(timeoutDuration(ctx) / time.Millisecond) }

// TransactionalID names the Committer's transactions: stable for a static member
// (group id and instance id), else unique to this process (host, pid and a
// random part).
func (c Config) TransactionalID() string {
	if c.InstanceID != "" {
		return c.GroupID + "-" + c.InstanceID
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d-%08x", c.GroupID, host, os.Getpid(), rand.Uint32())
}
