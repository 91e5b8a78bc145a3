package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/app"
	"lightning-service/internal/config"
	"lightning-service/internal/kafka"
	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/service"
	"lightning-service/internal/wire"
)

const key = "redelivery-test-key"

// crashAfterNode runs a record on the node, hands over the answer it would
// publish, and then dies before publishing anything: the consumer killed
// between "LND done" and "result produced".
type crashAfterNode struct {
	w       *service.Worker
	answers chan<- service.Answer
}

func (c crashAfterNode) Process(ctx context.Context, d service.Delivery) (service.Answer, error) {
	out, err := c.w.Process(ctx, d)
	if err != nil {
		return nil, err
	}
	c.answers <- out
	<-ctx.Done()
	return nil, ctx.Err()
}

// newService is one life of the service: a fresh process over the node and
// the ledger in dataDir, which outlive it. tune adjusts its configuration.
func newService(t *testing.T, node lightning.Node, dataDir string, maxSkew time.Duration, tune ...func(*config.Config)) *service.Service {
	t.Helper()
	cfg := &config.Config{
		InputTopic: "in", OutputTopic: "out", DLQTopic: "dlq",
		HMACKey: key, MaxClockSkew: maxSkew,
		PreimageSecret:   "a-preimage-secret-only-the-service-knows",
		Network:          "regtest",
		PayFeeLimitSat:   10,
		PayTimeout:       time.Minute,
		NodeRetryBudget:  time.Second,
		RecoveryInterval: 50 * time.Millisecond,
		PaymentLease:     2 * time.Second,
	}
	for _, f := range tune {
		f(cfg)
	}
	lg, err := ledger.OpenSQLite(context.Background(), dataDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := app.NewService(cfg, node, lg, log, service.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// A consumer killed after the node did the work but before the result was
// published leaves the request uncommitted; after redelivery, a restarted
// service (nothing kept in memory, the same ledger) publishes the same
// answer, byte for byte, from the ledger, and the node did the work once.
// It does so even when the request comes back after the clock window.
func TestKilledBetweenNodeAndResultRedeliversTheSameAnswer(t *testing.T) {
	pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 250_000, Memo: "redelivered"})
	createPayload, err := wire.CreatePayload(1500, "Préstamo 7", 600)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, task, payload string
		secondSkew          time.Duration // the second life's clock window
	}{
		{"create", "create", createPayload, 5 * time.Minute},
		{"pay", "pay", wire.PayPayload(pr), 5 * time.Minute},
		{"pay after the clock window", "pay", wire.PayPayload(pr), time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.SeedTopics(1, "in", "out", "dlq"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			brokers := cluster.ListenAddrs()
			node := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
			dataDir := t.TempDir()

			// First life: the node does the work, the consumer dies.
			answers := make(chan service.Answer, 1)
			svc1 := newService(t, node, dataDir, 5*time.Minute)
			first := run(t, brokers, svc1, func() kafka.Processor { return crashAfterNode{w: svc1.NewWorker(), answers: answers} })

			producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out", "dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(producer.Close)
			value := wire.SignRequest([]byte(key), time.Now(), c.task, c.payload)
			if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Key: []byte("k1"), Value: value}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var lost service.Result
			select {
			case a := <-answers:
				var ok bool
				if lost, ok = a.(service.Result); !ok {
					t.Fatalf("the first life answered %#v, want a result", a)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first life never reached the node")
			}
			first.stop()
			time.Sleep(10 * time.Millisecond) // past the second life's window, when it is 1ms

			// Second life: a fresh service over the same node and ledger.
			svc2 := newService(t, node, dataDir, c.secondSkew)
			second := run(t, brokers, svc2, func() kafka.Processor { return svc2.NewWorker() })
			defer second.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fs := producer.PollRecords(ctx, 1)
			if err := fs.Err0(); err != nil {
				t.Fatalf("no result after redelivery: %v", err)
			}
			got := fs.Records()[0]
			if got.Topic != "out" {
				t.Fatalf("redelivered request went to %s: %s", got.Topic, got.Headers)
			}
			if !bytes.Equal(got.Key, []byte("k1")) {
				t.Errorf("result key %q, want the request's", got.Key)
			}
			if gotData := data(t, got.Value); gotData["status"] != "success" {
				t.Fatalf("redelivered %s answered %v", c.task, gotData)
			}
			if !bytes.Equal(got.Value, lost.Value) {
				t.Fatalf("redelivered answer differs:\nfirst  %s\nsecond %s", lost.Value, got.Value)
			}
			if n := node.Count(lightningtest.MethodAddInvoice) + node.Count(lightningtest.MethodSendPayment); n != 1 {
				t.Errorf("%d calls doing work on the node, want 1: %v", n, node.Calls())
			}
		})
	}
}

