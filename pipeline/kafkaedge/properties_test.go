package kafkaedge

import (
	"context"
	"errors"
	"log/slog"
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
	useProperties(t, Config{
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
	if cm := readerConfig(); cm["fetch.max.bytes"] != "1048576" || cm["client.id"] != "c-id" || cm["enable.partition.eof"] != true {
		t.Errorf("DLQ reader config %v: want the consumer pass-through on its own settings", cm)
	}
	if cm := current().appender("b:1", "a", 5*time.Second); cm["linger.ms"] != "50" || cm["message.timeout.ms"] != 5000 {
		t.Errorf("appender config %v: want the pass-through linger.ms over the appender's", cm)
	}

	// A property set by another of its names replaces the service's setting
	// (librdkafka would take whichever of the two it is handed last).
	useProperties(t, Config{Producer: map[string]string{"queue.buffering.max.ms": "40", "compression.codec": "gzip"}})
	for name, cm := range map[string]kafka.ConfigMap{
		"transactional": transactionalConfig(CommitterConfig{Brokers: "b:1", TransactionalID: "t"}),
		"producer":      producerConfig("b:1", "c"),
		"appender":      current().appender("b:1", "a", 5*time.Second),
	} {
		if cm["linger.ms"] != nil || cm["queue.buffering.max.ms"] != "40" || cm["compression.type"] != nil || cm["compression.codec"] != "gzip" {
			t.Errorf("%s config %v: want queue.buffering.max.ms and compression.codec instead of the service's linger.ms and compression.type", name, cm)
		}
	}
}

// The DLQ reader's fetch bound follows a larger consumer message.max.bytes
// (librdkafka refuses fetch.max.bytes < message.max.bytes).
func TestReaderFetchBoundFollowsMessageMaxBytes(t *testing.T) {
	useProperties(t, Config{})
	if cm := readerConfig(); cm["fetch.max.bytes"] != ReadBufferBytes || cm["queued.max.messages.kbytes"] != ReadBufferBytes>>10 {
		t.Errorf("reader config %v: want its buffers at ReadBufferBytes", cm)
	}
	useProperties(t, Config{Consumer: map[string]string{"message.max.bytes": "2000000"}})
	cm := readerConfig()
	if cm["fetch.max.bytes"] != 2000000 {
		t.Errorf("reader fetch.max.bytes %v with message.max.bytes 2000000, want 2000000", cm["fetch.max.bytes"])
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"group.id": "x", "message.max.bytes": cm["message.max.bytes"], "fetch.max.bytes": cm["fetch.max.bytes"]})
	if err != nil {
		t.Fatalf("librdkafka refuses the reader's bounds: %v", err)
	}
	_ = c.Close()
}

// readerConfig is the DLQ reader's map with the properties in use.
func readerConfig() kafka.ConfigMap { return current().reader("b:1") }

// useProperties is UseProperties for one test: the properties in use before
// it come back when the test ends.
func useProperties(t *testing.T, c Config) {
	t.Helper()
	prev := properties.Load()
	t.Cleanup(func() { properties.Store(prev) })
	if err := UseProperties(c); err != nil {
		t.Fatal(err)
	}
}

// UseProperties keeps copies of the maps it is given, and refuses (keeping
// what is in use) a property the service manages.
func TestUsePropertiesCopiesAndRefusesManaged(t *testing.T) {
	props := map[string]string{"compression.type": "zstd"}
	useProperties(t, Config{Producer: props})
	props["compression.type"], props["acks"] = "gzip", "1"
	cm := producerConfig("b:1", "c")
	if cm["compression.type"] != "zstd" || cm["acks"] != "all" {
		t.Fatalf("producer config %v: a change to the caller's map after UseProperties reached it", cm)
	}
	err := UseProperties(Config{Consumer: map[string]string{"enable.auto.commit": "true"}})
	var pe *PropertyError
	if !errors.As(err, &pe) || pe.Kind != KindConsumer || pe.Property != "enable.auto.commit" {
		t.Fatalf("want a *PropertyError for kafka.consumer.enable.auto.commit, got %v", err)
	}
	if cm := producerConfig("b:1", "c"); cm["compression.type"] != "zstd" {
		t.Fatalf("a refused UseProperties replaced the properties in use: %v", cm)
	}
	if cm := consumerConfig(SourceConfig{Brokers: "b:1", GroupID: "g"}); cm["enable.auto.commit"] != false {
		t.Fatalf("consumer config %v: the refused property is in use", cm)
	}
}

// CheckProperties refuses exactly what breaks the real clients: each case is
// a property librdkafka accepts on its own, refused by a constructor of the
// package with the service's settings, and named by CheckProperties; with a
// longer api.append_timeout both accept linger.ms 10000.
func TestCheckPropertiesAgreesWithClients(t *testing.T) {
	const brokers = "127.0.0.1:1" // never reached: the clients connect lazily and are closed at once
	discard := slog.New(slog.DiscardHandler)
	newCommitter := func() (*Committer, error) {
		return NewCommitter(CommitterConfig{Brokers: brokers, Topic: "t", DLQTopic: "d", TransactionalID: "check"}, discard)
	}
	cases := []struct {
		name     string
		cfg      Config
		property string
		build    func() error
	}{
		{
			"consumer message.max.bytes over the source's fetch.max.bytes",
			Config{GroupID: "g", Consumer: map[string]string{"message.max.bytes": "20000000"}},
			"message.max.bytes",
			func() error {
				com, err := newCommitter()
				if err != nil {
					return err
				}
				defer com.Close()
				src, err := NewSource(SourceConfig{Brokers: brokers, Topic: "t", GroupID: "g"}, com, discard)
				if err == nil {
					_ = src.Close()
				}
				return err
			},
		},
		{
			"producer linger.ms over the appender's message timeout",
			Config{GroupID: "g", Producer: map[string]string{"linger.ms": "10000"}},
			"linger.ms",
			func() error {
				a, err := NewAppender(brokers, "a", 5*time.Second)
				if err == nil {
					a.Close(0)
				}
				return err
			},
		},
		{
			"producer socket.timeout.ms over the dead-letter transaction timeout",
			Config{GroupID: "g", Producer: map[string]string{"socket.timeout.ms": "120000"}},
			"socket.timeout.ms",
			func() error {
				com, err := newCommitter()
				if err == nil {
					com.Close()
				}
				return err
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckProperties(tc.cfg, 5*time.Second)
			var pe *PropertyError
			if !errors.As(err, &pe) || pe.Property != tc.property {
				t.Fatalf("CheckProperties: want a *PropertyError naming %s, got %v", tc.property, err)
			}
			useProperties(t, tc.cfg)
			if err := tc.build(); err == nil {
				t.Fatalf("the client was built with %v: CheckProperties refused it for nothing (%v)", tc.cfg, pe)
			}
		})
	}
	longer := Config{GroupID: "g", Producer: map[string]string{"linger.ms": "10000"}}
	if err := CheckProperties(longer, 20*time.Second); err != nil {
		t.Fatalf("linger.ms 10000 with a 20 s append timeout: %v", err)
	}
	useProperties(t, longer)
	a, err := NewAppender(brokers, "a", 20*time.Second)
	if err != nil {
		t.Fatalf("appender with linger.ms 10000 and a 20 s timeout: %v", err)
	}
	a.Close(0)
}

// The properties of the other kind of client are read from one client's
// warnings; the first in name order is named.
func TestCheckPropertiesWrongKind(t *testing.T) {
	err := CheckProperties(Config{GroupID: "g", Producer: map[string]string{
		"fetch.wait.max.ms": "10", "fetch.max.bytes": "1048576", "linger.ms": "5",
	}}, 5*time.Second)
	var pe *PropertyError
	if !errors.As(err, &pe) || pe.Kind != KindProducer || pe.Property != "fetch.max.bytes" ||
		!strings.Contains(pe.Reason, "a consumer property, which a producer ignores") {
		t.Fatalf("want kafka.producer.fetch.max.bytes refused as a consumer property, got %v", err)
	}
	if err := CheckProperties(Config{GroupID: "g"}, 5*time.Second); err != nil {
		t.Fatalf("no properties: %v", err)
	}
}

// Against the broker: a producer pass-through (compression.type gzip instead of
// the service's lz4) is what the broker stores, and a consumer pass-through
// (client.id, a tiny max.partition.fetch.bytes) is what the group sees while
// the source still ingests every record.
func TestPassThroughOnTheBroker(t *testing.T) {
	brokers, topic, dlqTopic, group := dlqFixture(t)
	const clientID = "orders-kcfg-check"
	useProperties(t, Config{
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
