//go:build e2e

package bench

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"lightning-service/internal/regtest"
)

// TestRunTiny runs the whole benchmark in a tiny configuration: a real
// broker, a real regtest network, the service, every task on every path.
// It checks that everything is measured without errors, not the figures.
func TestRunTiny(t *testing.T) {
	// The first build of lnd takes minutes on a fresh machine (another
	// package may be doing it now): it is no part of the run's time limit.
	if _, err := regtest.Build(context.Background(), regtest.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{N: 12, Concurrency: 4, SerialN: 6, LatencyN: 3, WarmUp: 4, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range Tasks {
		for _, path := range []string{PathService, PathDirect, PathSerial} {
			s, ok := r.Tasks[task][path]
			if !ok || s.Errors > 0 || s.PerSec <= 0 || s.P50ms <= 0 {
				t.Errorf("%s %s: %+v", task, path, s)
			}
		}
		for _, path := range []string{PathService, PathDirect} {
			if s, ok := r.Latency[task][path]; !ok || s.Errors > 0 || s.N != 3 {
				t.Errorf("%s %s at concurrency 1: %+v", task, path, s)
			}
		}
	}
	if len(r.Codec) != 2 {
		t.Errorf("codec: %+v", r.Codec)
	}
	if len(r.Checks) != 12 {
		t.Errorf("%d targets evaluated, want 12", len(r.Checks))
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	r.WriteTable(os.Stderr)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
