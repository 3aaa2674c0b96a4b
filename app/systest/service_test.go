// Package systest holds the system tests: they build the service (./app) and run
// the binary, as an operator would, against real PostgreSQL and the test Kafka
// broker (TEST_KAFKA_BROKERS, else the in-process one), through the service
// harness of modules/testkit/testenv. The fault suite (faults_*_test.go) and the
// soak test need a real broker and are long; the others take seconds.
//
//	TEST_KAFKA_BROKERS=127.0.0.1:19092 go test -count=1 ./app/systest/
package systest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/testkit"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// testService is a running service binary on a fresh database and fresh topics.
type testService struct {
	*testenv.Service
	base    string // http://host:port
	cfg     configs.Config
	brokers string
	topic   string
	dlq     string
	group   string
}

// startService runs the service binary (fresh database, fresh topics) until the
// test ends and waits until /ready answers 200. env adds ORDERS_* variables and
// wins over the defaults here.
func startService(t *testing.T, env ...string) *testService {
	t.Helper()
	s := &testService{brokers: testenv.KafkaBrokers(t)}
	dsn := testenv.PostgresDSN(t) // the service migrates it
	s.topic = testenv.KafkaTopicName(t, "orders")
	s.dlq = s.topic + "-dlq"
	s.group = s.topic + "-group"
	testenv.KafkaCreateTopic(t, s.brokers, s.topic, 4)
	testenv.KafkaCreateTopic(t, s.brokers, s.dlq, 1)
	env = append([]string{
		"ORDERS_POSTGRES_DSN=" + dsn, "ORDERS_KAFKA_BROKERS=" + s.brokers, "ORDERS_KAFKA_TOPIC=" + s.topic,
		"ORDERS_KAFKA_DLQ_TOPIC=" + s.dlq, "ORDERS_KAFKA_GROUP_ID=" + s.group,
		"ORDERS_API_TOKEN=secret", "ORDERS_LOG_LEVEL=info",
	}, env...)
	cfg, err := configs.Load("", append(env, "ORDERS_HTTP_ADDR=127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	s.Service = testenv.StartService(t, testenv.ServiceOptions{Binary: testenv.BuildService(t), Env: env})
	s.base = s.URL("")
	t.Cleanup(func() {
		if err := s.Terminate(40 * time.Second); err != nil {
			t.Errorf("service did not stop cleanly: %v\nlog tail:\n%s", err, s.LogTail(4096))
		}
	})
	return s
}

// logs returns everything the service wrote to stdout and stderr so far.
func (s *testService) logs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitCommitted waits until the service's group has committed every record of its topic.
func (s *testService) waitCommitted(t *testing.T, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for lag := testenv.KafkaGroupLag(t, s.brokers, s.group, s.topic); lag != 0; lag = testenv.KafkaGroupLag(t, s.brokers, s.group, s.topic) {
		if time.Now().After(deadline) {
			t.Fatalf("group %s still has lag %d after %s", s.group, lag, limit)
		}
		time.Sleep(200 * time.Millisecond)
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

// TestServeEndToEnd runs the whole service against real PostgreSQL and the test
// broker: the canonical order goes in through Kafka and comes out of the API.
func TestServeEndToEnd(t *testing.T) {
	s := startService(t)
	_, raw := testkit.Canonical(t)
	testenv.KafkaProduce(t, s.brokers, s.topic, &kgo.Record{Key: []byte(orders.SampleUID), Value: raw})
	body := waitStatus(t, s.base+"/order/"+orders.SampleUID, 200, 60*time.Second)
	if !testkit.SameJSON(t, body, raw) {
		t.Fatalf("order differs from the sample:\n%s", body)
	}
	s.waitCommitted(t, 60*time.Second)
	resp, err := http.Get(s.base + "/metrics")
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
