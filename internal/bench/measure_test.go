package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestMeasure(t *testing.T) {
	var inFlight, most atomic.Int64
	seen := make([]atomic.Bool, 40)
	s := measure(context.Background(), 40, 4, func(_ context.Context, i int) (time.Duration, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		if seen[i].Swap(true) {
			t.Errorf("operation %d ran twice", i)
		}
		time.Sleep(time.Millisecond)
		if i%10 == 0 {
			return 0, errors.New("boom")
		}
		return time.Duration(i) * time.Millisecond, nil
	})
	if s.N != 40 || s.Errors != 4 || s.FirstError != "boom" {
		t.Errorf("n %d errors %d first %q, want 40, 4, boom", s.N, s.Errors, s.FirstError)
	}
	if most.Load() > 4 {
		t.Errorf("%d operations at once, want at most 4", most.Load())
	}
	if s.Concurrency != 4 || s.PerSec <= 0 {
		t.Errorf("%+v", s)
	}
}
