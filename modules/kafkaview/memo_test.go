package kafkaview

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// TestMemoDropsItsAnswerAfterTheTTL: no answer is held past its TTL, even when
// no request comes to replace it.
func TestMemoDropsItsAnswerAfterTheTTL(t *testing.T) {
	m := newMemo[[]byte](20 * time.Millisecond)
	if _, err := m.get(context.Background(), func(context.Context) ([]byte, error) { return make([]byte, 1<<20), nil }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); m.held(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the answer is still held 5 s after its 20 ms TTL")
		}
	}
}

// TestNewestKeepsTheNewestWithinTheValueBudget: of letters offered in any
// order (partitions interleaved), only the n newest stay, newest first; each
// value is cut at MaxValueBytes, and past the budget the oldest lose theirs.
func TestNewestKeepsTheNewestWithinTheValueBudget(t *testing.T) {
	base := time.Now()
	const n, budget = 5, 3 * MaxValueBytes
	k := NewNewest(n, budget)
	big := bytes.Repeat([]byte("v"), MaxValueBytes+10)
	// 4 partitions x 6 offsets; letter (p, o) was written at second o*4+p.
	for o := range 6 {
		for p := range 4 {
			k.Add(Letter{Partition: int32(p), Offset: int64(o), Time: base.Add(time.Duration(o*4+p) * time.Second), Key: fmt.Sprint(p, "/", o)}, big)
		}
		if len(k.h) > n {
			t.Fatalf("%d letters held, want at most %d", len(k.h), n)
		}
	}
	got := k.Letters()
	var keys []string
	total := 0
	for _, l := range got {
		keys = append(keys, l.Key)
		total += len(l.Value)
		if l.ValueBytes != len(big) || !l.ValueCut {
			t.Errorf("%s: value_bytes %d, cut %v; want %d and cut", l.Key, l.ValueBytes, l.ValueCut, len(big))
		}
	}
	if fmt.Sprint(keys) != "[3/5 2/5 1/5 0/5 3/4]" {
		t.Errorf("letters %v, want the 5 newest, newest first", keys)
	}
	if total > budget {
		t.Errorf("%d bytes of values held, budget %d", total, budget)
	}
	for i, l := range got {
		if want := MaxValueBytes * min(1, max(0, 3-i)); len(l.Value) != want {
			t.Errorf("%s keeps %d bytes of value, want %d (the 3 newest keep theirs)", l.Key, len(l.Value), want)
		}
	}
	small := NewNewest(2, budget)
	small.Add(Letter{Key: "a"}, []byte("abc"))
	if l := small.Letters(); len(l) != 1 || string(l[0].Value) != "abc" || l[0].ValueCut || l[0].ValueBytes != 3 {
		t.Errorf("a small value: %+v, want it whole", l)
	}
}
