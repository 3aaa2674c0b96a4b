package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/orderflow/orders-service/configs"
)

// dlqOptions are the flags of `app dlq inspect|replay`.
type dlqOptions struct {
	brokers   string
	topic     string
	target    string
	limit     int
	class     string
	partition int
	from, to  int64
	dryRun    bool
}

func cmdDLQ(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "inspect" && args[0] != "replay") {
		return usageError{errors.New("dlq: want `dlq inspect [flags]` or `dlq replay [flags]`")}
	}
	action := args[0]
	o := dlqOptions{}
	cfg, _, err := loadConfig("dlq "+action, args[1:], environ, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&o.brokers, "brokers", "", "bootstrap servers (default: kafka.brokers)")
		fs.StringVar(&o.topic, "topic", "", "dead-letter topic (default: kafka.dlq_topic)")
		fs.StringVar(&o.target, "to-topic", "", "replay: topic to re-publish to (default: each record's x-source-topic, else kafka.topic)")
		fs.IntVar(&o.limit, "limit", 10, "inspect: records to show")
		fs.StringVar(&o.class, "class", "", "only records of this x-error-class (decode, validation, data)")
		fs.IntVar(&o.partition, "partition", -1, "only records of this DLQ partition")
		fs.Int64Var(&o.from, "from-offset", 0, "only records at or after this DLQ offset")
		fs.Int64Var(&o.to, "to-offset", -1, "only records at or before this DLQ offset (-1 = the end)")
		fs.BoolVar(&o.dryRun, "dry-run", false, "replay: list what would be re-published, publish nothing")
	})
	if err != nil {
		return err
	}
	if o.brokers == "" {
		o.brokers = cfg.Kafka.Brokers
	}
	if o.topic == "" {
		o.topic = cfg.Kafka.DLQTopic
	}
	recs, err := readDLQ(ctx, o)
	if err != nil {
		return err
	}
	if action == "inspect" {
		printDLQ(stdout, o, recs)
		return nil
	}
	return replayDLQ(ctx, o, cfg, recs, stdout)
}

// dlqRecord is one dead letter as read back from the DLQ topic.
type dlqRecord struct {
	partition int32
	offset    int64
	key       []byte
	value     []byte
	headers   []kafka.Header
}

