package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
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

// readDLQ reads every dead letter that matches the filters, from the start to
// the end offsets at call time (no consumer group, nothing committed).
func readDLQ(ctx context.Context, o dlqOptions) ([]kafkaedge.Record, error) {
	recs, err := kafkaedge.ReadTopic(ctx, kafkaedge.ReadOptions{
		Brokers: o.brokers, Topic: o.topic, Partition: o.partition, From: o.from, To: o.to,
		Keep: func(r *kafkaedge.Record) bool {
			return o.class == "" || r.Header(kafkaedge.HeaderErrorClass) == o.class
		},
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	return recs, nil
}

// printDLQ prints the count by error class and the first records with their
// headers. Values are not printed (they carry personal data), only their size.
func printDLQ(w io.Writer, o dlqOptions, recs []kafkaedge.Record) {
	byClass := map[string]int{}
	for _, r := range recs {
		byClass[r.Header(kafkaedge.HeaderErrorClass)]++
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
		fmt.Fprintf(w, "\n%s/%d@%d key=%q value=%d bytes\n", o.topic, r.Partition, r.Offset, r.Key, len(r.Value))
		for _, h := range r.Headers {
			if kafkaedge.IsServiceHeader(h.Key) {
				fmt.Fprintf(w, "  %s: %s\n", h.Key, h.Value)
			}
		}
	}
}

// replayDLQ re-publishes the records (original key, value and non-x-* headers) to
// their source topic. The upsert is idempotent, so replaying twice is harmless.
func replayDLQ(ctx context.Context, o dlqOptions, cfg configs.Config, recs []kafkaedge.Record, w io.Writer) error {
	fallback := cfg.Kafka.Topic
	target := func(r *kafkaedge.Record) (string, []byte, []byte, []kafkaedge.Header) {
		topic, key, value, hs := kafkaedge.Replay(r, fallback)
		if o.target != "" {
			topic = o.target
		}
		return topic, key, value, hs
	}
	kept := recs[:0:0]
	for i := range recs {
		if ok, why := kafkaedge.Replayable(&recs[i]); !ok {
			fmt.Fprintf(w, "skipped %s/%d@%d key=%q: %s\n", o.topic, recs[i].Partition, recs[i].Offset, recs[i].Key, why)
			continue
		}
		kept = append(kept, recs[i])
	}
	recs = kept
	if o.dryRun {
		for i := range recs {
			r := &recs[i]
			topic, _, _, _ := target(r)
			fmt.Fprintf(w, "would replay %s/%d@%d key=%q class=%s -> %s\n", o.topic, r.Partition, r.Offset, r.Key, r.Header(kafkaedge.HeaderErrorClass), topic)
		}
		fmt.Fprintf(w, "dry run: %d records would be replayed\n", len(recs))
		return nil
	}
	p, err := kafkaedge.NewProducer(o.brokers, "order-dlq-replay")
	if err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}
	for i := range recs {
		topic, key, value, hs := target(&recs[i])
		if err := p.Send(ctx, topic, key, value, hs); err != nil {
			_ = p.Close()
			return fmt.Errorf("dlq replay: %w", err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for p.Flush(time.Second) > 0 {
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = p.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("dlq replay: no acknowledgement within 60 s")
		}
	}
	cerr := p.Close()
	acked, failed := p.Acked()
	fmt.Fprintf(w, "replayed %d records (%d failed)\n", acked, failed)
	if cerr != nil {
		return fmt.Errorf("dlq replay: %w", cerr)
	}
	return nil
}
