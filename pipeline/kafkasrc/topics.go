package kafkasrc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Topic describes a topic to create when missing.
type Topic struct {
	Name       string
	Partitions int
	// ReplicationFactor of the topic; <= 0 means 1 (a single-node broker).
	ReplicationFactor int
	// Config are topic settings (e.g. "max.message.bytes").
	Config map[string]string
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left
// as they are. It returns the first error other than "already exists".
func EnsureTopics(ctx context.Context, brokers string, topics ...Topic) error {
	adm, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "enable.metrics.push": false})
	if err != nil {
		return fmt.Errorf("ensure topics: admin client: %w", err)
	}
	defer adm.Close()
	specs := make([]kafka.TopicSpecification, 0, len(topics))
	for _, t := range topics {
		rf := t.ReplicationFactor
		if rf <= 0 {
			rf = 1
		}
		n := t.Partitions
		if n <= 0 {
			n = 1
		}
		specs = append(specs, kafka.TopicSpecification{Topic: t.Name, NumPartitions: n, ReplicationFactor: rf, Config: t.Config})
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	res, err := adm.CreateTopics(ctx, specs, kafka.SetAdminOperationTimeout(timeout))
	if err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	var errs []error
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			errs = append(errs, fmt.Errorf("create topic %s: %w", r.Topic, r.Error))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ensure topics: %w", errors.Join(errs...))
	}
	return nil
}
