package kafkaedge

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// member is a real group member of the test's group, assigned partitions of topic.
func member(t *testing.T, brokers, group, topic string) *kafka.Consumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": false,
		"auto.offset.reset": "earliest", "enable.metrics.push": false, "broker.address.family": "v4",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c.Poll(100)
		if parts, err := c.Assignment(); err == nil && len(parts) > 0 {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("no partitions assigned in 60 s")
		}
	}
}

func newTestCommitter(t *testing.T, brokers, topic, dlqTopic string) *Committer {
	t.Helper()
	d, err := NewCommitter(CommitterConfig{Brokers: brokers, Topic: topic, DLQTopic: dlqTopic, TransactionalID: testenv.KafkaTopicName(t, "txn"), OpTimeout: 30 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// committedOffsets returns the group's committed offset per partition of topic.
func committedOffsets(t *testing.T, brokers, group, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// waitCommitted waits up to 30 s for the group's committed offset of partition 0
// of topic to be want, and returns what it last saw. Offsets committed by a
// transaction become visible once the coordinator has written the commit markers,
// which it does after CommitTransaction returned.
func waitCommitted(t *testing.T, brokers, group, topic string, want int64) map[int32]int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := committedOffsets(t, brokers, group, topic)
		if got[0] == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deadLetters tracks offsets 0..n-1 of partition 0, dead-letters the even ones
// and completes the odd ones.
func deadLetters(tr *tracker, dlqTopic string, n int64) {
	tr.assign([]int32{0})
	for off := range n {
		a := tr.track(0, off)
		if off%2 == 1 {
			a.Done()
			continue
		}
		a.deadLetter(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &dlqTopic, Partition: kafka.PartitionAny},
			Key:            []byte(strconv.FormatInt(off, 10)),
			Value:          []byte("bad"),
			Opaque:         letterRef{partition: 0, offset: off},
		})
	}
}

// dlqFixture creates a one-partition input topic and DLQ topic on the test
// broker and names a consumer group for them.
func dlqFixture(t *testing.T) (brokers, topic, dlqTopic, group string) {
	t.Helper()
	brokers = testenv.KafkaBrokers(t)
	topic, dlqTopic = testenv.KafkaTopicName(t, "in"), testenv.KafkaTopicName(t, "dlq")
	testenv.KafkaCreateTopic(t, brokers, topic, 1)
	testenv.KafkaCreateTopic(t, brokers, dlqTopic, 1)
	return brokers, topic, dlqTopic, topic + "-g"
}

// The held dead letters and the offsets that cover them land together: the DLQ
// holds each once and the group's offset moves past them.
func TestDLQTransactionWritesLettersWithOffsets(t *testing.T) {
	brokers, topic, dlqTopic, group := dlqFixture(t)
	c := member(t, brokers, group, topic)
	d := newTestCommitter(t, brokers, topic, dlqTopic)

	tr := newTracker(topic, dlqTopic)
	deadLetters(tr, dlqTopic, 10)
	commit := func(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
		return d.commit(c, offs, letters)
	}
	if err := tr.commit(commit); err != nil {
		t.Fatal(err)
	}
	if got := waitCommitted(t, brokers, group, topic, 10); got[0] != 10 {
		t.Fatalf("committed %v, want partition 0 at 10", got)
	}
	got := testenv.KafkaReadAll(t, brokers, dlqTopic, 500*time.Millisecond)
	if len(got) != 5 {
		t.Fatalf("DLQ holds %d records, want 5", len(got))
	}
	for i, r := range got {
		if want := strconv.Itoa(2 * i); string(r.Key) != want {
			t.Fatalf("dead letter %d has key %q, want %q", i, r.Key, want)
		}
	}
	if letters, txns, _ := d.Transactions(); letters != 5 || txns != 1 || tr.held.Load() != 0 {
		t.Fatalf("committed %d letters in %d transactions, %d still held", letters, txns, tr.held.Load())
	}
}

// stale is a group member whose generation has passed: a zombie.
type stale struct {
	*kafka.Consumer
	meta *kafka.ConsumerGroupMetadata
}

func (s stale) GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error) { return s.meta, nil }

// A zombie (a member whose partitions were given to another) cannot commit: its
// transaction is aborted, so neither its dead letters nor its offsets are seen,
// and the letters stay held for a commit that is allowed.
func TestDLQTransactionOfZombieIsAborted(t *testing.T) {
	brokers, topic, dlqTopic, group := dlqFixture(t)
	first := member(t, brokers, group, topic)
	meta, err := first.GetConsumerGroupMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil { // leaves the group: the next member starts a new generation
		t.Fatal(err)
	}
	next := member(t, brokers, group, topic)
	d := newTestCommitter(t, brokers, topic, dlqTopic)

	tr := newTracker(topic, dlqTopic)
	deadLetters(tr, dlqTopic, 4)
	zombie := func(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
		return d.commit(stale{next, meta}, offs, letters)
	}
	err = tr.commit(zombie)
	if err == nil {
		t.Fatal("a commit with a past generation succeeded")
	}
	t.Logf("zombie commit: %v", err)
	if _, _, aborted := d.Transactions(); aborted != 1 || d.Err() != nil {
		t.Fatalf("aborted %d transactions, fatal %v; want 1 abort and a usable producer", aborted, d.Err())
	}
	if got := committedOffsets(t, brokers, group, topic); len(got) != 0 {
		t.Fatalf("the zombie committed offsets %v", got)
	}
	if got := testenv.KafkaReadAll(t, brokers, dlqTopic, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("a read_committed reader sees %d dead letters of the aborted transaction", len(got))
	}
	if tr.held.Load() != 2 {
		t.Fatalf("held %d letters after the abort, want 2", tr.held.Load())
	}

	// The current member commits them, once.
	if err := tr.commit(func(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
		return d.commit(next, offs, letters)
	}); err != nil {
		t.Fatal(err)
	}
	got := testenv.KafkaReadAll(t, brokers, dlqTopic, 500*time.Millisecond)
	keys := make([]string, len(got))
	for i, r := range got {
		keys[i] = string(r.Key)
	}
	if fmt.Sprint(keys) != "[0 2]" {
		t.Fatalf("DLQ holds %v, want [0 2]", keys)
	}
	if got := waitCommitted(t, brokers, group, topic, 4); got[0] != 4 {
		t.Fatalf("committed %v, want partition 0 at 4", got)
	}
}
