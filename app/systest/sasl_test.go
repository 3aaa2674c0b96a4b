package systest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// The service's Kafka clients (consumer, transactional DLQ producer, API
// appender, admin) authenticate with SASL/PLAIN on a real broker's
// SASL_PLAINTEXT listener, configured by ORDERS_KAFKA_SECURITY_PROTOCOL and
// ORDERS_KAFKA_SASL_*: orders are stored, bad ones dead-lettered, offsets
// committed. With a wrong password the service never turns ready and says why.
func TestKafkaSASL(t *testing.T) {
	requireEnv(t)
	if reason := testenv.KafkaBrokerAvailable(); reason != "" {
		t.Skipf("the SASL case needs its own broker: %s", reason)
	}
	b, saslAddr := testenv.StartKafkaBrokerWithSASL(t, "orders:orders-secret")
	f := newFixture(t, "kafka-sasl", b.Addr(), durableDB(t)) // the test's own clients use the plain listener
	sasl := []string{
		"ORDERS_KAFKA_BROKERS=" + saslAddr,
		"ORDERS_KAFKA_SECURITY_PROTOCOL=sasl_plaintext",
		"ORDERS_KAFKA_SASL_MECHANISM=PLAIN",
		"ORDERS_KAFKA_SASL_USERNAME=orders",
	}
	f.extraEnv = append(f.extraEnv, append(sasl, "ORDERS_KAFKA_SASL_PASSWORD=orders-secret")...)
	g := ordersgen.New(suiteSeed(t) + 81)
	recs := validRecords(g, 200)
	recs = append(recs, &kgo.Record{Key: []byte("sasl-bad"), Value: []byte("{not json")})
	if err := produce(context.Background(), b.Addr(), f.topic, recs, 0); err != nil {
		t.Fatal(err)
	}
	s := f.start()
	f.waitLagZero(90*time.Second, s)
	if got := f.storedUIDs(uidsOf(recs[:200])); got != 200 {
		t.Fatalf("stored %d of 200 orders through the SASL listener", got)
	}
	n := 0
	for _, r := range testenv.KafkaReadAll(t, b.Addr(), f.dlq, time.Second) {
		if string(r.Key) == "sasl-bad" && header(r, kafkaedge.HeaderErrorClass) == "decode" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d dead letters for the bad message, want 1 (the transactional producer over SASL)", n)
	}
	stop(t, s)

	// A wrong password: never ready, and the log says the authentication failed.
	env := append(append([]string{}, f.env()...), append(sasl, "ORDERS_KAFKA_SASL_PASSWORD=wrong")...)
	bad := testenv.StartProcess(t, testenv.ServiceOptions{Binary: f.bin, Env: env})
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if bad.Addr() != "" && readyStatus(bad) == 200 {
			t.Fatal("the service turned ready with a wrong SASL password")
		}
		time.Sleep(250 * time.Millisecond)
	}
	logs, _ := os.ReadFile(bad.LogPath())
	if !strings.Contains(strings.ToLower(string(logs)), "authentication") {
		t.Errorf("the log of the service with a wrong password does not mention the authentication:\n%s", bad.LogTail(3000))
	}
	_ = bad.Kill()
	t.Logf("200 orders stored and 1 letter dead-lettered through SASL_PLAINTEXT/PLAIN; a wrong password kept /ready off for 6 s")
}
