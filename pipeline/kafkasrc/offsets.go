package kafkasrc

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Ack is the completion handle that travels with a Message through the stages.
// Calling Done says the message is finished (durably stored); a dead-lettered
// message is finished by the DLQ, which attaches its dead letter to the Ack. The
// committer then may commit past it once every earlier offset of the partition
// this instance received is done too; the dead letters below the committed offset
// are written in the same Kafka transaction as the offsets.
type Ack struct {
	part   *partState
	offset int64
	done   atomic.Bool
}

// Done marks the message finished. It is idempotent and safe for concurrent use.
// Acks of a revoked partition are ignored: their offsets are never committed.
func (a *Ack) Done() {
	if a == nil || !a.done.CompareAndSwap(false, true) {
		return
	}
	a.part.t.done(a.part, a.offset)
}

// deadLetter holds m as the dead letter of the message, to be produced with the
// commit that covers its offset, and marks the message done. It reports false
// (and holds nothing) when the message was already done or its partition revoked.
func (a *Ack) deadLetter(m *kafka.Message) bool {
	if a == nil || a.done.Load() || !a.part.t.hold(a.part, a.offset, m) {
		return false
	}
	a.Done()
	return true
}

// Revoked reports whether the message's partition was taken away from this
// consumer after the message was fetched; its result will never be committed.
func (a *Ack) Revoked() bool {
	if a == nil {
		return false
	}
	return a.part.revoked.Load()
}

// partState tracks one owned partition: the offsets received in order and the
// ones completed out of order; next is the committable watermark (offset+1 of the
// end of the contiguous completed prefix), -1 before anything completed.
type partState struct {
	t         *tracker
	partition int32
	queue     []int64
	head      int
	doneSet   map[int64]struct{}
	next      int64
	committed int64
	revoked   atomic.Bool
	letters   map[int64]*kafka.Message // dead letters held until a commit covers them
}

// tracker is the per-partition contiguous watermark of completed offsets. It is
// safe for concurrent use; commitMu serialises commits with revocation so that an
// offset is never committed for a partition this consumer no longer owns.
type tracker struct {
	topic    string
	mu       sync.Mutex
	parts    map[int32]*partState
	commitMu sync.Mutex

	held      atomic.Int64 // dead letters held
	heldBytes atomic.Int64 // their key+value bytes
}

// commitFunc commits offs and, in the same transaction, produces letters (the held
// dead letters below those offsets). It returns the offsets it committed, which
// may be an earlier attempt's (one whose outcome was unknown) instead of offs.
type commitFunc func(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error)

// letterSize is what a held dead letter costs, for the held-bytes bound.
func letterSize(m *kafka.Message) int64 { return int64(len(m.Key) + len(m.Value) + 256) }

// hold attaches a dead letter to offset of ps; false when ps was revoked.
func (t *tracker) hold(ps *partState, offset int64, m *kafka.Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps.revoked.Load() {
		return false
	}
	if ps.letters == nil {
		ps.letters = map[int64]*kafka.Message{}
	}
	if old, ok := ps.letters[offset]; ok {
		t.release(old)
	}
	ps.letters[offset] = m
	t.held.Add(1)
	t.heldBytes.Add(letterSize(m))
	return true
}

// release forgets one held letter's share of the counters. Caller holds mu.
func (t *tracker) release(m *kafka.Message) {
	t.held.Add(-1)
	t.heldBytes.Add(-letterSize(m))
}

// dropLetters forgets the held letters of ps below offset below (all of them
// when below is -1). Caller holds mu.
func (t *tracker) dropLetters(ps *partState, below int64) {
	for off, m := range ps.letters {
		if below < 0 || off < below {
			t.release(m)
			delete(ps.letters, off)
		}
	}
}

func newTracker(topic string) *tracker {
	return &tracker{topic: topic, parts: map[int32]*partState{}}
}

func (t *tracker) assign(partitions []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range partitions {
		if old := t.parts[p]; old != nil {
			old.revoked.Store(true)
			t.dropLetters(old, -1)
		}
		t.parts[p] = &partState{t: t, partition: p, doneSet: map[int64]struct{}{}, next: -1, committed: -1}
	}
}

// track registers a fetched offset (offsets of a partition arrive in increasing order).
func (t *tracker) track(partition int32, offset int64) *Ack {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := t.parts[partition]
	if ps == nil { // fetched before the assign callback was seen: own it now
		ps = &partState{t: t, partition: partition, doneSet: map[int64]struct{}{}, next: -1, committed: -1}
		t.parts[partition] = ps
	}
	ps.queue = append(ps.queue, offset)
	return &Ack{part: ps, offset: offset}
}

