// Package app wires the service together from its configuration: broker
// (external or embedded), LND client, tasks, consumer and HTTP endpoints.
// The command, the sandbox and the end-to-end tests all start it here.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/config"
	"lightning-service/internal/kafka"
	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lnd"
	"lightning-service/internal/payment"
	"lightning-service/internal/service"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

// EmbeddedPartitions is the partition count of the topics the service
// creates (always on the embedded broker; on a real one when they are
// missing).
const EmbeddedPartitions = 4

// Run runs the service until ctx is canceled, then drains and returns.
// ready, if not nil, is called once the service is consuming, with the
// brokers it uses.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(brokers []string)) error {
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	brokers := cfg.KafkaBrokers
	if len(brokers) == 0 {
		emb, err := kafka.StartEmbedded(cfg.EmbeddedKafkaAddr, EmbeddedPartitions, cfg.InputTopic, cfg.OutputTopic, cfg.DLQTopic)
		if err != nil {
			return err
		}
		defer emb.Close()
		brokers = emb.Addrs()
		log.Warn("LIGHTNING_KAFKA_BROKERS is empty: started an embedded, in-memory Kafka broker for local use only; records do not survive a restart",
			"addr", brokers[0], "topics", []string{cfg.InputTopic, cfg.OutputTopic, cfg.DLQTopic})
	}

	node, err := lnd.Dial(ctx, lnd.Config{
		Address:      cfg.LNDAddress,
		TLSCertPath:  cfg.LNDTLSCert,
		MacaroonPath: cfg.LNDMacaroon,
		CallTimeout:  cfg.LNDCallTimeout,
	})
	if err != nil {
		return err
	}
	defer node.Close()

	lg, err := ledger.Open(ctx, cfg.DatabaseURL, cfg.DataDir)
	if err != nil {
		return err
	}
	defer lg.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := service.NewMetrics(reg)

	svc, err := NewService(cfg, node, lg, log, metrics)
	if err != nil {
		return err
	}
	consumer, err := kafka.New(kafka.Config{
		Brokers:        brokers,
		Group:          cfg.ConsumerGroup,
		Topic:          cfg.InputTopic,
		OutputTopic:    cfg.OutputTopic,
		DLQTopic:       cfg.DLQTopic,
		Concurrency:    cfg.Concurrency,
		RevokeGrace:    5 * time.Second,
		DrainGrace:     cfg.ShutdownGrace,
		SessionTimeout: cfg.SessionTimeout,
		Log:            log,
		InFlight:       func(d int) { metrics.InFlight.Add(float64(d)) },
	}, func() kafka.Processor { return svc.NewWorker() })
	if err != nil {
		return err
	}
	if len(cfg.KafkaBrokers) > 0 {
		if err := kafka.EnsureTopics(ctx, consumer.Client(), EmbeddedPartitions, cfg.InputTopic, cfg.OutputTopic, cfg.DLQTopic); err != nil {
			log.Warn("could not create topics; they must exist already", "error", err)
		}
	}
	if cfg.ClockReference == "broker" {
		if err := requireAppendTime(ctx, consumer.Client(), cfg.InputTopic); err != nil {
			consumer.Client().Close() // Run, which would close it, does not run
			return err
		}
	}

	if cfg.HTTPAddr != "" {
		srv := &http.Server{Addr: cfg.HTTPAddr, Handler: httpHandler(reg, consumer, node), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP server stopped", "addr", cfg.HTTPAddr, "error", err)
			}
		}()
		defer func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdownCtx)
		}()
	}

	// The payment owner and the ledger's watch run beside the consumer and
	// stop after it: payments it handed over go on while it drains.
	svc.Publisher = consumer
	defer RunPayments(svc)()
	watch := &service.Watch{Service: svc, Interval: cfg.RecoveryInterval, Alert: cfg.PendingAlert}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { defer close(watched); watch.Run(watchCtx) }()
	defer func() { stopWatch(); <-watched }()

	log.Info("lightning-service consuming", "brokers", brokers, "input", cfg.InputTopic, "output", cfg.OutputTopic,
		"dlq", cfg.DLQTopic, "group", cfg.ConsumerGroup, "lnd", cfg.LNDAddress, "network", networkOrNode(cfg.Network),
		"concurrency", cfg.Concurrency, "http", cfg.HTTPAddr, "ledger", ledgerName(cfg))
	if ready != nil {
		ready(brokers)
	}
	err = consumer.Run(ctx)
	log.Info("lightning-service stopped")
	return err
}

