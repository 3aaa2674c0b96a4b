package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders/orderscache"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/pipeline/ingest"
)

// newIngest builds the ingestion pipeline: it writes through the DB store (not the
// cache decorator) and fills the cache itself after each commit.
func newIngest(cfg configs.Config, store *ordersdb.Store, cached *orderscache.Store, reg prometheus.Registerer, log *slog.Logger) (*ingest.Ingest, error) {
	return ingest.New(ingest.Config{
		Brokers:         cfg.Kafka.Brokers,
		Topic:           cfg.Kafka.Topic,
		DLQTopic:        cfg.Kafka.DLQTopic,
		GroupID:         cfg.Kafka.GroupID,
		InstanceID:      cfg.Kafka.InstanceID,
		CreateTopics:    cfg.Kafka.CreateTopics,
		Partitions:      cfg.Kafka.Partitions,
		BatchSize:       cfg.Pipeline.BatchSize,
		BatchBytes:      cfg.Pipeline.BatchBytes,
		BatchLinger:     cfg.Pipeline.BatchLinger,
		QueueCapacity:   cfg.Pipeline.QueueCapacity,
		MaxMessageBytes: cfg.Pipeline.MaxMessageBytes,
		RetryMin:        cfg.Pipeline.RetryMin,
		RetryMax:        cfg.Pipeline.RetryMax,
		ShutdownTimeout: cfg.Pipeline.ShutdownTimeout,
	}, ingest.Deps{
		Store:    store,
		Cache:    cached,
		Classify: classifyDBError,
		Metrics:  reg,
		Logger:   log,
	})
}

// classifyDBError maps the store's error classes onto the pipeline's.
func classifyDBError(err error) ingest.ErrClass {
	switch ordersdb.Classify(err) {
	case ordersdb.Transient:
		return ingest.Transient
	case ordersdb.Data:
		return ingest.Data
	default:
		return ingest.Fatal
	}
}
