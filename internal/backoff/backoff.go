// Package backoff is the service's one way to wait between attempts:
// exponential, capped, and ended by the caller's context.
package backoff

import (
	"context"
	"time"
)

// Backoff waits longer after each attempt, doubling from Initial up to Max.
// The zero value waits 100 ms doubling up to 5 s.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration

	next time.Duration
}

// Defaults of a zero Backoff.
const (
	DefaultInitial = 100 * time.Millisecond
	DefaultMax     = 5 * time.Second
)

// Next returns how long the next wait is, and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	if b.next <= 0 {
		b.next = b.Initial
		if b.next <= 0 {
			b.next = DefaultInitial
		}
	}
	limit := b.Max
	if limit <= 0 {
		limit = DefaultMax
	}
	d := min(b.next, limit)
	b.next = min(2*b.next, limit)
	return d
}

// Reset makes the next wait Initial again.
func (b *Backoff) Reset() { b.next = 0 }

// Wait sleeps for the next wait, or until ctx ends (then its error).
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep sleeps for d, or until ctx ends (then its error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
