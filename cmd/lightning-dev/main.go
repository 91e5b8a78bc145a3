// Command lightning-dev runs lightning-service on one machine with what the
// shipped binary (cmd/lightning-service) never links: a regtest Lightning
// network of lnd nodes it builds, and Kafka brokers.
//
//	lightning-dev sandbox [flags]   a regtest network, an embedded broker and the service, with a demo
//	lightning-dev bench [flags]     measure the service against LND called directly
//
// Run it from the repository: go run ./cmd/lightning-dev sandbox
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp): // help was asked for and printed
	default:
		fmt.Fprintln(os.Stderr, "lightning-dev:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given\n%s", usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "sandbox":
		return sandbox(ctx, args)
	case "bench":
		return benchmark(ctx, args)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage:
  lightning-dev sandbox [flags]   start a regtest Lightning network, an embedded broker and the service; run a demo
                                  (sandbox --help)
  lightning-dev bench [flags]     measure decode, create and pay through Kafka and the service against
                                  LND called directly and a one-at-a-time consumer (bench --help)

The service itself, and the caller that sends it a request, are cmd/lightning-service.
`

// flagUsage makes a flag set's --help say how to call the command and what
// it does before listing its flags.
func flagUsage(fs *flag.FlagSet, synopsis, what string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lightning-dev %s\n\n%s\n\nflags:\n", synopsis, what)
		fs.PrintDefaults()
	}
}
