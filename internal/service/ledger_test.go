package service_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/payment"
	"lightning-service/internal/service"
	"lightning-service/internal/wire"
)

// sideEffects counts the node calls that change something.
func sideEffects(h *harness) int {
	return h.node.Count(lightningtest.MethodSendPayment) + h.node.Count(lightningtest.MethodAddInvoice)
}

// requests of each task, signed at now, for an invoice of the node's own.
func eachTask(t *testing.T, h *harness, now time.Time) map[string][]byte {
	t.Helper()
	pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 50_000, Memo: "ledger", Timestamp: now, Expiry: time.Hour})
	create, err := wire.CreatePayload(700, "ledger test", 600)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"decode": wire.SignRequest([]byte(h.v.Key), now, "decode", wire.PayPayload(pr)),
		"pay":    wire.SignRequest([]byte(h.v.Key), now, "pay", wire.PayPayload(pr)),
		"create": wire.SignRequest([]byte(h.v.Key), now, "create", create),
	}
}

// A request delivered again, or replayed by anyone with another key and
// headers, gets the first answer byte for byte and runs nothing.
func TestAnsweredRequestGetsItsStoredResult(t *testing.T) {
	now := vectorsNow(t)
	for name, value := range eachTask(t, newHarness(t, now), now) {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, now)
			in, first := h.process(t, name, value)
			r := h.checkResult(t, in, first)
			if r.Data.Status != "success" {
				t.Fatalf("first answer %s", first.Value)
			}
			effects := sideEffects(h)

			h.svc.Now = func() time.Time { return now.Add(time.Minute) } // a later delivery, inside the window
			for _, who := range []string{name, "replayer"} {
				in, again := h.process(t, who, value)
				if !bytes.Equal(again.Value, first.Value) {
					t.Errorf("%s: answer\n%s\nwant the first\n%s", who, again.Value, first.Value)
				}
				if !bytes.Equal(again.Key, in.Key) {
					t.Errorf("%s: published with key %q, want the record's key", who, again.Key)
				}
			}
			if n := sideEffects(h); n != effects {
				t.Errorf("%d node calls with effects after the first answer, want none", n-effects)
			}
		})
	}
}

// Copies of one request processed at once: one runs, the other gets its
// answer.
func TestConcurrentCopiesRunOnce(t *testing.T) {
	now := vectorsNow(t)
	h := newHarness(t, now)
	value := eachTask(t, h, now)["pay"]
	outs := make([]service.Answer, 4)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		rec := h.record(fmt.Sprint("copy", i), value)
		go func() {
			defer wg.Done()
			out, err := h.svc.NewWorker().Process(context.Background(), rec)
			if err != nil {
				t.Error(err)
			}
			outs[i] = out
		}()
	}
	wg.Wait()
	first, ok := outs[0].(service.Result)
	for _, out := range outs[1:] {
		if r, isResult := out.(service.Result); !ok || !isResult || !bytes.Equal(r.Value, first.Value) {
			t.Fatalf("copies answered differently: %v", outs)
		}
	}
	if n := h.node.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
}

