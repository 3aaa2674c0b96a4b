package pipeline

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus families the runner feeds, one per concern with a
// `stage` label. One Metrics may serve several pipelines over time (stage names
// are the label values); queue gauges are read at scrape time from the running
// pipelines.
type Metrics struct {
	messages  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	batchSize *prometheus.HistogramVec
	flushes   *prometheus.CounterVec

	mu        sync.Mutex
	pipelines map[*Pipeline]struct{}
	queueLen  *prometheus.Desc
	queueCap  *prometheus.Desc
}

type stageMetrics struct {
	outcomes  [3]prometheus.Counter
	duration  prometheus.Observer
	batchSize prometheus.Observer             // batch stages only
	flushes   [numTriggers]prometheus.Counter // batch stages only
}

// Batch triggers: why a Batch stage emitted a batch.
const (
	triggerCount  = iota // the batch reached BatchPolicy.Count items
	triggerBytes         // the batch reached BatchPolicy.Bytes bytes
	triggerLinger        // BatchPolicy.Linger passed since the batch's first item
	triggerDrain         // the input closed (soft stop): the partial batch was flushed
	triggerReady         // BatchPolicy.Adaptive: the next stage was ready to take it
	numTriggers
)

var triggerNames = [numTriggers]string{"count", "bytes", "linger", "drain", "ready"}

// NewMetrics creates the engine's metric families and registers them with reg:
// orders_pipeline_messages_total{stage,outcome}, orders_pipeline_stage_duration_seconds{stage},
// orders_pipeline_batch_size{stage}, orders_pipeline_batch_flushes_total{stage,trigger},
// orders_pipeline_queue_length{stage} and orders_pipeline_queue_capacity{stage}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_pipeline_messages_total",
			Help: "Items handled by a pipeline stage, by outcome (ok, rejected, error).",
		}, []string{"stage", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_pipeline_stage_duration_seconds",
			Help:    "Time a stage spends on one item (excluding time blocked on a full downstream mailbox); for batch stages, the time a batch took to fill.",
			Buckets: []float64{1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"stage"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_pipeline_batch_size",
			Help:    "Items per batch emitted by a batch stage.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000},
		}, []string{"stage"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_pipeline_batch_flushes_total",
			Help: "Batches emitted by a batch stage, by what completed them (count, bytes, linger, drain).",
		}, []string{"stage", "trigger"}),
		pipelines: map[*Pipeline]struct{}{},
		queueLen: prometheus.NewDesc("orders_pipeline_queue_length",
			"Items waiting in a stage's inbound mailbox.", []string{"stage"}, nil),
		queueCap: prometheus.NewDesc("orders_pipeline_queue_capacity",
			"Capacity of a stage's inbound mailbox.", []string{"stage"}, nil),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.duration, m.batchSize, m.flushes, (*queueCollector)(m)} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("pipeline metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *Metrics) attach(p *Pipeline) {
	for _, s := range p.stages {
		sm := &stageMetrics{duration: m.duration.WithLabelValues(s.name)}
		for i, o := range []string{"ok", "rejected", "error"} {
			sm.outcomes[i] = m.messages.WithLabelValues(s.name, o)
		}
		if s.batch { // batch series only where batches are made: no empty histograms elsewhere
			sm.batchSize = m.batchSize.WithLabelValues(s.name)
			for i, t := range triggerNames {
				sm.flushes[i] = m.flushes.WithLabelValues(s.name, t)
			}
		}
		s.m.Store(sm)
	}
	m.mu.Lock()
	m.pipelines[p] = struct{}{}
	m.mu.Unlock()
}

func (m *Metrics) detach(p *Pipeline) {
	m.mu.Lock()
	delete(m.pipelines, p)
	m.mu.Unlock()
}

type queueCollector Metrics

func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.queueLen
	ch <- q.queueCap
}

func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for p := range q.pipelines {
		for _, s := range p.stages {
			if s.queue == nil {
				continue
			}
			l, c := s.queue()
			ch <- prometheus.MustNewConstMetric(q.queueLen, prometheus.GaugeValue, float64(l), s.name)
			ch <- prometheus.MustNewConstMetric(q.queueCap, prometheus.GaugeValue, float64(c), s.name)
		}
	}
}
