package task_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/task"
)

// unavailableTimes returns a call that fails as unreachable n times, then
// succeeds, and a counter of its calls.
func unavailableTimes(n int) (func(context.Context) error, *int) {
	calls := 0
	return func(context.Context) error {
		calls++
		if calls <= n {
			return lightning.ErrUnavailable
		}
		return nil
	}, &calls
}

func TestRetryRecoversWithinBudget(t *testing.T) {
	fn, calls := unavailableTimes(3)
	if err := fastRetry.Do(context.Background(), fn); err != nil {
		t.Fatalf("Do = %v, want success", err)
	}
	if *calls != 4 {
		t.Errorf("%d calls, want 4", *calls)
	}
}

// The configuration sets only the budget (LIGHTNING_NODE_RETRY_BUDGET); a
// Retry without backoff must still retry, not give up at the first failure.
func TestRetryWithOnlyABudget(t *testing.T) {
	fn, calls := unavailableTimes(2)
	r := task.Retry{Budget: 5 * time.Second}
	if err := r.Do(context.Background(), fn); err != nil {
		t.Fatalf("Do = %v after %d calls, want success", err, *calls)
	}
	if *calls != 3 {
		t.Errorf("%d calls, want 3", *calls)
	}
}

func TestRetryGivesUpAfterBudget(t *testing.T) {
	fn, calls := unavailableTimes(1 << 30)
	start := time.Now()
	err := fastRetry.Do(context.Background(), fn)
	if f := core.Describe(err); f.Code != core.CodeNodeUnavailable {
		t.Fatalf("Do = %v, want node_unavailable", err)
	}
	if !errors.Is(err, lightning.ErrUnavailable) {
		t.Errorf("%v does not keep its cause", err)
	}
	if d := time.Since(start); d < fastRetry.Budget {
		t.Errorf("gave up after %s, before the budget", d)
	}
	if *calls < 3 {
		t.Errorf("only %d calls", *calls)
	}
}

func TestRetryOnlyRetriesUnavailable(t *testing.T) {
	for _, want := range []error{lightning.ErrOutcomeUnknown, lightning.ErrPaymentExists, errors.New("other")} {
		calls := 0
		err := fastRetry.Do(context.Background(), func(context.Context) error { calls++; return want })
		if err != want || calls != 1 {
			t.Errorf("Do = %v after %d calls, want %v after 1", err, calls, want)
		}
	}
}

func TestRetryStopsWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := task.Retry{Budget: time.Hour, Initial: time.Hour, Max: time.Hour}
	err := r.Do(ctx, func(context.Context) error { cancel(); return lightning.ErrUnavailable })
	if !core.IsCanceled(err) {
		t.Errorf("Do = %v, want a cancellation", err)
	}
}
