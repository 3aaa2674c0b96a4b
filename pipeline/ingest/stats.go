package ingest

import (
	"sort"

	"github.com/orderflow/orders-service/pipeline"
)

// Stats is a JSON-able snapshot of the flow, served by GET /api/v1/pipeline/stats.
type Stats struct {
	// State is new, starting, running, stopped or failed.
	State string `json:"state"`
	// Error is what stopped the flow, if anything.
	Error string `json:"error,omitempty"`
	// Stages are the per-stage counters, mailbox lengths and capacities (the
	// "batch" stage carries the batch size statistics).
	Stages []pipeline.StageStats `json:"stages"`
	Upsert UpsertStats           `json:"upsert"`
	DLQ    DLQStats              `json:"dlq"`
	// Partitions are the owned partitions with their offsets and lag.
	Partitions []PartitionStats `json:"partitions"`
	// ConsumerLag is the sum of the partitions' lag.
	ConsumerLag int64 `json:"consumer_lag"`
}

// UpsertStats counts the upsert stage's work.
type UpsertStats struct {
	Batches uint64 `json:"batches"`
	Written uint64 `json:"orders_written"`
	Applied uint64 `json:"orders_applied"`
	// Stale counts records older than the stored version of their order
	// (redeliveries, replays of old versions): refused.
	Stale uint64 `json:"stale_versions"`
	// Tombstones counts deletes applied.
	Tombstones uint64 `json:"tombstones"`
	// CrossPartition counts versions compared with one of another partition.
	CrossPartition uint64 `json:"cross_partition_versions"`
	// TombstonesPurged counts tombstones forgotten after the retention.
	TombstonesPurged uint64 `json:"tombstones_purged"`
	Retries          uint64 `json:"retries"`
	Splits           uint64 `json:"splits"`
	// JointWrites counts transactions that wrote the small batches of several
	// writer lanes together.
	JointWrites uint64 `json:"joint_writes"`
	Poison      uint64 `json:"poison"`
}

// DLQStats counts dead letters: handed to the DLQ (by class; again after a
// redelivery), written by committed transactions, and held for the next commit.
type DLQStats struct {
	Total        uint64            `json:"total"`
	ByClass      map[string]uint64 `json:"by_class"`
	Pending      int64             `json:"pending"`
	Committed    uint64            `json:"committed"`
	Transactions uint64            `json:"transactions"`
	Aborted      uint64            `json:"transactions_aborted"`
	// ProducerRenewals counts replacements of the transactional producer.
	ProducerRenewals uint64 `json:"producer_renewals"`
}

// PartitionStats is one owned partition: committed offset, completed watermark,
// in-flight messages and lag (high watermark minus committed, from librdkafka).
type PartitionStats struct {
	Partition int32 `json:"partition"`
	Committed int64 `json:"committed_offset"`
	Done      int64 `json:"done_offset"`
	InFlight  int   `json:"in_flight"`
	Lag       int64 `json:"lag"`
}

// Stats returns Snapshot as a JSON-able value.
func (in *Ingest) Stats() any { return in.Snapshot() }

// Snapshot returns the current statistics. Safe for concurrent use.
func (in *Ingest) Snapshot() Stats {
	st := Stats{
		State:  in.state.Load().(string),
		Stages: in.p.Stats(),
		Upsert: UpsertStats{
			Batches: in.batches.Load(), Written: in.written.Load(), Applied: in.applied.Load(),
			Stale: in.stale.Load(), Tombstones: in.tombstones.Load(), CrossPartition: in.crossPartition.Load(),
			TombstonesPurged: in.purged.Load(),
			Retries:          in.retries.Load(), Splits: in.splits.Load(), Poison: in.poison.Load(), JointWrites: in.jointWrites(),
		},
		DLQ: DLQStats{ByClass: in.com.DeadLetters(), Pending: in.com.HeldDeadLetters()},
	}
	st.DLQ.Committed, st.DLQ.Transactions, st.DLQ.Aborted = in.com.Transactions()
	st.DLQ.ProducerRenewals = in.com.Renewals()
	in.mu.Lock()
	if in.runErr != nil {
		st.Error = in.runErr.Error()
	}
	in.mu.Unlock()
	for _, n := range st.DLQ.ByClass {
		st.DLQ.Total += n
	}
	lag := in.src.Lag()
	for _, po := range in.com.Offsets() {
		ps := PartitionStats{Partition: po.Partition, Committed: po.Committed, Done: po.Done, InFlight: po.InFlight, Lag: lag[po.Partition]}
		st.ConsumerLag += ps.Lag
		st.Partitions = append(st.Partitions, ps)
	}
	sort.Slice(st.Partitions, func(i, j int) bool { return st.Partitions[i].Partition < st.Partitions[j].Partition })
	return st
}
