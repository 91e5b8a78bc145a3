// Package bench measures the service against the limits it is held to, side
// by side in one run on one machine: for decode, create and pay, requests
// through a real Kafka broker and the service on a regtest Lightning network;
// the same work called directly on LND at the same concurrency; and the same
// Worker behind a one-at-a-time blocking consumer. It also times the codec in
// process. The development command `lightning-dev bench` runs it.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"lightning-service/internal/app"
	"lightning-service/internal/config"
	"lightning-service/internal/kafka"
	"lightning-service/internal/kafkatest"
	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning/lnd"
	"lightning-service/internal/regtest"
	"lightning-service/internal/service"
)

// Tasks are the tasks the benchmark knows, in the order it runs them.
var Tasks = []string{"decode", "create", "pay"}

// Options configure Run.
type Options struct {
	N           int      // requests per task and path
	Concurrency int      // requests in flight at once, on every path
	Tasks       []string // which of Tasks; empty means all
	SerialN     int      // requests per task through the one-at-a-time consumer; 0 means N
	LatencyN    int      // requests per task and path at concurrency 1, for the latency the service adds; 0 skips
	WarmUp      int      // unmeasured requests through each path before a task's measurements

	// CPUProfile, if set, receives a CPU profile of the measured phases.
	// Samples carry the label component=service|loader|direct|serial, so
	// `go tool pprof -tagfocus component=service` shows the service alone.
	CPUProfile io.Writer

	Progress io.Writer // a line per step; nil discards
	KeepData bool      // keep the network's and broker's data directories
	LogPath  string    // the service's log; empty: a file in the network's directory
}

const (
	key          = "bench-shared-key"
	inputTopic   = "lightning-service"
	serialTopic  = "lightning-service-serial"
	outputTopic  = "celery"
	dlqTopic     = "lightning-service-dlq"
	payAmountSat = 100
	phaseTimeout = 10 * time.Minute
)

