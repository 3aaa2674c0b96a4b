package systest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/modules/testkit/testenv"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// Cases of the reliability issue about the commit path: a dead letter the DLQ
// topic cannot take, a commit path that cannot make progress, and records the
// client cannot read. Each runs the real binary against the real broker.

// header returns the value of header key of r ("" if absent).
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// validRecords returns n canonical orders as records keyed by uid.
func validRecords(g *ordersgen.Gen, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		o := g.Order()
		v, _ := json.Marshal(o)
		recs[i] = &kgo.Record{Key: []byte(o.OrderUID), Value: v}
	}
	return recs
}

// createTopic creates topic with one partition and the given configs.
func (f *fixture) createTopic(topic string, configs map[string]*string) {
	f.t.Helper()
	cl, adm := f.admin()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, 1, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		f.t.Fatalf("create topic %s: %v", topic, err)
	}
}

// storedUIDs returns how many of uids the database holds.
func (f *fixture) storedUIDs(uids []string) int {
	f.t.Helper()
	n := 0
	err := f.query(context.Background(), func(c *pgx.Conn) error {
		return c.QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE order_uid = ANY($1)", uids).Scan(&n)
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func uidsOf(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Key)
	}
	return out
}

// A DLQ topic not created by the service keeps the broker's ~1 MiB limit: a
// message near that limit fits the input topic, but not with the x-* headers of
// its dead letter. The letter is cut to fit (x-value-truncated, x-value-sha256)
// instead of failing every commit forever; the valid orders around it are
// stored and committed.
func TestDeadLetterTooLargeForTheDLQTopic(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "dlq-too-large", brokers, durableDB(t))
	f.createTopic(f.dlq, nil) // the broker's defaults: message.max.bytes ~1 MiB
	g := ordersgen.New(suiteSeed(t) + 41)
	before, after := validRecords(g, 50), validRecords(g, 50)
	big := make([]byte, 1_048_400) // random: lz4 cannot shrink it below the limit
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	recs := append(append(append([]*kgo.Record{}, before...), &kgo.Record{Key: []byte("too-large-letter"), Value: big}), after...)
	if err := produce(context.Background(), brokers, f.topic, recs, 0); err != nil {
		t.Fatal(err)
	}
	s := f.start()
	defer stop(t, s)
	f.waitLagZero(90*time.Second, s)
	if n := f.storedUIDs(append(uidsOf(before), uidsOf(after)...)); n != 100 {
		t.Fatalf("stored %d of the 100 valid orders", n)
	}
	var letter *kgo.Record
	for _, r := range testenv.KafkaReadAll(t, brokers, f.dlq, time.Second) {
		if string(r.Key) == "too-large-letter" {
			if letter != nil {
				t.Fatalf("two dead letters for one message")
			}
			letter = r
		}
	}
	if letter == nil {
		t.Fatal("no dead letter for the message too large for the DLQ topic")
	}
	sum := sha256.Sum256(big)
	if got := header(letter, kafkaedge.HeaderValueTruncated); got != strconv.Itoa(len(big)) {
		t.Errorf("x-value-truncated %q, want the original size %d", got, len(big))
	}
	if got := header(letter, kafkaedge.HeaderValueSHA256); got != hex.EncodeToString(sum[:]) {
		t.Errorf("x-value-sha256 %q, want the original value's", got)
	}
	if len(letter.Value) >= len(big) || string(letter.Value) != string(big[:len(letter.Value)]) {
		t.Errorf("letter value of %d bytes: want a prefix of the original", len(letter.Value))
	}
	if header(letter, kafkaedge.HeaderError) == "" || header(letter, kafkaedge.HeaderSourceOffset) == "" {
		t.Errorf("letter headers %v: want the reason and the source position", letter.Headers)
	}
	if v := metricValue(t, s, "orders_pipeline_dlq_truncated_total"); v < 1 {
		t.Errorf("orders_pipeline_dlq_truncated_total = %v, want >= 1", v)
	}
	t.Logf("dead letter cut from %d to %d bytes; 100 valid orders around it stored and committed", len(big), len(letter.Value))
}

