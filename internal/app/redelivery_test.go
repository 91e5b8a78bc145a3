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
	answers chan<- *kgo.Record
}

func (c crashAfterNode) Process(ctx context.Context, rec *kgo.Record) (*kgo.Record, error) {
	out, err := c.w.Process(ctx, rec)
	if err != nil {
		return nil, err
	}
	c.answers <- out
	<-ctx.Done()
	return nil, ctx.Err()
}

func newService(t *testing.T, node *lightningtest.Stateful) *service.Service {
	t.Helper()
	cfg := &config.Config{
		InputTopic: "in", OutputTopic: "out", DLQTopic: "dlq",
		HMACKey: key, MaxClockSkew: 5 * time.Minute,
		PreimageSecret:  "a-preimage-secret-only-the-service-knows",
		Network:         "regtest",
		PayFeeLimitSat:  10,
		PayTimeout:      time.Minute,
		NodeRetryBudget: time.Second,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := app.NewService(cfg, node, log, service.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// A consumer killed after the node did the work but before the result was
// published leaves the request uncommitted; after redelivery, a restarted
// service (nothing kept in memory) publishes the same answer, and the node
// did the work once: the same invoice, the same payment, found by tracking.
func TestKilledBetweenNodeAndResultRedeliversTheSameAnswer(t *testing.T) {
	pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 250_000, Memo: "redelivered"})
	createPayload, err := wire.CreatePayload(1500, "Préstamo 7", 600)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ task, payload string }{
		{"create", createPayload},
		{"pay", wire.PayPayload(pr)},
	}
	for _, c := range cases {
		t.Run(c.task, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.SeedTopics(1, "in", "out", "dlq"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			brokers := cluster.ListenAddrs()
			node := &lightningtest.Stateful{}

			// First life: the node does the work, the consumer dies.
			answers := make(chan *kgo.Record, 1)
			svc1 := newService(t, node)
			first := run(t, brokers, func() kafka.Processor { return crashAfterNode{w: svc1.NewWorker(), answers: answers} })

			producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(producer.Close)
			value := wire.SignRequest([]byte(key), time.Now(), c.task, c.payload)
			if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Key: []byte("k1"), Value: value}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var lost *kgo.Record
			select {
			case lost = <-answers:
			case <-time.After(10 * time.Second):
				t.Fatal("the first life never reached the node")
			}
			first.stop()

			// Second life: a fresh service over the same node.
			svc2 := newService(t, node)
			second := run(t, brokers, func() kafka.Processor { return svc2.NewWorker() })
			defer second.stop()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fs := producer.PollRecords(ctx, 1)
			if err := fs.Err0(); err != nil {
				t.Fatalf("no result after redelivery: %v", err)
			}
			got := fs.Records()[0]
			if !bytes.Equal(got.Key, []byte("k1")) {
				t.Errorf("result key %q, want the request's", got.Key)
			}
			wantData, gotData := data(t, lost.Value), data(t, got.Value)
			if gotData["status"] != "success" {
				t.Fatalf("redelivered %s answered %v", c.task, gotData)
			}
			if !jsonEqual(t, wantData, gotData) {
				t.Fatalf("redelivered answer differs:\nfirst  %v\nsecond %v", wantData, gotData)
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
		Brokers: brokers, Group: "lightning-service", Topic: "in", Concurrency: 4,
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

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
