package kafkaedge

import (
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Ack is the completion handle that travels with a Message through the stages.
// A message ends in one of two ways: Done (it is durably stored) or DeadLetter
// (it is rejected). The first call wins; later calls of either are no-ops, so a
// stage may call Done on every message of a batch whether or not one of them was
// dead-lettered before. Once every earlier offset of its partition has ended too,
// the Committer may commit past it; the dead letters below a committed offset
// are written in the same Kafka transaction as that offset.
type Ack struct {
	part   *partState
	offset int64
	rec    *Record // the message, for its dead letter
	done   atomic.Bool

	// The message's share of the in-flight byte budget (Source), given back
	// once when the message ends (Done, DeadLetter) or is dropped.
	budget *budget
	weight int64
	freed  atomic.Bool
}

// Done ends the message as stored. Safe for concurrent use. Acks of a revoked
// partition are ignored: their offsets are never committed (a message of a
// revoked partition that a stage drops is ended with Done, which then only
// gives back its share of the in-flight bytes).
func (a *Ack) Done() {
	if a == nil {
		return
	}
	a.free()
	if !a.done.CompareAndSwap(false, true) {
		return
	}
	a.part.t.done(a.part, a.offset)
}

// free gives the message's in-flight bytes back, once.
func (a *Ack) free() {
	if a.budget != nil && a.freed.CompareAndSwap(false, true) {
		a.budget.release(a.weight)
	}
}

// DeadLetter ends the message as rejected: its dead letter (key and value
// unchanged, its headers plus the x-* headers describing f) is held, and the
// commit that covers its offset writes it to the DLQ in one transaction with
// that offset. It does nothing when the message already ended or its partition
// was revoked (the next owner reads the message again).
func (a *Ack) DeadLetter(f Failure) {
	if a == nil {
		return
	}
	a.free() // the held letter counts against MaxHeldBytes instead
	if a.rec == nil || a.done.Load() {
		return
	}
	if t := a.part.t; a.deadLetter(deadLetter(t.dlqTopic, a.rec, f)) {
		t.countClass(f.Class)
	}
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

// budget is the Source's bound on the bytes of the messages in flight: fetched
// and handed to the pipeline, not yet ended. It bounds memory by bytes where
// the mailboxes bound it by counts only (a backlog of near-limit orders fills
// mailboxes of thousands with gigabytes).
type budget struct {
	limit int64
	used  atomic.Int64
}

// take charges n bytes if they fit, or if nothing is in flight (so that one
// message larger than the whole budget still passes, alone).
func (b *budget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used > 0 && used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) { b.used.Add(-n) }

// messageWeight is what a message counts against the budget: its bytes plus
// what holding it costs besides (the Message, its Ack, headers).
func messageWeight(r *Record) int64 {
	n := int64(len(r.Key) + len(r.Value) + 512)
	for _, h := range r.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
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
	dlqTopic string
	mu       sync.Mutex
	parts    map[int32]*partState
	commitMu sync.Mutex

	held      atomic.Int64 // dead letters held
	heldBytes atomic.Int64 // their key+value bytes

	classMu sync.Mutex
	byClass map[string]uint64 // dead letters held so far, by class
}

// countClass counts one dead letter of class.
func (t *tracker) countClass(class string) {
	t.classMu.Lock()
	t.byClass[class]++
	t.classMu.Unlock()
}

// classes returns the dead letters held so far, by class.
func (t *tracker) classes() map[string]uint64 {
	t.classMu.Lock()
	defer t.classMu.Unlock()
	return maps.Clone(t.byClass)
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

// heldLetter returns the letter held for the source position ref (a
// letterRef, a letter's Opaque), nil if none is held.
func (t *tracker) heldLetter(ref any) *kafka.Message {
	r, ok := ref.(letterRef)
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ps := t.parts[r.partition]; ps != nil {
		return ps.letters[r.offset]
	}
	return nil
}

// replaceLetter puts m (a fitted letter: its Opaque is the held one's
// letterRef) in place of the letter held for the same offset; false when that
// letter is no longer held (committed, or its partition revoked).
func (t *tracker) replaceLetter(m *kafka.Message) bool {
	ref, ok := m.Opaque.(letterRef)
	if !ok {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := t.parts[ref.partition]
	if ps == nil || ps.revoked.Load() {
		return false
	}
	old, ok := ps.letters[ref.offset]
	if !ok {
		return false
	}
	t.release(old)
	ps.letters[ref.offset] = m
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

func newTracker(topic, dlqTopic string) *tracker {
	return &tracker{topic: topic, dlqTopic: dlqTopic, parts: map[int32]*partState{}, byClass: map[string]uint64{}}
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

// PartitionOffsets is the Committer's view of one owned partition.
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
