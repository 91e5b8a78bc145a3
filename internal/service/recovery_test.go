package service_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/service"
	"lightning-service/internal/wire"
)

// crashedPay leaves the ledger as a crash mid-payment does: the pay request
// recorded with its record's key and headers, the invoice claimed, and the
// node's payment in flight. It returns the request value and hash.
func crashedPay(t *testing.T, h *harness) ([]byte, service.Delivery, lightning.Hash) {
	t.Helper()
	value := eachTask(t, h, h.now)["pay"]
	req, err := h.svc.Keys.Verifier(time.Minute).Open(value, h.now)
	if err != nil {
		t.Fatal(err)
	}
	pr, _ := wire.PaymentRequest(req.Payload)
	inv, err := lightning.Decode(string(pr), regtest)
	if err != nil {
		t.Fatal(err)
	}
	rec := h.record("crashed", value)
	ctx := context.Background()
	hs := make([]ledger.Header, len(rec.Headers))
	for i, hd := range rec.Headers {
		hs[i] = ledger.Header{Key: hd.Key, Value: hd.Value}
	}
	if _, _, err := h.ledger.Begin(ctx, ledger.Entry{ID: req.ID(), Task: "pay", Key: rec.Key, Headers: hs}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ledger.ClaimPayment(ctx, req.ID(), inv.PaymentHash.String()); err != nil {
		t.Fatal(err)
	}
	h.state.AddPayment(lightning.Payment{Hash: inv.PaymentHash, ValueMsat: inv.NumMsat, Status: lightning.PaymentInFlight, CreatedAt: h.now})
	return value, rec, inv.PaymentHash
}

// publisher hands what recovery publishes to a channel.
type publisher chan<- service.Result

func (p publisher) Publish(_ context.Context, r service.Result) error { p <- r; return nil }

func newRecovery(h *harness, published chan<- service.Result) *service.Recovery {
	return &service.Recovery{
		Service:   h.svc,
		Publisher: publisher(published),
		Interval:  time.Hour,
		Alert:     time.Hour,
	}
}

// A payment a crash left in flight is tracked at start until final; its
// result is published with the request record's key and headers, and the
// request, when Kafka delivers it again, gets that same result and pays
// nothing.
func TestRecoveryAnswersPaymentLeftInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		final  func(lightning.Hash) lightning.Payment
		status string
		paid   ledger.PayState
	}{
		{"succeeds", func(h lightning.Hash) lightning.Payment {
			return lightning.Payment{Hash: h, Preimage: lightning.Hash{7}, Status: lightning.PaymentSucceeded}
		}, "success", ledger.Paid},
		{"fails", func(h lightning.Hash) lightning.Payment {
			return lightning.Payment{Hash: h, Status: lightning.PaymentFailed, Failure: lightning.FailureNoRoute}
		}, "error", ledger.Unpaid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, vectorsNow(t))
			value, rec, hash := crashedPay(t, h)
			published := make(chan service.Result, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); newRecovery(h, published).Run(ctx) }()
			defer func() { cancel(); <-done }()

			select {
			case r := <-published:
				t.Fatalf("published %s while the payment was in flight", r.Value)
			case <-time.After(100 * time.Millisecond):
			}
			h.state.Resolve(hash, tc.final(hash))
			var out service.Result
			select {
			case out = <-published:
			case <-time.After(10 * time.Second):
				t.Fatal("nothing published after the payment was final")
			}
			r := h.checkResult(t, rec, out)
			if r.Data.Status != tc.status || r.Task != "lightning-pay" {
				t.Fatalf("recovered result %s", out.Value)
			}
			for deadline := time.Now().Add(5 * time.Second); metricValue(h.svc.Metrics.Recovered) != 1; {
				if time.Now().After(deadline) {
					t.Fatalf("recovered metric %v, want 1", metricValue(h.svc.Metrics.Recovered))
				}
				time.Sleep(5 * time.Millisecond)
			}
			e, err := h.ledger.Get(context.Background(), r.Data.RequestID)
			if err != nil || e.State != ledger.Final || e.PayState != tc.paid || !bytes.Equal(e.Result, out.Value) {
				t.Errorf("ledger entry %+v, %v", e, err)
			}

			// Kafka delivers the request again: the same result, no payment.
			_, again := h.process(t, "crashed", value)
			if !bytes.Equal(again.Value, out.Value) {
				t.Errorf("redelivered request answered\n%s\nwant\n%s", again.Value, out.Value)
			}
			if n := h.node.Count(lightningtest.MethodSendPayment); n != 0 {
				t.Errorf("%d SendPayment calls", n)
			}
		})
	}
}

// An answered request whose claim stayed open (its payment's outcome was an
// error) and whose payment never reached the node frees the invoice.
func TestRecoveryReleasesClaimNeverSent(t *testing.T) {
	h := newHarness(t, vectorsNow(t))
	ctx := context.Background()
	id, hash := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	if _, err := h.ledger.ClaimPayment(ctx, id, hash); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ledger.Finish(ctx, ledger.Entry{ID: id, Result: []byte("an internal error")}); err != nil {
		t.Fatal(err)
	}
	rec := newRecovery(h, make(chan service.Result, 1))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); rec.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := h.ledger.Holder(ctx, hash); err == ledger.ErrNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the claim was never released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// Whatever stays unfinished longer than the alert threshold is counted and
// logged.
func TestRecoveryReportsOverdueRequests(t *testing.T) {
	h := newHarness(t, vectorsNow(t))
	ctx := context.Background()
	if _, _, err := h.ledger.Begin(ctx, ledger.Entry{ID: strings.Repeat("01", 32), Task: "create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ledger.Finish(ctx, ledger.Entry{ID: strings.Repeat("02", 32), Task: "decode", Result: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	rec := newRecovery(h, make(chan service.Result, 1))
	rec.Alert = time.Nanosecond
	time.Sleep(time.Millisecond)
	rec.Pass(ctx, true)
	if n := metricValue(h.svc.Metrics.Overdue); n != 1 {
		t.Errorf("overdue gauge %v, want 1", n)
	}
	if n := metricValue(h.svc.Metrics.Unfinished); n != 1 {
		t.Errorf("unfinished gauge %v, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "request unfinished for too long") || !strings.Contains(h.logs.String(), strings.Repeat("01", 32)) {
		t.Errorf("overdue request not logged:\n%s", h.logs)
	}
}

// value reads a counter's or gauge's value.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
