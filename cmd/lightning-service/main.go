// Command lightning-service sends and receives Lightning payments for the
// exchange's backend: it consumes signed requests from Kafka, runs them on an
// LND node, and publishes signed results.
//
//	lightning-service [serve] [flags]   run the service (default)
//	lightning-service sandbox           a regtest network, an embedded broker and the service, with a demo
//	lightning-service call TASK ...     sign a request, send it, print the verified result
//	lightning-service bench [flags]     measure the service against LND called directly
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
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, os.LookupEnv)
	case "sandbox":
		return sandbox(ctx, args)
	case "call":
		return call(ctx, args, os.LookupEnv)
	case "bench":
		return benchmark(ctx, args)
	case "help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage:
  lightning-service [serve] [flags]   run the service; settings from LIGHTNING_* variables or flags (serve --help)
  lightning-service sandbox [flags]   start a regtest Lightning network, an embedded broker and the service; run a demo
  lightning-service call [flags] decode|pay PAYMENT_REQUEST
  lightning-service call [flags] create AMOUNT_SAT MEMO EXPIRY_SEC
                                      sign a request, send it, wait for its result and print it (call --help)
  lightning-service bench [flags]     measure decode, create and pay through Kafka and the service against
                                      LND called directly and a one-at-a-time consumer (bench --help)
`
