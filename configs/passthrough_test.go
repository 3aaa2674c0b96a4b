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
	yaml := "kafka:\n" +
		"  consumer:\n" +
		"    fetch.max.bytes: 52428800\n" +
		"    session:\n" +
		"      timeout:\n" +
		"        ms: 30000\n" +
		"  producer:\n" +
		"    compression.type: zstd\n" +
		"    linger.ms: 20\n"
	path := configFile(t, yaml)
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
		{"managed: delivery reports of failures only", "ORDERS_KAFKA_PRODUCER_DELIVERY_REPORT_ONLY_ERROR=true", "kafka.producer.delivery.report.only.error", "waits for its delivery report"},
		{"managed: lifo queuing", "ORDERS_KAFKA_PRODUCER_QUEUING_STRATEGY=lifo", "kafka.producer.queuing.strategy", "in the order they were written"},
		{"managed: hidden topics", "ORDERS_KAFKA_CONSUMER_TOPIC_BLACKLIST=orders", "kafka.consumer.topic.blacklist", "hides topics"},
		{"callbacks are librdkafka's refusal", "ORDERS_KAFKA_PRODUCER_DR__MSG__CB=x", "kafka.producer.dr_msg_cb", "must be set through dedicated"},
		{"managed: file offset store", "ORDERS_KAFKA_CONSUMER_OFFSET_STORE_METHOD=file", "kafka.consumer.offset.store.method", "on the broker"},
		{"managed: certificate verification", "ORDERS_KAFKA_CONSUMER_ENABLE_SSL_CERTIFICATE_VERIFICATION=false", "kafka.consumer.enable.ssl.certificate.verification", "kafka.security_protocol"},
		{"managed: unsecured jwt", "ORDERS_KAFKA_PRODUCER_ENABLE_SASL_OAUTHBEARER_UNSECURE_JWT=true", "kafka.producer.enable.sasl.oauthbearer.unsecure.jwt", "kafka.security_protocol"},
		{"managed: ssl engine", "ORDERS_KAFKA_PRODUCER_SSL__ENGINE__LOCATION=/tmp/e.so", "kafka.producer.ssl_engine_location", "kafka.security_protocol"},
		{"managed: oauthbearer", "ORDERS_KAFKA_CONSUMER_SASL_OAUTHBEARER_CLIENT_ID=x", "kafka.consumer.sasl.oauthbearer.client.id", "kafka.security_protocol"},
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
		wantErrorNaming(t, yaml, key)
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

// A property that librdkafka accepts on its own but not with the settings the
// service gives the client it lands on is refused under its own key, quoting
// librdkafka and the service's setting; the check uses the loaded
// configuration (api.append_timeout sets the appender's message timeout).
func TestKafkaPassThroughRefusedWithServiceSettings(t *testing.T) {
	cases := []struct {
		env     []string
		key     string
		reasons []string
	}{
		{
			[]string{"ORDERS_KAFKA_CONSUMER_MESSAGE_MAX_BYTES=20000000"},
			"kafka.consumer.message.max.bytes",
			[]string{"`fetch.max.bytes` must be >= `message.max.bytes`", "the source's consumer", "fetch.max.bytes=16777216"},
		},
		{
			[]string{"ORDERS_KAFKA_PRODUCER_LINGER_MS=10000"},
			"kafka.producer.linger.ms",
			[]string{"`message.timeout.ms` must be greater than `linger.ms`", "the API's appender", "message.timeout.ms=5000"},
		},
		{[]string{"ORDERS_KAFKA_PRODUCER_QUEUE_BUFFERING_MAX_MS=10000"}, "kafka.producer.queue.buffering.max.ms", // linger.ms's alias
			[]string{"`message.timeout.ms` must be greater than `linger.ms`", "message.timeout.ms=5000"}},
		{
			[]string{"ORDERS_KAFKA_PRODUCER_SOCKET_TIMEOUT_MS=120000"},
			"kafka.producer.socket.timeout.ms",
			[]string{"`socket.timeout.ms` must be set <= `transaction.timeout.ms` + 100", "the dead-letter producer", "transaction.timeout.ms=30000"},
		},
		{
			[]string{"ORDERS_API_APPEND_TIMEOUT=2s", "ORDERS_KAFKA_PRODUCER_LINGER_MS=3000"},
			"kafka.producer.linger.ms",
			[]string{"message.timeout.ms=2000"},
		},
	}
	for _, tc := range cases {
		_, err := Load("", tc.env)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%v: want an error naming %s, got %v", tc.env, tc.key, err)
			continue
		}
		for _, r := range tc.reasons {
			if !strings.Contains(err.Error(), r) {
				t.Errorf("%v: error %q lacks %q", tc.env, err, r)
			}
		}
	}
	// A longer append timeout makes room for the same linger.
	if _, err := Load("", []string{"ORDERS_API_APPEND_TIMEOUT=20s", "ORDERS_KAFKA_PRODUCER_LINGER_MS=10000"}); err != nil {
		t.Errorf("linger.ms 10000 with api.append_timeout 20s: %v", err)
	}
}

