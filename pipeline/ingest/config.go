package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/modules/orders"
)

// Config configures the ingest flow. Zero values take the defaults of DefaultConfig.
type Config struct {
	Brokers  string // bootstrap servers, comma-separated (required)
	Topic    string // input topic (default "orders")
	DLQTopic string // dead-letter topic (default "orders-dlq")
	GroupID  string // consumer group (default "order-service")
	// InstanceID makes this instance a static member of the group and names its
	// DLQ transactions (GroupID + "-" + InstanceID), so that a restart resumes at
	// once. Empty (default): a dynamic member with a per-process transactional id.
	// Each running instance needs its own.
	InstanceID string

	// CreateTopics creates the input and DLQ topics when missing, with Partitions
	// partitions (default 4) and ReplicationFactor (default 1).
	CreateTopics      bool
	Partitions        int
	ReplicationFactor int

	BatchSize   int           // orders per batch (default 2000)
	BatchBytes  int           // message bytes per batch (default 8 MiB)
	BatchLinger time.Duration // a batch is flushed this long after its first order (default 50 ms)

	QueueCapacity      int // mailbox capacity of the per-message stages (default 2048)
	BatchQueueCapacity int // mailbox capacity of the per-batch stages (default 2)

	MaxMessageBytes int // larger messages go to the DLQ (default orders.DefaultMaxMessageBytes)

	RetryMin time.Duration // first backoff of a transient database error (default 100 ms)
	RetryMax time.Duration // backoff cap (default 10 s)

	// CommitInterval is the longest time a completed offset waits to be committed (default 100 ms).
	CommitInterval time.Duration
	// ShutdownTimeout bounds the soft stop: drain, flush, commit (default 25 s).
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults (Brokers is left empty).
func DefaultConfig() Config {
	return Config{
		Topic:              "orders",
		DLQTopic:           "orders-dlq",
		GroupID:            "order-service",
		Partitions:         4,
		ReplicationFactor:  1,
		BatchSize:          2000,
		BatchBytes:         8 << 20,
		BatchLinger:        50 * time.Millisecond,
		QueueCapacity:      2048,
		BatchQueueCapacity: 2,
		MaxMessageBytes:    orders.DefaultMaxMessageBytes,
		RetryMin:           100 * time.Millisecond,
		RetryMax:           10 * time.Second,
		CommitInterval:     100 * time.Millisecond,
		ShutdownTimeout:    25 * time.Second,
	}
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	setStr := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setStr(&c.Topic, d.Topic)
	setStr(&c.DLQTopic, d.DLQTopic)
	setStr(&c.GroupID, d.GroupID)
	setInt(&c.Partitions, d.Partitions)
	setInt(&c.ReplicationFactor, d.ReplicationFactor)
	setInt(&c.BatchSize, d.BatchSize)
	setInt(&c.BatchBytes, d.BatchBytes)
	setDur(&c.BatchLinger, d.BatchLinger)
	setInt(&c.QueueCapacity, d.QueueCapacity)
	setInt(&c.BatchQueueCapacity, d.BatchQueueCapacity)
	setInt(&c.MaxMessageBytes, d.MaxMessageBytes)
	setDur(&c.RetryMin, d.RetryMin)
	setDur(&c.RetryMax, d.RetryMax)
	setDur(&c.CommitInterval, d.CommitInterval)
	setDur(&c.ShutdownTimeout, d.ShutdownTimeout)
	switch {
	case c.Brokers == "":
		return c, errors.New("ingest config: brokers: empty")
	case c.Topic == c.DLQTopic:
		return c, fmt.Errorf("ingest config: dlq topic %q equals the input topic", c.DLQTopic)
	case c.RetryMax < c.RetryMin:
		return c, fmt.Errorf("ingest config: retry max %s < retry min %s", c.RetryMax, c.RetryMin)
	}
	return c, nil
}

// transactionalID names the DLQ producer's transactions: stable for a static
// member, else unique to this process (host, pid and a random part).
func (c Config) transactionalID() string {
	if c.InstanceID != "" {
		return c.GroupID + "-" + c.InstanceID
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d-%08x", c.GroupID, host, os.Getpid(), rand.Uint32())
}

// ErrClass says what the flow does about a failed batch write.
type ErrClass int

// Error classes of batch writes.
const (
	// Fatal stops the pipeline (the service reports not ready).
	Fatal ErrClass = iota
	// Transient retries the whole batch with capped exponential backoff, forever.
	Transient
	// Data splits the batch in halves until the poison orders are found; they go
	// to the DLQ with class "data".
	Data
)

// BatchWriter stores a batch of orders in one transaction (orders.Store's
// UpsertBatch): all or nothing, returning the uids whose stored version changed.
type BatchWriter interface {
	UpsertBatch(ctx context.Context, recs []orders.Record) (applied []string, err error)
}

// CacheFiller puts the committed versions of a batch in the cache.
type CacheFiller interface {
	Fill(recs []orders.Record, applied []string)
}

// Deps are the flow's collaborators.
type Deps struct {
	// Store writes batches (required). Wire the database store itself, not a cache
	// decorator: the flow fills the cache in its own stage after the commit.
	Store BatchWriter
	// Cache receives committed versions (optional).
	Cache CacheFiller
	// Classify maps a Store error to its class (required).
	Classify func(error) ErrClass
	// Metrics registers the pipeline's Prometheus families (optional).
	Metrics prometheus.Registerer
	// Logger is the flow's logger (default slog.Default()).
	Logger *slog.Logger
}