// A request the ledger knows is never dead-lettered as stale when it comes
// back after the clock window: an answered one gets its result again, one
// left unfinished by a crash goes on. One it does not know is.
func TestStaleRequestKnownToTheLedger(t *testing.T) {
	now := vectorsNow(t)
	later := now.Add(time.Hour)

	t.Run("answered", func(t *testing.T) {
		h := newHarness(t, now)
		for name, value := range eachTask(t, h, now) {
			_, first := h.process(t, name, value)
			h.svc.Now = func() time.Time { return later }
			_, again := h.answer(t, name, value)
			if r, ok := again.(service.Result); !ok || !bytes.Equal(r.Value, first.Value) {
				t.Errorf("%s after the window: %#v, want the first answer", name, again)
			}
			h.svc.Now = func() time.Time { return now }
		}
	})

	// An earlier delivery recorded the request, claimed the invoice and
	// paid; its instance stopped before storing the result: by this
	// build (a claim under a lease that lapsed), or by an older one (a
	// claim with neither owner nor payment request).
	for _, older := range []bool{false, true} {
		name := "unfinished pay"
		if older {
			name += " of an older build"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, later)
			value := eachTask(t, h, now)["pay"]
			req, err := h.svc.Keys.Verifier(time.Hour).Open(value, now)
			if err != nil {
				t.Fatal(err)
			}
			pr, _ := wire.PaymentRequest(req.Payload)
			inv, _ := lightning.Decode(string(pr), regtest)
			ctx := context.Background()
			if older {
				if _, _, err := h.ledger.Begin(ctx, ledger.Entry{ID: req.ID(), Task: "pay"}); err != nil {
					t.Fatal(err)
				}
				if _, err := h.ledger.ClaimPayment(ctx, req.ID(), inv.PaymentHash.String()); err != nil {
					t.Fatal(err)
				}
			} else if _, err := h.ledger.Payments().Claim(ctx, payment.Claim{ID: req.ID(), Task: "pay", Hash: inv.PaymentHash,
				PaymentRequest: string(pr), Owner: "stopped", Until: later.Add(-time.Minute)}); err != nil {
				t.Fatal(err)
			}
			h.state.AddPayment(lightning.Payment{Hash: inv.PaymentHash, Preimage: lightning.Hash{9}, ValueMsat: inv.NumMsat, Status: lightning.PaymentSucceeded, CreatedAt: now})

			in, out := h.process(t, "pay", value)
			r := h.checkResult(t, in, out)
			if r.Data.Status != "success" {
				t.Fatalf("answer %s", out.Value)
			}
			if n := h.node.Count(lightningtest.MethodSendPayment); n != 0 {
				t.Errorf("%d SendPayment calls, want 0: the payment was tracked", n)
			}
			if e, err := h.ledger.Get(ctx, req.ID()); err != nil || e.State != ledger.Final || e.PayState != ledger.Paid || !bytes.Equal(e.Result, out.Value) {
				t.Errorf("ledger entry %+v, %v", e, err)
			}
		})
	}

	t.Run("unknown", func(t *testing.T) {
		h := newHarness(t, later)
		_, out := h.answer(t, "pay", eachTask(t, h, now)["pay"])
		if dl, ok := out.(service.DeadLetter); !ok || dl.Reason != string(wire.StaleTimestamp) {
			t.Errorf("unknown stale request answered %#v, want a %s dead letter", out, wire.StaleTimestamp)
		}
		if calls := h.node.Calls(); len(calls) != 0 {
			t.Errorf("a stale request reached the node: %v", calls)
		}
	})
}

// Another request for an invoice a request paid gets already_paid, even
// after the first one's result was stored.
func TestPayOfPaidInvoiceByAnotherRequest(t *testing.T) {
	now := vectorsNow(t)
	h := newHarness(t, now)
	pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 50_000, Timestamp: now, Expiry: time.Hour})
	in, out := h.process(t, "first", wire.SignRequest([]byte(h.v.Key), now, "pay", wire.PayPayload(pr)))
	if r := h.checkResult(t, in, out); r.Data.Status != "success" {
		t.Fatalf("first pay: %s", out.Value)
	}
	in, out = h.process(t, "second", wire.SignRequest([]byte(h.v.Key), now.Add(time.Second), "pay", wire.PayPayload(pr)))
	h.checkError(t, h.checkResult(t, in, out), "pay", core.CodeAlreadyPaid)
	if n := h.node.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
}

// With the clock judged by the broker, a request is fresh if it was signed
// near the time the broker appended it, however long it then waited.
func TestClockFromBroker(t *testing.T) {
	now := vectorsNow(t)
	h := newHarness(t, now.Add(3*time.Hour)) // the service was down for hours
	h.svc.ClockFromBroker = true
	tasks := eachTask(t, h, now)

	rec := h.record("waited", tasks["decode"])
	rec.AppendTime = now.Add(2 * time.Second) // appended two seconds after signing
	out, err := h.w.Process(context.Background(), rec)
	if _, ok := out.(service.Result); err != nil || !ok {
		t.Fatalf("request that waited in Kafka: %v, %v", out, err)
	}

	rec = h.record("replayed", tasks["pay"])
	rec.AppendTime = now.Add(time.Hour) // appended again an hour later
	out, err = h.w.Process(context.Background(), rec)
	if dl, ok := out.(service.DeadLetter); err != nil || !ok || dl.Reason != string(wire.StaleTimestamp) {
		t.Fatalf("request appended an hour after signing: %v, %v", out, err)
	}
}
