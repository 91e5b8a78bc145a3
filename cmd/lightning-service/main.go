// Command lightning-service sends and receives Lightning payments for the
// exchange's backend: it consumes signed requests from Kafka, runs them on an
// LND node, and publishes signed results.
//
//	lightning-service [serve] [flags]   run the service (default)
//	lightning-service call TASK ...     sign a request, send it, print the verified result
//
// This is the binary that ships: it links no test harness. The sandbox and
// the benchmark, which build lnd and start brokers, are cmd/lightning-dev.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // help was asked for and printed
	default:
		fmt.Fprintln(os.Stderr, "lightning-service:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Print(usage)
			return nil
		case !strings.HasPrefix(a, "-"):
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, os.LookupEnv)
	case "call":
		return call(ctx, args, os.LookupEnv)
	case "help":
		fmt.Print(usage)
		return nil
	case "sandbox", "bench":
		return fmt.Errorf("%s is a development command: go run ./cmd/lightning-dev %s", cmd, cmd)
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage:
  lightning-service [serve] [flags]   run the service; settings from LIGHTNING_* variables or flags (serve --help)
  lightning-service call [flags] decode|pay PAYMENT_REQUEST
  lightning-service call [flags] create AMOUNT_SAT MEMO EXPIRY_SEC
                                      sign a request, send it, wait for its result and print it (call --help)

The sandbox and the benchmark are development commands: go run ./cmd/lightning-dev help
`
