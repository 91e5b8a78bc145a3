//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lightning-service/internal/app"
	"lightning-service/internal/config"
)

// topics are the service's input, output and dead-letter topics and its
// consumer group.
type topics struct{ in, out, dlq, group string }

// serviceVars are the settings (environment variables) of a service on
// alice's node at lndAddr (hers, or a proxy's before her), with the real
// broker, on tp, its macaroon and SQLite ledger in dir.
func serviceVars(ctx context.Context, tp topics, dir, lndAddr string) (map[string]string, error) {
	vars, err := env.network.Alice.ServiceSettings(ctx, filepath.Join(dir, "service.macaroon"))
	if err != nil {
		return nil, err
	}
	maps.Copy(vars, map[string]string{
		"LIGHTNING_LND_ADDRESS":        lndAddr,
		"LIGHTNING_KAFKA_BROKERS":      env.broker.Addr(),
		"LIGHTNING_INPUT_TOPIC":        tp.in,
		"LIGHTNING_OUTPUT_TOPIC":       tp.out,
		"LIGHTNING_DLQ_TOPIC":          tp.dlq,
		"LIGHTNING_CONSUMER_GROUP":     tp.group,
		"LIGHTNING_HMAC_KEY":           hmacKey,
		"LIGHTNING_HMAC_PREVIOUS_KEYS": previousKey,
		"LIGHTNING_PREIMAGE_SECRET":    "e2e-preimage-secret-known-only-to-the-service",
		"LIGHTNING_HTTP_ADDR":          "",
		"LIGHTNING_NODE_RETRY_BUDGET":  retryBudget.String(),
		"LIGHTNING_PAY_TIMEOUT":        "30s",
		"LIGHTNING_SHUTDOWN_GRACE":     "5s",
		"LIGHTNING_DATA_DIR":           filepath.Join(dir, "ledger"),
	})
	return vars, nil
}

// startInProcess runs the service in this process with vars as its
// environment, logging at debug level to logPath, and returns once it
// consumes.
func startInProcess(ctx context.Context, vars map[string]string, logPath string) (stop func(), err error) {
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := app.Start(ctx, cfg, log)
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = svc.Stop(); f.Close() }, nil
}

var built struct {
	once sync.Once
	path string
	err  error
}

// serviceBinary builds ./cmd/lightning-service, once per run of the suite.
func serviceBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.path = filepath.Join(env.network.Dir, "lightning-service")
		out, err := exec.Command("go", "build", "-o", built.path, "lightning-service/cmd/lightning-service").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("building the service: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// processEnv is a service process's environment: the test's own without its
// LIGHTNING_* variables, and vars.
func processEnv(vars map[string]string) []string {
	out := withoutLightningVars(os.Environ())
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// withoutLightningVars drops the LIGHTNING_* variables of the test's own
// environment, so the service sees only the test's.
func withoutLightningVars(environ []string) []string {
	var out []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "LIGHTNING_") {
			out = append(out, kv)
		}
	}
	return out
}

// serviceProcess is the service as its own process, built from
// ./cmd/lightning-service, that the test kills with SIGKILL, pauses and
// restarts.
type serviceProcess struct {
	bin, logPath string
	env          []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	runs int
}

func (p *serviceProcess) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %d at %s\n", p.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, "serve")
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	p.runs++
}

// kill sends SIGKILL to the running process, by its PID, and waits for it.
// A paused process dies as well.
func (p *serviceProcess) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

// signal sends sig to the running process, by its PID: SIGSTOP pauses it
// as a frozen machine or a long stop of the world would, SIGCONT resumes it.
func (p *serviceProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		t.Fatalf("signal %s: the service is not running", sig)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", sig, err)
	}
}
