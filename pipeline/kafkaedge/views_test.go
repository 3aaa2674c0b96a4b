package kafkaedge

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orders-service/modules/testkit/testenv"
)

// TestReadTopicNewest: Newest reads only the last offsets of each partition,
// and Size counts the whole partitions.
func TestReadTopicNewest(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.KafkaTopicName(t, "newest")
	testenv.KafkaCreateTopic(t, brokers, topic, 1)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v")})
	}
	testenv.KafkaProduce(t, brokers, topic, recs...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := ReadTopicSize(ctx, ReadOptions{Brokers: brokers, Topic: topic, Partition: -1, To: -1, Newest: 3})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range res.Records {
		keys = append(keys, string(r.Key))
	}
	if res.Size != 10 || len(keys) != 3 || keys[0] != "k7" || keys[2] != "k9" {
		t.Errorf("size %d, records %v; want 10 and [k7 k8 k9]", res.Size, keys)
	}
	all, err := ReadTopic(ctx, ReadOptions{Brokers: brokers, Topic: topic, Partition: -1, To: -1})
	if err != nil || len(all) != 10 {
		t.Errorf("without Newest: %d records, %v; want all 10", len(all), err)
	}
}
