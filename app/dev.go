package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/orderflow/orders-service/configs"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/pgserver"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// devDataDir is where `app dev` keeps its PostgreSQL and Kafka data between runs.
const devDataDir = ".data"

func cmdDev(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	var rate float64
	var invalid float64
	cfg, _, err := loadConfig("dev", args, environ, stderr, func(fs *flag.FlagSet) {
		fs.Float64Var(&rate, "rate", 20, "background test traffic in orders per second (0 = none)")
		fs.Float64Var(&invalid, "invalid-ratio", 0.02, "share of bad messages in the background traffic")
	})
	if err != nil {
		return err
	}
	if !hasEnv(environ, "ORDERS_LOG_FORMAT") {
		cfg.Log.Format = "text"
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)

	root, err := filepath.Abs(devDataDir)
	if err != nil {
		return err
	}
	if cfg.Postgres.DSN == "" {
		pg, err := startDevPostgres(root, log)
		if err != nil {
			return err
		}
		defer func() {
			if err := pg.stop(); err != nil {
				log.Warn("dev_postgres_stop", "error", err)
			}
		}()
		cfg.Postgres.DSN = pg.dsn
		log.Info("dev_postgres_ready", "dsn", pg.dsn)
	}
	if !hasEnv(environ, "ORDERS_KAFKA_BROKERS") {
		brokers, stop, err := startDevKafka(filepath.Join(root, "kafka"), devKafkaPort(cfg), cfg.Kafka.Topic, cfg.Kafka.DLQTopic, int32(cfg.Kafka.Partitions))
		if err != nil {
			return err
		}
		defer stop()
		cfg.Kafka.Brokers = brokers
		log.Info("dev_kafka_ready", "brokers", brokers, "kind", "in-process (kfake)")
	}
	if cfg.API.Token == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		cfg.API.Token = hex.EncodeToString(b)
	}

	ready := func(addr string) {
		host, port, _ := net.SplitHostPort(addr)
		if host == "" || host == "::" || host == "0.0.0.0" {
			host = "localhost"
		}
		base := "http://" + net.JoinHostPort(host, port)
		fmt.Fprintf(stdout, "\n  order service (dev) is up\n\n"+
			"  page:       %s/\n"+
			"  try order:  %s/?id=%s\n"+
			"  API:        %s/api/v1/orders?limit=10\n"+
			"  API token:  %s   (Authorization: Bearer ...)\n"+
			"  metrics:    %s/metrics\n"+
			"  kafka:      %s   (app produce / app dlq use it with --brokers, or by default on 9092)\n"+
			"  traffic:    %.0f orders/s, %.0f%% bad (to the DLQ %s)\n\n"+
			"  Ctrl-C stops everything; data stays in %s/\n\n",
			base, base, orders.SampleUID, base, cfg.API.Token, base, cfg.Kafka.Brokers, rate, invalid*100, cfg.Kafka.DLQTopic, devDataDir)
		go devTraffic(ctx, cfg.Kafka.Brokers, cfg.Kafka.Topic, rate, invalid, cfg, log)
	}
	return runService(ctx, cfg, log, ready)
}

// devKafkaPort is the port of the configured broker address (9092 by default) when
// it is free, so `app produce` and `app dlq` reach the dev broker with no flags;
// otherwise any free port (dev prints the address).
func devKafkaPort(cfg configs.Config) int {
	if list := cfg.BrokerList(); len(list) > 0 {
		if _, port, err := net.SplitHostPort(list[0]); err == nil {
			if l, err := net.Listen("tcp", "127.0.0.1:"+port); err == nil {
				_ = l.Close()
				p, _ := strconv.Atoi(port)
				return p
			}
		}
	}
	p, err := pgserver.FreePort()
	if err != nil {
		return 0 // kfake then listens on any free port
	}
	return p
}

// startDevKafka runs an in-process Kafka-protocol broker (franz-go kfake) on port
// whose log is kept under dir, with the input and DLQ topics created.
func startDevKafka(dir string, port int, topic, dlq string, partitions int32) (string, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("dev: kafka data dir: %w", err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir),
		kfake.SeedTopics(partitions, topic), kfake.SeedTopics(1, dlq), kfake.AllowAutoTopicCreation())
	if err != nil {
		return "", nil, fmt.Errorf("dev: in-process kafka: %w", err)
	}
	return strings.Join(c.ListenAddrs(), ","), c.Close, nil
}

// devTraffic publishes the canonical sample order, then a gentle stream of test
// orders until ctx ends.
func devTraffic(ctx context.Context, brokers, topic string, rate, invalid float64, cfg configs.Config, log *slog.Logger) {
	if err := kafkaedge.ProduceOne(ctx, brokers, topic, []byte(orders.SampleUID), orders.Sample()); err != nil {
		log.Warn("dev_sample_produce_failed", "error", err)
	}
	if rate <= 0 {
		return
	}
	o := produceOptions{count: math.MaxInt32, rate: rate, invalidRatio: invalid, brokers: brokers, topic: topic, quiet: true}
	if _, err := produce(ctx, o, cfg, io.Discard); err != nil && ctx.Err() == nil {
		log.Warn("dev_traffic_stopped", "error", err)
	}
}

func hasEnv(environ []string, name string) bool {
	for _, kv := range environ {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}
