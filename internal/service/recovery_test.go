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
	"lightning-service/internal/payment"
	"lightning-service/internal/service"
	"lightning-service/internal/wire"
)

// leftPay leaves the ledger as an instance that claimed a pay request and
// then stopped mid-payment leaves it: the request recorded with its
// record's key and headers, holding its invoice (sending), owned by
// another owner id under a lease that ended at leaseUntil; and the node's
// payment in flight. It returns the request value, its delivery and hash.
func leftPay(t *testing.T, h *harness, leaseUntil time.Time) ([]byte, service.Delivery, lightning.Hash) {
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
	rec := h.record("left", value)
	hs := make([]payment.Header, len(rec.Headers))
	for i, hd := range rec.Headers {
		hs[i] = payment.Header(hd)
	}
	c, err := h.ledger.Payments().Claim(context.Background(), payment.Claim{
		ID: req.ID(), Task: "pay", Hash: inv.PaymentHash, PaymentRequest: string(pr),
		Key: rec.Key, Headers: hs, Owner: "an-owner-that-stopped", Until: leaseUntil,
	})
	if err != nil || c.Self.State != payment.Sending {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	h.state.AddPayment(lightning.Payment{Hash: inv.PaymentHash, ValueMsat: inv.NumMsat, Status: lightning.PaymentInFlight, CreatedAt: h.now})
	return value, rec, inv.PaymentHash
}

// A pay request whose owner stopped mid-payment (its lease lapsed) is
// taken over by the running payment owner, which follows the payment to
// its end and answers through the Service's Publisher, with the request
// record's key and headers; the request, when Kafka delivers it again,
// gets that same result and pays nothing more.
func TestOwnerAnswersPayRequestWhoseOwnerStopped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		final func(lightning.Hash) lightning.Payment
		sends int // what the new owner sends
	}{
		{"succeeds", func(h lightning.Hash) lightning.Payment {
			return lightning.Payment{Hash: h, Preimage: lightning.Hash{7}, Status: lightning.PaymentSucceeded}
		}, 0},
		// A failure on the node is not known to be the request's own (it
		// may predate the claim): the new owner pays again, and the
		// request is paid once. (Recovery used to answer the failure.)
		{"fails", func(h lightning.Hash) lightning.Payment {
			return lightning.Payment{Hash: h, Status: lightning.PaymentFailed, Failure: lightning.FailureNoRoute}
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachLedger(t, func(t *testing.T, lg ledger.Ledger) {
				now := time.Now().Truncate(time.Millisecond)
				h := newHarnessOn(t, lg, now)
				value, rec, hash := leftPay(t, h, now.Add(-time.Second))
				for deadline := time.Now().Add(10 * time.Second); h.node.Count(lightningtest.MethodTrackPayment) == 0; time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the request was never taken over")
					}
				}
				if calls := h.node.Calls(); calls[0].Method != lightningtest.MethodTrackPayment {
					t.Fatalf("the new owner's first call is %s, want it to track the payment", calls[0].Method)
				}
				h.nothingPublished(t, 100*time.Millisecond) // in flight
				h.state.Resolve(hash, tc.final(hash))

				out := h.nextPublished(t, 10*time.Second)
				r := h.checkResult(t, rec, out)
				if r.Data.Status != "success" || r.Task != "lightning-pay" {
					t.Fatalf("the new owner published %s", out.Value)
				}
				if n := metricValue(h.svc.Metrics.Recovered); n != 1 {
					t.Errorf("recovered metric %v, want 1", n)
				}
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
					pr, err := h.ledger.Payments().Get(context.Background(), r.Data.RequestID)
					if err == nil && !pr.Unpublished {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the published result is still marked unpublished: %+v, %v", pr, err)
					}
				}
				e, err := h.ledger.Get(context.Background(), r.Data.RequestID)
				if err != nil || e.State != ledger.Final || e.PayState != ledger.Paid || !bytes.Equal(e.Result, out.Value) {
					t.Errorf("ledger entry %+v, %v", e, err)
				}

				// Kafka delivers the request again: the same result, no payment.
				_, again := h.process(t, "left", value)
				if !bytes.Equal(again.Value, out.Value) {
					t.Errorf("redelivered request answered\n%s\nwant\n%s", again.Value, out.Value)
				}
				if n := h.node.Count(lightningtest.MethodSendPayment); n != tc.sends {
					t.Errorf("%d SendPayment calls, want %d", n, tc.sends)
				}
				h.nothingPublished(t, 100*time.Millisecond) // once
			})
		})
	}
}

