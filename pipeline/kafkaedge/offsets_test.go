package kafkaedge

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// recorder is a commit function that records what was committed.
type recorder struct {
	calls   [][]kafka.TopicPartition
	letters [][]letterRef // the dead letters written with each call
	err     error
}

func (r *recorder) commit(offs []kafka.TopicPartition, letters []*kafka.Message) ([]kafka.TopicPartition, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.calls = append(r.calls, append([]kafka.TopicPartition(nil), offs...))
	refs := make([]letterRef, len(letters))
	for i, m := range letters {
		refs[i] = m.Opaque.(letterRef)
	}
	r.letters = append(r.letters, refs)
	return offs, nil
}

func (r *recorder) last(t *testing.T) map[int32]int64 {
	t.Helper()
	out := map[int32]int64{}
	if len(r.calls) == 0 {
		return out
	}
	for _, tp := range r.calls[len(r.calls)-1] {
		out[tp.Partition] = int64(tp.Offset)
	}
	return out
}

// trackAll registers offsets of partition p, in order, and returns their acks.
func trackAll(tr *tracker, p int32, offsets ...int64) map[int64]*Ack {
	a := make(map[int64]*Ack, len(offsets))
	for _, off := range offsets {
		a[off] = tr.track(p, off)
	}
	return a
}

func TestWatermarkIsContiguousPrefix(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0, 1})
	a := trackAll(tr, 0, 10, 11, 12, 13)
	r := &recorder{}
	a[11].Done()
	a[13].Done()
	if err := tr.commit(r.commit); err != nil || len(r.calls) != 0 {
		t.Fatalf("committed %v (err %v) while offset 10 is in flight", r.calls, err)
	}
	a[10].Done()
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.last(t); got[0] != 12 || len(got) != 1 {
		t.Fatalf("committed %v, want partition 0 at 12 (offset 12 still in flight)", got)
	}
	a[12].Done()
	a[12].Done() // idempotent
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.last(t); got[0] != 14 {
		t.Fatalf("committed %v, want 14", got)
	}
	n := len(r.calls)
	if err := tr.commit(r.commit); err != nil || len(r.calls) != n {
		t.Fatal("committed again although nothing moved")
	}
	if snap := tr.snapshot(); snap[0].Committed != 14 || snap[0].InFlight != 0 {
		t.Fatalf("snapshot %+v", snap)
	}
}

func TestRevokeCommitsDoneThenDropsInFlight(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0, 1})
	done := tr.track(1, 5)
	inflight := tr.track(1, 6)
	other := tr.track(0, 0)
	done.Done()
	r := &recorder{}
	if err := tr.revoke([]int32{1}, false, r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.last(t); got[1] != 6 || len(got) != 1 {
		t.Fatalf("revoke committed %v, want only partition 1 at 6", got)
	}
	if !inflight.Revoked() || other.Revoked() {
		t.Fatal("revocation flags wrong")
	}
	inflight.Done() // finished after the revoke: must never be committed
	other.Done()
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.last(t); got[0] != 1 || len(got) != 1 {
		t.Fatalf("committed %v, want only partition 0 at 1", got)
	}
}

func TestLostAssignmentCommitsNothing(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{3})
	tr.track(3, 0).Done()
	r := &recorder{}
	if err := tr.revoke([]int32{3}, true, r.commit); err != nil || len(r.calls) != 0 {
		t.Fatalf("lost assignment committed %v (err %v)", r.calls, err)
	}
}

func TestReassignStartsFresh(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0})
	old := tr.track(0, 7)
	tr.assign([]int32{0}) // revoked and assigned again without a revoke seen
	old.Done()
	r := &recorder{}
	if err := tr.commit(r.commit); err != nil || len(r.calls) != 0 {
		t.Fatalf("an ack of the previous assignment was committed: %v", r.calls)
	}
}

func TestCommitErrorIsReturnedAndRetried(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0})
	tr.track(0, 0).Done()
	r := &recorder{err: errors.New("coordinator not available")}
	if err := tr.commit(r.commit); err == nil {
		t.Fatal("commit error swallowed")
	}
	r.err = nil
	if err := tr.commit(r.commit); err != nil || r.last(t)[0] != 1 {
		t.Fatalf("retry committed %v (err %v)", r.calls, err)
	}
}