// consumerRun is one life's consumer and payment owner.
type consumerRun struct {
	cancel       context.CancelFunc
	done         chan error
	stopPayments func()
}

// stop stops the consumer, then the payment owner, as the service stops.
func (r consumerRun) stop() {
	r.cancel()
	<-r.done
	r.stopPayments()
}

// run starts a consumer for svc, as app.Run does: the consumer is svc's
// Publisher, and svc's payment owner runs beside it.
func run(t *testing.T, brokers []string, svc *service.Service, newWorker func() kafka.Processor) consumerRun {
	t.Helper()
	c, err := kafka.New(kafka.Config{
		Brokers: brokers, Group: "lightning-service", Topic: "in", OutputTopic: "out", DLQTopic: "dlq", Concurrency: 4,
		RevokeGrace: 10 * time.Millisecond, DrainGrace: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, newWorker)
	if err != nil {
		t.Fatal(err)
	}
	svc.Publisher = c
	ctx, cancel := context.WithCancel(context.Background())
	r := consumerRun{cancel: cancel, done: make(chan error, 1), stopPayments: app.RunPayments(svc)}
	go func() { r.done <- c.Run(ctx) }()
	return r
}

// passAnswers hands over every answer it passes on.
type passAnswers struct {
	w       *service.Worker
	answers chan<- service.Answer
}

func (p passAnswers) Process(ctx context.Context, d service.Delivery) (service.Answer, error) {
	out, err := p.w.Process(ctx, d)
	if err == nil {
		p.answers <- out
	}
	return out, err
}

// A pay request whose payment outlasts the hand-off is answered Deferred
// and its record committed; the service then stops with the payment in
// flight. The next life, which Kafka gives nothing to redo, takes the
// request over from the ledger, follows the payment to its end and
// publishes its answer to the output topic, with the request record's key
// and headers; the payment was sent once.
func TestDeferredPaymentAnsweredByTheNextLife(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 250_000, Memo: "deferred"})
	cluster, err := kfake.NewCluster(kfake.SeedTopics(1, "in", "out", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	state := &lightningtest.Stateful{}
	node := &lightningtest.Fake{Node: state}
	// The node takes the payment and keeps it in flight; the stream stays
	// open until the sender goes.
	node.SendPaymentFunc = func(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
		state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 250_000, Status: lightning.PaymentInFlight, CreatedAt: time.Now()})
		<-ctx.Done()
		return lightning.Payment{}, lightning.ErrOutcomeUnknown
	}
	dataDir := t.TempDir()
	handOff := func(c *config.Config) { c.PayHandOff = 200 * time.Millisecond }

	answers := make(chan service.Answer, 1)
	svc1 := newService(t, node, dataDir, 5*time.Minute, handOff)
	first := run(t, brokers, svc1, func() kafka.Processor { return passAnswers{w: svc1.NewWorker(), answers: answers} })
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out", "dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	headers := []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
	value := wire.SignRequest([]byte(key), time.Now(), "pay", wire.PayPayload(pr))
	if err := client.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Key: []byte("k1"), Value: value, Headers: headers}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-answers:
		if _, ok := a.(service.Deferred); !ok {
			t.Fatalf("the first life answered %#v, want service.Deferred{}", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first life never answered")
	}
	first.stop()
	if _, ok := state.Payment(hash); !ok {
		t.Fatal("the node has no payment")
	}

	svc2 := newService(t, node, dataDir, 5*time.Minute, handOff)
	second := run(t, brokers, svc2, func() kafka.Processor { return passAnswers{w: svc2.NewWorker(), answers: answers} })
	defer second.stop()
	for deadline := time.Now().Add(10 * time.Second); node.Count(lightningtest.MethodTrackPayment) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second life never took the payment over")
		}
	}
	state.Resolve(hash, lightning.Payment{Hash: hash, Preimage: lightning.Hash{3}, Status: lightning.PaymentSucceeded})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := client.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatalf("no result published: %v", err)
	}
	got := fs.Records()[0]
	if got.Topic != "out" || !bytes.Equal(got.Key, []byte("k1")) {
		t.Fatalf("result on %s with key %q, want out and the request's key", got.Topic, got.Key)
	}
	if len(got.Headers) != 1 || got.Headers[0].Key != headers[0].Key || !bytes.Equal(got.Headers[0].Value, headers[0].Value) {
		t.Errorf("result headers %v, want the request's %v", got.Headers, headers)
	}
	if d := data(t, got.Value); d["status"] != "success" {
		t.Fatalf("answered %v", d)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case a := <-answers:
		t.Errorf("the request was delivered again (answered %#v); its record was committed", a)
	default:
	}
	if n := node.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
}

// data returns a verified result's data object.
func data(t *testing.T, value []byte) map[string]any {
	t.Helper()
	_, body, err := wire.OpenResult(value, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r.Data
}