// A pay request another instance owns under a live lease is that
// instance's work: the owner here leaves it alone, and a copy delivered
// here is answered Deferred, to be answered by its owner.
func TestPayRequestOwnedElsewhereIsDeferred(t *testing.T) {
	eachLedger(t, func(t *testing.T, lg ledger.Ledger) {
		now := time.Now().Truncate(time.Millisecond)
		h := newHarnessOn(t, lg, now)
		value, _, _ := leftPay(t, h, time.Now().Add(time.Hour))
		time.Sleep(200 * time.Millisecond) // sweeps
		_, out := h.answer(t, "left", value)
		if _, ok := out.(service.Deferred); !ok {
			t.Fatalf("a copy of another owner's request: %#v, want service.Deferred{}", out)
		}
		if calls := h.node.Calls(); len(calls) != 0 {
			t.Errorf("the node was called for another owner's request: %v", calls)
		}
		h.nothingPublished(t, 100*time.Millisecond)
	})
}

// Watch counts what the ledger holds unfinished (requests not final, pay
// requests still holding their invoice) at its first pass and then each
// interval, and logs each one older than the alert threshold. It changes
// nothing.
func TestWatchCountsAndLogsUnfinishedRequests(t *testing.T) {
	h := newHarness(t, time.Now())
	h.svc.Now = time.Now // ages are measured on the wall clock, as the ledger's
	ctx := context.Background()
	pending := strings.Repeat("01", 32)
	if _, _, err := h.ledger.Begin(ctx, ledger.Entry{ID: pending, Task: "create"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ledger.Finish(ctx, ledger.Entry{ID: strings.Repeat("02", 32), Task: "decode", Result: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	// Another instance's payment in flight.
	_, _, hash := leftPay(t, h, time.Now().Add(time.Hour))
	paying, err := h.ledger.Payments().Holder(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}

	w := &service.Watch{Service: h.svc, Interval: time.Hour, Alert: time.Hour}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	for deadline := time.Now().Add(5 * time.Second); metricValue(h.svc.Metrics.Unfinished) != 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("unfinished gauge %v after the first pass, want 2", metricValue(h.svc.Metrics.Unfinished))
		}
	}
	cancel()
	<-done
	if n := metricValue(h.svc.Metrics.Overdue); n != 0 {
		t.Errorf("overdue gauge %v under an alert of an hour, want 0", n)
	}
	if strings.Contains(h.logs.String(), "request unfinished for too long") {
		t.Errorf("a request logged as overdue under an alert of an hour:\n%s", h.logs)
	}

	time.Sleep(5 * time.Millisecond)
	w.Alert = time.Millisecond
	w.Pass(ctx)
	if n := metricValue(h.svc.Metrics.Overdue); n != 2 {
		t.Errorf("overdue gauge %v, want 2", n)
	}
	if n := metricValue(h.svc.Metrics.Unfinished); n != 2 {
		t.Errorf("unfinished gauge %v, want 2", n)
	}
	logs := h.logs.String()
	if n := strings.Count(logs, "request unfinished for too long"); n != 2 {
		t.Errorf("%d overdue lines, want 2:\n%s", n, logs)
	}
	for _, id := range []string{pending, paying.ID} {
		if !strings.Contains(logs, id) {
			t.Errorf("overdue request %s not logged:\n%s", id, logs)
		}
	}
	if strings.Contains(logs, strings.Repeat("02", 32)) {
		t.Errorf("a final request was logged:\n%s", logs)
	}

	// Watching changed nothing.
	if e, err := h.ledger.Get(ctx, pending); err != nil || e.State != ledger.Pending {
		t.Errorf("pending request now %+v, %v", e, err)
	}
	if calls := h.node.Calls(); len(calls) != 0 {
		t.Errorf("the node was called: %v", calls)
	}
}

// metricValue reads a counter's or gauge's value.
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
