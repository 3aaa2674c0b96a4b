package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

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
	format    string // inspect: table or json
	// reasonWidth bounds inspect's REASON column (characters).
	reasonWidth int
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
		fs.IntVar(&o.limit, "limit", 10, "inspect: records to show (0 = all)")
		fs.StringVar(&o.format, "format", "table", "inspect: table (aligned columns, then the count by class) or json (one object a line, for scripts)")
		fs.IntVar(&o.reasonWidth, "reason-width", defaultReasonWidth, "inspect: width of the table's REASON column (longer reasons end in …)")
		fs.StringVar(&o.class, "class", "", "only records of this x-error-class (decode, validation, data)")
		fs.IntVar(&o.partition, "partition", -1, "only records of this DLQ partition")
		fs.Int64Var(&o.from, "from-offset", 0, "only records at or after this DLQ offset")
		fs.Int64Var(&o.to, "to-offset", -1, "only records at or before this DLQ offset (-1 = the end)")
		fs.BoolVar(&o.dryRun, "dry-run", false, "replay: list what would be re-published, publish nothing")
	})
	if err != nil {
		return err
	}
	if o.format != "table" && o.format != "json" {
		return usageError{fmt.Errorf("dlq %s: --format: want table or json, got %q", action, o.format)}
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
		return printDLQ(stdout, o, recs)
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

// printDLQ prints the first records (o.limit; 0: all) as an aligned table or
// as JSON lines (o.format), then, in a table, the count by error class of every
// record read. Values are not printed (they carry personal data), only their size
// in JSON.
func printDLQ(w io.Writer, o dlqOptions, recs []kafkaedge.Record) error {
	shown := recs
	if o.limit > 0 && len(shown) > o.limit {
		shown = shown[:o.limit]
	}
	if o.format == "json" {
		enc := json.NewEncoder(w)
		for i := range shown {
			if err := enc.Encode(toDLQLine(&shown[i])); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(w, "dlq %s: %d records\n\n", o.topic, len(recs))
	width := o.reasonWidth
	if width <= 0 {
		width = defaultReasonWidth
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tTIME\tCLASS\tREASON\tKEY\tSOURCE")
	for i := range shown {
		r := &shown[i]
		ts := "-"
		if !r.Timestamp.IsZero() {
			ts = r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Partition, r.Offset, ts,
			cell(r.Header(kafkaedge.HeaderErrorClass), 20), cell(r.Header(kafkaedge.HeaderError), width),
			cell(string(r.Key), maxKeyWidth), source(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(shown) < len(recs) {
		fmt.Fprintf(w, "... %d more (use --limit)\n", len(recs)-len(shown))
	}
	byClass := map[string]int{}
	for _, r := range recs {
		byClass[r.Header(kafkaedge.HeaderErrorClass)]++
	}
	classes := slices.Sorted(maps.Keys(byClass))
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tRECORDS")
	for _, c := range classes {
		fmt.Fprintf(tw, "%s\t%d\n", cell(c, 20), byClass[c])
	}
	return tw.Flush()
}

// defaultReasonWidth and maxKeyWidth bound the REASON and KEY columns (in
// characters, with an ellipsis when cut).
const (
	defaultReasonWidth = 60
	maxKeyWidth        = 64
)

// cell makes s one table cell of at most width characters: whitespace runs
// (tabs, newlines) become one space, control characters are dropped, a longer
// text is cut with an ellipsis, and an empty one is "-".
func cell(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	if utf8.RuneCountInString(s) > width {
		rs := []rune(s)
		s = strings.TrimRight(string(rs[:max(width-1, 0)]), " ") + "…"
	}
	return s
}

// source is a dead letter's source position: topic/partition@offset.
func source(r *kafkaedge.Record) string {
	topic := r.Header(kafkaedge.HeaderSourceTopic)
	if topic == "" {
		return "-"
	}
	return cell(fmt.Sprintf("%s/%s@%s", topic, r.Header(kafkaedge.HeaderSourcePartition), r.Header(kafkaedge.HeaderSourceOffset)), 300)
}

// dlqLine is one dead letter in `dlq inspect --format json` (one object a line).
type dlqLine struct {
	Partition  int32             `json:"partition"`
	Offset     int64             `json:"offset"`
	Time       *time.Time        `json:"time,omitempty"`
	Class      string            `json:"class"`
	Stage      string            `json:"stage"`
	Reason     string            `json:"reason"`
	Key        string            `json:"key"`
	ValueBytes int               `json:"value_bytes"`
	Headers    map[string]string `json:"headers"` // the service's x-* headers
}

func toDLQLine(r *kafkaedge.Record) dlqLine {
	l := dlqLine{
		Partition: r.Partition, Offset: r.Offset,
		Class: r.Header(kafkaedge.HeaderErrorClass), Stage: r.Header(kafkaedge.HeaderStage),
		Reason: r.Header(kafkaedge.HeaderError), Key: string(r.Key), ValueBytes: len(r.Value),
		Headers: map[string]string{},
	}
	if !r.Timestamp.IsZero() {
		ts := r.Timestamp.UTC()
		l.Time = &ts
	}
	for _, h := range r.Headers {
		if kafkaedge.IsServiceHeader(h.Key) {
			l.Headers[h.Key] = string(h.Value)
		}
	}
	return l
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
