//go:build e2e

// Package e2e runs lightning-service end to end: a real Apache Kafka broker,
// a real regtest Lightning network (btcd, lnd alice, bob and carol), the
// service on alice with a least-privilege macaroon, and callers in Go and in
// Python. Run with: go test -tags e2e ./internal/e2e/
package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"lightning-service/internal/caller"
	"lightning-service/internal/kafkatest"
	"lightning-service/internal/regtest"
)

const (
	hmacKey     = "e2e-shared-key"
	previousKey = "e2e-rotated-out-key"
	inTopic     = "lightning-service"
	outTopic    = "celery"
	dlqTopic    = "lightning-service-dlq"
	// retryBudget is short so the node-down test need not wait 30 s.
	retryBudget = 4 * time.Second
)

// env is what every test shares.
var env struct {
	broker  *kafkatest.Broker
	network *regtest.Network
	caller  *caller.Caller
	python  string // the Python caller's interpreter
	logPath string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progress := prefixed("e2e setup: ")
	start := time.Now()

	var g errgroup.Group
	g.Go(func() (err error) {
		env.broker, err = kafkatest.Start(ctx, kafkatest.Options{Log: progress})
		return err
	})
	g.Go(func() (err error) {
		env.network, err = regtest.Start(ctx, regtest.Options{Progress: progress})
		return err
	})
	g.Go(func() (err error) {
		env.python, err = kafkatest.PythonEnv(ctx, progress)
		return err
	})
	err := g.Wait()
	defer func() {
		if env.network != nil {
			_ = env.network.Stop()
		}
		if env.broker != nil {
			env.broker.Stop()
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	if err := env.broker.CreateTopics(ctx, 4, inTopic, outTopic, dlqTopic); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e setup: broker %s and regtest network ready in %s\n", env.broker.Addr(), time.Since(start).Round(100*time.Millisecond))

	stopService, err := startService(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	defer stopService()

	env.caller, err = caller.New(ctx, []string{env.broker.Addr()}, inTopic, outTopic, []byte(hmacKey))
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	defer env.caller.Close()
	return m.Run()
}

// startService runs the suite's service on alice, with the real broker and
// a macaroon allowing only the RPCs the service calls.
func startService(ctx context.Context) (stop func(), err error) {
	dir := env.network.Dir
	vars, err := serviceVars(ctx, topics{in: inTopic, out: outTopic, dlq: dlqTopic, group: "lightning-service"}, dir, env.network.Alice.RPCAddr)
	if err != nil {
		return nil, err
	}
	env.logPath = filepath.Join(dir, "lightning-service.log")
	return startInProcess(ctx, vars, env.logPath)
}

type prefixWriter struct{ prefix string }

func prefixed(p string) io.Writer { return prefixWriter{p} }

func (w prefixWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		fmt.Fprintln(os.Stderr, w.prefix+l)
	}
	return len(b), nil
}
