package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/pipeline"
)

const testTimeout = 10 * time.Second

// runAsync runs p and returns a channel with its result.
func runAsync(ctx context.Context, p *pipeline.Pipeline) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		t.Fatal("pipeline did not return in time")
		return nil
	}
}

// counted emits 0..n-1 and returns.
func counted(n int) func(ctx context.Context, out *pipeline.Emitter[int]) error {
	return func(ctx context.Context, out *pipeline.Emitter[int]) error {
		for i := range n {
			if err := out.Emit(ctx, i); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestLinearFlowKeepsOrderAndCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := pipeline.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := pipeline.New(pipeline.Options{QueueCapacity: 4, Metrics: m})
	src := pipeline.Source(p, "src", counted(1000))
	doubled := pipeline.Map(p, "double", src, func(ctx context.Context, v int, out *pipeline.Emitter[int]) error {
		return out.Emit(ctx, v*2)
	})
	batches := pipeline.Batch(p, "batch", doubled, pipeline.BatchPolicy[int]{Count: 64, Linger: time.Hour})
	var got []int
	var sizes []int
	pipeline.Sink(p, "sink", batches, func(_ context.Context, b []int) error {
		sizes = append(sizes, len(b))
		got = append(got, b...)
		return nil
	})
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(got) != 1000 {
		t.Fatalf("got %d items, want 1000", len(got))
	}
	for i, v := range got {
		if v != 2*i {
			t.Fatalf("item %d = %d, want %d (order lost)", i, v, 2*i)
		}
	}
	// 1000 = 15*64 + 40: the partial batch is flushed when the input closes.
	if len(sizes) != 16 || sizes[15] != 40 {
		t.Fatalf("batch sizes %v", sizes)
	}
	st := p.Stats()
	want := map[string][2]uint64{"src": {0, 1000}, "double": {1000, 1000}, "batch": {1000, 16}, "sink": {16, 0}}
	for _, s := range st {
		if w := want[s.Stage]; s.In != w[0] || s.Out != w[1] || !s.Done {
			t.Errorf("stage %s: in %d out %d done %v, want %v", s.Stage, s.In, s.Out, s.Done, w)
		}
	}
	if st[2].Batch == nil || st[2].Batch.Batches != 16 || st[2].Batch.Max != 64 {
		t.Errorf("batch stats %+v", st[2].Batch)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() == "orders_pipeline_messages_total" {
			for _, mt := range mf.GetMetric() {
				if lbl := mt.GetLabel(); lbl[0].GetValue() == "double" && lbl[1].GetValue() == "ok" && mt.GetCounter().GetValue() != 1000 {
					t.Errorf("double ok counter %v", mt.GetCounter().GetValue())
				}
			}
		}
	}
	for _, n := range []string{"orders_pipeline_messages_total", "orders_pipeline_stage_duration_seconds", "orders_pipeline_batch_size"} {
		if !names[n] {
			t.Errorf("metric family %s missing", n)
		}
	}
}

func TestStageErrorStopsAllAndIsReturned(t *testing.T) {
	p := pipeline.New(pipeline.Options{QueueCapacity: 1})
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		for i := 0; ; i++ { // would run forever without cancellation
			if err := out.Emit(ctx, i); err != nil {
				return err
			}
		}
	})
	boom := errors.New("boom")
	pipeline.Sink(p, "sink", src, func(_ context.Context, v int) error {
		if v == 10 {
			return boom
		}
		return nil
	})
	err := wait(t, runAsync(context.Background(), p))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "stage sink") {
		t.Fatalf("run error %v, want boom from stage sink", err)
	}
	if st := p.Stats(); st[1].Errors != 1 {
		t.Fatalf("sink errors %d", st[1].Errors)
	}
}

func TestPanicBecomesError(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	src := pipeline.Source(p, "src", counted(3))
	pipeline.Sink(p, "sink", src, func(_ context.Context, v int) error {
		if v == 1 {
			panic("bad item")
		}
		return nil
	})
	err := wait(t, runAsync(context.Background(), p))
	if err == nil || !strings.Contains(err.Error(), "panic: bad item") {
		t.Fatalf("run error %v, want the panic", err)
	}
}

