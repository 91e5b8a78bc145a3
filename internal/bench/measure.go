package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// measure runs op for i = 0..n-1 on c goroutines and summarises it. op
// returns the latency of operation i, which may be measured more precisely
// than around the call.
func measure(ctx context.Context, n, c int, op func(ctx context.Context, i int) (time.Duration, error)) Summary {
	c = max(1, min(c, n))
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		errs     int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				d, err := op(ctx, i)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s := Summarize(lat, time.Since(start), c, errs)
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	return s
}