// A commit blocked on an unreachable coordinator must not stop a lost assignment
// from being revoked (the revoke runs inside Poll; blocking it stops the rejoin).
func TestLostRevokeDoesNotWaitForBlockedCommit(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0})
	tr.track(0, 5).Done()
	release := make(chan struct{})
	entered := make(chan struct{})
	committed := make(chan error, 1)
	go func() {
		committed <- tr.commit(func([]kafka.TopicPartition, []*kafka.Message) ([]kafka.TopicPartition, error) {
			close(entered)
			<-release // the coordinator is gone
			return nil, errors.New("coordinator unavailable")
		})
	}()
	<-entered
	revoked := make(chan error, 1)
	go func() {
		revoked <- tr.revoke([]int32{0}, true, func([]kafka.TopicPartition, []*kafka.Message) ([]kafka.TopicPartition, error) {
			t.Error("a lost assignment must not commit")
			return nil, nil
		})
	}()
	select {
	case err := <-revoked:
		if err != nil {
			t.Fatalf("revoke: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("revoke of a lost assignment waited for the blocked commit")
	}
	if offs, _ := tr.committable(nil); len(offs) != 0 {
		t.Fatal("the lost partition is still tracked")
	}
	close(release)
	if err := <-committed; err == nil {
		t.Fatal("the blocked commit reported success")
	}
}

func letter(p int32, off int64) *kafka.Message {
	return &kafka.Message{Value: make([]byte, 100), Opaque: letterRef{partition: p, offset: off}}
}

// A dead letter is written only by the commit whose offsets cover it, in that
// commit, and once.
func TestDeadLettersGoWithTheCommitThatCoversThem(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0, 1})
	a := trackAll(tr, 0, 0, 1, 2, 3)
	b := tr.track(1, 9)
	if !a[1].deadLetter(letter(0, 1)) || !a[3].deadLetter(letter(0, 3)) || !b.deadLetter(letter(1, 9)) {
		t.Fatal("dead letter refused")
	}
	if a[1].deadLetter(letter(0, 1)) {
		t.Fatal("a second dead letter for a done message was accepted")
	}
	if tr.held.Load() != 3 || tr.heldBytes.Load() != 3*letterSize(letter(0, 0)) {
		t.Fatalf("held %d letters / %d bytes", tr.held.Load(), tr.heldBytes.Load())
	}
	r := &recorder{}
	a[0].Done() // partition 0 done up to 2 (offset 2 in flight); partition 1 up to 10
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	want := []letterRef{{0, 1}, {1, 9}}
	if got := r.letters[0]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("first commit wrote %v, want %v", got, want)
	}
	if tr.held.Load() != 1 {
		t.Fatalf("held %d after the commit, want 1 (offset 3)", tr.held.Load())
	}
	a[2].Done()
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.letters[1]; len(got) != 1 || got[0] != (letterRef{0, 3}) {
		t.Fatalf("second commit wrote %v, want [{0 3}]", got)
	}
	if tr.held.Load() != 0 || tr.heldBytes.Load() != 0 {
		t.Fatalf("held %d letters / %d bytes after all commits", tr.held.Load(), tr.heldBytes.Load())
	}
}

// A failed commit keeps its dead letters for the retry; a revoke drops the ones
// of the revoked partition that no commit covered.
func TestDeadLettersSurviveFailedCommitAndDropOnRevoke(t *testing.T) {
	tr := newTracker("orders", "orders-dlq")
	tr.assign([]int32{0, 1})
	tr.track(0, 0).deadLetter(letter(0, 0))
	inflight := tr.track(1, 0)
	tr.track(1, 1).deadLetter(letter(1, 1))
	late := tr.track(1, 2)
	r := &recorder{err: errors.New("transaction aborted")}
	if err := tr.commit(r.commit); err == nil {
		t.Fatal("commit error swallowed")
	}
	if tr.held.Load() != 2 {
		t.Fatalf("held %d after a failed commit, want 2", tr.held.Load())
	}
	r.err = nil
	if err := tr.revoke([]int32{1}, true, r.commit); err != nil {
		t.Fatal(err)
	}
	inflight.Done()
	if tr.held.Load() != 1 {
		t.Fatalf("held %d after the revoke, want 1", tr.held.Load())
	}
	if err := tr.commit(r.commit); err != nil {
		t.Fatal(err)
	}
	if got := r.letters[len(r.letters)-1]; len(got) != 1 || got[0] != (letterRef{0, 0}) {
		t.Fatalf("retry wrote %v, want [{0 0}]", got)
	}
	if late.deadLetter(letter(1, 2)) {
		t.Fatal("a dead letter of a revoked partition's in-flight message was held")
	}
}
