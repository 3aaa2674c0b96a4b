package testenv

// These tests check that the in-process broker (kfake) and the real one both serve
// the client the service uses: confluent-kafka-go (librdkafka) in a consumer group
// with the cooperative-sticky assignor, explicit offset commits, Pause/Resume, and
// an idempotent producer (the DLQ path).

import (
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rdConsumer wraps a librdkafka consumer and what it has read.
type rdConsumer struct {
	t    *testing.T
	name string
	c    *kafka.Consumer
	seen map[string]int // key -> times read
	next map[int32]kafka.Offset
}

func newRDConsumer(t *testing.T, name, brokers, group, topic string) *rdConsumer {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":             brokers,
		"group.id":                      group,
		"client.id":                     name,
		"partition.assignment.strategy": "cooperative-sticky",
		"enable.auto.commit":            false,
		"auto.offset.reset":             "earliest",
		"session.timeout.ms":            10000,
		"heartbeat.interval.ms":         500,
		"broker.address.family":         "v4",
	})
	if err != nil {
		t.Fatalf("%s: new consumer: %v", name, err)
	}
	rc := &rdConsumer{t: t, name: name, c: c, seen: map[string]int{}, next: map[int32]kafka.Offset{}}
	err = c.SubscribeTopics([]string{topic}, func(_ *kafka.Consumer, ev kafka.Event) error {
		t.Logf("%s: rebalance (%s): %v", name, c.GetRebalanceProtocol(), ev)
		return nil // librdkafka applies the incremental (un)assign itself
	})
	if err != nil {
		t.Fatalf("%s: subscribe: %v", name, err)
	}
	return rc
}

// poll reads at most one message; it fails the test on any error but a timeout.
func (rc *rdConsumer) poll(d time.Duration) *kafka.Message {
	rc.t.Helper()
	m, err := rc.c.ReadMessage(d)
	if err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrTimedOut {
			return nil
		}
		rc.t.Fatalf("%s: read: %v", rc.name, err)
	}
	rc.seen[string(m.Key)]++
	rc.next[m.TopicPartition.Partition] = m.TopicPartition.Offset + 1
	return m
}

// partitions returns the sorted partitions currently assigned.
func (rc *rdConsumer) partitions() []int32 {
	rc.t.Helper()
	as, err := rc.c.Assignment()
	if err != nil {
		rc.t.Fatalf("%s: assignment: %v", rc.name, err)
	}
	ps := make([]int32, 0, len(as))
	for _, tp := range as {
		ps = append(ps, tp.Partition)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// commit commits the next offset of every partition read so far, explicitly.
func (rc *rdConsumer) commit(topic string) {
	rc.t.Helper()
	if len(rc.next) == 0 {
		return
	}
	tps := make([]kafka.TopicPartition, 0, len(rc.next))
	for p, off := range rc.next {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p, Offset: off})
	}
	res, err := rc.c.CommitOffsets(tps)
	if err != nil {
		rc.t.Fatalf("%s: commit: %v", rc.name, err)
	}
	for _, tp := range res {
		if tp.Error != nil {
			rc.t.Fatalf("%s: commit partition %d: %v", rc.name, tp.Partition, tp.Error)
		}
	}
}

func (rc *rdConsumer) close() {
	rc.t.Helper()
	if err := rc.c.Close(); err != nil {
		rc.t.Errorf("%s: close: %v", rc.name, err)
	}
}

func keyedRecords(prefix string, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: []byte(`{"n":1}`)}
	}
	return recs
}

// pollUntil polls the consumers in turn until done reports true; it fails the test
// after a minute.
func pollUntil(t *testing.T, what string, done func() bool, cs ...*rdConsumer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		for _, c := range cs {
			c.poll(50 * time.Millisecond)
		}
	}
}

func countPrefix(seen map[string]int, prefix string) int {
	n := 0
	for k := range seen {
		if len(k) > len(prefix) && k[:len(prefix)+1] == prefix+"-" {
			n++
		}
	}
	return n
}

