package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConfigErrorsExitTwoWithOneLine(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"serve"}, nil, "ORDERS_POSTGRES_DSN"},
		{[]string{"serve"}, []string{"ORDERS_POSTGRES_DSN=postgres://u@h:1/db", "ORDERS_CACHE_MAX_BYTES=lots"}, "ORDERS_CACHE_MAX_BYTES"},
		{[]string{"migrate", "status"}, []string{"ORDERS_KAFKA_BROKERS=nope"}, "ORDERS_KAFKA_BROKERS"},
		{[]string{"serve", "--config", "/no/such/file.yaml"}, nil, "--config"},
		{[]string{"frobnicate"}, nil, "unknown subcommand"},
		{[]string{"migrate", "sideways"}, []string{"ORDERS_POSTGRES_DSN=postgres://u@h:1/db"}, "unknown action"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, tc.env, &out, &errb)
			if code != exitUsage {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, exitUsage, errb.String())
			}
			msg := strings.TrimSpace(errb.String())
			if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, tc.want) {
				t.Fatalf("want one line naming %s, got:\n%s", tc.want, msg)
			}
		})
	}
}

func TestMigrateUpDownStatus(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	env := []string{"ORDERS_POSTGRES_DSN=" + dsn}
	for _, action := range []string{"up", "status", "down", "status", "up"} {
		var out, errb bytes.Buffer
		if code := run([]string{"migrate", action}, env, &out, &errb); code != 0 {
			t.Fatalf("migrate %s: exit %d: %s", action, code, errb.String())
		}
		if out.Len() == 0 {
			t.Fatalf("migrate %s printed no status", action)
		}
	}
}

// TestServeEndToEnd runs the whole service against real PostgreSQL and the test
// broker: the canonical order goes in through Kafka and comes out of the API.
func TestServeEndToEnd(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "orders")
	dlq := topic + "-dlq"
	testenv.KafkaCreateTopic(t, brokers, topic, 4)
	testenv.KafkaCreateTopic(t, brokers, dlq, 1)
	group := topic + "-group"
	cfg, err := configs.Load("", []string{
		"ORDERS_POSTGRES_DSN=" + dsn, "ORDERS_KAFKA_BROKERS=" + brokers, "ORDERS_KAFKA_TOPIC=" + topic,
		"ORDERS_KAFKA_DLQ_TOPIC=" + dlq, "ORDERS_KAFKA_GROUP_ID=" + group, "ORDERS_HTTP_ADDR=127.0.0.1:0",
		"ORDERS_API_TOKEN=secret", "ORDERS_LOG_LEVEL=warn",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- runService(ctx, cfg, newLogger(cfg.Log, &syncWriter{w: &logs}), func(a string) { addrc <- a })
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("service stopped before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("service did not listen within 60 s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("service stopped with error: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("service did not stop within 40 s of cancellation")
		}
	})
	waitStatus(t, base+"/ready", 200, 60*time.Second)

	const uid = "b563feb7b2b84b6test"
	testenv.KafkaProduce(t, brokers, topic, &kgo.Record{Key: []byte(uid), Value: ordersgen.Sample()})
	body := waitStatus(t, base+"/order/"+uid, 200, 60*time.Second)
	if !sameJSON(t, body, ordersgen.Sample()) {
		t.Fatalf("order differs from the sample:\n%s", body)
	}
	for lag := testenv.KafkaGroupLag(t, brokers, group, topic); lag != 0; lag = testenv.KafkaGroupLag(t, brokers, group, topic) {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("cancelled")
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"orders_cache_hits_total", "orders_http_request_duration_seconds", "go_goroutines"} {
		if !bytes.Contains(metrics, []byte(name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// waitStatus polls url until it answers want (bounded by limit) and returns the body.
func waitStatus(t *testing.T, url string, want int, limit time.Duration) []byte {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return b
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within %s; last: %s", url, want, limit, last)
	return nil
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// syncWriter serialises writes from the service's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
