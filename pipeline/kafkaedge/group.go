package kafkaedge

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// GroupMember is one member of a consumer group as the group coordinator sees it.
type GroupMember struct {
	ClientID   string // the client's client.id
	InstanceID string // group.instance.id of a static member; "" for a dynamic one
	MemberID   string // the member id the coordinator gave it
	Host       string // the address the member connects from
	// Partitions are the partitions assigned to it, by topic, in ascending order.
	Partitions map[string][]int32
	// Lag is the group's lag on those partitions: the log end offsets (read
	// committed) less the group's committed offsets, summed over the partitions
	// that have a committed offset; nil when none has (or they could not be read).
	Lag *int64
}

// Group describes a consumer group: its state, partition assignor, coordinator
// broker id (-1: unknown) and members, ordered by instance id, then member id.
type Group struct {
	ID          string
	State       string
	Assignor    string
	Coordinator int
	Members     []GroupMember
}

// DescribeGroup asks the cluster's admin API (DescribeConsumerGroups) about
// group. Its requests are bounded by ctx's deadline (10 s at most).
func DescribeGroup(ctx context.Context, brokers, group string) (Group, error) {
	cm := common(brokers)
	adm, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return Group{}, fmt.Errorf("describe group %s: admin client: %w", group, err)
	}
	defer adm.Close()
	res, err := adm.DescribeConsumerGroups(ctx, []string{group},
		kafka.SetAdminRequestTimeout(timeoutDuration(ctx)))
	if err != nil {
		return Group{}, fmt.Errorf("describe group %s: %w", group, err)
	}
	if len(res.ConsumerGroupDescriptions) != 1 {
		return Group{}, fmt.Errorf("describe group %s: %d descriptions", group, len(res.ConsumerGroupDescriptions))
	}
	d := res.ConsumerGroupDescriptions[0]
	if d.Error.Code() != kafka.ErrNoError {
		return Group{}, fmt.Errorf("describe group %s: %w", group, d.Error)
	}
	g := Group{ID: d.GroupID, State: d.State.String(), Assignor: d.PartitionAssignor, Coordinator: d.Coordinator.ID}
	for _, m := range d.Members {
		gm := GroupMember{
			ClientID: m.ClientID, InstanceID: m.GroupInstanceID, MemberID: m.ConsumerID, Host: m.Host,
			Partitions: map[string][]int32{},
		}
		for _, tp := range m.Assignment.TopicPartitions {
			if tp.Topic != nil {
				gm.Partitions[*tp.Topic] = append(gm.Partitions[*tp.Topic], tp.Partition)
			}
		}
		for _, ps := range gm.Partitions {
			slices.Sort(ps)
		}
		g.Members = append(g.Members, gm)
	}
	addLags(ctx, adm, group, g.Members)
	slices.SortFunc(g.Members, func(a, b GroupMember) int {
		return cmp.Or(strings.Compare(a.InstanceID, b.InstanceID), strings.Compare(a.MemberID, b.MemberID))
	})
	return g, nil
}

// addLags sets the members' Lag from the group's committed offsets and the
// partitions' end offsets. It is best effort: what cannot be read stays nil.
func addLags(ctx context.Context, adm *kafka.AdminClient, group string, members []GroupMember) {
	type tp struct {
		topic string
		part  int32
	}
	var parts []kafka.TopicPartition
	ends := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for _, m := range members {
		for topic, ps := range m.Partitions {
			for _, p := range ps {
				parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p})
				ends[kafka.TopicPartition{Topic: &topic, Partition: p}] = kafka.LatestOffsetSpec
			}
		}
	}
	if len(parts) == 0 {
		return
	}
	committed, err := adm.ListConsumerGroupOffsets(ctx,
		[]kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: parts}},
		kafka.SetAdminRequireStableOffsets(false))
	if err != nil || len(committed.ConsumerGroupsTopicPartitions) != 1 {
		return
	}
	latest, err := adm.ListOffsets(ctx, ends, kafka.SetAdminIsolationLevel(kafka.IsolationLevelReadCommitted))
	if err != nil {
		return
	}
	end := map[tp]int64{}
	for k, v := range latest.ResultInfos {
		if k.Topic != nil && v.Error.Code() == kafka.ErrNoError && v.Offset >= 0 {
			end[tp{*k.Topic, k.Partition}] = int64(v.Offset)
		}
	}
	at := map[tp]int64{}
	for _, c := range committed.ConsumerGroupsTopicPartitions[0].Partitions {
		if c.Topic != nil && c.Error == nil && c.Offset >= 0 {
			at[tp{*c.Topic, c.Partition}] = int64(c.Offset)
		}
	}
	for i := range members {
		var lag int64
		known := false
		for topic, ps := range members[i].Partitions {
			for _, p := range ps {
				e, okE := end[tp{topic, p}]
				c, okC := at[tp{topic, p}]
				if okE && okC {
					lag += max(e-c, 0)
					known = true
				}
			}
		}
		if known {
			members[i].Lag = &lag
		}
	}
}
