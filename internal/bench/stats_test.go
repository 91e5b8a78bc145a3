package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.1, time.Millisecond}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("p%v of 1..100 ms = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
	one := []time.Duration{7 * time.Millisecond}
	if Percentile(one, 50) != 7*time.Millisecond || Percentile(one, 99) != 7*time.Millisecond {
		t.Error("a single value is every percentile")
	}
	// Nearest rank: of 1..10, p95 is the 10th value, p50 the 5th.
	if got := Percentile(d[:10], 95); got != 10*time.Millisecond {
		t.Errorf("p95 of 1..10 ms = %v, want 10ms", got)
	}
	if got := Percentile(d[:10], 50); got != 5*time.Millisecond {
		t.Errorf("p50 of 1..10 ms = %v, want 5ms", got)
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	s := Summarize(lat, 2*time.Second, 8, 1)
	if s.N != 5 || s.Errors != 1 || s.Concurrency != 8 {
		t.Errorf("counts: %+v", s)
	}
	if s.PerSec != 2 { // only successes count
		t.Errorf("per second = %v, want 2", s.PerSec)
	}
	if s.P50ms != 2 || s.P99ms != 4 {
		t.Errorf("p50 %v p99 %v, want 2 and 4", s.P50ms, s.P99ms)
	}
	if lat[0] != 3*time.Millisecond {
		t.Error("Summarize sorted its input in place")
	}
}

func report(tasks map[string]map[string]Summary, latency map[string]map[string]Summary, codec map[string]Codec) *Report {
	r := &Report{Tasks: tasks, Latency: latency, Codec: codec}
	r.Evaluate()
	return r
}

func checks(r *Report) map[string]Check {
	m := map[string]Check{}
	for _, c := range r.Checks {
		m[c.Name] = c
	}
	return m
}

func TestEvaluate(t *testing.T) {
	r := report(map[string]map[string]Summary{
		"pay":    {PathService: {N: 10, PerSec: 90}, PathDirect: {N: 10, PerSec: 100}, PathSerial: {N: 10, PerSec: 20}},
		"create": {PathService: {N: 10, PerSec: 80}, PathDirect: {N: 10, PerSec: 100}},
		"decode": {PathService: {N: 10, PerSec: 6000}, PathDirect: {N: 10, PerSec: 2000}},
	}, map[string]map[string]Summary{
		"pay":    {PathService: {N: 5, P50ms: 104}, PathDirect: {N: 5, P50ms: 100}},
		"create": {PathService: {N: 5, P50ms: 9}, PathDirect: {N: 5, P50ms: 3}},
	}, map[string]Codec{
		"decode": {PerSecCore: 600_000, AllocsPerOp: 0},
		"create": {PerSecCore: 400_000, AllocsPerOp: 1},
	})
	c := checks(r)
	for name, want := range map[string]struct {
		value float64
		met   bool
	}{
		"pay: service / direct LND":           {0.9, true}, // exactly at the target
		"pay: service / one-at-a-time":        {4.5, false},
		"create: service / direct LND":        {0.8, false},
		"decode: service / LND DecodePayReq":  {3, true},
		"decode: end to end":                  {6000, true},
		"pay: median latency added (C=1)":     {4, true},
		"create: median latency added (C=1)":  {6, false},
		"codec decode: verify+parse per core": {600_000, true},
		"codec decode: allocations":           {0, true},
		"codec create: verify+parse per core": {400_000, false},
		"codec create: allocations":           {1, false},
	} {
		got, ok := c[name]
		if !ok {
			t.Errorf("%s: not evaluated", name)
			continue
		}
		if math.Abs(got.Value-want.value) > 1e-9 || got.Met != want.met {
			t.Errorf("%s: value %v met %v, want %v %v", name, got.Value, got.Met, want.value, want.met)
		}
	}
	if _, ok := c["decode: median latency added (C=1)"]; ok {
		t.Error("decode latency evaluated without its figures")
	}
}

func TestEvaluateErrorsAndMissing(t *testing.T) {
	r := report(map[string]map[string]Summary{
		"pay": {PathService: {N: 10, PerSec: 200, Errors: 1}, PathDirect: {N: 10, PerSec: 100}},
	}, nil, nil)
	c := checks(r)
	got, ok := c["pay: service / direct LND"]
	if !ok || got.Met || got.Note == "" {
		t.Errorf("a measurement with errors must not meet its target: %+v", got)
	}
	if _, ok := c["pay: service / one-at-a-time"]; ok {
		t.Error("a target without its baseline was evaluated")
	}
	if _, ok := c["create: service / direct LND"]; ok {
		t.Error("a task not measured was evaluated")
	}
}

func TestWriteTable(t *testing.T) {
	r := report(map[string]map[string]Summary{
		"pay": {PathService: {N: 10, Concurrency: 4, PerSec: 95}, PathDirect: {N: 10, Concurrency: 4, PerSec: 100}},
	}, nil, map[string]Codec{"decode": {NsPerOp: 1500, PerSecCore: 666_667}})
	var b strings.Builder
	r.WriteTable(&b)
	out := b.String()
	for _, want := range []string{"direct LND SendPaymentV2", "0.95×", "≥ 0.90×", "666,667/s", "met"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