func TestKafkaConfluentCooperativeGroup(t *testing.T) {
	_, ver := kafka.LibraryVersion()
	t.Logf("librdkafka %s", ver)
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "rd")
	group := KafkaTopicName(t, "rd-group")
	KafkaCreateTopic(t, brokers, topic, 4)
	KafkaProduce(t, brokers, topic, keyedRecords("first", 40)...)

	// One member: it gets all four partitions and reads everything.
	a := newRDConsumer(t, "a", brokers, group, topic)
	defer a.close()
	pollUntil(t, "consumer a to read 40 records", func() bool { return countPrefix(a.seen, "first") == 40 }, a)
	if got := a.partitions(); len(got) != 4 {
		t.Fatalf("a alone is assigned %v, want 4 partitions", got)
	}
	a.commit(topic)
	if lag := KafkaGroupLag(t, brokers, group, topic); lag != 0 {
		t.Fatalf("lag after a committed everything = %d, want 0", lag)
	}

	// Pause/Resume (the pipeline's backpressure): paused partitions deliver nothing,
	// resumed ones deliver what was produced meanwhile.
	all, err := a.c.Assignment()
	if err != nil {
		t.Fatalf("assignment: %v", err)
	}
	if err := a.c.Pause(all); err != nil {
		t.Fatalf("pause: %v", err)
	}
	KafkaProduce(t, brokers, topic, keyedRecords("paused", 8)...)
	for range 10 {
		if m := a.poll(50 * time.Millisecond); m != nil {
			t.Fatalf("paused consumer delivered %s/%d@%d", *m.TopicPartition.Topic, m.TopicPartition.Partition, m.TopicPartition.Offset)
		}
	}
	if err := a.c.Resume(all); err != nil {
		t.Fatalf("resume: %v", err)
	}
	pollUntil(t, "the 8 records produced while paused", func() bool { return countPrefix(a.seen, "paused") == 8 }, a)
	a.commit(topic)

	// A second member joins: cooperative-sticky moves two partitions to it without
	// revoking the others from a.
	b := newRDConsumer(t, "b", brokers, group, topic)
	defer b.close()
	pollUntil(t, "partitions split 2/2 between a and b", func() bool {
		return len(a.partitions()) == 2 && len(b.partitions()) == 2
	}, a, b)
	union := map[int32]bool{}
	for _, p := range append(a.partitions(), b.partitions()...) {
		union[p] = true
	}
	if len(union) != 4 {
		t.Fatalf("a %v and b %v do not cover 4 distinct partitions", a.partitions(), b.partitions())
	}

	KafkaProduce(t, brokers, topic, keyedRecords("second", 40)...)
	pollUntil(t, "a and b to read the 40 new records", func() bool {
		merged := map[string]int{}
		for k := range a.seen {
			merged[k]++
		}
		for k := range b.seen {
			merged[k]++
		}
		return countPrefix(merged, "second") == 40
	}, a, b)
	if countPrefix(b.seen, "second") == 0 || countPrefix(a.seen, "second") == 0 {
		t.Fatalf("records not shared: a read %d, b read %d", countPrefix(a.seen, "second"), countPrefix(b.seen, "second"))
	}
	if countPrefix(b.seen, "first") != 0 {
		t.Fatalf("b re-read %d committed records", countPrefix(b.seen, "first"))
	}
	a.commit(topic)
	b.commit(topic)
	if lag := KafkaGroupLag(t, brokers, group, topic); lag != 0 {
		t.Fatalf("lag after both committed = %d, want 0", lag)
	}
}

func TestKafkaConfluentIdempotentProducer(t *testing.T) {
	brokers := KafkaBrokers(t)
	topic := KafkaTopicName(t, "rd-produce")
	KafkaCreateTopic(t, brokers, topic, 4)

	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":     brokers,
		"enable.idempotence":    true,
		"acks":                  "all",
		"linger.ms":             5,
		"compression.type":      "lz4",
		"broker.address.family": "v4",
	})
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer p.Close()

	const n = 30
	deliveries := make(chan kafka.Event, n)
	for i := range n {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            fmt.Appendf(nil, "k-%d", i),
			Value:          fmt.Appendf(nil, "v-%d", i),
			Headers:        []kafka.Header{{Key: "x-error-class", Value: []byte("validation")}},
		}, deliveries)
		if err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	for i := range n {
		select {
		case ev := <-deliveries:
			m, ok := ev.(*kafka.Message)
			if !ok {
				t.Fatalf("delivery %d: unexpected event %v", i, ev)
			}
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery %d: %v", i, m.TopicPartition.Error)
			}
		case <-time.After(time.Minute):
			t.Fatalf("delivery report %d did not arrive", i)
		}
	}

	got := KafkaReadAll(t, brokers, topic, 200*time.Millisecond)
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for _, r := range got {
		if len(r.Headers) != 1 || r.Headers[0].Key != "x-error-class" || string(r.Headers[0].Value) != "validation" {
			t.Fatalf("record %s: headers %v", r.Key, r.Headers)
		}
		if string(r.Value) != "v-"+string(r.Key)[2:] {
			t.Fatalf("record %s: value %q", r.Key, r.Value)
		}
	}
}