// NewService wires the tasks to the node and the ledger.
func NewService(cfg *config.Config, node lightning.Node, lg ledger.Ledger, log *slog.Logger, metrics *service.Metrics) (*service.Service, error) {
	retry := task.Retry{Budget: cfg.NodeRetryBudget, Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	network := task.NodeNetwork(node, retry)
	if cfg.Network != "" {
		params, err := lightning.NetworkParams(cfg.Network)
		if err != nil {
			return nil, fmt.Errorf("LIGHTNING_NETWORK: %w", err)
		}
		network = task.FixedNetwork(params)
	}
	keys := wire.Keys{Current: []byte(cfg.HMACKey)}
	for _, k := range cfg.HMACPreviousKeys {
		keys.Previous = append(keys.Previous, []byte(k))
	}
	svc := &service.Service{
		Keys:            keys,
		MaxSkew:         cfg.MaxClockSkew,
		ClockFromBroker: cfg.ClockReference == "broker",
		Network:         network,
		Ledger:          lg,
		Creator:         &task.Creator{Node: node, Secret: []byte(cfg.PreimageSecret), Retry: retry},
		Now:             time.Now,
		Log:             log,
		Metrics:         metrics,
	}
	owner := payment.New(payment.Config{
		Node:         node,
		Store:        lg.Payments(),
		Decode:       network.Decode,
		Seal:         svc.SealPayment,
		Publish:      svc.PublishPayment,
		FeeLimit:     payment.FeeLimit{FloorSat: cfg.PayFeeLimitSat, PPM: cfg.PayFeeLimitPPM},
		RouteTimeout: cfg.PayTimeout,
		Retry:        payment.Retry{Budget: retry.Budget, Initial: retry.Initial, Max: retry.Max},
		Lease:        cfg.PaymentLease,
		HandOff:      cfg.PayHandOff,
		Sweep:        cfg.RecoveryInterval,
		Alert:        cfg.PendingAlert,
		Log:          log,
	})
	svc.Payer = &task.Payer{Owner: owner, Network: network}
	metrics.WatchPayments(owner.InFlight)
	return svc, nil
}

// RunPayments runs the payment owner of svc until the returned stop is
// called; stop waits for it to end. The owner must run while svc
// processes pay requests, and svc.Publisher must be set first.
func RunPayments(svc *service.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Payer.Owner.Run(ctx) }()
	return func() { cancel(); <-done }
}

func ledgerName(cfg *config.Config) string {
	if cfg.DatabaseURL != "" {
		return "postgresql"
	}
	return "sqlite in " + cfg.DataDir
}

func networkOrNode(n string) string {
	if n == "" {
		return "(from the node)"
	}
	return n
}

// NewLogger returns the service's JSON logger at level.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// Running is a service started by Start.
type Running struct {
	Brokers []string
	cancel  context.CancelFunc
	done    chan error
}

// Start runs the service in the background and returns once it consumes, or
// with the error that kept it from starting.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Running, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan []string, 1)
	go func() { r.done <- Run(ctx, cfg, log, func(b []string) { ready <- b }) }()
	select {
	case r.Brokers = <-ready:
		return r, nil
	case err := <-r.done:
		cancel()
		return nil, fmt.Errorf("the service did not start: %w", err)
	case <-ctx.Done():
		cancel()
		<-r.done
		return nil, ctx.Err()
	}
}

// Stop drains the service and waits until it has stopped.
func (r *Running) Stop() error {
	r.cancel()
	return <-r.done
}

// requireAppendTime returns an error unless the input topic's records carry
// the time the broker appended them (message.timestamp.type=LogAppendTime).
// With LIGHTNING_CLOCK_REFERENCE=broker a request's freshness is judged by
// its record's timestamp; on a CreateTime topic the producer sets it, so a
// captured request written again later would pass as fresh. The embedded
// broker reports CreateTime, and keeps the producer's time whatever the
// topic's setting.
func requireAppendTime(ctx context.Context, cl *kgo.Client, topic string) error {
	const need = "LIGHTNING_CLOCK_REFERENCE=broker needs message.timestamp.type=LogAppendTime on the input topic"
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	var rc kadm.ResourceConfig
	if err == nil {
		if rc, err = rcs.On(topic, nil); err == nil {
			err = rc.Err
		}
	}
	if err != nil {
		return fmt.Errorf("%s %q, whose configuration could not be read: %w", need, topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "message.timestamp.type" {
			if v := c.MaybeValue(); v != "LogAppendTime" {
				return fmt.Errorf("%s %q, which has %s: its records carry the time their producer chose; set it (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config message.timestamp.type=LogAppendTime) or use LIGHTNING_CLOCK_REFERENCE=service",
					need, topic, v, topic)
			}
			return nil
		}
	}
	return fmt.Errorf("%s %q, whose configuration does not say", need, topic)
}
