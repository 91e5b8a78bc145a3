package payment

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"lightning-service/internal/backoff"
	"lightning-service/internal/lightning"
)

// Retrying wraps a Store so that every call is tried again, backing off,
// until it succeeds, returns an answer (ErrLeaseLost, ErrNotRecorded), or
// ctx ends: a ledger that cannot be reached holds the work back; it never
// becomes an answer.
func Retrying(s Store, log *slog.Logger) Store {
	if r, ok := s.(retrying); ok {
		return r
	}
	return retrying{s: s, log: log}
}

type retrying struct {
	s   Store
	log *slog.Logger
}

func do[T any](ctx context.Context, r retrying, what string, fn func(context.Context) (T, error)) (T, error) {
	b := backoff.Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		v, err := fn(ctx)
		if err == nil || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotRecorded) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		r.log.Error("ledger unavailable; retrying", "operation", what, "error", err)
		if err := b.Wait(ctx); err != nil {
			return v, err
		}
	}
}

func (r retrying) Claim(ctx context.Context, c Claim) (Claimed, error) {
	return do(ctx, r, "claim payment", func(ctx context.Context) (Claimed, error) { return r.s.Claim(ctx, c) })
}

func (r retrying) Take(ctx context.Context, id, owner string, until time.Time) (Record, bool, error) {
	type taken struct {
		rec Record
		ok  bool
	}
	t, err := do(ctx, r, "take payment", func(ctx context.Context) (taken, error) {
		rec, ok, err := r.s.Take(ctx, id, owner, until)
		return taken{rec, ok}, err
	})
	return t.rec, t.ok, err
}

func (r retrying) Retry(ctx context.Context, id, owner string) (Claimed, error) {
	return do(ctx, r, "claim payment again", func(ctx context.Context) (Claimed, error) { return r.s.Retry(ctx, id, owner) })
}

func (r retrying) End(ctx context.Context, e End) (Record, error) {
	return do(ctx, r, "end payment", func(ctx context.Context) (Record, error) { return r.s.End(ctx, e) })
}

func (r retrying) Published(ctx context.Context, id string) error {
	_, err := do(ctx, r, "record a published result", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, r.s.Published(ctx, id)
	})
	return err
}

func (r retrying) Renew(ctx context.Context, owner string, until time.Time) error {
	// Renewal is periodic: one failure waits for the next round.
	return r.s.Renew(ctx, owner, until)
}

func (r retrying) Get(ctx context.Context, id string) (Record, error) {
	return do(ctx, r, "read request", func(ctx context.Context) (Record, error) { return r.s.Get(ctx, id) })
}

func (r retrying) Holder(ctx context.Context, hash lightning.Hash) (Record, error) {
	return do(ctx, r, "read payment holder", func(ctx context.Context) (Record, error) { return r.s.Holder(ctx, hash) })
}

func (r retrying) Waiters(ctx context.Context, hash lightning.Hash) ([]Record, error) {
	return do(ctx, r, "list waiting requests", func(ctx context.Context) ([]Record, error) { return r.s.Waiters(ctx, hash) })
}

func (r retrying) Orphans(ctx context.Context, now time.Time) ([]Record, error) {
	return do(ctx, r, "list orphaned payments", func(ctx context.Context) ([]Record, error) { return r.s.Orphans(ctx, now) })
}
