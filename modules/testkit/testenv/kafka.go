package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaBrokersEnv names the environment variable that points tests at a real Kafka
// broker (comma-separated bootstrap servers). When it is empty, tests use one
// in-process kfake cluster per test binary.
const KafkaBrokersEnv = "TEST_KAFKA_BROKERS"

// KafkaDefaultPartitions is the partition count of auto-created topics on the
// in-process broker; configs/kafka/server.properties uses the same num.partitions.
const KafkaDefaultPartitions = 4

// kafkaOpTimeout bounds every single admin, produce or offset call of the helpers.
const kafkaOpTimeout = 30 * time.Second

var (
	kafkaFakeOnce  sync.Once
	kafkaFakeAddrs string
	kafkaFakeErr   error
	kafkaLogOnce   sync.Once
	kafkaTopicSeq  atomic.Uint64
)

// KafkaBrokers returns the bootstrap servers tests must use: TEST_KAFKA_BROKERS when
// it is set, otherwise the address of an in-process franz-go kfake cluster (one
// broker, auto topic creation, 4 partitions by default) started once per test binary
// and left running until the binary exits. It fails the test when kfake cannot start.
func KafkaBrokers(t testing.TB) string {
	t.Helper()
	if b := strings.TrimSpace(os.Getenv(KafkaBrokersEnv)); b != "" {
		return b
	}
	kafkaFakeOnce.Do(func() {
		c, err := kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.AllowAutoTopicCreation(),
			kfake.DefaultNumPartitions(KafkaDefaultPartitions),
		)
		if err != nil {
			kafkaFakeErr = fmt.Errorf("start kfake: %w", err)
			return
		}
		kafkaFakeAddrs = strings.Join(c.ListenAddrs(), ",")
	})
	if kafkaFakeErr != nil {
		t.Fatalf("testenv: %v", kafkaFakeErr)
	}
	kafkaLogOnce.Do(func() {
		t.Logf("testenv: %s is not set: Kafka tests use the in-process kfake broker at %s; "+
			"for a real broker run `go tool task kafka:up` and set %s=127.0.0.1:19092",
			KafkaBrokersEnv, kafkaFakeAddrs, KafkaBrokersEnv)
	})
	return kafkaFakeAddrs
}

// KafkaTopicName returns a topic name that starts with base, carries the test's
// name and a random suffix, so it is unique per test and per run, even against a
// long-lived real broker. Only Kafka-legal characters are used.
func KafkaTopicName(t testing.TB, base string) string {
	t.Helper()
	var buf [4]byte
	if _, err := rand.Read(buf[:]); err != nil {
		t.Fatalf("testenv: topic name: %v", err)
	}
	name := kafkaSanitize(t.Name())
	if len(name) > 120 {
		name = name[:120]
	}
	return fmt.Sprintf("%s-%s-%d-%s", kafkaSanitize(base), name, kafkaTopicSeq.Add(1), hex.EncodeToString(buf[:]))
}

// kafkaSanitize maps s onto [a-zA-Z0-9-]: Kafka allows '.' and '_' too, but warns
// that they collide in metric names, so both become '-'.
func kafkaSanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			return r
		default:
			return '-'
		}
	}, s)
}

// KafkaCreateTopic creates topic with the given number of partitions (replication
// factor 1) and waits until every partition has a leader. A topic that already
// exists is fine. It fails the test on any other error.
func KafkaCreateTopic(t testing.TB, brokers, topic string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaOpTimeout)
	defer cancel()
	cl, adm := kafkaAdmin(t, brokers)
	defer cl.Close()

	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("testenv: create topic %q: %v", topic, err)
	}
	for {
		if kafkaTopicReady(ctx, adm, topic) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testenv: create topic %q: partitions have no leader: %v", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kafkaTopicReady reports whether topic exists and all its partitions have a leader.
func kafkaTopicReady(ctx context.Context, adm *kadm.Client, topic string) bool {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return false
	}
	td, ok := details[topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return false
	}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// KafkaProduce writes recs to topic (a record's own non-empty Topic wins) and
// returns once every record is acknowledged by all in-sync replicas. It fails the
// test on the first produce error.
func KafkaProduce(t testing.TB, brokers, topic string, recs ...*kgo.Record) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	cl := kafkaClient(t, brokers, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaOpTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("testenv: produce to %q: %v", topic, err)
	}
}

// KafkaReadAll reads topic from the earliest offset of every partition without a
// consumer group. It reads at least up to the end offsets the topic had when it was
// called, then keeps reading until no new record arrives for wait. Records are
// returned ordered by partition, then offset. It fails the test when the end offsets
// are not reached within 30 s plus wait. Only committed records are returned (as
// a read_committed consumer sees them).
func KafkaReadAll(t testing.TB, brokers, topic string, wait time.Duration) []*kgo.Record {
	t.Helper()
	return kafkaReadAll(t, brokers, topic, wait, kgo.ReadCommitted())
}

