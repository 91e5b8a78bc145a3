package bench

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

// The one-at-a-time consumer, wired as Run wires it, moves on from a pay
// request answered Deferred (a payment that outlasts the hand-off): the
// next request is answered meanwhile, and the deferred one's answer still
// comes, published by its payment owner through the consumer, with the
// request record's key.
func TestSerialConsumerAnswersDeferredPayments(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.SeedTopics(1, "in", "out", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()

	slowPR, slow := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 100_000, Memo: "slow"})
	fastPR, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 100_000, Memo: "fast"})
	release := make(chan struct{})
	node := &lightningtest.Stateful{Settle: func(ctx context.Context, p lightning.Payment) lightning.Payment {
		if p.Hash == slow {
			select {
			case <-release:
			case <-ctx.Done():
				p.Status, p.Failure = lightning.PaymentFailed, lightning.FailureCanceled
				return p
			}
		}
		p.Status, p.Preimage = lightning.PaymentSucceeded, lightning.Hash{1}
		return p
	}}

	cfg := &config.Config{
		InputTopic: "in", OutputTopic: "out", DLQTopic: "dlq",
		HMACKey: key, MaxClockSkew: 5 * time.Minute,
		PreimageSecret:   "bench-test-preimage-secret",
		Network:          "regtest",
		PayFeeLimitSat:   10,
		PayTimeout:       time.Minute,
		NodeRetryBudget:  time.Second,
		PayHandOff:       100 * time.Millisecond,
		RecoveryInterval: 50 * time.Millisecond,
	}
	lg, err := ledger.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := app.NewService(cfg, node, lg, log, service.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	serial, err := newSerialConsumer(brokers, "one-at-a-time", "in", kafka.Topics{Output: "out", DLQ: "dlq"}, svc.NewWorker())
	if err != nil {
		t.Fatal(err)
	}
	svc.Publisher = serial
	stopPayments := app.RunPayments(svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serial.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the consumer stopped with %v", err)
		}
		stopPayments()
	})

	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out", "dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	for _, r := range []struct{ key, pr string }{{"slow", slowPR}, {"fast", fastPR}} {
		value := wire.SignRequest([]byte(key), time.Now(), "pay", wire.PayPayload(r.pr))
		if err := client.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Key: []byte(r.key), Value: value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	next := func() *kgo.Record {
		t.Helper()
		pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer pcancel()
		fs := client.PollRecords(pctx, 1)
		if err := fs.Err0(); err != nil {
			t.Fatalf("no answer: %v", err)
		}
		rec := fs.Records()[0]
		if rec.Topic != "out" || resultStatus(t, rec.Value) != "success" {
			t.Fatalf("answer on %s: %s", rec.Topic, rec.Value)
		}
		return rec
	}
	if got := next(); !bytes.Equal(got.Key, []byte("fast")) {
		t.Fatalf("first answer is for %q, want the request after the deferred one", got.Key)
	}
	close(release)
	if got := next(); !bytes.Equal(got.Key, []byte("slow")) {
		t.Fatalf("second answer is for %q, want the deferred request's", got.Key)
	}
}

// resultStatus is a result's data.status, its signature checked.
func resultStatus(t *testing.T, value []byte) string {
	t.Helper()
	_, body, err := wire.OpenResult(value, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct {
			Status string `json:"status"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	return r.Data.Status
}
