package ingest

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/pipeline"
)

// metrics are the flow's Prometheus families beyond the engine's per-stage ones.
type metrics struct {
	engine  *pipeline.Metrics
	dbWrite *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, in *Ingest) (*metrics, error) {
	engine, err := pipeline.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &metrics{
		engine: engine,
		dbWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_pipeline_db_write_duration_seconds",
			Help:    "Duration of one batch write transaction, by outcome (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.dbWrite, &collector{in: in}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// timed measures every batch write of w.
func (m *metrics) timed(w BatchWriter) BatchWriter {
	return timedWriter{w: w, ok: m.dbWrite.WithLabelValues("ok"), failed: m.dbWrite.WithLabelValues("error")}
}

type timedWriter struct {
	w          BatchWriter
	ok, failed prometheus.Observer
}

func (t timedWriter) PurgeTombstones(ctx context.Context, cutoff time.Time, purged func([]string)) (int64, error) {
	return t.w.PurgeTombstones(ctx, cutoff, purged)
}

func (t timedWriter) ProbeWrite(ctx context.Context, rec orders.Record) error {
	return t.w.ProbeWrite(ctx, rec)
}

func (t timedWriter) ApplyBatch(ctx context.Context, recs []orders.Record) ([]orders.Stored, error) {
	t0 := time.Now()
	applied, err := t.w.ApplyBatch(ctx, recs)
	if err != nil {
		t.failed.Observe(time.Since(t0).Seconds())
	} else {
		t.ok.Observe(time.Since(t0).Seconds())
	}
	return applied, err
}

var (
	descDLQ       = prometheus.NewDesc("orders_pipeline_dlq_messages_total", "Messages sent to the dead-letter topic, by error class.", []string{"class"}, nil)
	descRetries   = prometheus.NewDesc("orders_pipeline_upsert_retries_total", "Batch writes retried after a transient database error.", nil, nil)
	descSplits    = prometheus.NewDesc("orders_pipeline_upsert_splits_total", "Batch splits made to isolate orders the database rejects.", nil, nil)
	descJoint     = prometheus.NewDesc("orders_pipeline_upsert_joint_writes_total", "Batch transactions that wrote the small batches of several writer lanes together (group commit across lanes).", nil, nil)
	descWritten   = prometheus.NewDesc("orders_pipeline_orders_written_total", "Orders written to the database in committed batches.", nil, nil)
	descVersions  = prometheus.NewDesc("orders_pipeline_versions_total", "Records by what the store did with them: applied (a newer version or a delete), stale (older than the stored version: refused).", []string{"outcome"}, nil)
	descTombs     = prometheus.NewDesc("orders_pipeline_tombstones_total", "Tombstones by event: applied (deletes), purged (forgotten after the retention).", []string{"event"}, nil)
	descCross     = prometheus.NewDesc("orders_pipeline_cross_partition_versions_total", "Versions of an order compared with one on another partition (ordered by record timestamp; see the README).", nil, nil)
	descLag       = prometheus.NewDesc("orders_pipeline_consumer_lag", "Consumer lag per owned partition (high watermark minus committed offset).", []string{"partition"}, nil)
	descCommitted = prometheus.NewDesc("orders_pipeline_committed_offset", "Last committed offset per owned partition.", []string{"partition"}, nil)
	descDLQTxn    = prometheus.NewDesc("orders_pipeline_dlq_transactions_total", "Kafka transactions that wrote dead letters with their offsets, by outcome (committed, aborted).", []string{"outcome"}, nil)
	descUp        = prometheus.NewDesc("orders_pipeline_up", "1 while the ingest flow runs and the broker is reachable.", nil, nil)
	descFailing   = prometheus.NewDesc("orders_pipeline_commit_failing_seconds", "Seconds the offset commits have failed without a success in between (0 while they succeed); past pipeline.commit_stall_bound, or at once for a failure only an operator can end, /ready answers 503.", nil, nil)
	descStalled   = prometheus.NewDesc("orders_pipeline_commit_stalled", "1 while the offset commits cannot make progress (see orders_pipeline_commit_failing_seconds).", nil, nil)
	descTruncated = prometheus.NewDesc("orders_pipeline_dlq_truncated_total", "Dead letters cut to fit the DLQ topic (value shortened, x-value-truncated header with the original size).", nil, nil)
	descFetchErrs = prometheus.NewDesc("orders_pipeline_fetch_errors_total", "Fetched messages carrying an error, by kind: record (unreadable record, dead-lettered with class fetch), partition (about a partition, logged).", []string{"kind"}, nil)
	descInFlight  = prometheus.NewDesc("orders_pipeline_inflight_bytes", "Bytes of the messages fetched and not yet stored or dead-lettered; at orders_pipeline_inflight_bytes_limit the source fetches nothing new.", nil, nil)
	descInFlightL = prometheus.NewDesc("orders_pipeline_inflight_bytes_limit", "The bound of orders_pipeline_inflight_bytes (pipeline.max_inflight_bytes).", nil, nil)
	descRenewals  = prometheus.NewDesc("orders_pipeline_dlq_producer_renewals_total", "Times the transactional producer was replaced after it could not finish a transaction (stuck or failed for good, but not fenced).", nil, nil)
)

// collector reads the flow's counters at scrape time.
type collector struct{ in *Ingest }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDLQ, descRetries, descSplits, descJoint, descWritten, descVersions, descTombs, descCross, descLag, descCommitted, descUp, descDLQTxn, descRenewals, descFailing, descStalled, descTruncated, descFetchErrs, descInFlight, descInFlightL} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	in := c.in
	if in.com != nil {
		for class, n := range in.com.DeadLetters() {
			ch <- prometheus.MustNewConstMetric(descDLQ, prometheus.CounterValue, float64(n), class)
		}
		_, txns, aborted := in.com.Transactions()
		ch <- prometheus.MustNewConstMetric(descDLQTxn, prometheus.CounterValue, float64(txns), "committed")
		ch <- prometheus.MustNewConstMetric(descDLQTxn, prometheus.CounterValue, float64(aborted), "aborted")
		ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(in.com.Renewals()))
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, in.com.FailingFor().Seconds())
		stalled := 0.0
		if in.com.Stalled(in.cfg.commitStallBound()) != nil {
			stalled = 1
		}
		ch <- prometheus.MustNewConstMetric(descStalled, prometheus.GaugeValue, stalled)
		ch <- prometheus.MustNewConstMetric(descTruncated, prometheus.CounterValue, float64(in.com.Truncated()))
	}
	if in.src != nil {
		used, limit := in.src.InFlightBytes()
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(used))
		ch <- prometheus.MustNewConstMetric(descInFlightL, prometheus.GaugeValue, float64(limit))
		records, partitions := in.src.FetchErrors()
		ch <- prometheus.MustNewConstMetric(descFetchErrs, prometheus.CounterValue, float64(records), "record")
		ch <- prometheus.MustNewConstMetric(descFetchErrs, prometheus.CounterValue, float64(partitions), "partition")
	}
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(in.retries.Load()))
	ch <- prometheus.MustNewConstMetric(descSplits, prometheus.CounterValue, float64(in.splits.Load()))
	ch <- prometheus.MustNewConstMetric(descJoint, prometheus.CounterValue, float64(in.jointWrites()))
	ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(in.written.Load()))
	ch <- prometheus.MustNewConstMetric(descVersions, prometheus.CounterValue, float64(in.applied.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(descVersions, prometheus.CounterValue, float64(in.stale.Load()), "stale")
	ch <- prometheus.MustNewConstMetric(descTombs, prometheus.CounterValue, float64(in.tombstones.Load()), "applied")
	ch <- prometheus.MustNewConstMetric(descTombs, prometheus.CounterValue, float64(in.purged.Load()), "purged")
	ch <- prometheus.MustNewConstMetric(descCross, prometheus.CounterValue, float64(in.crossPartition.Load()))
	up := 0.0
	if in.src != nil && in.p != nil && in.Ready() == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	if in.src == nil {
		return
	}
	lag := in.src.Lag()
	for _, po := range in.com.Offsets() {
		p := strconv.Itoa(int(po.Partition))
		ch <- prometheus.MustNewConstMetric(descCommitted, prometheus.GaugeValue, float64(po.Committed), p)
		if l, ok := lag[po.Partition]; ok {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(l), p)
		}
	}
}