// KafkaReadAllUncommitted is KafkaReadAll as a read_uncommitted consumer sees the
// topic: with the records of aborted and still open transactions.
func KafkaReadAllUncommitted(t testing.TB, brokers, topic string, wait time.Duration) []*kgo.Record {
	t.Helper()
	return kafkaReadAll(t, brokers, topic, wait, kgo.ReadUncommitted())
}

func kafkaReadAll(t testing.TB, brokers, topic string, wait time.Duration, isolation kgo.IsolationLevel) []*kgo.Record {
	t.Helper()
	cl, adm := kafkaAdmin(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
		// What a consumer of the topic sees: not the records of aborted transactions
		// (the DLQ is written transactionally). The transaction markers are kept so
		// that reaching the end offset can be seen; they are not returned.
		kgo.FetchIsolationLevel(isolation),
		kgo.KeepControlRecords(),
	)
	defer cl.Close()

	ctx, cancel := context.WithTimeout(context.Background(), kafkaOpTimeout)
	ends, err := adm.ListEndOffsets(ctx, topic)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("testenv: read %q: end offsets: %v", topic, err)
	}
	// pending holds, per partition, the end offset still to be reached.
	pending := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			pending[o.Partition] = o.Offset
		}
	})

	var out []*kgo.Record
	deadline := time.Now().Add(kafkaOpTimeout + wait)
	idleUntil := time.Now().Add(wait)
	for {
		now := time.Now()
		if len(pending) == 0 && !now.Before(idleUntil) {
			break
		}
		if now.After(deadline) {
			t.Fatalf("testenv: read %q: end offsets %v not reached in time", topic, pending)
		}
		until := idleUntil
		if len(pending) > 0 || until.Before(now.Add(50*time.Millisecond)) {
			until = now.Add(200 * time.Millisecond)
		}
		pctx, pcancel := context.WithDeadline(context.Background(), until)
		fetches := cl.PollFetches(pctx)
		pcancel()
		fetches.EachError(func(_ string, _ int32, ferr error) {
			if !errors.Is(ferr, context.DeadlineExceeded) && !errors.Is(ferr, kerr.UnknownTopicOrPartition) {
				t.Fatalf("testenv: read %q: %v", topic, ferr)
			}
		})
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if end, ok := pending[r.Partition]; ok && r.Offset+1 >= end {
				delete(pending, r.Partition)
			}
		})
		if n > 0 {
			idleUntil = time.Now().Add(wait)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out
}

// KafkaGroupLag returns how many records of topic the consumer group has not
// committed yet: the sum over partitions of the end offset minus the committed
// offset (the log start offset where the group has committed nothing). It fails
// the test when the offsets cannot be listed.
func KafkaGroupLag(t testing.TB, brokers, group, topic string) int64 {
	t.Helper()
	cl, adm := kafkaAdmin(t, brokers)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaOpTimeout)
	defer cancel()

	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("testenv: lag of %q on %q: end offsets: %v", group, topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatalf("testenv: lag of %q on %q: start offsets: %v", group, topic, err)
	}
	var committed kadm.OffsetResponses
	err = kafkaRetry(ctx, func() error {
		var ferr error
		committed, ferr = adm.FetchOffsets(ctx, group)
		if ferr == nil {
			ferr = committed.Error()
		}
		return ferr
	})
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // an unknown group has committed nothing
	}
	if err != nil {
		t.Fatalf("testenv: lag of %q on %q: committed offsets: %v", group, topic, err)
	}

	var lag int64
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(topic, end.Partition); ok {
			from = s.Offset
		}
		if c, ok := committed.Lookup(topic, end.Partition); ok && c.At >= 0 {
			from = c.At
		}
		if d := end.Offset - from; d > 0 {
			lag += d
		}
	})
	return lag
}

// kafkaRetry calls fn until it returns nil or a non-retriable error (for example
// COORDINATOR_NOT_AVAILABLE while a real broker creates __consumer_offsets), or ctx ends.
func kafkaRetry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil || !kerr.IsRetriable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// kafkaClient returns a franz-go client for brokers; the caller closes it.
func kafkaClient(t testing.TB, brokers string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	seeds := strings.Split(brokers, ",")
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: kafka client for %q: %v", brokers, err)
	}
	return cl
}

// kafkaAdmin returns a client and an admin client over it; the caller closes cl.
func kafkaAdmin(t testing.TB, brokers string, opts ...kgo.Opt) (*kgo.Client, *kadm.Client) {
	t.Helper()
	cl := kafkaClient(t, brokers, opts...)
	return cl, kadm.NewClient(cl)
}
