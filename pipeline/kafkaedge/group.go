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
	slices.SortFunc(g.Members, func(a, b GroupMember) int {
		return cmp.Or(strings.Compare(a.InstanceID, b.InstanceID), strings.Compare(a.MemberID, b.MemberID))
	})
	return g, nil
}