func (t *tracker) done(ps *partState, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps.revoked.Load() {
		return
	}
	if ps.head < len(ps.queue) && ps.queue[ps.head] == offset {
		ps.head++
		ps.next = offset + 1
		for ps.head < len(ps.queue) {
			o := ps.queue[ps.head]
			if _, ok := ps.doneSet[o]; !ok {
				break
			}
			delete(ps.doneSet, o)
			ps.head++
			ps.next = o + 1
		}
		if ps.head > 1024 && ps.head*2 > len(ps.queue) {
			ps.queue = append(ps.queue[:0:0], ps.queue[ps.head:]...)
			ps.head = 0
		}
		return
	}
	ps.doneSet[offset] = struct{}{}
}

// committable returns the offsets to commit for the owned partitions in only
// (all owned when only is nil) and the held dead letters below them, ordered by
// partition and offset.
func (t *tracker) committable(only map[int32]bool) ([]kafka.TopicPartition, []*kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []kafka.TopicPartition
	var letters []*kafka.Message
	for p, ps := range t.parts {
		if only != nil && !only[p] {
			continue
		}
		if ps.next > ps.committed {
			out = append(out, kafka.TopicPartition{Topic: &t.topic, Partition: p, Offset: kafka.Offset(ps.next)})
			for off, m := range ps.letters {
				if off < ps.next {
					letters = append(letters, m)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	sort.Slice(letters, func(i, j int) bool {
		a, b := letters[i].Opaque.(letterRef), letters[j].Opaque.(letterRef)
		if a.partition != b.partition {
			return a.partition < b.partition
		}
		return a.offset < b.offset
	})
	return out, letters
}

// letterRef is a held dead letter's source position (its kafka.Message Opaque).
type letterRef struct {
	partition int32
	offset    int64
}

// commitLocked commits what is committable in only (see committable) with commit
// and records what succeeded: the committed offsets, and the held letters below
// them, which are forgotten. Caller holds commitMu.
func (t *tracker) commitLocked(only map[int32]bool, commit commitFunc) error {
	offs, letters := t.committable(only)
	if len(offs) == 0 {
		return nil
	}
	res, err := commit(offs, letters)
	t.mu.Lock()
	defer t.mu.Unlock()
	firstErr := err
	if err != nil {
		firstErr = fmt.Errorf("commit offsets: %w", err)
	}
	for _, tp := range res {
		if tp.Error != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("commit offset %d/%d: %w", tp.Partition, tp.Offset, tp.Error)
			}
			continue
		}
		if ps := t.parts[tp.Partition]; ps != nil && int64(tp.Offset) > ps.committed {
			ps.committed = int64(tp.Offset)
			t.dropLetters(ps, ps.committed)
		}
	}
	return firstErr
}

// commit commits the watermark of every owned partition that moved.
func (t *tracker) commit(commit commitFunc) error {
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	return t.commitLocked(nil, commit)
}

// revoke first commits what is done for partitions (unless the assignment was
// lost, when committing is no longer allowed), then forgets them: acks of their
// in-flight messages become no-ops, and their uncommitted dead letters are
// dropped (the next owner reads those messages again and dead-letters them).
//
// A lost assignment (session timeout, e.g. while the broker was down) does not
// wait for commitMu: a commit in flight may be blocked on the unreachable group
// coordinator, and the rebalance callback runs inside Poll, so waiting here would
// stop the consumer from ever rejoining. Such a commit cannot land for the lost
// partitions anyway: the coordinator refuses commits of an old generation.
func (t *tracker) revoke(partitions []int32, lost bool, commit commitFunc) error {
	var err error
	if !lost {
		t.commitMu.Lock()
		defer t.commitMu.Unlock()
		only := map[int32]bool{}
		for _, p := range partitions {
			only[p] = true
		}
		err = t.commitLocked(only, commit)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range partitions {
		if ps := t.parts[p]; ps != nil {
			ps.revoked.Store(true)
			t.dropLetters(ps, -1)
			delete(t.parts, p)
		}
	}
	return err
}

// PartitionOffsets is the committer's view of one owned partition.
type PartitionOffsets struct {
	Partition int32 `json:"partition"`
	// Committed is the last committed offset (next to read), -1 if none yet.
	Committed int64 `json:"committed"`
	// Done is the committable watermark, -1 if nothing completed yet.
	Done int64 `json:"done"`
	// InFlight counts received messages not yet covered by the watermark.
	InFlight int `json:"in_flight"`
}

func (t *tracker) snapshot() []PartitionOffsets {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PartitionOffsets, 0, len(t.parts))
	for p, ps := range t.parts {
		out = append(out, PartitionOffsets{Partition: p, Committed: ps.committed, Done: ps.next, InFlight: len(ps.queue) - ps.head})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}