func TestSoftStopDrainsInFlight(t *testing.T) {
	p := pipeline.New(pipeline.Options{QueueCapacity: 8, ShutdownTimeout: testTimeout})
	var mu sync.Mutex
	emitted := 0
	started := make(chan struct{})
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		for i := 0; ; i++ {
			if i == 20 {
				close(started)
			}
			if err := out.Emit(ctx, i); err != nil {
				return err
			}
			mu.Lock()
			emitted++
			mu.Unlock()
		}
	})
	slow := pipeline.Map(p, "slow", src, func(ctx context.Context, v int, out *pipeline.Emitter[int]) error {
		time.Sleep(time.Millisecond)
		return out.Emit(ctx, v)
	})
	closed := false
	var got []int
	pipeline.Sink(p, "sink", slow, func(_ context.Context, v int) error {
		got = append(got, v)
		return nil
	}, pipeline.OnClose(func(context.Context) error { closed = true; return nil }))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, p)
	<-started
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("soft stop returned %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != emitted || !closed {
		t.Fatalf("sink got %d items, source emitted %d, OnClose ran %v: in-flight items were lost", len(got), emitted, closed)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("item %d = %d", i, v)
		}
	}
}

func TestHardStopAfterShutdownTimeout(t *testing.T) {
	p := pipeline.New(pipeline.Options{ShutdownTimeout: 50 * time.Millisecond})
	src := pipeline.Source(p, "src", counted(1))
	entered := make(chan struct{})
	pipeline.Sink(p, "stuck", src, func(ctx context.Context, _ int) error {
		close(entered)
		<-ctx.Done() // e.g. a database that never answers
		return ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, p)
	<-entered
	cancel()
	if err := wait(t, done); !errors.Is(err, pipeline.ErrHardStop) {
		t.Fatalf("run returned %v, want ErrHardStop", err)
	}
}

func TestRejectGoesToHandlerAndFlowContinues(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	src := pipeline.Source(p, "src", counted(10))
	var rejected []int
	odd := errors.New("odd")
	even := pipeline.Map(p, "filter", src, func(ctx context.Context, v int, out *pipeline.Emitter[int]) error {
		if v%2 == 1 {
			return pipeline.Reject(odd)
		}
		return out.Emit(ctx, v)
	}, pipeline.OnReject(func(_ context.Context, v int, err error) error {
		if !errors.Is(err, odd) {
			t.Errorf("reject handler got %v", err)
		}
		rejected = append(rejected, v)
		return nil
	}))
	var got []int
	pipeline.Sink(p, "sink", even, func(_ context.Context, v int) error { got = append(got, v); return nil })
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || len(rejected) != 5 {
		t.Fatalf("passed %v rejected %v", got, rejected)
	}
	if st := p.Stats(); st[1].Rejected != 5 || st[1].Out != 5 {
		t.Fatalf("filter stats %+v", st[1])
	}
}

func TestRejectWithoutHandlerFails(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	src := pipeline.Source(p, "src", counted(1))
	pipeline.Sink(p, "sink", src, func(context.Context, int) error { return pipeline.Reject(errors.New("bad")) })
	if err := wait(t, runAsync(context.Background(), p)); err == nil || !pipeline.IsRejected(err) {
		t.Fatalf("run returned %v, want the rejection", err)
	}
}

func TestTryEmitReportsFullMailbox(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	release := make(chan struct{})
	full := make(chan bool, 1)
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		if !out.TryEmit(1) { // taken by the sink, which then blocks
			return errors.New("first TryEmit failed")
		}
		for !out.TryEmit(2) { // wait until the sink holds 1
			time.Sleep(time.Millisecond)
		}
		full <- !out.TryEmit(3) // capacity 1 holds 2: full
		close(release)
		return out.Emit(ctx, 3)
	})
	var got []int
	pipeline.Sink(p, "sink", src, func(_ context.Context, v int) error {
		if v == 1 {
			<-release
		}
		got = append(got, v)
		return nil
	}, pipeline.Capacity(1))
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
	if !<-full {
		t.Fatal("TryEmit succeeded on a full mailbox")
	}
	if len(got) != 3 {
		t.Fatalf("got %v", got)
	}
}

func TestBatchFlushesByLingerAndBytes(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	hold := make(chan struct{})
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		for _, v := range []int{5, 5, 5} { // 3rd item reaches Bytes=15
			if err := out.Emit(ctx, v); err != nil {
				return err
			}
		}
		if err := out.Emit(ctx, 1); err != nil { // alone: only the linger flushes it
			return err
		}
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil
	})
	batches := pipeline.Batch(p, "batch", src, pipeline.BatchPolicy[int]{
		Count: 100, Bytes: 15, Linger: 20 * time.Millisecond, Size: func(v int) int { return v },
	})
	var sizes []int
	pipeline.Sink(p, "sink", batches, func(_ context.Context, b []int) error {
		sizes = append(sizes, len(b))
		if len(sizes) == 2 {
			close(hold)
		}
		return nil
	})
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 2 || sizes[0] != 3 || sizes[1] != 1 {
		t.Fatalf("batch sizes %v, want [3 1]", sizes)
	}
}

