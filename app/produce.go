package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orders-service/configs"
	"github.com/orderflow/orders-service/modules/orders/ordersgen"
	"github.com/orderflow/orders-service/pipeline/kafkaedge"
)

// produceOptions are the flags of `app produce`.
type produceOptions struct {
	count        int
	rate         float64
	invalidRatio float64
	seed         uint64
	brokers      string
	topic        string
	quiet        bool
}

func cmdProduce(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	var o produceOptions
	cfg, _, err := loadConfig("produce", args, environ, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&o.count, "count", 1000, "orders to send")
		fs.Float64Var(&o.rate, "rate", 0, "orders per second (0 = as fast as possible)")
		fs.Float64Var(&o.invalidRatio, "invalid-ratio", 0, "share of bad messages (malformed, missing fields, wrong types, inconsistent totals, oversized, binary)")
		fs.Uint64Var(&o.seed, "seed", 0, "random seed for reproducible runs (0 = random)")
		fs.StringVar(&o.brokers, "brokers", "", "bootstrap servers (default: kafka.brokers)")
		fs.StringVar(&o.topic, "topic", "", "topic (default: kafka.topic)")
		fs.BoolVar(&o.quiet, "quiet", false, "no progress line (on stderr: rewritten in place on a terminal, a line every 5 s elsewhere)")
	})
	if err != nil {
		return err
	}
	if o.count < 0 || o.rate < 0 || o.invalidRatio < 0 || o.invalidRatio > 1 {
		return usageError{errors.New("produce: want --count >= 0, --rate >= 0, --invalid-ratio in 0..1")}
	}
	if o.brokers == "" {
		o.brokers = cfg.Kafka.Brokers
	}
	if o.topic == "" {
		o.topic = cfg.Kafka.Topic
	}
	shutdown, err := setupTracing(ctx, cfg.Tracing, "order-producer")
	if err != nil {
		return err
	}
	defer func() { _ = shutdown(context.Background()) }()
	sum, err := produce(ctx, o, cfg, stderr)
	fmt.Fprintf(stdout, "produce: sent=%d acknowledged=%d failed=%d invalid=%d elapsed=%s rate=%.0f/s\n",
		sum.sent, sum.acked, sum.failed, sum.invalid, sum.elapsed.Round(time.Millisecond), float64(sum.acked)/sum.elapsed.Seconds())
	if err != nil {
		return err
	}
	if sum.acked != int64(o.count) {
		return fmt.Errorf("produce: %d of %d records not acknowledged", int64(o.count)-sum.acked, o.count)
	}
	return nil
}

type produceSummary struct {
	sent, acked, failed, invalid int64
	elapsed                      time.Duration
}

// produce sends o.count orders and waits for every acknowledgement.
func produce(ctx context.Context, o produceOptions, cfg configs.Config, progress io.Writer) (produceSummary, error) {
	var sum produceSummary
	p, err := kafkaedge.NewProducer(o.brokers, "order-producer")
	if err != nil {
		return sum, fmt.Errorf("produce: %w", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = p.Close()
		}
	}()
	gen := ordersgen.New(o.seed)
	tracer := otel.Tracer("order-producer")
	prop := otel.GetTextMapPropagator()
	start := time.Now()
	var sent atomic.Int64
	if !o.quiet {
		stop := startProgress(progress, func() progressStats {
			acked, failed := p.Acked()
			return progressStats{total: int64(o.count), sent: sent.Load(), acked: acked, failed: failed, elapsed: time.Since(start)}
		})
		defer stop() // the last progress line; p.Acked reads counters that stay valid after Close
	}
	topic := o.topic
	for i := 0; i < o.count; i++ {
		if o.rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / o.rate * float64(time.Second)))); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		var key string
		var value []byte
		kind := "valid"
		if o.invalidRatio > 0 && gen.Float() < o.invalidRatio {
			kind = gen.RandomKind()
			key, value = gen.Invalid(kind, cfg.Pipeline.MaxMessageBytes)
			sum.invalid++
		} else {
			ord, b := gen.Valid()
			key, value = ord.OrderUID, b
		}
		_, span := tracer.Start(ctx, "orders produce", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.destination.name", topic), attribute.String("order.kind", kind)))
		carrier := propagation.MapCarrier{}
		prop.Inject(trace.ContextWithSpan(ctx, span), carrier)
		headers := make([]kafkaedge.Header, 0, len(carrier))
		for k, v := range carrier {
			headers = append(headers, kafkaedge.Header{Key: k, Value: []byte(v)})
		}
		err := p.Send(ctx, topic, []byte(key), value, headers)
		span.End()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return sum, fmt.Errorf("produce: %w", err)
		}
		sum.sent++
		sent.Store(sum.sent)
	}
	for p.Flush(time.Second) > 0 { // the progress line shows the acknowledgements coming in
		if ctx.Err() != nil {
			p.Flush(5 * time.Second) // interrupted: one last bounded wait, then report what is missing
			break
		}
	}
	cerr := p.Close()
	closed = true
	sum.acked, sum.failed = p.Acked()
	sum.elapsed = time.Since(start)
	if cerr != nil {
		return sum, fmt.Errorf("produce: %w", cerr)
	}
	return sum, ctx.Err()
}
