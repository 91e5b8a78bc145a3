package ledger

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"lightning-service/internal/backoff"
)

// Retry runs fn until it returns nil or ErrNotFound, or ctx ends, backing
// off between attempts and logging each failure: a ledger that cannot be
// reached holds the work back; it never becomes an answer.
func Retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	b := backoff.Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := fn(ctx)
		if err == nil || errors.Is(err, ErrNotFound) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Error("ledger unavailable; retrying", "operation", what, "error", err)
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}
