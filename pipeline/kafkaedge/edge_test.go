package kafkaedge

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline"
)

// The edge end to end on the broker: the Source hands out records, each Ack ends
// with Done or DeadLetter, and the Committer writes the dead letters (original
// key, value and headers plus the x-* headers) together with the offsets past
// every message.
func TestSourceAckCommitter(t *testing.T) {
	brokers, topic, dlqTopic, group := dlqFixture(t)
	const n = 6
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i)),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("tp" + strconv.Itoa(i))}},
		}
	}
	testenv.KafkaProduce(t, brokers, topic, recs...)

	com, err := NewCommitter(CommitterConfig{Brokers: brokers, Topic: topic, DLQTopic: dlqTopic, TransactionalID: testenv.KafkaTopicName(t, "txn")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(SourceConfig{Brokers: brokers, Topic: topic, GroupID: group}, com, nil)
	if err != nil {
		t.Fatal(err)
	}
	com.Start()

	p := pipeline.New(pipeline.Options{ShutdownTimeout: 20 * time.Second})
	fetched := pipeline.Source(p, "fetch", src.Run)
	var seen atomic.Int64
	allSeen := make(chan struct{})
	pipeline.Sink(p, "end", fetched, func(_ context.Context, m *Message) error {
		if m.Offset%2 == 0 {
			m.Ack.DeadLetter(Failure{Class: "validation", Stage: "validate", Reason: "bad " + string(m.Key)})
		}
		m.Ack.Done() // a no-op after DeadLetter: the first outcome wins
		if seen.Add(1) == n {
			close(allSeen)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-allSeen:
	case <-time.After(60 * time.Second):
		t.Fatalf("saw %d of %d messages in 60 s", seen.Load(), n)
	}
	if got := com.HeldDeadLetters(); got != n/2 {
		t.Fatalf("held %d dead letters before the commit, want %d", got, n/2)
	}
	if err := com.Commit(); err != nil {
		t.Fatal(err)
	}
	// The commit was a transaction (it carried dead letters), which librdkafka's
	// statistics do not see: the lag must still come down to 0.
	deadline := time.Now().Add(30 * time.Second)
	for lag, ok := src.Lag()[0]; !ok || lag != 0; lag, ok = src.Lag()[0] {
		if time.Now().After(deadline) {
			t.Fatalf("consumer lag %v 30 s after the transactional commit of every message, want 0", src.Lag())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	com.Close()

	if got := waitCommitted(t, brokers, group, topic, n); got[0] != n {
		t.Fatalf("committed %v, want partition 0 at %d", got, n)
	}
	letters, txns, _ := com.Transactions()
	if letters != n/2 || txns != 1 || com.HeldDeadLetters() != 0 || com.DeadLetters()["validation"] != n/2 {
		t.Fatalf("committed %d letters in %d transactions, %d held, by class %v", letters, txns, com.HeldDeadLetters(), com.DeadLetters())
	}
	got := testenv.KafkaReadAll(t, brokers, dlqTopic, 500*time.Millisecond)
	if len(got) != n/2 {
		t.Fatalf("DLQ holds %d records, want %d", len(got), n/2)
	}
	for i, r := range got {
		off := 2 * i
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		want := map[string]string{
			"traceparent": "tp" + strconv.Itoa(off), HeaderError: "bad k" + strconv.Itoa(off),
			HeaderErrorClass: "validation", HeaderStage: "validate", HeaderSourceTopic: topic,
			HeaderSourcePartition: "0", HeaderSourceOffset: strconv.Itoa(off), HeaderAttempts: "1",
		}
		if ts, err := strconv.ParseInt(h[HeaderSourceTimestamp], 10, 64); err != nil || ts <= 0 {
			t.Errorf("dead letter %d: %s = %q, want the record's timestamp", i, HeaderSourceTimestamp, h[HeaderSourceTimestamp])
		}
		delete(h, HeaderSourceTimestamp)
		if string(r.Key) != "k"+strconv.Itoa(off) || string(r.Value) != "v"+strconv.Itoa(off) || len(h) != len(want) {
			t.Fatalf("dead letter %d: key %q value %q headers %v", i, r.Key, r.Value, h)
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("dead letter %d: header %s = %q, want %q", i, k, h[k], v)
			}
		}
	}

	// What a replay re-publishes: the original record with its original position
	// (its version), marked with its DLQ place.
	rec := Record{Topic: dlqTopic, Partition: 0, Offset: 0, Key: got[0].Key, Value: got[0].Value}
	for _, x := range got[0].Headers {
		rec.Headers = append(rec.Headers, Header{x.Key, x.Value})
	}
	to, key, value, hs := Replay(&rec, "fallback")
	names := make([]string, len(hs))
	for i, x := range hs {
		names[i] = x.Key
	}
	wantNames := []string{"traceparent", HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset, HeaderSourceTimestamp, HeaderReplayedFrom}
	if to != topic || string(key) != "k0" || string(value) != "v0" || !slices.Equal(names, wantNames) ||
		string(hs[5].Value) != dlqTopic+"/0@0" {
		t.Fatalf("replay: topic %q key %q value %q headers %v, want headers %v", to, key, value, names, wantNames)
	}
	// Consumed again (at another position of the topic), the replayed record has
	// its first position as its Origin; dead-lettered again, it keeps it.
	again := Record{Topic: topic, Partition: 3, Offset: 900, Key: key, Value: value, Headers: hs, Timestamp: time.Now()}
	if p, o, ts := again.Origin(); p != 0 || o != 0 || ts.UnixMilli() != mustInt(t, rec.Header(HeaderSourceTimestamp)) {
		t.Errorf("origin of the replayed record: %d/%d at %v, want 0/0 at the original timestamp", p, o, ts)
	}
	letter := deadLetter(dlqTopic, &again, Failure{Class: "data", Stage: "upsert", Reason: "again"})
	lh := map[string][]string{}
	for _, x := range letter.Headers {
		lh[x.Key] = append(lh[x.Key], string(x.Value))
	}
	if !slices.Equal(lh[HeaderSourcePartition], []string{"0"}) || !slices.Equal(lh[HeaderSourceOffset], []string{"0"}) ||
		!slices.Equal(lh[HeaderError], []string{"again"}) || len(lh[HeaderReplayedFrom]) != 0 {
		t.Errorf("second dead letter headers %v: want one x-source-* naming the first position, one x-error", lh)
	}
	// A record whose x-source-topic names another topic is versioned by its own position.
	other := Record{Topic: "elsewhere", Partition: 1, Offset: 5, Headers: hs}
	if p, o, _ := other.Origin(); p != 1 || o != 5 {
		t.Errorf("origin with a foreign x-source-topic: %d/%d, want 1/5", p, o)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPartitionLag(t *testing.T) {
	for _, c := range []struct {
		name                           string
		rdLag, hi, ls, committed, want int64
	}{
		{"committed", 3, 10, 10, 7, 3},
		{"stale statistics: the committer is ahead", 10, 10, 10, 10, 0},
		{"nothing committed: everything", -1, 10, 10, -1, 10},
		{"read_committed: the last stable offset is the end", 5, 12, 10, 10, 0},
		{"no last stable offset: the high watermark", 2, 12, -1, 10, 2},
		{"no end known: librdkafka's figure", 4, -1, -1, 3, 4},
		{"committed past the end (a race): no negative lag", 0, 10, 10, 11, 0},
	} {
		if got := partitionLag(c.rdLag, c.hi, c.ls, c.committed); got != c.want {
			t.Errorf("%s: partitionLag(%d, %d, %d, %d) = %d, want %d", c.name, c.rdLag, c.hi, c.ls, c.committed, got, c.want)
		}
	}
}
