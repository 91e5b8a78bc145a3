package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"lightning-service/internal/bench"
)

// benchmark runs the benchmark: a real broker, a regtest network and the
// service, measured against LND called directly and a one-at-a-time
// consumer; it prints the table and writes the figures as JSON.
func benchmark(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	flagUsage(fs, "bench [flags]", "Starts a real Apache Kafka broker and a regtest network, runs the service on alice, and measures\ndecode, create and pay through Kafka and the service, on LND called directly, and through a\none-at-a-time consumer; prints the table and writes the figures as JSON.")
	n := fs.Int("n", 1000, "requests per task and path")
	c := fs.Int("c", 64, "requests in flight at once, on every path (also the service's LIGHTNING_CONCURRENCY)")
	tasks := fs.String("tasks", strings.Join(bench.Tasks, ","), "tasks to measure, comma-separated")
	serialN := fs.Int("serial-n", 200, "requests per task through the one-at-a-time consumer (0: n)")
	latencyN := fs.Int("latency-n", 100, "requests per task at concurrency 1, for the latency the service adds (0 skips)")
	warmUp := fs.Int("warmup", 200, "unmeasured requests through each path before a task's measurements")
	out := fs.String("out", "bench.json", "where to write the figures as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured phases here (go tool pprof -tagfocus component=service)")
	keepData := fs.Bool("keep-data", false, "keep the broker's and the network's data directories")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	opts := bench.Options{
		N: *n, Concurrency: *c, SerialN: *serialN, LatencyN: *latencyN, WarmUp: *warmUp,
		Tasks: strings.Split(*tasks, ","), Progress: os.Stderr, KeepData: *keepData,
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("bench: -cpuprofile: %w", err)
		}
		defer f.Close()
		opts.CPUProfile = f
	}
	r, err := bench.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Println()
	r.WriteTable(os.Stdout)
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: -out: %w", err)
	}
	fmt.Printf("\nfigures written to %s\n", *out)
	return nil
}
