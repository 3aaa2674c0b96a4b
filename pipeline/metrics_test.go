package pipeline_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orderflow/orders-service/pipeline"
)

// series reads the series of family name whose stage label is stage, keyed by
// the value of label key: counter values, or the sample count of histograms.
func series(t *testing.T, reg *prometheus.Registry, name, stage, key string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stage"] != stage {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				got[labels[key]] = float64(h.GetSampleCount())
			} else {
				got[labels[key]] = m.GetCounter().GetValue()
			}
		}
	}
	return got
}

func flushCounts(t *testing.T, reg *prometheus.Registry, stage string) map[string]float64 {
	t.Helper()
	return series(t, reg, "orders_pipeline_batch_flushes_total", stage, "trigger")
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
	for _, st := range []string{"src", "sink"} {
		if n := len(flushCounts(t, reg, st)); n != 0 {
			t.Errorf("non-batch stage %s has %d flush series", st, n)
		}
		if n := len(series(t, reg, "orders_pipeline_batch_size", st, "stage")); n != 0 {
			t.Errorf("non-batch stage %s has a batch size histogram", st)
		}
	}
	if got := series(t, reg, "orders_pipeline_batch_size", "batch", "stage")["batch"]; got != 5 {
		t.Errorf("batch size observations %v, want 5", got)
	}
	// The source has no inputs: its throughput is the messages it emitted.
	if got := series(t, reg, "orders_pipeline_messages_total", "src", "outcome")["ok"]; got != 13 {
		t.Errorf("source messages{outcome=ok} = %v, want 13", got)
	}
}

// BenchmarkLinearFlow measures the engine's per-item overhead (source, map, batch,
// sink) with and without Prometheus metrics.
func BenchmarkLinearFlow(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "no_metrics"
		if withMetrics {
			name = "metrics"
		}
		b.Run(name, func(b *testing.B) {
			var m *pipeline.Metrics
			if withMetrics {
				var err error
				if m, err = pipeline.NewMetrics(prometheus.NewRegistry()); err != nil {
					b.Fatal(err)
				}
			}
			p := pipeline.New(pipeline.Options{Metrics: m})
			src := pipeline.Source(p, "src", counted(b.N))
			inc := pipeline.Map(p, "inc", src, func(ctx context.Context, v int, out *pipeline.Emitter[int]) error {
				return out.Emit(ctx, v+1)
			})
			batches := pipeline.Batch(p, "batch", inc, pipeline.BatchPolicy[int]{Count: 1000, Linger: time.Second})
			n := 0
			pipeline.Sink(p, "sink", batches, func(_ context.Context, v []int) error {
				n += len(v)
				return nil
			})
			b.ReportAllocs()
			b.ResetTimer()
			if err := p.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			if n != b.N {
				b.Fatalf("sink saw %d items, want %d", n, b.N)
			}
		})
	}
}
