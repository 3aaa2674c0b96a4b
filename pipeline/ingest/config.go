package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/pipeline"
)

// Config is the pipeline section of the service configuration. Its defaults and
// its validation are the configuration's (configs/default.yaml and
// configs.Validate): New expects a valid Config.
type Config struct {
	BatchSize  int `koanf:"batch_size"`  // orders per batch
	BatchBytes int `koanf:"batch_bytes"` // message bytes per batch
	// BatchLinger 0 (the default) batches adaptively: a batch goes to its writer
	// as soon as the writer is free, so a lone order is written at once and
	// orders arriving while the writer is busy are written together next (group
	// commit). > 0: a batch is flushed this long after its first order (or when
	// full), whether the writer is free or not.
	BatchLinger time.Duration `koanf:"batch_linger"`
	// Writers is the number of batch writers (each its own database connection):
	// the partitions are spread over them (partition mod Writers), each partition
	// keeps its order, different partitions are written side by side.
	Writers int `koanf:"writers"`

	QueueCapacity      int `koanf:"queue_capacity"`       // mailbox capacity of the per-message stages
	BatchQueueCapacity int `koanf:"batch_queue_capacity"` // mailbox capacity of the per-batch stages

	MaxMessageBytes int `koanf:"max_message_bytes"` // larger messages go to the DLQ
	// MaxInFlightBytes bounds the bytes of the messages fetched and not yet
	// ended (stored or dead-lettered), across every stage: memory is bounded by
	// bytes, not only by the mailboxes' counts. At the bound the source fetches
	// nothing new. 0: 16 MiB.
	MaxInFlightBytes int64 `koanf:"max_inflight_bytes"`

	RetryMin time.Duration `koanf:"retry_min"` // first backoff of a transient error
	RetryMax time.Duration `koanf:"retry_max"` // backoff cap

	// CommitInterval is the longest time a completed offset waits to be committed.
	CommitInterval time.Duration `koanf:"commit_interval"`
	// CommitStallBound: offset commits failing for longer than this (or failing
	// in a way only an operator can end, e.g. a DLQ topic not authorised) make
	// the flow not ready (/ready 503) until a commit succeeds.
	CommitStallBound time.Duration `koanf:"commit_stall_bound"`
	// TombstoneRetention is how long a delete's tombstone is kept (so that older
	// versions arriving later stay refused); 0 keeps them forever.
	TombstoneRetention time.Duration `koanf:"tombstone_retention"`
	// TombstonePurgeInterval is how often tombstones past the retention are purged.
	TombstonePurgeInterval time.Duration `koanf:"tombstone_purge_interval"`
	// ShutdownTimeout bounds the soft stop: drain, flush, commit.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// commitStallBound is CommitStallBound, 30 s when unset.
func (c Config) commitStallBound() time.Duration {
	if c.CommitStallBound <= 0 {
		return 30 * time.Second
	}
	return c.CommitStallBound
}

// writers is Writers, at least 1.
func (c Config) writers() int { return max(c.Writers, 1) }

// Retry is the flow's retry policy (transient database and broker errors).
func (c Config) Retry() pipeline.Retry { return pipeline.Retry{Min: c.RetryMin, Max: c.RetryMax} }

// BatchWriter is what the flow needs of orders.Store: ApplyBatch writes a batch
// in one transaction and reports what is stored per uid; ProbeWrite tries one
// without keeping it; PurgeTombstones forgets old deletes. Its errors are classified by dberr.Classify.
type BatchWriter interface {
	ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error)
	// ProbeWrite writes rec as ApplyBatch would and rolls it back: nil when
	// the schema takes such an order now.
	ProbeWrite(ctx context.Context, rec orders.Record) error
	PurgeTombstones(ctx context.Context, cutoff time.Time, purged func(uids []string)) (int64, error)
}

// CacheFiller is the cache the flow keeps current: Fill puts the committed
// versions of a batch in it (never replacing a newer one), Invalidate drops
// entries whose stored version is unknown.
type CacheFiller interface {
	Fill(recs []orders.Record, stored []orders.Stored)
	Invalidate(uids ...string)
}

// Deps are the flow's collaborators.
type Deps struct {
	// Store writes batches (required). Wire the database store itself, not a cache
	// decorator: the flow fills the cache in its own stage after the commit.
	Store BatchWriter
	// Cache receives committed versions (optional).
	Cache CacheFiller
	// Metrics registers the pipeline's Prometheus families (optional).
	Metrics prometheus.Registerer
	// Logger is the flow's logger (default slog.Default()).
	Logger *slog.Logger
}
