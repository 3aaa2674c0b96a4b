package configs

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// librdkafka properties under kafka.consumer and kafka.producer load from a
// file (nested or dotted YAML keys) and from the environment, and reach the
// Kafka section by their librdkafka names.
func TestKafkaPassThroughLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "kafka:\n" +
		"  consumer:\n" +
		"    fetch.max.bytes: 52428800\n" +
		"    session:\n" +
		"      timeout:\n" +
		"        ms: 30000\n" +
		"  producer:\n" +
		"    compression.type: zstd\n" +
		"    linger.ms: 20\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{
		"ORDERS_KAFKA_PRODUCER_COMPRESSION_TYPE=lz4", // the environment wins over the file
		"ORDERS_KAFKA_CONSUMER_MAX_PARTITION_FETCH_BYTES=1048576",
		"ORDERS_KAFKA_CONSUMER_CLIENT_ID=orders-eu-1",
		"ORDERS_KAFKA_PRODUCER_LOG__LEVEL=6", // "__" is a literal underscore: log_level
	})
	if err != nil {
		t.Fatal(err)
	}
	wantConsumer := map[string]string{
		"fetch.max.bytes": "52428800", "session.timeout.ms": "30000",
		"max.partition.fetch.bytes": "1048576", "client.id": "orders-eu-1",
	}
	wantProducer := map[string]string{"compression.type": "lz4", "linger.ms": "20", "log_level": "6"}
	if !maps.Equal(c.Kafka.Consumer, wantConsumer) {
		t.Errorf("consumer properties %v, want %v", c.Kafka.Consumer, wantConsumer)
	}
	if !maps.Equal(c.Kafka.Producer, wantProducer) {
		t.Errorf("producer properties %v, want %v", c.Kafka.Producer, wantProducer)
	}
	d := Default()
	if len(d.Kafka.Consumer) != 0 || len(d.Kafka.Producer) != 0 {
		t.Errorf("the defaults pass properties through: %v %v", d.Kafka.Consumer, d.Kafka.Producer)
	}
}

// The environment names of pass-through keys map both ways, and no ordinary
// key could be read as one (the mapping is unambiguous).
func TestKafkaPassThroughEnvNames(t *testing.T) {
	for key, env := range map[string]string{
		"kafka.consumer.fetch.max.bytes":    "ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTES",
		"kafka.producer.compression.type":   "ORDERS_KAFKA_PRODUCER_COMPRESSION_TYPE",
		"kafka.producer.log_level":          "ORDERS_KAFKA_PRODUCER_LOG__LEVEL",
		"kafka.consumer.topic.metadata.ttl": "ORDERS_KAFKA_CONSUMER_TOPIC_METADATA_TTL",
	} {
		if got := EnvName(key); got != env {
			t.Errorf("EnvName(%s) = %s, want %s", key, got, env)
		}
		if got, ok := passThroughEnv(env); !ok || got != key {
			t.Errorf("passThroughEnv(%s) = %s %v, want %s", env, got, ok, key)
		}
	}
	for _, n := range EnvNames() {
		if _, ok := passThroughEnv(n); ok {
			t.Errorf("%s of an ordinary key reads as a pass-through property", n)
		}
	}
	for _, n := range []string{"ORDERS_KAFKA_CONSUMER", "ORDERS_KAFKA_CONSUMER_", "ORDERS_KAFKA_TOPIC"} {
		if key, ok := passThroughEnv(n); ok {
			t.Errorf("%s reads as pass-through key %s", n, key)
		}
	}
}

