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
	return ingest.New(cfg.Kafka, cfg.Pipeline, ingest.Deps{Store: store, Cache: cached, Metrics: reg, Logger: log})
}

// newWriter builds the API's writes through the order log: PUT and DELETE append
// to the orders topic and wait for the pipeline (in's, or another instance's,
// seen in store) to apply them.
func newWriter(cfg configs.Config, in *ingest.Ingest, store *ordersdb.Store) (*ingest.Writer, error) {
	return in.NewWriter(ingest.WriterConfig{
		Brokers: cfg.Kafka.Brokers, Topic: cfg.Kafka.Topic,
		AppendTimeout: cfg.API.AppendTimeout, ApplyWait: cfg.API.ApplyWait,
	}, store)
}
