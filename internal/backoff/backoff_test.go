package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextDoublesUpToMax(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: 35 * time.Millisecond}
	want := []time.Duration{10, 20, 35, 35}
	for i, w := range want {
		if got := b.Next(); got != w*time.Millisecond {
			t.Fatalf("wait %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.Next(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: %v", got)
	}
}

func TestZeroValueDefaults(t *testing.T) {
	var b Backoff
	if got := b.Next(); got != DefaultInitial {
		t.Fatalf("first wait %v, want %v", got, DefaultInitial)
	}
	for range 20 {
		b.Next()
	}
	if got := b.Next(); got != DefaultMax {
		t.Fatalf("capped wait %v, want %v", got, DefaultMax)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Initial: time.Hour}
	if err := b.Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait on a canceled context: %v", err)
	}
}
