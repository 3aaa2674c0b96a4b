package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	c, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Brokers != "localhost:9092" || c.Kafka.Topic != "orders" || c.Kafka.DLQTopic != "orders-dlq" ||
		c.Kafka.GroupID != "order-service" || c.HTTP.Addr != ":8081" || c.API.Token != "" || c.Cache.MaxBytes != 268435456 {
		t.Fatalf("defaults differ from the contract: %+v", c)
	}
	if c.Postgres.ReadDSN != "" {
		t.Fatalf("read_dsn defaults to %q, want empty (the primary)", c.Postgres.ReadDSN)
	}
	if c.Pipeline.BatchLinger != 0 || c.Pipeline.Writers != 2 {
		t.Fatalf("batch_linger %v (want 0: adaptive), writers %d (want 2)", c.Pipeline.BatchLinger, c.Pipeline.Writers)
	}
	if err := c.RequireDSN(); err == nil || !strings.Contains(err.Error(), "ORDERS_POSTGRES_DSN") {
		t.Fatalf("RequireDSN: %v", err)
	}
}

func TestContractEnvNames(t *testing.T) {
	names := map[string]bool{}
	for _, n := range EnvNames() {
		names[n] = true
	}
	for _, want := range []string{
		"ORDERS_POSTGRES_DSN", "ORDERS_KAFKA_BROKERS", "ORDERS_KAFKA_TOPIC", "ORDERS_KAFKA_DLQ_TOPIC",
		"ORDERS_KAFKA_GROUP_ID", "ORDERS_HTTP_ADDR", "ORDERS_API_TOKEN", "ORDERS_CACHE_MAX_BYTES",
		"ORDERS_POSTGRES_READ_DSN",
	} {
		if !names[want] {
			t.Errorf("%s is not a config variable", want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("kafka:\n  topic: fromfile\n  group_id: filegroup\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, []string{
		"ORDERS_KAFKA_TOPIC=fromenv", "ORDERS_CACHE_MAX_BYTES=2097152",
		"ORDERS_KAFKA_DLQ_TOPIC=dead", "ORDERS_POSTGRES_DSN=postgres://u:p@h:5432/db?sslmode=disable", "PATH=/bin",
		"ORDERS_POSTGRES_READ_DSN=postgres://u:p@standby:5432/db?sslmode=disable",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Topic != "fromenv" || c.Kafka.GroupID != "filegroup" || c.Cache.MaxBytes != 2097152 || c.Kafka.DLQTopic != "dead" {
		t.Fatalf("precedence wrong: %+v", c.Kafka)
	}
	if err := c.RequireDSN(); err != nil {
		t.Fatal(err)
	}
	if c.Postgres.ReadDSN != "postgres://u:p@standby:5432/db?sslmode=disable" {
		t.Fatalf("read_dsn %q", c.Postgres.ReadDSN)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		env  string
		want string
	}{
		{"ORDERS_CACHE_MAX_BYTES=lots", "ORDERS_CACHE_MAX_BYTES"},
		{"ORDERS_CACHE_MAX_BYTES=10", "ORDERS_CACHE_MAX_BYTES"},
		{"ORDERS_HTTP_ADDR=8081", "ORDERS_HTTP_ADDR"},
		{"ORDERS_KAFKA_BROKERS=", "ORDERS_KAFKA_BROKERS"},
		{"ORDERS_KAFKA_BROKERS=host-without-port", "ORDERS_KAFKA_BROKERS"},
		{"ORDERS_KAFKA_TOPIC=bad topic", "ORDERS_KAFKA_TOPIC"},
		{"ORDERS_KAFKA_DLQ_TOPIC=orders", "ORDERS_KAFKA_DLQ_TOPIC"},
		{"ORDERS_POSTGRES_DSN=mysql://x", "ORDERS_POSTGRES_DSN"},
		{"ORDERS_POSTGRES_READ_DSN=mysql://x", "postgres.read_dsn (ORDERS_POSTGRES_READ_DSN)"},
		{"ORDERS_POSTGRES_READ_DSN=postgres://", "postgres.read_dsn"},
		{"ORDERS_PIPELINE_BATCH_LINGER=soon", "ORDERS_PIPELINE_BATCH_LINGER"},
		{"ORDERS_LOG_LEVEL=loud", "ORDERS_LOG_LEVEL"},
		{"ORDERS_KAFKA_TOPICS=typo", "ORDERS_KAFKA_TOPICS"},
		{"ORDERS_KAFKA_SECURITY_PROTOCOL=tls", "ORDERS_KAFKA_SECURITY_PROTOCOL"},
		{"ORDERS_KAFKA_SECURITY_PROTOCOL=sasl_ssl", "ORDERS_KAFKA_SASL_MECHANISM"},
		{"ORDERS_KAFKA_SASL_USERNAME=u", "ORDERS_KAFKA_SASL_MECHANISM"},
		{"ORDERS_KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem", "ORDERS_KAFKA_SSL_CA_LOCATION"},
		{"ORDERS_TRACING_ENDPOINT=ftp://collector:4317", "ORDERS_TRACING_ENDPOINT"},
		{"ORDERS_TRACING_CA_FILE=/nonexistent/ca.pem", "ORDERS_TRACING_CA_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.env, func(t *testing.T) {
			_, err := Load("", []string{tc.env})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not name %s in one line", err, tc.want)
			}
		})
	}
}

func TestUnknownFileKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("kafka:\n  topik: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "kafka.topik") {
		t.Fatalf("want error naming kafka.topik, got %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("missing file: %v", err)
	}
}

// The Kafka security settings load together and become librdkafka's properties;
// the SASL password comes from the environment.
func TestKafkaSecurity(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load("", []string{
		"ORDERS_KAFKA_SECURITY_PROTOCOL=sasl_ssl",
		"ORDERS_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
		"ORDERS_KAFKA_SASL_USERNAME=orders",
		"ORDERS_KAFKA_SASL_PASSWORD=s3cret",
		"ORDERS_KAFKA_SSL_CA_LOCATION=" + ca,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
		"sasl.username": "orders", "sasl.password": "s3cret", "ssl.ca.location": ca,
	}
	got := c.Kafka.Security()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("properties %v, want exactly %v", got, want)
	}
	// Mutual TLS needs both halves.
	if _, err := Load("", []string{"ORDERS_KAFKA_SECURITY_PROTOCOL=ssl", "ORDERS_KAFKA_SSL_CERTIFICATE_LOCATION=" + ca}); err == nil ||
		!strings.Contains(err.Error(), "ORDERS_KAFKA_SSL_KEY_LOCATION") {
		t.Errorf("a certificate without its key: %v", err)
	}
}