func TestEveryTicksWhileIdle(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	ticked := make(chan struct{})
	src := pipeline.Source(p, "src", func(ctx context.Context, _ *pipeline.Emitter[int]) error {
		select {
		case <-ticked:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	var once sync.Once
	pipeline.Sink(p, "sink", src, func(context.Context, int) error { return nil },
		pipeline.Every(5*time.Millisecond, func(context.Context) error { once.Do(func() { close(ticked) }); return nil }))
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
}

func TestUnconnectedOutputIsABuildError(t *testing.T) {
	p := pipeline.New(pipeline.Options{})
	pipeline.Source(p, "src", counted(1))
	if err := p.Run(context.Background()); err == nil {
		t.Fatal("run accepted a source with no consumer")
	}
}

// An adaptive batch goes to an idle consumer at once (the linger is an hour), and
// what arrives while the consumer is busy becomes the next batch.
func TestAdaptiveBatchHandsOverWhenReadyAndGroupsWhileBusy(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := pipeline.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := pipeline.New(pipeline.Options{Metrics: m})
	busy, release := make(chan struct{}), make(chan struct{})
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		if err := out.Emit(ctx, 0); err != nil {
			return err
		}
		select { // the sink has the first batch and holds it
		case <-busy:
		case <-ctx.Done():
			return ctx.Err()
		}
		for v := 1; v <= 10; v++ {
			if err := out.Emit(ctx, v); err != nil {
				return err
			}
		}
		for { // every item is in the batch stage's buffer
			if st := p.Stats(); st[1].In == 11 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(release)
		return nil
	})
	batches := pipeline.Batch(p, "batch", src, pipeline.BatchPolicy[int]{Count: 100, Linger: time.Hour, Adaptive: true})
	var got [][]int
	pipeline.Sink(p, "sink", batches, func(ctx context.Context, b []int) error {
		got = append(got, b)
		if len(got) == 1 {
			close(busy)
			<-release
		}
		return nil
	})
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got[0]) != 1 || len(got[1]) != 10 || got[1][0] != 1 || got[1][9] != 10 {
		t.Fatalf("batches %v, want [[0] [1 .. 10]]", got)
	}
	if st := p.Stats(); st[1].QueueCapacity != 1024 || st[2].QueueCapacity != 0 {
		t.Fatalf("mailboxes %+v: the adaptive batch's outbound one must have no buffer", st)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	flushes := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "orders_pipeline_batch_flushes_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "trigger" {
					flushes[l.GetValue()] += mt.GetCounter().GetValue()
				}
			}
		}
	}
	// The first batch went the moment the sink was free; the second, whole,
	// either to the free sink or by the drain: once release is closed the sink
	// being ready and the input closing race, and either is right.
	if flushes["ready"] < 1 || flushes["ready"]+flushes["drain"] != 2 || flushes["count"]+flushes["linger"]+flushes["bytes"] != 0 {
		t.Fatalf("flushes by trigger %v, want the first by readiness and the second by readiness or drain", flushes)
	}
}

// Lanes made by Shard run side by side and keep the order of each key; Merge
// joins them and closes once all of them are done.
func TestShardAndMergeKeepOrderPerLane(t *testing.T) {
	p := pipeline.New(pipeline.Options{QueueCapacity: 8})
	src := pipeline.Source(p, "src", counted(3000))
	lanes := pipeline.Shard(p, "route", src, 3, func(v int) int { return v % 7 })
	var mu sync.Mutex
	running, overlap := 0, false
	outs := make([]*pipeline.Link[int], len(lanes))
	for i, lane := range lanes {
		outs[i] = pipeline.Map(p, "work-"+string(rune('a'+i)), lane, func(ctx context.Context, v int, out *pipeline.Emitter[int]) error {
			mu.Lock()
			running++
			overlap = overlap || running > 1
			mu.Unlock()
			if v%50 == 0 {
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			running--
			mu.Unlock()
			return out.Emit(ctx, v)
		})
	}
	merged := pipeline.Merge(p, "merge", outs)
	var got []int
	pipeline.Sink(p, "sink", merged, func(_ context.Context, v int) error {
		got = append(got, v)
		return nil
	})
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3000 {
		t.Fatalf("got %d items, want 3000", len(got))
	}
	last := map[int]int{}
	for _, v := range got {
		if prev, ok := last[v%7]; ok && v < prev {
			t.Fatalf("key %d: %d after %d", v%7, v, prev)
		}
		last[v%7] = v
	}
	if !overlap {
		t.Error("the lanes never ran at the same time")
	}
	for _, s := range p.Stats() {
		if !s.Done {
			t.Errorf("stage %s not done", s.Stage)
		}
		if s.Stage == "merge" && (s.In != 3000 || s.Out != 3000 || s.QueueCapacity != 24) {
			t.Errorf("merge stats %+v", s)
		}
	}
}
