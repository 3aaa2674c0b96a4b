package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Link is the typed connection from one stage to the next: the mailbox of the
// consuming stage. Exactly one stage produces into a Link and exactly one consumes
// it; the runner closes it when the producer returns.
type Link[T any] struct {
	p    *Pipeline
	from *stage
	to   *stage
	ch   chan T
	// rendezvous: the mailbox has no buffer whatever the consumer's capacity
	// (an adaptive Batch hands its batch over only when the consumer takes it).
	rendezvous bool
}

// Emitter sends a stage's outputs into its outbound Link. It belongs to one stage
// and is used only from that stage's goroutine.
type Emitter[T any] struct {
	link    *Link[T]
	st      *stage
	blocked time.Duration
}

// Emit sends v downstream, blocking while the mailbox is full; it returns ctx.Err()
// if ctx ends first (v is then not sent). Time spent blocked is not counted as the
// stage's processing time.
func (e *Emitter[T]) Emit(ctx context.Context, v T) error {
	select {
	case e.link.ch <- v:
		e.st.emitted()
		return nil
	default:
	}
	t0 := time.Now()
	defer func() { e.blocked += time.Since(t0) }()
	select {
	case e.link.ch <- v:
		e.st.emitted()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// EmitWithin sends v downstream, waiting at most d for room. It reports whether v
// was sent; false means the mailbox stayed full for d or ctx ended.
func (e *Emitter[T]) EmitWithin(ctx context.Context, v T, d time.Duration) bool {
	t0 := time.Now()
	timer := time.NewTimer(d)
	defer func() {
		timer.Stop()
		e.blocked += time.Since(t0)
	}()
	select {
	case e.link.ch <- v:
		e.st.emitted()
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// TryEmit sends v downstream only if the mailbox has room, and reports whether it did.
func (e *Emitter[T]) TryEmit(v T) bool {
	select {
	case e.link.ch <- v:
		e.st.emitted()
		return true
	default:
		return false
	}
}

// Option configures one stage.
type Option func(*stageConf)

type stageConf struct {
	capacity int
	every    time.Duration
	tick     func(context.Context) error
	onClose  func(context.Context) error
	reject   any
}

// Capacity sets the capacity of the stage's inbound mailbox (default Options.QueueCapacity).
func Capacity(n int) Option { return func(c *stageConf) { c.capacity = n } }

// Every calls fn from the stage's goroutine every d while the stage waits for input
// (never concurrently with the handler). An error from fn fails the stage.
func Every(d time.Duration, fn func(ctx context.Context) error) Option {
	return func(c *stageConf) { c.every, c.tick = d, fn }
}

// OnClose calls fn once after the inbound mailbox is closed and drained, before the
// stage's outbound mailbox is closed (not called when the stage is cancelled).
func OnClose(fn func(ctx context.Context) error) Option {
	return func(c *stageConf) { c.onClose = fn }
}

// OnReject handles inputs whose handler returned Reject(err) (e.g. sends them to a
// dead-letter queue); the pipeline continues. In must be the stage's input type.
// An error from fn fails the stage. Without OnReject a rejection fails the stage.
func OnReject[In any](fn func(ctx context.Context, v In, err error) error) Option {
	return func(c *stageConf) { c.reject = fn }
}

type rejection struct{ err error }

func (r *rejection) Error() string { return "rejected: " + r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

// Reject marks err as a permanent error of one input: the runner counts it as
// rejected and hands the input to the stage's OnReject handler.
func Reject(err error) error { return &rejection{err: err} }

// IsRejected reports whether err was made by Reject.
func IsRejected(err error) bool {
	var r *rejection
	return errors.As(err, &r)
}

type stage struct {
	name    string
	source  bool
	batch   bool
	run     func(ctx context.Context) error
	closers []func()
	checks  []func() error
	queue   func() (length, capacity int)

	in, out, rejected, errors atomic.Uint64
	batches, batchItems       atomic.Uint64
	batchMax, batchLast       atomic.Uint64
	done                      atomic.Bool
	m                         atomic.Pointer[stageMetrics]
}

func (s *stage) check() error {
	for _, c := range s.checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

func (s *stage) finish() {
	for _, c := range s.closers {
		c()
	}
	s.done.Store(true)
}

func (s *stage) safeRun(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.errors.Add(1)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.run(ctx)
}

// emitted counts one output; a source's outputs are its messages (outcome ok),
// since a source has no inputs for the runner to measure.
func (s *stage) emitted() {
	s.out.Add(1)
	if s.source {
		if m := s.m.Load(); m != nil {
			m.outcomes[outcomeOK].Inc()
		}
	}
}

func (s *stage) observe(d time.Duration, outcome int) {
	if m := s.m.Load(); m != nil {
		m.duration.Observe(d.Seconds())
		m.outcomes[outcome].Inc()
	}
}

const (
	outcomeOK = iota
	outcomeRejected
	outcomeError
)

func (p *Pipeline) add(name string) *stage {
	for _, s := range p.stages {
		if s.name == name {
			panic(fmt.Sprintf("pipeline: duplicate stage name %q", name))
		}
	}
	s := &stage{name: name}
	p.stages = append(p.stages, s)
	return s
}

func newLink[T any](p *Pipeline, from *stage) *Link[T] {
	l := &Link[T]{p: p, from: from}
	from.closers = append(from.closers, func() { close(l.ch) })
	from.checks = append(from.checks, func() error {
		if l.to == nil {
			return fmt.Errorf("stage %s: output not connected", from.name)
		}
		return nil
	})
	return l
}

func attach[T any](l *Link[T], to *stage, conf *stageConf) {
	if l.to != nil {
		panic(fmt.Sprintf("pipeline: stage %q: input already consumed by %q", to.name, l.to.name))
	}
	c := conf.capacity
	if c <= 0 {
		c = l.p.opts.QueueCapacity
	}
	if l.rendezvous {
		c = 0
	}
	l.to, l.ch = to, make(chan T, c)
	to.queue = func() (int, int) { return len(l.ch), cap(l.ch) }
}

func confOf(opts []Option) *stageConf {
	c := &stageConf{}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Source adds a stage that produces items with run until run returns or its ctx
// ends. Its ctx ends at the soft stop; returning then (with nil or ctx.Err()) is a
// clean stop. Options other than Capacity do not apply to sources.
func Source[Out any](p *Pipeline, name string, run func(ctx context.Context, out *Emitter[Out]) error) *Link[Out] {
	s := p.add(name)
	s.source = true
	l := newLink[Out](p, s)
	em := &Emitter[Out]{link: l, st: s}
	s.run = func(ctx context.Context) error { return run(ctx, em) }
	return l
}

// Map adds a stage that calls fn once per input, in order, from one goroutine; fn
// emits zero or more outputs. fn returning Reject(err) hands the input to the
// OnReject handler; any other error stops the pipeline.
func Map[In, Out any](p *Pipeline, name string, in *Link[In], fn func(ctx context.Context, v In, out *Emitter[Out]) error, opts ...Option) *Link[Out] {
	s := p.add(name)
	conf := confOf(opts)
	attach(in, s, conf)
	l := newLink[Out](p, s)
	em := &Emitter[Out]{link: l, st: s}
	s.run = loop(s, in, conf, func(ctx context.Context, v In) (time.Duration, error) {
		em.blocked = 0
		err := fn(ctx, v, em)
		return em.blocked, err
	})
	return l
}

// Sink adds a final stage that calls fn once per input, in order, from one goroutine.
// Errors are handled as in Map.
func Sink[In any](p *Pipeline, name string, in *Link[In], fn func(ctx context.Context, v In) error, opts ...Option) {
	s := p.add(name)
	conf := confOf(opts)
	attach(in, s, conf)
	s.run = loop(s, in, conf, func(ctx context.Context, v In) (time.Duration, error) {
		return 0, fn(ctx, v)
	})
}

func loop[In any](s *stage, in *Link[In], conf *stageConf, call func(context.Context, In) (time.Duration, error)) func(context.Context) error {
	var reject func(context.Context, In, error) error
	if conf.reject != nil {
		r, ok := conf.reject.(func(context.Context, In, error) error)
		if !ok {
			panic(fmt.Sprintf("pipeline: stage %q: OnReject handler has the wrong input type %T", s.name, conf.reject))
		}
		reject = r
	}
	return func(ctx context.Context) error {
		var tick <-chan time.Time
		if conf.every > 0 {
			t := time.NewTicker(conf.every)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case v, ok := <-in.ch:
				if !ok {
					if conf.onClose != nil {
						if err := conf.onClose(ctx); err != nil {
							s.errors.Add(1)
							return err
						}
					}
					return nil
				}
				s.in.Add(1)
				t0 := time.Now()
				blocked, err := call(ctx, v)
				d := time.Since(t0) - blocked
				switch {
				case err == nil:
					s.observe(d, outcomeOK)
				case IsRejected(err) && reject != nil:
					s.rejected.Add(1)
					s.observe(d, outcomeRejected)
					if rerr := reject(ctx, v, err); rerr != nil {
						s.errors.Add(1)
						return fmt.Errorf("reject: %w", rerr)
					}
				default:
					s.observe(d, outcomeError)
					if !isCtxErr(err) {
						s.errors.Add(1)
					}
					return err
				}
			case <-tick:
				if err := conf.tick(ctx); err != nil {
					if !isCtxErr(err) {
						s.errors.Add(1)
					}
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// BatchPolicy says when a batch is complete: at Count items, at Bytes bytes (as
// measured by Size; nil counts 0), or Linger after its first item, whichever comes
// first. A partial batch is flushed when the input closes.
//
// Adaptive replaces Linger by the next stage's readiness (group commit): the
// batch is handed over as soon as the next stage takes it, so an item arriving
// while that stage is idle is not delayed at all, and items arriving while it is
// busy accumulate into the next batch (up to Count or Bytes). Under light load
// batches are small and immediate; under a backlog they grow to Count by
// themselves. The outbound mailbox then has no buffer: a batch waiting in a
// mailbox is a batch that could still grow.
type BatchPolicy[T any] struct {
	Count    int
	Bytes    int
	Linger   time.Duration
	Adaptive bool
	Size     func(T) int
}

// Batch adds a stage that groups inputs into batches by policy, keeping their order.
func Batch[T any](p *Pipeline, name string, in *Link[T], policy BatchPolicy[T], opts ...Option) *Link[[]T] {
	if policy.Count <= 0 {
		policy.Count = 1000
	}
	if policy.Linger <= 0 {
		policy.Linger = 50 * time.Millisecond
	}
	s := p.add(name)
	s.batch = true
	conf := confOf(opts)
	attach(in, s, conf)
	l := newLink[[]T](p, s)
	l.rendezvous = policy.Adaptive
	em := &Emitter[[]T]{link: l, st: s}
	s.run = func(ctx context.Context) error {
		var (
			buf   []T
			bytes int
			first time.Time
		)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		// taken accounts for a batch handed to the next stage and starts a new one.
		taken := func(trigger int) {
			timer.Stop()
			n := uint64(len(buf))
			buf, bytes = make([]T, 0, min(policy.Count, 4096)), 0
			s.batches.Add(1)
			s.batchItems.Add(n)
			s.batchLast.Store(n)
			if n > s.batchMax.Load() {
				s.batchMax.Store(n)
			}
			if m := s.m.Load(); m != nil {
				m.batchSize.Observe(float64(n))
				m.duration.Observe(time.Since(first).Seconds())
				m.flushes[trigger].Inc()
			}
		}
		flush := func(trigger int) error {
			if len(buf) == 0 {
				return nil
			}
			if err := em.Emit(ctx, buf); err != nil {
				return err
			}
			taken(trigger)
			return nil
		}
		for {
			var ready chan<- []T // Adaptive: offer the batch while taking more input
			if policy.Adaptive && len(buf) > 0 {
				ready = l.ch
			}
			select {
			case v, ok := <-in.ch:
				if !ok {
					return flush(triggerDrain)
				}
				s.in.Add(1)
				if m := s.m.Load(); m != nil {
					m.outcomes[outcomeOK].Inc()
				}
				if len(buf) == 0 {
					first = time.Now()
					if !policy.Adaptive {
						timer.Reset(policy.Linger)
					}
				}
				buf = append(buf, v)
				if policy.Size != nil {
					bytes += policy.Size(v)
				}
				trigger := -1
				switch {
				case len(buf) >= policy.Count:
					trigger = triggerCount
				case policy.Bytes > 0 && bytes >= policy.Bytes:
					trigger = triggerBytes
				}
				if trigger >= 0 {
					if err := flush(trigger); err != nil {
						return err
					}
				}
			case ready <- buf:
				s.emitted()
				taken(triggerReady)
			case <-timer.C:
				if err := flush(triggerLinger); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return l
}

// Shard adds a stage that routes each input to one of n outbound links, the one
// numbered key(v) mod n, keeping the order of the inputs that share a link: n
// lanes that run side by side, each in order. It returns the n links.
func Shard[T any](p *Pipeline, name string, in *Link[T], n int, key func(T) int, opts ...Option) []*Link[T] {
	if n < 1 {
		panic(fmt.Sprintf("pipeline: stage %q: %d lanes", name, n))
	}
	s := p.add(name)
	conf := confOf(opts)
	attach(in, s, conf)
	outs := make([]*Emitter[T], n)
	links := make([]*Link[T], n)
	for i := range outs {
		links[i] = newLink[T](p, s)
		outs[i] = &Emitter[T]{link: links[i], st: s}
	}
	s.run = loop(s, in, conf, func(ctx context.Context, v T) (time.Duration, error) {
		em := outs[(key(v)%n+n)%n]
		em.blocked = 0
		err := em.Emit(ctx, v)
		return em.blocked, err
	})
	return links
}

// Merge adds a stage that forwards the inputs of every link in ins into one
// outbound link, each link's inputs in their order (lanes joining again). Its
// outbound link closes once every input link is closed and drained.
func Merge[T any](p *Pipeline, name string, ins []*Link[T], opts ...Option) *Link[T] {
	s := p.add(name)
	conf := confOf(opts)
	for _, in := range ins {
		attach(in, s, conf)
	}
	s.queue = func() (length, capacity int) {
		for _, in := range ins {
			length, capacity = length+len(in.ch), capacity+cap(in.ch)
		}
		return length, capacity
	}
	l := newLink[T](p, s)
	s.run = func(ctx context.Context) error {
		errs := make(chan error, len(ins))
		for _, in := range ins {
			go func() {
				em := &Emitter[T]{link: l, st: s}
				for {
					select {
					case v, ok := <-in.ch:
						if !ok {
							errs <- nil
							return
						}
						s.in.Add(1)
						s.observe(0, outcomeOK)
						if err := em.Emit(ctx, v); err != nil {
							errs <- err
							return
						}
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
			}()
		}
		var first error
		for range ins {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	return l
}
