package testenv

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKafkaTopicNameUniqueAndLegal(t *testing.T) {
	legal := regexp.MustCompile(`^[a-zA-Z0-9-]{1,249}$`)
	a := KafkaTopicName(t, "orders.dlq_x")
	b := KafkaTopicName(t, "orders.dlq_x")
	if a == b {
		t.Fatalf("two names are equal: %q", a)
	}
	for _, n := range []string{a, b} {
		if !legal.MatchString(n) {
			t.Errorf("name %q has characters outside [a-zA-Z0-9-] or is too long", n)
		}
		if !strings.HasPrefix(n, "orders-dlq-x-TestKafkaTopicNameUniqueAndLegal-") {
			t.Errorf("name %q does not start with the base and the test name", n)
		}
	}
	t.Run(strings.Repeat("long/", 60), func(t *testing.T) {
		if n := KafkaTopicName(t, "base"); !legal.MatchString(n) {
			t.Errorf("subtest name %q is not a legal topic", n)
		}
	})
}

func TestKafkaCreateTopicIdempotent(t *testing.T) {
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "create")
	KafkaCreateTopic(t, brokers, topic, 3)
	KafkaCreateTopic(t, brokers, topic, 3) // already exists: no failure

	cl, adm := kafkaAdmin(t, brokers)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	if got := len(details[topic].Partitions); got != 3 {
		t.Fatalf("topic %q has %d partitions, want 3", topic, got)
	}
}

func TestKafkaProduceReadAll(t *testing.T) {
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "produce")
	KafkaCreateTopic(t, brokers, topic, 4)

	const n = 40
	want := map[string]string{}
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		k, v := fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i)
		want[k] = v
		recs = append(recs, &kgo.Record{
			Key:     []byte(k),
			Value:   []byte(v),
			Headers: []kgo.RecordHeader{{Key: "x-seq", Value: []byte(k)}},
		})
	}
	KafkaProduce(t, brokers, topic, recs...)

	got := KafkaReadAll(t, brokers, topic, 300*time.Millisecond)
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	partitions := map[int32]bool{}
	for i, r := range got {
		if r.Topic != topic {
			t.Errorf("record %d topic %q, want %q", i, r.Topic, topic)
		}
		if v, ok := want[string(r.Key)]; !ok || v != string(r.Value) {
			t.Errorf("record %d: key %q value %q not produced", i, r.Key, r.Value)
		}
		if len(r.Headers) != 1 || string(r.Headers[0].Value) != string(r.Key) {
			t.Errorf("record %d: headers %v lost", i, r.Headers)
		}
		if i > 0 {
			p := got[i-1]
			if p.Partition > r.Partition || (p.Partition == r.Partition && p.Offset >= r.Offset) {
				t.Errorf("records %d and %d out of partition/offset order", i-1, i)
			}
		}
		partitions[r.Partition] = true
		delete(want, string(r.Key))
	}
	if len(partitions) < 2 {
		t.Errorf("40 keyed records landed in %d partition(s), want them spread", len(partitions))
	}

	// A second read sees the same records: the reader joins no group.
	if again := KafkaReadAll(t, brokers, topic, 100*time.Millisecond); len(again) != n {
		t.Fatalf("second read got %d records, want %d", len(again), n)
	}
}

func TestKafkaReadAllEmptyTopic(t *testing.T) {
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "empty")
	KafkaCreateTopic(t, brokers, topic, 2)
	if got := KafkaReadAll(t, brokers, topic, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("empty topic: read %d records", len(got))
	}
}

func TestKafkaGroupLag(t *testing.T) {
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "lag")
	group := KafkaTopicName(t, "group")
	KafkaCreateTopic(t, brokers, topic, 2)

	if lag := KafkaGroupLag(t, brokers, group, topic); lag != 0 {
		t.Fatalf("empty topic lag = %d, want 0", lag)
	}
	for p := range int32(2) {
		recs := make([]*kgo.Record, 5)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: p, Value: []byte("v")}
		}
		kafkaProduceManual(t, brokers, topic, recs)
	}
	if lag := KafkaGroupLag(t, brokers, group, topic); lag != 10 {
		t.Fatalf("lag before any commit = %d, want 10", lag)
	}

	cl, adm := kafkaAdmin(t, brokers)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var offsets kadm.Offsets
	offsets.AddOffset(topic, 0, 3, -1)
	offsets.AddOffset(topic, 1, 5, -1)
	err := kafkaRetry(ctx, func() error {
		resp, err := adm.CommitOffsets(ctx, group, offsets)
		if err == nil {
			err = resp.Error()
		}
		return err
	})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	if lag := KafkaGroupLag(t, brokers, group, topic); lag != 2 {
		t.Fatalf("lag after committing 3 of 5 and 5 of 5 = %d, want 2", lag)
	}
}

// kafkaProduceManual produces recs to the partitions they name.
func kafkaProduceManual(t *testing.T, brokers, topic string, recs []*kgo.Record) {
	t.Helper()
	cl := kafkaClient(t, brokers, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}
