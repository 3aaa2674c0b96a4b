package kafkaedge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/orderflow/orders-service/modules/kafkaview"
)

// Views returns the readers of the page's Kafka views (GET /api/v1/dlq and
// GET /api/v1/pipeline/group) on cfg's cluster: the newest letters of
// cfg.DLQTopic (ReadTopicSize) and cfg.GroupID's members (DescribeGroup).
func Views(cfg Config) kafkaview.Options {
	return kafkaview.Options{
		DLQTopic:   cfg.DLQTopic,
		InstanceID: cfg.InstanceID,
		DLQ: func(ctx context.Context, n int) (kafkaview.DLQRead, error) {
			// Twice n offsets per partition: letters are written in transactions,
			// and each one's commit marker takes an offset. Each record is offered
			// to a Newest as it is read: no more than n letters (and their value
			// budget) and one record are held at a time.
			keep := kafkaview.NewNewest(n, kafkaview.ValueBudget)
			res, err := ReadTopicSize(ctx, ReadOptions{
				Brokers: cfg.Brokers, Topic: cfg.DLQTopic, Partition: -1, To: -1, Newest: 2 * int64(n),
				Keep: func(r *Record) bool {
					keep.Add(toLetter(r), r.Value)
					return false
				},
			})
			if err != nil {
				return kafkaview.DLQRead{}, outOfTime(ctx, err)
			}
			return kafkaview.DLQRead{Total: res.Size, Letters: keep.Letters()}, nil
		},
		Group: func(ctx context.Context) (kafkaview.Group, error) {
			g, err := DescribeGroup(ctx, cfg.Brokers, cfg.GroupID)
			if err != nil {
				return kafkaview.Group{}, outOfTime(ctx, err)
			}
			out := kafkaview.Group{ID: g.ID, State: g.State, Assignor: g.Assignor, Coordinator: g.Coordinator}
			for _, m := range g.Members {
				out.Members = append(out.Members, kafkaview.Member{
					ClientID: m.ClientID, InstanceID: m.InstanceID, MemberID: m.MemberID, Host: m.Host, Partitions: m.Partitions,
					Lag: m.Lag,
				})
			}
			return out, nil
		},
	}
}

// deadlineSlack is how close to ctx's deadline a librdkafka call may give up
// and still count as running out of ctx's time: its timeout is the time left
// (timeoutMs, whole milliseconds), and it may return a little before.
const deadlineSlack = 50 * time.Millisecond

// outOfTime marks err as a read that ran out of time (context.DeadlineExceeded)
// when librdkafka gave up on its own timeout (which is ctx's: timeoutMs) or
// ended at ctx's deadline (an unreachable broker is "Local: Broker transport
// failure" then), so the view names its time bound.
func outOfTime(ctx context.Context, err error) error {
	var ke kafka.Error
	timedOut := errors.As(err, &ke) && (ke.Code() == kafka.ErrTimedOut || ke.Code() == kafka.ErrTimedOutQueue)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
		timedOut = true
	}
	if timedOut && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

// toLetter reads a dead letter's x-* headers (Header*); its value is left to
// kafkaview.Newest.Add.
func toLetter(r *Record) kafkaview.Letter {
	l := kafkaview.Letter{
		Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Key: string(r.Key),
		Error:       r.Header(HeaderError),
		Class:       r.Header(HeaderErrorClass),
		Stage:       r.Header(HeaderStage),
		SourceTopic: r.Header(HeaderSourceTopic),
		Headers:     make([]kafkaview.Header, len(r.Headers)),
	}
	if p, err := strconv.ParseInt(r.Header(HeaderSourcePartition), 10, 32); err == nil {
		p32 := int32(p)
		l.SourcePartition = &p32
	}
	if o, err := strconv.ParseInt(r.Header(HeaderSourceOffset), 10, 64); err == nil {
		l.SourceOffset = &o
	}
	l.Attempts, _ = strconv.Atoi(r.Header(HeaderAttempts))
	for i, h := range r.Headers {
		l.Headers[i] = kafkaview.Header{Key: h.Key, Value: string(h.Value)}
	}
	return l
}
