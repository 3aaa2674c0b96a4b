package kafkaedge

import (
	"context"
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
		if string(r.Key) != "k"+strconv.Itoa(off) || string(r.Value) != "v"+strconv.Itoa(off) || len(h) != len(want) {
			t.Fatalf("dead letter %d: key %q value %q headers %v", i, r.Key, r.Value, h)
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("dead letter %d: header %s = %q, want %q", i, k, h[k], v)
			}
		}
	}

	// What a replay re-publishes: the original record, marked with its DLQ place.
	rec := Record{Topic: dlqTopic, Partition: 0, Offset: 0, Key: got[0].Key, Value: got[0].Value}
	for _, x := range got[0].Headers {
		rec.Headers = append(rec.Headers, Header{x.Key, x.Value})
	}
	to, key, value, hs := Replay(&rec, "fallback")
	if to != topic || string(key) != "k0" || string(value) != "v0" || len(hs) != 2 ||
		hs[0].Key != "traceparent" || hs[1].Key != HeaderReplayedFrom || string(hs[1].Value) != dlqTopic+"/0@0" {
		t.Fatalf("replay: topic %q key %q value %q headers %v", to, key, value, hs)
	}
}
