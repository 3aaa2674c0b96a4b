package pipeline

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Retry is the one retry policy of the service: capped exponential backoff with
// jitter (cenkalti/backoff), starting at Min and doubling up to Max. The ingest
// flow uses it for transient database errors and the Kafka edge for its broker
// calls; both take Min and Max from the configuration (pipeline.retry_min,
// pipeline.retry_max).
type Retry struct {
	Min, Max time.Duration
}

// Backoff is one sequence of waits of a Retry; create one per retried operation.
type Backoff struct {
	max time.Duration
	exp *backoff.ExponentialBackOff
}

// Backoff starts a new sequence of waits.
func (r Retry) Backoff() *Backoff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = max(r.Min, time.Millisecond)
	b.MaxInterval = max(r.Max, b.InitialInterval)
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.Reset()
	return &Backoff{max: b.MaxInterval, exp: b}
}

// Next returns the next wait: Min·2^(n-1) for the n-th call, ±50 % jitter,
// never above Max.
func (b *Backoff) Next() time.Duration {
	return min(b.exp.NextBackOff(), b.max)
}

// Sleep waits for d, or until ctx ends (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
