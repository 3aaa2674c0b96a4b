package pipeline_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/pipeline"
)

// flushCounts reads orders_pipeline_batch_flushes_total{stage} by trigger.
func flushCounts(t *testing.T, reg *prometheus.Registry, stage string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "orders_pipeline_batch_flushes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stage"] == stage {
				got[labels["trigger"]] = m.GetCounter().GetValue()
			}
		}
	}
	return got
}

func TestBatchFlushTriggersAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := pipeline.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := pipeline.New(pipeline.Options{QueueCapacity: 16, Metrics: m})

	// Items 0..9 fill count-limited batches (4 per batch); the next item is large
	// and fills a batch by bytes; one more waits for the linger timer: the source
	// holds it back until the sink has seen the lingering batch, so only the timer
	// can flush it; a last item is flushed when the input closes.
	lingered := make(chan struct{})
	src := pipeline.Source(p, "src", func(ctx context.Context, out *pipeline.Emitter[int]) error {
		for range 10 {
			if err := out.Emit(ctx, 1); err != nil {
				return err
			}
		}
		if err := out.Emit(ctx, 1000); err != nil { // 2 small leftovers + 1000 bytes: over Bytes
			return err
		}
		if err := out.Emit(ctx, 1); err != nil { // alone: only the linger timer flushes it
			return err
		}
		select {
		case <-lingered:
		case <-ctx.Done():
			return ctx.Err()
		}
		return out.Emit(ctx, 1) // flushed by the drain at close
	})
	batches := pipeline.Batch(p, "batch", src, pipeline.BatchPolicy[int]{
		Count: 4, Bytes: 500, Linger: 20 * time.Millisecond, Size: func(v int) int { return v },
	})
	var sizes []int
	pipeline.Sink(p, "sink", batches, func(_ context.Context, b []int) error {
		sizes = append(sizes, len(b))
		if len(sizes) == 4 {
			close(lingered)
		}
		return nil
	})
	if err := wait(t, runAsync(context.Background(), p)); err != nil {
		t.Fatalf("run: %v", err)
	}
	// 10 small items: 4, 4, then 2 + the large one = 3 by bytes; 1 by linger; 1 at drain.
	if want := []int{4, 4, 3, 1, 1}; !slices.Equal(sizes, want) {
		t.Fatalf("batch sizes %v, want %v", sizes, want)
	}
	got := flushCounts(t, reg, "batch")
	want := map[string]float64{"count": 2, "bytes": 1, "linger": 1, "drain": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("flushes{trigger=%q} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(flushCounts(t, reg, "sink")) != 0 {
		t.Errorf("non-batch stage has flush series")
	}
}
