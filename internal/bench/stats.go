package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is one measured path: how many operations, how fast, how long
// each took.
type Summary struct {
	N           int     `json:"n"`
	Concurrency int     `json:"concurrency"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P95ms       float64 `json:"p95_ms"`
	P99ms       float64 `json:"p99_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// Summarize computes throughput over elapsed and the latency percentiles of
// the successful operations.
func Summarize(lat []time.Duration, elapsed time.Duration, concurrency, errs int) Summary {
	s := Summary{N: len(lat) + errs, Concurrency: concurrency, Errors: errs, Seconds: elapsed.Seconds()}
	if elapsed > 0 {
		s.PerSec = float64(len(lat)) / elapsed.Seconds()
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	s.P50ms = ms(Percentile(sorted, 50))
	s.P95ms = ms(Percentile(sorted, 95))
	s.P99ms = ms(Percentile(sorted, 99))
	return s
}

// Percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted
// durations; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := min(max(int(math.Ceil(float64(len(sorted))*p/100)), 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
