package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

func TestDLQInspectAndReplay(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	input := testenv.KafkaTopicName(t, "orders")
	dlq := input + "-dlq"
	testenv.KafkaCreateTopic(t, brokers, input, 1)
	testenv.KafkaCreateTopic(t, brokers, dlq, 1)
	classes := []string{"decode", "validation", "validation", "data", "decode"}
	var recs []*kgo.Record
	for i, class := range classes {
		recs = append(recs, &kgo.Record{
			Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("value-%d", i)),
			Headers: []kgo.RecordHeader{
				{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
				{Key: kafkaedge.HeaderError, Value: []byte("reason " + class)},
				{Key: kafkaedge.HeaderErrorClass, Value: []byte(class)},
				{Key: kafkaedge.HeaderSourceTopic, Value: []byte(input)},
				{Key: kafkaedge.HeaderSourcePartition, Value: []byte("0")},
				{Key: kafkaedge.HeaderSourceOffset, Value: []byte(fmt.Sprint(i))},
			},
		})
	}
	testenv.KafkaProduce(t, brokers, dlq, recs...)
	env := []string{"ORDERS_KAFKA_BROKERS=" + brokers, "ORDERS_KAFKA_TOPIC=" + input, "ORDERS_KAFKA_DLQ_TOPIC=" + dlq}

	out := runOK(t, env, "dlq", "inspect", "--limit", "2")
	for _, want := range []string{"5 records", "decode      2\n", "validation  2\n", "data        1\n", "  reason decode  ", "... 3 more", "  " + input + "/0@1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "value-0") {
		t.Errorf("inspect printed a message value:\n%s", out)
	}
	out = runOK(t, env, "dlq", "inspect", "--format", "json", "--class", "validation")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"key":"k1"`) || !strings.Contains(lines[1], `"reason":"reason validation"`) {
		t.Errorf("inspect --format json --class validation:\n%s", out)
	}

	out = runOK(t, env, "dlq", "replay", "--dry-run", "--class", "validation")
	if !strings.Contains(out, "2 records would be replayed") || !strings.Contains(out, `key="k1"`) || !strings.Contains(out, `key="k2"`) {
		t.Fatalf("dry run output:\n%s", out)
	}
	if got := testenv.KafkaReadAll(t, brokers, input, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("dry run published %d records", len(got))
	}

	out = runOK(t, env, "dlq", "replay", "--from-offset", "1", "--to-offset", "3")
	if !strings.Contains(out, "replayed 3 records (0 failed)") {
		t.Fatalf("replay output:\n%s", out)
	}
	got := testenv.KafkaReadAll(t, brokers, input, time.Second)
	if len(got) != 3 {
		t.Fatalf("input topic holds %d records, want 3", len(got))
	}
	for i, r := range got {
		if want := fmt.Sprintf("value-%d", i+1); string(r.Value) != want {
			t.Errorf("record %d value %q, want %q", i, r.Value, want)
		}
		var names []string
		for _, h := range r.Headers {
			names = append(names, h.Key)
		}
		joined := strings.Join(names, ",")
		if strings.Contains(joined, kafkaedge.HeaderError) || !strings.Contains(joined, "traceparent") || !strings.Contains(joined, kafkaedge.HeaderReplayedFrom) {
			t.Errorf("record %d headers %s: want the original ones plus x-replayed-from, no x-error*", i, joined)
		}
	}
}

func runOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, env, &out, &errb); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errb.String())
	}
	return out.String()
}
