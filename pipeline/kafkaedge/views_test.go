package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// TestReadTopicNewest: Newest reads only the last offsets of each partition,
// and Size counts the whole partitions.
func TestReadTopicNewest(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "newest")
	testenv.KafkaCreateTopic(t, brokers, topic, 1)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")})
	}
	testenv.KafkaProduce(t, brokers, topic, recs...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := ReadTopicSize(ctx, ReadOptions{Brokers: brokers, Topic: topic, Partition: -1, To: -1, Newest: 3})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range res.Records {
		keys = append(keys, string(r.Key))
	}
	if res.Size != 10 || len(keys) != 3 || keys[0] != "k7" || keys[2] != "k9" {
		t.Errorf("size %d, records %v; want 10 and [k7 k8 k9]", res.Size, keys)
	}
	all, err := ReadTopic(ctx, ReadOptions{Brokers: brokers, Topic: topic, Partition: -1, To: -1})
	if err != nil || len(all) != 10 {
		t.Errorf("without Newest: %d records, %v; want all 10", len(all), err)
	}
}

// TestViewsDLQKeepsTheNewestOverall: the view's reader answers the newest n
// letters of the whole topic (not n per partition), newest first, with their
// x-* headers read.
func TestViewsDLQKeepsTheNewestOverall(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "views")
	testenv.KafkaCreateTopic(t, brokers, topic, 3)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 12 { // letter i at second i, on partition i%3
		recs = append(recs, &kgo.Record{
			Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"), Partition: int32(i % 3), Timestamp: base.Add(time.Duration(i) * time.Second),
			Headers: []kgo.RecordHeader{{Key: HeaderErrorClass, Value: []byte("decode")}},
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	read, err := Views(Config{Brokers: brokers, DLQTopic: topic}).DLQ(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range read.Letters {
		keys = append(keys, l.Key)
		if l.Class != "decode" || string(l.Value) != "v" {
			t.Errorf("%s: class %q, value %q", l.Key, l.Class, l.Value)
		}
	}
	if strings.Join(keys, ",") != "k11,k10,k9,k8" || read.Total != 12 {
		t.Errorf("letters %v of %d, want k11,k10,k9,k8 of 12", keys, read.Total)
	}
}

// TestViewsNameTheirTimeout: a read that librdkafka gives up on (its timeout
// is the request's) is context.DeadlineExceeded, which the view answers as
// "could not be read within <bound>".
func TestViewsNameTheirTimeout(t *testing.T) {
	ctx := context.Background()
	if err := outOfTime(ctx, fmt.Errorf("read t: metadata: %w", kafka.NewError(kafka.ErrTimedOut, "Local: Timed out", false))); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("librdkafka's timeout: %v, want context.DeadlineExceeded", err)
	}
	if err := outOfTime(ctx, kafka.NewError(kafka.ErrUnknownTopicOrPart, "unknown", false)); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("another error taken for a timeout: %v", err)
	}
	// A "broker" that accepts connections and never answers: librdkafka's
	// requests run until their timeout, which is the read's deadline.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	v := Views(Config{Brokers: ln.Addr().String(), DLQTopic: "none", GroupID: "none"})
	if _, err := v.DLQ(short, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DLQ read of an unreachable broker: %v, want context.DeadlineExceeded", err)
	}
	short2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := v.Group(short2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("group read of an unreachable broker: %v, want context.DeadlineExceeded", err)
	}
}

// TestReaderBuffersAreBounded: ReadTopic's consumer does not take librdkafka's
// default buffers (64 MiB queue, 50 MiB fetch).
func TestReaderBuffersAreBounded(t *testing.T) {
	cm := current().reader("127.0.0.1:1")
	for key, max := range map[string]int{
		"queued.max.messages.kbytes": ReadBufferBytes >> 10,
		"fetch.max.bytes":            ReadBufferBytes,
		"max.partition.fetch.bytes":  ReadBufferBytes,
	} {
		if v, ok := cm[key].(int); !ok || v > max || v <= 0 {
			t.Errorf("%s = %v, want 1..%d", key, cm[key], max)
		}
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		t.Fatalf("librdkafka refuses the reader's configuration: %v", err)
	}
	_ = c.Close()
}