// Every refused pass-through property is a one-line *Error naming its key and
// environment variable, with librdkafka's or the service's reason.
func TestKafkaPassThroughRefused(t *testing.T) {
	cases := []struct {
		name, env, key, reason string
	}{
		{"unknown", "ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTEZ=1", "kafka.consumer.fetch.max.bytez", "unknown librdkafka property"},
		{"unknown producer", "ORDERS_KAFKA_PRODUCER_COMPRESSION_KIND=lz4", "kafka.producer.compression.kind", "unknown librdkafka property"},
		{"consumer property on the producer", "ORDERS_KAFKA_PRODUCER_FETCH_MAX_BYTES=52428800", "kafka.producer.fetch.max.bytes", "a consumer property, which a producer ignores"},
		{"producer property on the consumer", "ORDERS_KAFKA_CONSUMER_LINGER_MS=5", "kafka.consumer.linger.ms", "a producer property, which a consumer ignores"},
		{"invalid number", "ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTES=lots", "kafka.consumer.fetch.max.bytes", "Invalid value"},
		{"invalid enum (alias named by the user's name)", "ORDERS_KAFKA_PRODUCER_COMPRESSION_TYPE=zip", "kafka.producer.compression.type", `Invalid value "zip"`},
		{"out of range", "ORDERS_KAFKA_CONSUMER_SESSION_TIMEOUT_MS=0", "kafka.consumer.session.timeout.ms", "outside allowed range"},
		{"invalid log level", "ORDERS_KAFKA_CONSUMER_LOG__LEVEL=loud", "kafka.consumer.log_level", "Invalid value"},
		{"managed: bootstrap", "ORDERS_KAFKA_CONSUMER_BOOTSTRAP_SERVERS=h:1", "kafka.consumer.bootstrap.servers", "managed by the service: set by kafka.brokers"},
		{"managed: group", "ORDERS_KAFKA_CONSUMER_GROUP_ID=g", "kafka.consumer.group.id", "set by kafka.group_id"},
		{"managed: auto commit", "ORDERS_KAFKA_CONSUMER_ENABLE_AUTO_COMMIT=true", "kafka.consumer.enable.auto.commit", "managed by the service"},
		{"managed: isolation", "ORDERS_KAFKA_CONSUMER_ISOLATION_LEVEL=read_uncommitted", "kafka.consumer.isolation.level", "read_committed"},
		{"managed: assignment", "ORDERS_KAFKA_CONSUMER_PARTITION_ASSIGNMENT_STRATEGY=range", "kafka.consumer.partition.assignment.strategy", "cooperative-sticky"},
		{"managed: security", "ORDERS_KAFKA_PRODUCER_SASL_USERNAME=u", "kafka.producer.sasl.username", "kafka.security_protocol"},
		{"managed: idempotence", "ORDERS_KAFKA_PRODUCER_ENABLE_IDEMPOTENCE=false", "kafka.producer.enable.idempotence", "managed by the service"},
		{"managed: acks", "ORDERS_KAFKA_PRODUCER_ACKS=1", "kafka.producer.acks", "managed by the service"},
		{"managed: partitioner", "ORDERS_KAFKA_PRODUCER_PARTITIONER=random", "kafka.producer.partitioner", "murmur2_random"},
		{"managed: go.*", "ORDERS_KAFKA_PRODUCER_GO_DELIVERY_REPORTS=false", "kafka.producer.go.delivery.reports", "confluent-kafka-go"},
		{"conflicts with the service's idempotence", "ORDERS_KAFKA_PRODUCER_MAX_IN_FLIGHT=10", "kafka.producer.max.in.flight", "idempotence"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("", []string{tc.env})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.Key != tc.key {
				t.Fatalf("error names %q, want %q: %v", ce.Key, tc.key, err)
			}
			msg := err.Error()
			env, _, _ := strings.Cut(tc.env, "=")
			if !strings.Contains(msg, "("+env+")") || !strings.Contains(msg, tc.reason) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s with %q", msg, env, tc.reason)
			}
		})
	}
}

// A file's pass-through property is refused like an environment one, and a
// list is not a librdkafka value.
func TestKafkaPassThroughRefusedInFile(t *testing.T) {
	for yaml, key := range map[string]string{
		"kafka:\n  consumer:\n    fetch.max.bytez: 1\n":                          "kafka.consumer.fetch.max.bytez",
		"kafka:\n  producer:\n    debug: [broker, topic]\n":                      "kafka.producer.debug",
		"kafka:\n  producer:\n    transactional.id: mine\n":                      "kafka.producer.transactional.id",
		"kafka:\n  consumer:\n    auto:\n      offset:\n        reset: latest\n": "kafka.consumer.auto.offset.reset",
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, nil)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%q: want an error naming %s, got %v", yaml, key, err)
		}
	}
}

// Properties librdkafka accepts one by one but not together are refused under
// their section's key, naming them.
func TestKafkaPassThroughRefusedTogether(t *testing.T) {
	_, err := Load("", []string{
		"ORDERS_KAFKA_CONSUMER_FETCH_MAX_BYTES=2000000",
		"ORDERS_KAFKA_CONSUMER_MESSAGE_MAX_BYTES=3000000",
	})
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "kafka.consumer" ||
		!strings.Contains(err.Error(), "fetch.max.bytes, message.max.bytes") {
		t.Fatalf("want an error naming kafka.consumer and both properties, got %v", err)
	}
}
