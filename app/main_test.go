package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
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
	s := startTestService(t, "ORDERS_LOG_LEVEL=warn")
	const uid = "b563feb7b2b84b6test"
	testenv.KafkaProduce(t, s.brokers, s.topic, &kgo.Record{Key: []byte(uid), Value: ordersgen.Sample()})
	body := waitStatus(t, s.base+"/order/"+uid, 200, 60*time.Second)
	if !sameJSON(t, body, ordersgen.Sample()) {
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
