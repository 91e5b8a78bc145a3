package ledger

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Retry runs fn until it returns nil or ErrNotFound, or ctx ends, backing
// off between attempts and logging each failure: a ledger that cannot be
// reached holds the work back; it never becomes an answer.
func Retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := fn(ctx)
		if err == nil || errors.Is(err, ErrNotFound) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Error("ledger unavailable; retrying", "operation", what, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