func (r dlqRecord) header(name string) string {
	for _, h := range r.headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// readDLQ reads every record of the DLQ topic that matches the filters, from the
// start to the end offsets at call time (no consumer group, nothing committed).
func readDLQ(ctx context.Context, o dlqOptions) ([]dlqRecord, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": o.brokers, "group.id": "orders-dlq-tool", "enable.auto.commit": false,
		"enable.partition.eof": true, "auto.offset.reset": "earliest", "enable.metrics.push": false,
		"isolation.level": "read_committed", // dead letters of aborted transactions are not dead letters
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: consumer: %w", err)
	}
	defer func() { _ = c.Close() }()
	md, err := c.GetMetadata(&o.topic, false, 10000)
	if err != nil {
		return nil, fmt.Errorf("dlq: metadata of %s: %w", o.topic, err)
	}
	tm, ok := md.Topics[o.topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart {
		return nil, fmt.Errorf("dlq: topic %s does not exist", o.topic)
	}
	var assign []kafka.TopicPartition
	remaining := map[int32]int64{} // partition -> last offset to read
	for _, p := range tm.Partitions {
		if o.partition >= 0 && p.ID != int32(o.partition) {
			continue
		}
		low, high, err := c.QueryWatermarkOffsets(o.topic, p.ID, 10000)
		if err != nil {
			return nil, fmt.Errorf("dlq: offsets of %s/%d: %w", o.topic, p.ID, err)
		}
		start := max(low, o.from)
		end := high - 1
		if o.to >= 0 && o.to < end {
			end = o.to
		}
		if start > end {
			continue
		}
		remaining[p.ID] = end
		assign = append(assign, kafka.TopicPartition{Topic: &o.topic, Partition: p.ID, Offset: kafka.Offset(start)})
	}
	if len(assign) == 0 {
		return nil, nil
	}
	if err := c.Assign(assign); err != nil {
		return nil, fmt.Errorf("dlq: assign: %w", err)
	}
	var out []dlqRecord
	idle := time.Now()
	for len(remaining) > 0 {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Since(idle) > 30*time.Second {
			return nil, fmt.Errorf("dlq: no progress for 30 s reading %s", o.topic)
		}
		switch e := c.Poll(200).(type) {
		case *kafka.Message:
			idle = time.Now()
			p, off := e.TopicPartition.Partition, int64(e.TopicPartition.Offset)
			end, ok := remaining[p]
			if !ok || off > end {
				continue
			}
			if off == end {
				delete(remaining, p)
			}
			r := dlqRecord{partition: p, offset: off, key: e.Key, value: e.Value, headers: e.Headers}
			if o.class == "" || r.header("x-error-class") == o.class {
				out = append(out, r)
			}
		case kafka.PartitionEOF:
			delete(remaining, e.Partition)
		case kafka.Error:
			if e.IsFatal() {
				return nil, fmt.Errorf("dlq: %w", e)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].partition != out[j].partition {
			return out[i].partition < out[j].partition
		}
		return out[i].offset < out[j].offset
	})
	return out, nil
}

// printDLQ prints the count by error class and the first records with their
// headers. Values are not printed (they carry personal data), only their size.
func printDLQ(w io.Writer, o dlqOptions, recs []dlqRecord) {
	byClass := map[string]int{}
	for _, r := range recs {
		byClass[r.header("x-error-class")]++
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	fmt.Fprintf(w, "dlq %s: %d records\n", o.topic, len(recs))
	for _, c := range classes {
		fmt.Fprintf(w, "  %-12s %d\n", c, byClass[c])
	}
	for i, r := range recs {
		if i >= o.limit {
			fmt.Fprintf(w, "... %d more (use --limit)\n", len(recs)-o.limit)
			break
		}
		fmt.Fprintf(w, "\n%s/%d@%d key=%q value=%d bytes\n", o.topic, r.partition, r.offset, r.key, len(r.value))
		for _, h := range r.headers {
			if strings.HasPrefix(h.Key, "x-") {
				fmt.Fprintf(w, "  %s: %s\n", h.Key, h.Value)
			}
		}
	}
}

// replayDLQ re-publishes the records (original key, value and non-x-* headers) to
// their source topic. The upsert is idempotent, so replaying twice is harmless.
func replayDLQ(ctx context.Context, o dlqOptions, cfg configs.Config, recs []dlqRecord, w io.Writer) error {
	target := func(r dlqRecord) string {
		if o.target != "" {
			return o.target
		}
		if t := r.header("x-source-topic"); t != "" {
			return t
		}
		return cfg.Kafka.Topic
	}
	if o.dryRun {
		for _, r := range recs {
			fmt.Fprintf(w, "would replay %s/%d@%d key=%q class=%s -> %s\n", o.topic, r.partition, r.offset, r.key, r.header("x-error-class"), target(r))
		}
		fmt.Fprintf(w, "dry run: %d records would be replayed\n", len(recs))
		return nil
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": o.brokers, "enable.idempotence": true, "acks": "all",
		"message.max.bytes": 16 << 20, "enable.metrics.push": false,
	})
	if err != nil {
		return fmt.Errorf("dlq replay: producer: %w", err)
	}
	defer p.Close()
	dr := make(chan kafka.Event, len(recs)+1)
	for _, r := range recs {
		topic := target(r)
		var hs []kafka.Header
		for _, h := range r.headers {
			if !strings.HasPrefix(h.Key, "x-") {
				hs = append(hs, h)
			}
		}
		hs = append(hs, kafka.Header{Key: "x-replayed-from", Value: []byte(o.topic + "/" + strconv.Itoa(int(r.partition)) + "@" + strconv.FormatInt(r.offset, 10))})
		msg := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: r.key, Value: r.value, Headers: hs}
		if err := p.Produce(msg, dr); err != nil {
			return fmt.Errorf("dlq replay: %w", err)
		}
	}
	failed := 0
	for range recs {
		select {
		case e := <-dr:
			if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				failed++
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(60 * time.Second):
			return errors.New("dlq replay: no acknowledgement within 60 s")
		}
	}
	fmt.Fprintf(w, "replayed %d records (%d failed)\n", len(recs)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("dlq replay: %d records not acknowledged", failed)
	}
	return nil
}
