package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lightning-service/internal/app"
	"lightning-service/internal/caller"
	"lightning-service/internal/config"
	"lightning-service/internal/regtest"
	"lightning-service/internal/wire"
)

// sandbox starts everything a newcomer needs on one machine — a regtest
// Lightning network, the embedded broker and the service on alice — runs a
// short demo through Kafka, and keeps running until interrupted.
func sandbox(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	flagUsage(fs, "sandbox [flags]", "Builds lnd and btcd (cached), starts a regtest network (alice, bob, carol), an embedded Kafka broker\nand the service on alice, runs a short demo through Kafka, and keeps running until Ctrl-C.")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "where the embedded Kafka broker listens")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "where /healthz, /readyz and /metrics listen")
	keepData := fs.Bool("keep-data", false, "keep the network's data directory after stopping")
	demoOnly := fs.Bool("demo-only", false, "stop after the demo instead of running until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := os.Stdout
	step := func(format string, a ...any) { fmt.Fprintf(out, "▸ "+format+"\n", a...) }

	start := time.Now()
	step("building btcd %s and lnd %s (cached after the first time; the first lnd build takes about 10 minutes)", regtest.BtcdVersion, regtest.LndVersion)
	bins, err := regtest.Build(ctx, regtest.BuildOptions{Progress: indent(out)})
	if err != nil {
		return err
	}
	step("starting btcd (regtest) and lnd nodes alice, bob and carol; opening channels")
	network, err := regtest.Start(ctx, regtest.Options{Binaries: bins, Progress: indent(out), KeepData: *keepData})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the network")
		if err := network.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()

	alice := network.Alice
	env, err := alice.ServiceSettings(ctx, filepath.Join(network.Dir, "lightning-service.macaroon"))
	if err != nil {
		return err
	}
	key := "sandbox-" + randomHex(8)
	maps.Copy(env, map[string]string{
		"LIGHTNING_EMBEDDED_KAFKA_ADDR": *kafkaAddr,
		"LIGHTNING_HMAC_KEY":            key,
		"LIGHTNING_PREIMAGE_SECRET":     randomHex(32),
		"LIGHTNING_HTTP_ADDR":           *httpAddr,
		"LIGHTNING_DATA_DIR":            filepath.Join(network.Dir, "ledger"),
	})
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return err
	}
	logPath := filepath.Join(network.Dir, "lightning-service.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, nil))

	step("starting lightning-service on alice, with an embedded Kafka broker on %s (log: %s)", *kafkaAddr, logPath)
	svc, err := app.Start(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, logPath)
	}
	defer svc.Stop()
	brokers := svc.Brokers
	step("up in %s", time.Since(start).Round(time.Second))

	c, err := caller.New(ctx, brokers, cfg.InputTopic, cfg.OutputTopic, []byte(key))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := demo(ctx, out, c, network); err != nil {
		return fmt.Errorf("demo: %w (service log: %s)", err, logPath)
	}
	if *demoOnly {
		return nil
	}

	fmt.Fprintf(out, `
The sandbox is running. Send your own requests (in another terminal):

  export LIGHTNING_HMAC_KEY=%s LIGHTNING_KAFKA_BROKERS=%s
  go run ./cmd/lightning-service call create 1000 "a memo" 3600
  go run ./cmd/lightning-service call decode <payment request>
  go run ./cmd/lightning-service call pay <payment request>    # e.g. from: %s addinvoice 500

Any Kafka client works: topic %q in, results on %q, dead letters on %q.
A Python caller: clients/python/lightning_caller.py.
Service: log %s, http://%s/readyz and /metrics

`, key, strings.Join(brokers, ","), shellQuote(network.Bob.LncliArgs()), cfg.InputTopic, cfg.OutputTopic, cfg.DLQTopic, logPath, *httpAddr)
	network.Describe(out)
	fmt.Fprintln(out, "\nCtrl-C stops everything the sandbox started.")
	<-ctx.Done()
	return nil
}

// demo runs the three tasks through Kafka and prints what came back.
func demo(ctx context.Context, out io.Writer, c *caller.Caller, network *regtest.Network) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	show := func(title string, r *caller.Result) {
		var pretty strings.Builder
		b, _ := json.MarshalIndent(json.RawMessage(r.Raw), "    ", "  ")
		pretty.Write(b)
		fmt.Fprintf(out, "\n── %s\n    %s\n", title, pretty.String())
	}
	call := func(task, payload string) (*caller.Result, error) {
		r, err := c.Call(ctx, task, payload)
		if err == nil && r.Data.Status != "success" {
			show("unexpected error result", r)
			err = fmt.Errorf("%s answered with an error", task)
		}
		return r, err
	}

	fmt.Fprintln(out, "\nDemo: every request below is signed, sent to Kafka, and answered by the service.")

	payload, _ := wire.CreatePayload(2500, "sandbox: a coffee for bob", 3600)
	r, err := call("create", payload)
	if err != nil {
		return err
	}
	show("create: an invoice on alice for 2,500 sat", r)
	var invoice string
	if err := json.Unmarshal(r.Data.Message, &invoice); err != nil {
		return err
	}
	if _, err := network.Bob.Pay(ctx, invoice); err != nil {
		return err
	}
	fmt.Fprintln(out, "    bob paid it.")

	bobInvoice, err := network.Bob.AddInvoice(ctx, 1500, "sandbox: from bob", false)
	if err != nil {
		return err
	}
	r, err = call("pay", wire.PayPayload(bobInvoice.PaymentRequest))
	if err != nil {
		return err
	}
	show("pay: alice pays bob's invoice for 1,500 sat", r)

	r, err = c.Call(ctx, "pay", wire.PayPayload(bobInvoice.PaymentRequest))
	if err != nil {
		return err
	}
	show("pay again, as a new request: the invoice is not paid twice", r)

	carolInvoice, err := network.Carol.AddInvoice(ctx, 777, "sandbox: carol, behind a private channel", true)
	if err != nil {
		return err
	}
	r, err = call("decode", wire.DecodePayload(carolInvoice.PaymentRequest))
	if err != nil {
		return err
	}
	show("decode: carol's invoice, with route hints for her private channel", r)
	return nil
}

// indent prefixes the harness's progress lines.
func indent(w io.Writer) io.Writer { return prefixWriter{w: w, prefix: "    "} }

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	lines := strings.SplitAfter(string(b), "\n")
	for _, l := range lines {
		if l == "" {
			continue
		}
		if _, err := io.WriteString(p.w, p.prefix+l); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shellQuote(args []string) string { return strings.Join(args, " ") }