// Run brings up the broker, the network and the service, measures, tears
// everything down and returns the figures with the targets evaluated.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.N <= 0 || opts.Concurrency <= 0 {
		return nil, fmt.Errorf("bench: N (%d) and concurrency (%d) must be positive", opts.N, opts.Concurrency)
	}
	if len(opts.Tasks) == 0 {
		opts.Tasks = Tasks
	}
	for _, t := range opts.Tasks {
		if !isTask(t) {
			return nil, fmt.Errorf("bench: unknown task %q; want decode, create or pay", t)
		}
	}
	if opts.SerialN <= 0 {
		opts.SerialN = opts.N
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	began := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(opts.Progress, "bench: %s (%.0fs)\n", fmt.Sprintf(format, a...), time.Since(began).Seconds())
	}

	r := &Report{
		Started:     began.UTC().Format(time.RFC3339),
		Machine:     Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadAvg()},
		N:           opts.N,
		Concurrency: opts.Concurrency,
		Tasks:       map[string]map[string]Summary{},
		Latency:     map[string]map[string]Summary{},
	}
	step("timing the codec in process")
	r.Codec = MeasureCodec()

	e, err := setUp(ctx, opts, step)
	if e != nil {
		defer e.tearDown(step)
	}
	if err != nil {
		return nil, err
	}

	if opts.CPUProfile != nil {
		if err := pprof.StartCPUProfile(opts.CPUProfile); err != nil {
			return nil, fmt.Errorf("bench: CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, task := range Tasks {
		if !contains(opts.Tasks, task) {
			continue
		}
		if err := e.measureTask(ctx, r, task, opts, step); err != nil {
			return nil, err
		}
	}
	if opts.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	r.Machine.LoadEnd = loadAvg()
	r.Evaluate()
	return r, nil
}

// env is what the measurements run on.
type env struct {
	broker     *kafkatest.Broker
	network    *regtest.Network
	svc        *app.Running
	node       *lnd.Client // the serial consumer's connection to alice
	loader     *loader
	serial     *serialConsumer
	stopSerial context.CancelFunc
	serialDone chan error
	logFile    *os.File
	closers    []io.Closer // the baseline's ledger
	// stopSerialPayments stops the baseline's payment owner.
	stopSerialPayments func()
}

func setUp(ctx context.Context, opts Options, step func(string, ...any)) (*env, error) {
	e := &env{}
	step("building btcd and lnd (cached after the first time)")
	bins, err := regtest.Build(ctx, regtest.BuildOptions{Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	// Each channel carries at most 483 HTLCs in flight; keep well below.
	chans := max(2, 1+opts.Concurrency/200)
	step("starting Apache Kafka %s and a regtest network with %d channels alice→bob", kafkatest.Version, chans)
	var g errgroup.Group
	g.Go(func() (err error) {
		e.broker, err = kafkatest.Start(ctx, kafkatest.Options{Log: opts.Progress, KeepData: opts.KeepData})
		return err
	})
	g.Go(func() (err error) {
		e.network, err = regtest.Start(ctx, regtest.Options{Binaries: bins, Progress: opts.Progress,
			ChannelsPerHop: chans, KeepData: opts.KeepData})
		return err
	})
	if err := g.Wait(); err != nil {
		return e, err
	}
	if err := e.broker.CreateTopics(ctx, app.EmbeddedPartitions, inputTopic, serialTopic, outputTopic, dlqTopic); err != nil {
		return e, err
	}

	alice := e.network.Alice
	vars, err := alice.ServiceSettings(ctx, filepath.Join(e.network.Dir, "service.macaroon"))
	if err != nil {
		return e, err
	}
	mac := vars["LIGHTNING_LND_MACAROON"]
	maps.Copy(vars, map[string]string{
		"LIGHTNING_KAFKA_BROKERS":   e.broker.Addr(),
		"LIGHTNING_HMAC_KEY":        key,
		"LIGHTNING_PREIMAGE_SECRET": "bench-preimage-secret-known-only-to-the-service",
		"LIGHTNING_HTTP_ADDR":       "",
		"LIGHTNING_CONCURRENCY":     strconv.Itoa(opts.Concurrency),
		"LIGHTNING_SHUTDOWN_GRACE":  "5s",
		"LIGHTNING_DATA_DIR":        filepath.Join(e.network.Dir, "ledger"),
	})
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return e, err
	}
	logPath := opts.LogPath
	if logPath == "" {
		logPath = filepath.Join(e.network.Dir, "lightning-service.log")
	}
	if e.logFile, err = os.Create(logPath); err != nil {
		return e, err
	}
	log := slog.New(slog.NewJSONHandler(e.logFile, nil))
	step("starting the service on alice (log: %s)", logPath)
	pprof.Do(ctx, pprof.Labels("component", "service"), func(ctx context.Context) {
		// Goroutines started here (consumer, franz-go, gRPC) keep the label.
		e.svc, err = app.Start(context.WithoutCancel(ctx), cfg, log)
	})
	if err != nil {
		return e, err
	}

	// The baseline: the service's Worker behind a one-at-a-time consumer,
	// with its own connection to alice.
	e.node, err = lnd.Dial(ctx, lnd.Config{Address: alice.RPCAddr, TLSCertPath: alice.TLSCertPath, MacaroonPath: mac})
	if err != nil {
		return e, err
	}
	// The baseline's own ledger: it answers another topic's requests.
	serialLedger, err := ledger.OpenSQLite(ctx, filepath.Join(e.network.Dir, "ledger-serial"))
	if err != nil {
		return e, err
	}
	e.closers = append(e.closers, serialLedger)
	serialSvc, err := app.NewService(cfg, e.node, serialLedger, log, service.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return e, err
	}
	if e.serial, err = newSerialConsumer(e.svc.Brokers, "bench-one-at-a-time", serialTopic,
		kafka.Topics{Output: cfg.OutputTopic, DLQ: cfg.DLQTopic}, serialSvc.NewWorker()); err != nil {
		return e, err
	}
	// Its payment owner publishes through it the answers of payments that
	// outlast the hand-off, as the service's owner does through its
	// consumer.
	serialSvc.Publisher = e.serial
	pprof.Do(ctx, pprof.Labels("component", "serial"), func(context.Context) {
		e.stopSerialPayments = app.RunPayments(serialSvc)
	})
	serialCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e.stopSerial, e.serialDone = stop, make(chan error, 1)
	go pprof.Do(serialCtx, pprof.Labels("component", "serial"), func(ctx context.Context) { e.serialDone <- e.serial.run(ctx) })

	pprof.Do(ctx, pprof.Labels("component", "loader"), func(ctx context.Context) {
		e.loader, err = newLoader(ctx, e.svc.Brokers, outputTopic, []byte(key))
	})
	if err != nil {
		return e, err
	}
	return e, nil
}

func (e *env) tearDown(step func(string, ...any)) {
	step("stopping everything")
	if e.loader != nil {
		e.loader.close()
	}
	if e.stopSerial != nil {
		e.stopSerial()
		<-e.serialDone
	}
	if e.stopSerialPayments != nil {
		e.stopSerialPayments()
	}
	if e.svc != nil {
		_ = e.svc.Stop()
	}
	if e.node != nil {
		_ = e.node.Close()
	}
	for _, c := range e.closers {
		_ = c.Close()
	}
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
	if e.network != nil {
		_ = e.network.Stop()
	}
	if e.broker != nil {
		e.broker.Stop()
	}
}

// measureTask measures one task on every path.
func (e *env) measureTask(ctx context.Context, r *Report, task string, opts Options, step func(string, ...any)) error {
	n, c, warmUp := opts.N, opts.Concurrency, opts.WarmUp
	// Invoices to pay are made on bob beforehand, outside the timed windows,
	// one per request: an invoice is paid once.
	need := 0
	switch task {
	case "pay":
		need = 2*n + opts.SerialN + 2*opts.LatencyN + warmUp + 2*min(warmUp, 20)
	case "decode":
		need = min(n, 100)
	}
	step("%s: making %d invoices on bob", task, need)
	inv, err := makeInvoices(ctx, e.network.Bob, need)
	if err != nil {
		return err
	}
	src := &source{task: task, invoices: inv}
	svcOp := func(topic string) func(context.Context, int) (time.Duration, error) {
		return func(ctx context.Context, _ int) (time.Duration, error) {
			return e.loader.call(ctx, topic, task, src.payload())
		}
	}
	direct := e.directOp(task, src)

	run := func(path string, n, c int, op func(context.Context, int) (time.Duration, error), into map[string]map[string]Summary) {
		if n <= 0 {
			return
		}
		step("%s: %s, %d requests at concurrency %d", task, pathNames[path], n, c)
		pctx, cancel := context.WithTimeout(ctx, phaseTimeout)
		defer cancel()
		var s Summary
		pprof.Do(pctx, pprof.Labels("component", labelOf(path)), func(pctx context.Context) { s = measure(pctx, n, c, op) })
		if into[task] == nil {
			into[task] = map[string]Summary{}
		}
		into[task][path] = s
		step("%s: %s: %.0f/s, p50 %.1f ms, p99 %.1f ms, %d errors %s", task, path, s.PerSec, s.P50ms, s.P99ms, s.Errors, s.FirstError)
	}
	// Warm up every path: connections, the consumers' first fetches, the
	// broker's JIT.
	discard := map[string]map[string]Summary{}
	run(PathService, warmUp, c, svcOp(inputTopic), discard)
	run(PathSerial, min(warmUp, 20), 1, svcOp(serialTopic), discard)
	run(PathDirect, min(warmUp, 20), 1, direct, discard)

	run(PathService, n, c, svcOp(inputTopic), r.Tasks)
	run(PathDirect, n, c, direct, r.Tasks)
	run(PathSerial, opts.SerialN, c, svcOp(serialTopic), r.Tasks)
	run(PathService, opts.LatencyN, 1, svcOp(inputTopic), r.Latency)
	run(PathDirect, opts.LatencyN, 1, direct, r.Latency)
	return ctx.Err()
}

// labelOf is the profile label of a path's measuring goroutines: those
// sending through Kafka are the loader; the service and the one-at-a-time
// consumer carry labels of their own.
func labelOf(path string) string {
	if path == PathDirect {
		return "direct"
	}
	return "loader"
}

func isTask(t string) bool { return contains(Tasks, t) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// loadAvg reads the 1, 5 and 15 minute load averages (Linux).
func loadAvg() (l [3]float64) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(b)) {
		if i == 3 {
			break
		}
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}