// A DLQ topic that refuses every letter (here max.message.bytes below the size
// of any letter; small letters are never cut) stops the commits: the service
// says so (/ready 503, orders_pipeline_commit_stalled 1) past
// pipeline.commit_stall_bound, and recovers by itself once the topic is fixed,
// with the letter written once and the offsets committed.
func TestCommitStallIsVisibleAndRecovers(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "commit-stall", brokers, durableDB(t))
	tiny := "100"
	f.createTopic(f.dlq, map[string]*string{"max.message.bytes": &tiny})
	f.extraEnv = append(f.extraEnv, "ORDERS_PIPELINE_COMMIT_STALL_BOUND=2s")
	s := f.start()
	defer stop(t, s)
	g := ordersgen.New(suiteSeed(t) + 42)
	recs := append(validRecords(g, 20), &kgo.Record{Key: []byte("stall-letter"), Value: []byte("{not json")})
	if err := produce(context.Background(), brokers, f.topic, recs, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for readyStatus(s) != 503 {
		if time.Now().After(deadline) {
			t.Fatalf("/ready still %d 90 s after a letter the DLQ topic refuses", readyStatus(s))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if v := metricValue(t, s, "orders_pipeline_commit_stalled"); v != 1 {
		t.Errorf("orders_pipeline_commit_stalled = %v while /ready is 503, want 1", v)
	}
	if v := metricValue(t, s, "orders_pipeline_commit_failing_seconds"); v <= 2 {
		t.Errorf("orders_pipeline_commit_failing_seconds = %v, want > the 2 s bound", v)
	}
	stalledAt := time.Now()

	cl, adm := f.admin()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "max.message.bytes"}}, f.dlq)
	if err == nil {
		for _, r := range res {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		t.Fatalf("alter the DLQ topic: %v", err)
	}
	f.waitLagZero(90*time.Second, s)
	for readyStatus(s) != 200 {
		if time.Now().After(deadline.Add(90 * time.Second)) {
			t.Fatalf("/ready %d after the DLQ topic was fixed and the lag is 0", readyStatus(s))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if v := metricValue(t, s, "orders_pipeline_commit_stalled"); v != 0 {
		t.Errorf("orders_pipeline_commit_stalled = %v after recovery, want 0", v)
	}
	n := 0
	for _, r := range testenv.KafkaReadAll(t, brokers, f.dlq, time.Second) {
		if string(r.Key) == "stall-letter" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d dead letters for the bad message, want 1", n)
	}
	if got := f.storedUIDs(uidsOf(recs[:20])); got != 20 {
		t.Errorf("stored %d of 20 valid orders", got)
	}
	t.Logf("commits stalled: /ready 503 after the bound; recovered %s after the DLQ topic was fixed", time.Since(stalledAt).Round(time.Millisecond))
}

// A record set that fails its CRC (here: a byte flipped in the broker's segment
// file) is reported by librdkafka without its partition, after which it parses
// garbage and resets the partition to its beginning, again and again. The flow
// stops instead: the record before it is stored and committed, nothing at or
// after it is committed (none is skipped), the service says why and exits.
func TestUnreadableRecordStopsTheFlow(t *testing.T) {
	brokers := requireEnv(t)
	f := newFixture(t, "unreadable-record", brokers, durableDB(t))
	g := ordersgen.New(suiteSeed(t) + 43)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic(f.topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	recs := validRecords(g, 3) // one batch each (ProduceSync): the middle one is corrupted
	for _, r := range recs {
		r.Partition = 0
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	poison := recs[1]
	corruptRecordBatch(t, f, poison.Partition, poison.Offset)

	s := testenv.StartProcess(t, testenv.ServiceOptions{Binary: f.bin, Env: f.env()})
	select {
	case <-s.Done():
	case <-time.After(90 * time.Second):
		_ = s.Kill()
		t.Fatalf("the service still runs 90 s after it met the corrupt record set; log tail:\n%s", s.LogTail(4000))
	}
	logs, _ := os.ReadFile(s.LogPath())
	if !strings.Contains(string(logs), "records cannot be read") || !strings.Contains(string(logs), "CRC") {
		t.Errorf("the service's log does not say which records cannot be read:\n%s", s.LogTail(4000))
	}
	if n := f.storedUIDs([]string{string(recs[0].Key)}); n != 1 {
		t.Errorf("the order before the corrupt record set is not stored")
	}
	if n := f.storedUIDs([]string{string(recs[2].Key)}); n != 0 {
		t.Errorf("the order after the corrupt record set is stored: the flow went past it")
	}
	acl, adm := f.admin()
	defer acl.Close()
	offs, err := adm.FetchOffsets(ctx, f.group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(f.topic, 0); !ok || o.At != poison.Offset {
		t.Errorf("committed offset of partition 0: %+v (found %v), want %d: the corrupt record's", o.At, ok, poison.Offset)
	}
	t.Logf("the flow stopped at the corrupt record set 0@%d with the offset before it committed", poison.Offset)
}

// corruptRecordBatch flips a byte inside the record batch at offset of the
// case's topic/partition in the broker's segment file (the broker runs on this machine;
// its log directory comes from DescribeLogDirs). The test is skipped when the
// file is not reachable from here.
func corruptRecordBatch(t *testing.T, f *fixture, partition int32, offset int64) {
	t.Helper()
	topic := f.topic
	cl, adm := f.admin()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dirs, err := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{topic: {partition: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var segment string
	dirs.Each(func(d kadm.DescribedLogDir) {
		if _, ok := d.Topics[topic][partition]; ok {
			segment = filepath.Join(d.Dir, fmt.Sprintf("%s-%d", topic, partition), "00000000000000000000.log")
		}
	})
	fh, err := os.OpenFile(segment, os.O_RDWR, 0)
	if segment == "" || err != nil {
		t.Skipf("the broker's segment file of %s-%d is not writable from here (%q: %v): the broker must run on this machine", topic, partition, segment, err)
	}
	defer fh.Close()
	data, err := os.ReadFile(segment)
	if err != nil {
		t.Fatal(err)
	}
	// A record batch: baseOffset int64, batchLength int32 (the bytes after it),
	// then the rest; the CRC covers everything from the attributes on.
	for pos := 0; pos+12 <= len(data); {
		base := int64(binary.BigEndian.Uint64(data[pos:]))
		length := int(binary.BigEndian.Uint32(data[pos+8:]))
		end := pos + 12 + length
		if end > len(data) || length < 49 {
			break
		}
		if base == offset {
			at := int64(end - 8) // inside the last record's value
			if _, err := fh.WriteAt([]byte{data[at] ^ 0xff}, at); err != nil {
				t.Fatal(err)
			}
			return
		}
		pos = end
	}
	t.Fatalf("no record batch at offset %d in %s", offset, segment)
}
