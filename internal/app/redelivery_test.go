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
// the ledger in dataDir, which outlive it.
func newService(t *testing.T, node lightning.Node, dataDir string, maxSkew time.Duration) *service.Service {
	t.Helper()
	cfg := &config.Config{
		InputTopic: "in", OutputTopic: "out", DLQTopic: "dlq",
		HMACKey: key, MaxClockSkew: maxSkew,
		PreimageSecret:  "a-preimage-secret-only-the-service-knows",
		Network:         "regtest",
		PayFeeLimitSat:  10,
		PayTimeout:      time.Minute,
		NodeRetryBudget: time.Second,
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
			first := run(t, brokers, func() kafka.Processor { return crashAfterNode{w: svc1.NewWorker(), answers: answers} })

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
			second := run(t, brokers, func() kafka.Processor { return svc2.NewWorker() })
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

// consumerRun is one consumer's life.
type consumerRun struct {
	cancel context.CancelFunc
	done   chan error
}

func (r consumerRun) stop() {
	r.cancel()
	<-r.done
}

func run(t *testing.T, brokers []string, newWorker func() kafka.Processor) consumerRun {
	t.Helper()
	c, err := kafka.New(kafka.Config{
		Brokers: brokers, Group: "lightning-service", Topic: "in", OutputTopic: "out", DLQTopic: "dlq", Concurrency: 4,
		RevokeGrace: 10 * time.Millisecond, DrainGrace: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, newWorker)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := consumerRun{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	return r
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
