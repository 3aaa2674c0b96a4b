// Package pipeline is the generic stage engine: stages are goroutines with bounded
// mailboxes (channels), wired into a graph, supervised together with conc and
// measured by the runner, so stage code holds no metrics, supervision or
// cancellation plumbing of its own.
//
// Contract of the engine:
//   - every stage owns a bounded inbound mailbox; the runner closes a stage's
//     outbound mailbox when the stage returns, so downstream stages drain and end;
//   - every send selects on the context, so a cancelled pipeline never blocks;
//   - the first stage error cancels every stage and is what Run returns;
//   - cancelling Run's context is a soft stop: sources stop, in-flight items drain
//     through the stages; after Options.ShutdownTimeout the stages' context is
//     cancelled as well (hard stop) and Run returns ErrHardStop.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc/pool"
)

// ErrHardStop is returned by Run when the soft stop did not finish within
// Options.ShutdownTimeout and the stages were cancelled.
var ErrHardStop = errors.New("pipeline: hard stop: shutdown timeout exceeded")

// Options configures a Pipeline. Zero values take the defaults.
type Options struct {
	// QueueCapacity is the default mailbox capacity of a stage (default 1024).
	QueueCapacity int
	// ShutdownTimeout bounds the soft stop (default 30 s).
	ShutdownTimeout time.Duration
	// Metrics receives the per-stage measurements; nil measures only Stats.
	Metrics *Metrics
}

// Pipeline is a graph of stages built with Source, Map, Batch and Sink and run
// once with Run. Building is not safe for concurrent use; Stats is.
type Pipeline struct {
	opts    Options
	stages  []*stage
	running atomic.Bool
	ran     atomic.Bool
}

// New returns an empty pipeline.
func New(opts Options) *Pipeline {
	if opts.QueueCapacity <= 0 {
		opts.QueueCapacity = 1024
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	return &Pipeline{opts: opts}
}

// Running reports whether Run is executing.
func (p *Pipeline) Running() bool { return p.running.Load() }

// Run starts every stage and blocks until all of them have returned. It returns
// nil after a completed soft stop (ctx cancelled, everything drained), the first
// stage error otherwise, or ErrHardStop when the shutdown timeout cut the drain.
// A pipeline runs once.
func (p *Pipeline) Run(ctx context.Context) error {
	if !p.ran.CompareAndSwap(false, true) {
		return errors.New("pipeline: run: already ran")
	}
	for _, s := range p.stages {
		if err := s.check(); err != nil {
			return fmt.Errorf("pipeline: run: %w", err)
		}
	}
	p.running.Store(true)
	defer p.running.Store(false)
	if m := p.opts.Metrics; m != nil {
		m.attach(p)
		defer m.detach(p)
	}

	work, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)
	var hardTimer atomic.Pointer[time.Timer]
	stopWatch := context.AfterFunc(ctx, func() {
		hardTimer.Store(time.AfterFunc(p.opts.ShutdownTimeout, func() { cancelWork(ErrHardStop) }))
	})
	defer func() {
		stopWatch()
		if t := hardTimer.Load(); t != nil {
			t.Stop()
		}
	}()

	sup := pool.New().WithContext(work).WithCancelOnError().WithFirstError()
	for _, s := range p.stages {
		sup.Go(func(pctx context.Context) error {
			sctx := pctx
			if s.source {
				var cancel context.CancelFunc
				sctx, cancel = context.WithCancel(pctx)
				defer cancel()
				defer context.AfterFunc(ctx, cancel)()
			}
			err := s.safeRun(sctx)
			s.finish()
			if err != nil && s.source && ctx.Err() != nil && pctx.Err() == nil && errors.Is(err, context.Canceled) {
				err = nil // a source stopped by the soft stop
			}
			if err != nil && !isCtxErr(err) {
				return fmt.Errorf("stage %s: %w", s.name, err)
			}
			return err
		})
	}
	err := sup.Wait()
	if err != nil && errors.Is(context.Cause(work), ErrHardStop) {
		return ErrHardStop
	}
	if err != nil && isCtxErr(err) && ctx.Err() != nil {
		// Cancelled only because the caller stopped us: not a failure.
		return nil
	}
	return err
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// StageStats is a snapshot of one stage's counters. In counts items taken from
// the mailbox, Out items emitted, Rejected items handed to the reject handler,
// Errors failed calls (a failed call stops the pipeline).
type StageStats struct {
	Stage         string `json:"stage"`
	In            uint64 `json:"in"`
	Out           uint64 `json:"out"`
	Rejected      uint64 `json:"rejected"`
	Errors        uint64 `json:"errors"`
	QueueLength   int    `json:"queue_length"`
	QueueCapacity int    `json:"queue_capacity"`
	Done          bool   `json:"done"`
	// Batch is set for Batch stages only.
	Batch *BatchStats `json:"batch,omitempty"`
}

// BatchStats describes the batches a Batch stage has emitted.
type BatchStats struct {
	Batches uint64  `json:"batches"`
	Items   uint64  `json:"items"`
	Mean    float64 `json:"mean_size"`
	Max     uint64  `json:"max_size"`
	Last    uint64  `json:"last_size"`
}

// Stats returns a snapshot of every stage in wiring order. Safe for concurrent use.
func (p *Pipeline) Stats() []StageStats {
	out := make([]StageStats, 0, len(p.stages))
	for _, s := range p.stages {
		st := StageStats{
			Stage:    s.name,
			In:       s.in.Load(),
			Out:      s.out.Load(),
			Rejected: s.rejected.Load(),
			Errors:   s.errors.Load(),
			Done:     s.done.Load(),
		}
		if s.batch {
			b := &BatchStats{Batches: s.batches.Load(), Items: s.batchItems.Load(), Max: s.batchMax.Load(), Last: s.batchLast.Load()}
			if b.Batches > 0 {
				b.Mean = float64(b.Items) / float64(b.Batches)
			}
			st.Batch = b
		}
		if s.queue != nil {
			st.QueueLength, st.QueueCapacity = s.queue()
		}
		out = append(out, st)
	}
	return out
}
