package kafkaedge

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func headerOf(m *kafka.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// A letter too large for the DLQ topic is cut in two steps, keeping the reason
// and source position; a small letter is never cut.
func TestFitLetter(t *testing.T) {
	value := bytes.Repeat([]byte("0123456789"), 200_000) // 2 MB
	r := &Record{
		Topic: "orders", Partition: 3, Offset: 77, Key: []byte("uid-1"), Value: value,
		Headers: []Header{{Key: "traceparent", Value: []byte("00-abc")}},
	}
	m := deadLetter("dlq", r, Failure{Class: "too_large", Stage: "decode", Reason: "over the bound"})

	first, ok := fitLetter(m)
	if !ok {
		t.Fatal("a 2 MB letter was not cut")
	}
	if len(first.Value) != letterKeepValue || !bytes.Equal(first.Value, value[:letterKeepValue]) {
		t.Fatalf("first cut kept %d bytes, want the first %d", len(first.Value), letterKeepValue)
	}
	sum := sha256.Sum256(value)
	if v, _ := headerOf(first, HeaderValueTruncated); v != strconv.Itoa(len(value)) {
		t.Errorf("x-value-truncated %q", v)
	}
	if v, _ := headerOf(first, HeaderValueSHA256); v != hex.EncodeToString(sum[:]) {
		t.Errorf("x-value-sha256 %q", v)
	}
	for _, k := range []string{"traceparent", HeaderError, HeaderSourceOffset, HeaderSourcePartition} {
		if _, ok := headerOf(first, k); !ok {
			t.Errorf("first cut lost header %s", k)
		}
	}
	if first.Opaque != m.Opaque {
		t.Error("the fitted letter must keep the held letter's source reference")
	}

	second, ok := fitLetter(first)
	if !ok || len(second.Value) != 0 {
		t.Fatalf("second cut: ok %v, %d bytes left", ok, len(second.Value))
	}
	if _, ok := headerOf(second, "traceparent"); ok {
		t.Error("second cut kept the original headers")
	}
	for _, k := range []string{HeaderValueTruncated, HeaderValueSHA256, HeaderError, HeaderSourceOffset} {
		if _, ok := headerOf(second, k); !ok {
			t.Errorf("second cut lost header %s", k)
		}
	}
	if _, ok := fitLetter(second); ok {
		t.Error("a letter with nothing left to cut was cut again")
	}

	small := deadLetter("dlq", &Record{Topic: "orders", Key: []byte("k"), Value: []byte("{bad")}, Failure{Class: "decode"})
	if _, ok := fitLetter(small); ok {
		t.Error("a small letter was cut")
	}
}

// A truncated letter and one the client could not read are not replayed; an
// ordinary one is.
func TestReplayable(t *testing.T) {
	fromKafkaMsg := func(m *kafka.Message) *Record {
		r := &Record{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, Header{Key: h.Key, Value: h.Value})
		}
		return r
	}
	src := &Record{Topic: "orders", Partition: 1, Offset: 9, Key: []byte("k"), Value: bytes.Repeat([]byte("x"), 2*letterKeepValue)}
	plain := deadLetter("dlq", src, Failure{Class: "decode"})
	if ok, why := Replayable(fromKafkaMsg(plain)); !ok {
		t.Errorf("an ordinary letter is not replayable: %s", why)
	}
	cut, _ := fitLetter(plain)
	if ok, why := Replayable(fromKafkaMsg(cut)); ok || why == "" {
		t.Error("a truncated letter is replayable")
	}
	unreadable := deadLetter("dlq", &Record{Topic: "orders", Partition: 1, Offset: 10}, Failure{Class: ClassFetch})
	if ok, _ := Replayable(fromKafkaMsg(unreadable)); ok {
		t.Error("a letter of class fetch is replayable")
	}
}

// Every client the package builds gets the security properties of UseSecurity.
func TestUseSecurityReachesEveryClient(t *testing.T) {
	t.Cleanup(func() { UseSecurity(Config{}) })
	UseSecurity(Config{SecurityProtocol: "sasl_plaintext", SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p"})
	for name, cm := range map[string]kafka.ConfigMap{
		"consumer":      consumerConfig(SourceConfig{Brokers: "b:1", GroupID: "g"}),
		"transactional": transactionalConfig(CommitterConfig{Brokers: "b:1", TransactionalID: "t"}),
		"producer":      producerConfig("b:1", "c"),
	} {
		if cm["security.protocol"] != "sasl_plaintext" || cm["sasl.username"] != "u" || cm["sasl.password"] != "p" || cm["sasl.mechanism"] != "PLAIN" {
			t.Errorf("%s client config lacks the security properties: %v", name, cm)
		}
	}
	UseSecurity(Config{})
	if _, ok := common("b:1")["security.protocol"]; ok {
		t.Error("the default configuration sets security.protocol")
	}
}

// The in-flight budget admits what fits, one message alone whatever its size,
// and gets each message's bytes back once however it ends.
func TestInFlightBudget(t *testing.T) {
	b := &budget{limit: 100}
	if !b.take(60) || b.take(50) || !b.take(40) {
		t.Fatalf("60 then 50 (refused) then 40: used %d", b.used.Load())
	}
	b.release(100)
	if !b.take(500) {
		t.Fatal("a message larger than the budget must pass when nothing is in flight")
	}
	if b.take(1) {
		t.Fatal("nothing fits next to an oversized message")
	}
	b.release(500)

	tr := newTracker("orders", "dlq")
	tr.assign([]int32{0})
	a := tr.track(0, 7)
	a.rec = &Record{Topic: "orders", Offset: 7, Value: []byte("x")}
	a.budget, a.weight = b, 30
	b.used.Add(30)
	a.DeadLetter(Failure{Class: "decode"})
	a.Done()
	a.DeadLetter(Failure{Class: "decode"})
	if got := b.used.Load(); got != 0 {
		t.Fatalf("used %d after the message ended three ways, want 0 (bytes given back once)", got)
	}
}