// librdkafka names of which one is a prefix of the other (api.version.request
// and api.version.request.timeout.ms) load side by side from the environment,
// in either order, and from a file, nested or dotted.
func TestKafkaPassThroughPrefixNames(t *testing.T) {
	want := map[string]string{"api.version.request": "true", "api.version.request.timeout.ms": "20000"}
	for _, environ := range [][]string{
		{"ORDERS_KAFKA_CONSUMER_API_VERSION_REQUEST=true", "ORDERS_KAFKA_CONSUMER_API_VERSION_REQUEST_TIMEOUT_MS=20000"},
		{"ORDERS_KAFKA_CONSUMER_API_VERSION_REQUEST_TIMEOUT_MS=20000", "ORDERS_KAFKA_CONSUMER_API_VERSION_REQUEST=true"},
	} {
		c, err := Load("", environ)
		if err != nil || !maps.Equal(c.Kafka.Consumer, want) {
			t.Errorf("%v: got %v, %v; want %v", environ, c.Kafka.Consumer, err, want)
		}
	}
	for _, yaml := range []string{
		"kafka:\n  consumer:\n    api.version.request: true\n    api.version.request.timeout.ms: 20000\n",
		"kafka:\n  consumer:\n    api.version.request.timeout.ms: 20000\n    api:\n      version:\n        request: true\n",
		"kafka.consumer.api.version.request: true\nkafka:\n  consumer:\n    api.version.request.timeout.ms: 20000\n",
	} {
		path := configFile(t, yaml)
		c, err := Load(path, nil)
		if err != nil || !maps.Equal(c.Kafka.Consumer, want) {
			t.Errorf("%q: got %v, %v; want %v", yaml, c.Kafka.Consumer, err, want)
		}
		// The environment replaces the file's value, and only that one.
		c, err = Load(path, []string{"ORDERS_KAFKA_CONSUMER_API_VERSION_REQUEST=false"})
		if err != nil || c.Kafka.Consumer["api.version.request"] != "false" || c.Kafka.Consumer["api.version.request.timeout.ms"] != "20000" {
			t.Errorf("%q with the environment: got %v, %v", yaml, c.Kafka.Consumer, err)
		}
	}
}

// A file that sets one key twice (nested and dotted) or gives a pass-through
// section a value of its own is refused, naming the key; an empty section is
// none.
func TestKafkaPassThroughFileShape(t *testing.T) {
	for yaml, key := range map[string]string{
		"kafka:\n  producer:\n    linger.ms: 5\n    linger:\n      ms: 6\n": "kafka.producer.linger.ms",
		"kafka:\n  consumer: 5\n":              "kafka.consumer",
		"kafka:\n  topic: a\nkafka.topic: b\n": "kafka.topic",
	} {
		wantErrorNaming(t, yaml, key)
	}
	path := configFile(t, "kafka:\n  consumer:\n  producer:\n    # linger.ms: 5\n  topic: t1\n")
	c, err := Load(path, nil)
	if err != nil || len(c.Kafka.Consumer) != 0 || len(c.Kafka.Producer) != 0 || c.Kafka.Topic != "t1" {
		t.Errorf("empty sections: got %v %v %q, %v", c.Kafka.Consumer, c.Kafka.Producer, c.Kafka.Topic, err)
	}
}

// configFile writes yaml to a configuration file of its own and returns its path.
func configFile(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErrorNaming fails unless loading the file yaml fails with an error naming key.
func wantErrorNaming(t *testing.T, yaml, key string) {
	t.Helper()
	_, err := Load(configFile(t, yaml), nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != key {
		t.Errorf("%q: want an error naming %s, got %v", yaml, key, err)
	}
}
