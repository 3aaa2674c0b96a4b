package kafkaedge

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline"
)

// Every consumer and producer the package builds carries the pass-through
// properties of UseProperties on top of the service's own settings; the admin
// client carries neither.
func TestUsePropertiesReachesEveryClient(t *testing.T) {
	t.Cleanup(func() { UseProperties(Config{}) })
	UseProperties(Config{
		Consumer: map[string]string{"fetch.max.bytes": "1048576", "client.id": "c-id"},
		Producer: map[string]string{"compression.type": "zstd", "linger.ms": "50"},
	})
	for name, cm := range map[string]kafka.ConfigMap{
		"consumer":      consumerConfig(SourceConfig{Brokers: "b:1", GroupID: "g", FetchMaxBytes: 16 << 20}),
		"transactional": transactionalConfig(CommitterConfig{Brokers: "b:1", TransactionalID: "t"}),
		"producer":      producerConfig("b:1", "c"),
	} {
		if name == "consumer" {
			if cm["fetch.max.bytes"] != "1048576" || cm["client.id"] != "c-id" || cm["linger.ms"] != nil {
				t.Errorf("consumer config %v: want the consumer pass-through only", cm)
			}
			continue
		}
		if cm["compression.type"] != "zstd" || cm["linger.ms"] != "50" || cm["fetch.max.bytes"] != nil {
			t.Errorf("%s config %v: want the producer pass-through only", name, cm)
		}
	}
	if cm := common("b:1"); cm["compression.type"] != nil || cm["client.id"] != nil {
		t.Errorf("common (the admin client's) settings carry pass-through properties: %v", cm)
	}
}

// Against the broker: a producer pass-through (compression.type gzip instead of
// the service's lz4) is what the broker stores, and a consumer pass-through
// (client.id, a tiny max.partition.fetch.bytes) is what the group sees while
// the source still ingests every record.
func TestPassThroughOnTheBroker(t *testing.T) {
	brokers, topic, dlqTopic, group := dlqFixture(t)
	t.Cleanup(func() { UseProperties(Config{}) })
	const clientID = "orders-kcfg-check"
	UseProperties(Config{
		Consumer: map[string]string{"client.id": clientID, "max.partition.fetch.bytes": "512"},
		Producer: map[string]string{"compression.type": "gzip"},
	})
	const n = 20
	p, err := NewProducer(brokers, "order-producer")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		value := []byte(strings.Repeat("v", 400) + strconv.Itoa(i))
		if err := p.Send(ctx, topic, []byte("k"+strconv.Itoa(i)), value, nil); err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(30 * time.Second); left > 0 {
		t.Fatalf("%d records unacknowledged", left)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	stored := testenv.KafkaReadAll(t, brokers, topic, 500*time.Millisecond)
	if len(stored) != n {
		t.Fatalf("topic holds %d records, want %d", len(stored), n)
	}
	for _, r := range stored {
		if c := r.Attrs.CompressionType(); c != 1 { // 1 gzip (the service's own is 3, lz4)
			t.Fatalf("record %d stored with compression codec %d, want 1 (gzip)", r.Offset, c)
		}
	}

	com := newTestCommitter(t, brokers, topic, dlqTopic)
	src, err := NewSource(SourceConfig{Brokers: brokers, Topic: topic, GroupID: group}, com, nil)
	if err != nil {
		t.Fatal(err)
	}
	com.Start()
	pl := pipeline.New(pipeline.Options{ShutdownTimeout: 20 * time.Second})
	fetched := pipeline.Source(pl, "fetch", src.Run)
	var seen atomic.Int64
	allSeen := make(chan struct{})
	pipeline.Sink(pl, "end", fetched, func(_ context.Context, m *Message) error {
		m.Ack.Done()
		if seen.Add(1) == n {
			close(allSeen)
		}
		return nil
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pl.Run(runCtx) }()
	select {
	case <-allSeen:
	case <-time.After(60 * time.Second):
		t.Fatalf("ingested %d of %d records in 60 s with max.partition.fetch.bytes 512", seen.Load(), n)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	groups, err := kadm.NewClient(cl).DescribeGroups(dctx, group)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := groups[group]
	if !ok || len(g.Members) != 1 || g.Members[0].ClientID != clientID {
		t.Fatalf("group %s members %+v, want one member with client id %s", group, g.Members, clientID)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}
