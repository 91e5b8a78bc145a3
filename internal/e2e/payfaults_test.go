//go:build e2e

package e2e

// What the service tells callers of pay when alice's answers go missing,
// come broken or come late, when the service is killed or paused in the
// middle of a payment, and when many requests ask for one invoice. Each test
// runs a service of its own behind a fault proxy (rig_test.go) and checks
// every answer on the output topic against what the nodes did: the
// receiver's invoice, alice's payments.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"

	"lightning-service/internal/faultproxy"
	"lightning-service/internal/ledger/ledgertest"
	"lightning-service/internal/regtest"
	"lightning-service/internal/wire"
)

// payAnswerWait is how long a test waits for a pay's answer: an answer
// may come after the hand-off, from the payment's owner, or after a
// takeover from recovery.
const payAnswerWait = 2 * time.Minute

// SendPaymentV2's answer is lost after LND took the payment, and LND pays.
// The request is told it paid, with the preimage, whatever tracking says
// meanwhile.
func TestE2EPayForgottenAttempt(t *testing.T) {
	r := newRig(t, nil)
	r.start(t)
	bob := env.network.Bob

	// Tracking first answers as LND does for a hash it has no payment of.
	t.Run("tracking says not initiated", func(t *testing.T) {
		inv := addInvoice(t, bob, 1101, "e2e: forgotten attempt")
		r.proxy.Inject(sendPayment, faultproxy.BreakAfterForward(codes.Unavailable).KeepUpstream())
		r.proxy.Inject(trackPayment, faultproxy.Answer(codes.NotFound, "payment isn't initiated"))
		_, id := r.send(t, "pay", wire.PayPayload(inv.PaymentRequest))
		r.wantPaid(t, id, bob, inv.RHash, 1101)
	})

	// Then the node answers nothing but Unavailable, to sends and tracks
	// alike, for longer than the retry budget: the payment went through,
	// so node_unavailable would be false.
	t.Run("node unreachable past the retry budget", func(t *testing.T) {
		inv := addInvoice(t, bob, 1102, "e2e: forgotten attempt, node unreachable")
		unreachable := faultproxy.Answer(codes.Unavailable, "faultproxy: the node is unreachable").UntilCleared()
		sends := r.proxy.Calls(sendPayment)
		r.proxy.Inject(sendPayment, faultproxy.BreakAfterForward(codes.Unavailable).KeepUpstream())
		r.proxy.Inject(trackPayment, unreachable)
		_, id := r.send(t, "pay", wire.PayPayload(inv.PaymentRequest))
		waitCalls(t, r.proxy, sendPayment, sends+1)
		r.proxy.Inject(sendPayment, unreachable)
		time.Sleep(3 * retryBudget)
		r.proxy.Clear(sendPayment)
		r.proxy.Clear(trackPayment)
		r.wantPaid(t, id, bob, inv.RHash, 1102)
	})
}

// SendPaymentV2's answer is lost after LND took the payment, and tracking
// then fails three times with an error LND does not send: that says nothing
// of the payment, which succeeds, and the request is told so.
func TestE2EPayOddTrackingError(t *testing.T) {
	r := newRig(t, nil)
	r.start(t)
	bob := env.network.Bob
	inv := addInvoice(t, bob, 1201, "e2e: odd tracking error")
	r.proxy.Inject(sendPayment, faultproxy.BreakAfterForward(codes.Unavailable).KeepUpstream())
	r.proxy.Inject(trackPayment, faultproxy.Answer(codes.Unknown, "something odd").Times(3))
	_, id := r.send(t, "pay", wire.PayPayload(inv.PaymentRequest))
	r.wantPaid(t, id, bob, inv.RHash, 1201)
}

// R1's payment fails at LND (bob is down) while the service, which lost
// the payment's stream and cannot track it, is killed with R1 unfinished in
// its ledger. Bob comes back, R2 asks for the same invoice, the service
// restarts. The payment R2 makes is R2's: exactly one of the two is told
// it paid, never both.
func TestE2EPayAnotherRequestsPayment(t *testing.T) {
	n := env.network
	r := newRig(t, nil)
	svc := r.process(t, 0)
	svc.start(t)
	inv := addInvoice(t, n.Bob, 1401, "e2e: another request's payment")
	payload := wire.PayPayload(inv.PaymentRequest)

	startBob := stopNode(t, "bob")
	r.proxy.Inject(sendPayment, faultproxy.BreakAfterResponses(1, codes.Unavailable).KeepUpstream())
	tracking := r.proxy.Inject(trackPayment, faultproxy.Hold().UntilCleared())
	_, r1 := r.send(t, "pay", payload)
	waitCalls(t, r.proxy, sendPayment, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	if err := r.proxy.WaitCalls(ctx, trackPayment, 1); err != nil {
		t.Logf("the service did not track R1's payment before the kill: %v", err)
	}
	cancel()
	svc.kill()
	if rs := r.caller.Results(r1); len(rs) > 0 {
		t.Fatalf("setup: R1 was answered before the kill: %s", rs[0].Raw)
	}
	eventually(t, 30*time.Second, "alice's payment of R1 to fail", func() bool {
		ps := alicePayments(t, inv.RHash)
		return len(ps) == 1 && ps[0].Status == lnrpc.Payment_FAILED
	})

	startBob()
	_, r2 := r.send(t, "pay", payload)
	tracking.Clear()
	svc.start(t)

	res := r.wait(t, payAnswerWait, r1, r2)
	paid := 0
	for i, res := range res {
		switch o := outcome(t, res); o {
		case "success":
			paid++
			checkPayment(t, decodePay(t, res), inv.RHash, 1401, 1)
		case "already_paid", "no_route", "insufficient_balance", "timeout", "incorrect_payment_details":
			t.Logf("R%d: %s", i+1, o)
		default:
			t.Errorf("R%d answered %s", i+1, res.Raw)
		}
	}
	if paid != 1 {
		t.Errorf("%d of R1 and R2 told they paid the invoice, want exactly 1", paid)
	}
	wantPaidOnce(t, n.Bob, inv.RHash)
	r.sameAnswers(t, r1, r2)
}

// Pays of a hold invoice that stays unsettled, 40 of them (30 requests and
// copies of 10) on a service with 8 workers, must not keep other requests
// from being answered; once the invoice settles, one request is told it
// paid and every other already_paid.
func TestE2EPayStall(t *testing.T) {
	n := env.network
	r := newRig(t, map[string]string{"LIGHTNING_CONCURRENCY": "8"})
	r.start(t)
	held := newHoldInvoice(t, n.Bob, 1501, "e2e: held until the test settles it")

	payload := wire.PayPayload(held.pr)
	signed := time.Now()
	var values [][]byte
	var heldIDs []string
	for i := range 30 {
		v := wire.SignRequest([]byte(hmacKey), signed.Add(time.Duration(i)*time.Millisecond), "pay", payload)
		values = append(values, v)
		heldIDs = append(heldIDs, r.sendValue(t, v, fmt.Appendf(nil, "held-%d", i)))
	}
	for i, v := range values[:10] {
		r.sendValue(t, v, fmt.Appendf(nil, "held-%d", i))
	}
	held.waitAccepted(t, time.Minute)

	// 20 requests of other kinds, each to be answered within 15 s.
	type other struct {
		id, task string
		sent     time.Time
		hash     []byte // pay: the invoice's
		sats     int64
	}
	var others []other
	for i := range 20 {
		q := other{task: []string{"decode", "create", "pay"}[i%3], sats: 1510 + int64(i)}
		payload := ""
		switch q.task {
		case "decode", "pay":
			inv := addInvoice(t, n.Bob, q.sats, fmt.Sprintf("e2e: beside a held payment %d", i))
			payload, q.hash = wire.PayPayload(inv.PaymentRequest), inv.RHash
		case "create":
			var err error
			if payload, err = wire.CreatePayload(q.sats, fmt.Sprintf("e2e: beside a held payment %d", i), 600); err != nil {
				t.Fatal(err)
			}
		}
		q.sent = time.Now()
		_, q.id = r.send(t, q.task, payload)
		others = append(others, q)
	}
	stalled := 0
	for _, q := range others {
		ctx, cancel := context.WithDeadline(t.Context(), q.sent.Add(15*time.Second))
		res, err := r.caller.Wait(ctx, q.id)
		cancel()
		switch {
		case err != nil:
			stalled++
		case outcome(t, res) != "success":
			t.Errorf("%s answered %s", q.task, res.Raw)
		case q.task == "pay":
			checkPayment(t, decodePay(t, res), q.hash, q.sats, 1)
		}
	}
	if stalled > 0 {
		t.Errorf("%d of %d requests not answered within 15 s of being sent, while pays of a held invoice were in flight", stalled, len(others))
	}
	for _, id := range heldIDs {
		if rs := r.caller.Results(id); len(rs) > 0 {
			t.Errorf("pay %s answered while its payment is held in flight: %s", id, rs[0].Raw)
		}
	}

	held.settle(t)
	res := r.wait(t, 30*time.Second, heldIDs...)
	// Every request is answered, copies alike; a copy delivered while its
	// request's payment was in flight was deferred to the same owner, so
	// the request may be answered once for its records together.
	if n := r.sameAnswers(t, heldIDs...); n < len(heldIDs) {
		t.Errorf("%d answers for %d requests", n, len(heldIDs))
	}
	paid := 0
	for i, res := range res {
		switch o := outcome(t, res); o {
		case "success":
			paid++
			checkPayment(t, decodePay(t, res), held.hash, held.sats, 1)
		case "already_paid":
		default:
			t.Errorf("held pay %d answered %s", i, res.Raw)
		}
	}
	if paid != 1 {
		t.Errorf("%d requests told they paid the held invoice, want exactly 1", paid)
	}
	wantPaidOnce(t, n.Bob, held.hash)
}

// A pay request is claimed and its payment held on the way to LND when the
// service is killed; an operator then moves the group's offsets past it, so
// Kafka never delivers it again. The service, restarted, must still finish
// it (the ledger has all it needs) and answer it with its record's key and
// headers; another request for the invoice is told already_paid.
func TestE2EPayClaimNobodyFinishes(t *testing.T) {
	n := env.network
	r := newRig(t, nil)
	svc := r.process(t, 0)
	svc.start(t)
	inv := addInvoice(t, n.Bob, 1601, "e2e: a claim nobody finishes")
	payload := wire.PayPayload(inv.PaymentRequest)

	sending := r.proxy.Inject(sendPayment, faultproxy.Hold())
	key, header := []byte("r1-key"), kgo.RecordHeader{Key: "trace", Value: []byte("r1-trace")}
	r1 := r.sendValue(t, wire.SignRequest([]byte(hmacKey), time.Now(), "pay", payload), key, header)
	waitCalls(t, r.proxy, sendPayment, 1)
	svc.kill()
	if ps := alicePayments(t, inv.RHash); len(ps) > 0 {
		t.Fatalf("setup: alice has a payment of R1's invoice, %s; the held SendPaymentV2 reached her", ps[0].Status)
	}
	r.skipInput(t)
	sending.Clear()
	svc.start(t)
	_, r2 := r.send(t, "pay", payload)

	res := r.wait(t, payAnswerWait, r1, r2)
	checkPayment(t, decodePay(t, res[0]), inv.RHash, 1601, 1)
	rec := res[0].Record
	if string(rec.Key) != string(key) || len(rec.Headers) != 1 || rec.Headers[0].Key != header.Key || string(rec.Headers[0].Value) != string(header.Value) {
		t.Errorf("R1's result has key %q and headers %v; want R1's record's, %q and [%s=%s]", rec.Key, rec.Headers, key, header.Key, header.Value)
	}
	wantError(t, res[1], "already_paid")
	wantPaidOnce(t, n.Bob, inv.RHash)
	r.sameAnswers(t, r1, r2)
}

// Two instances in one group on one PostgreSQL ledger pay hold invoices,
// two requests for each; instance A is paused (SIGSTOP) with payments in
// hand for longer than the group's session timeout and its leases, so B
// takes its partitions and its work. Half the invoices settle and half are
// cancelled before A resumes. Each invoice's requests are told the truth,
// once: one success for a settled invoice, failures for a cancelled one,
// and every answer to one request the same.
func TestE2EPayPausedInstance(t *testing.T) {
	base := os.Getenv(ledgertest.DatabaseURLEnv)
	if base == "" {
		t.Skip("LIGHTNING_TEST_DATABASE_URL is not set; scripts/test sets it")
	}
	n := env.network
	r := newRig(t, map[string]string{"LIGHTNING_DATABASE_URL": ledgertest.FreshSchema(t, base)})
	a, b := r.process(t, 0), r.process(t, 1)
	a.start(t)
	b.start(t)
	r.waitMembers(t, 2)

	const invoices = 8
	var held []*holdInvoice
	ids := map[*holdInvoice][]string{}
	for i := range invoices {
		h := newHoldInvoice(t, n.Bob, 1701+int64(i), fmt.Sprintf("e2e: paused instance %d", i))
		held = append(held, h)
		for j := range 2 {
			v := wire.SignRequest([]byte(hmacKey), time.Now().Add(time.Duration(j)*time.Millisecond), "pay", wire.PayPayload(h.pr))
			ids[h] = append(ids[h], r.sendValue(t, v, fmt.Appendf(nil, "paused-%d-%d", i, j)))
		}
	}
	for _, h := range held {
		h.waitAccepted(t, time.Minute)
	}

	a.signal(t, syscall.SIGSTOP)
	paused := time.Now()
	r.waitMembers(t, 1)
	time.Sleep(time.Until(paused.Add(10 * time.Second)))
	for i, h := range held {
		if i%2 == 0 {
			h.settle(t)
		} else {
			h.cancel(t)
		}
	}
	time.Sleep(3 * time.Second)
	a.signal(t, syscall.SIGCONT)
	t.Logf("instance A paused for %s", time.Since(paused).Round(100*time.Millisecond))

	var all []string
	for _, h := range held {
		all = append(all, ids[h]...)
	}
	r.wait(t, payAnswerWait, all...)
	time.Sleep(5 * time.Second) // for late copies from A
	r.sameAnswers(t, all...)
	for i, h := range held {
		var outcomes []string
		for _, id := range ids[h] {
			res := r.caller.Results(id)[0]
			o := outcome(t, res)
			outcomes = append(outcomes, o)
			if o == "success" {
				checkPayment(t, decodePay(t, res), h.hash, h.sats, 1)
			}
		}
		paid := count(outcomes, "success")
		switch {
		case i%2 == 0 && (paid != 1 || count(outcomes, "already_paid") != 1):
			t.Errorf("settled invoice %x: its requests were told %v; want one success and already_paid", h.hash, outcomes)
		case i%2 == 1 && count(outcomes, "incorrect_payment_details") != len(outcomes):
			t.Errorf("cancelled invoice %x: its requests were told %v; want incorrect_payment_details, the payment's failure", h.hash, outcomes)
		}
		if i%2 == 0 {
			wantPaidOnce(t, n.Bob, h.hash)
		} else if ps := alicePayments(t, h.hash); len(ps) != 1 || ps[0].Status != lnrpc.Payment_FAILED {
			t.Errorf("cancelled invoice %x: alice has %d payments of it, want one, failed", h.hash, len(ps))
		}
	}
}

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

// wantPaid waits for the answer to pay request id and checks that the
// nodes have receiver's invoice with hash paid once, that every answer to
// the request is the same, and that it is a success for sats over one hop
// with the invoice's preimage.
func (r *rig) wantPaid(t *testing.T, id string, receiver *regtest.Node, hash []byte, sats int64) {
	t.Helper()
	res := r.wait(t, payAnswerWait, id)[0]
	wantPaidOnce(t, receiver, hash)
	r.sameAnswers(t, id)
	checkPayment(t, decodePay(t, res), hash, sats, 1)
}

func addInvoice(t *testing.T, node *regtest.Node, sats int64, memo string) *lnrpc.AddInvoiceResponse {
	t.Helper()
	inv, err := node.AddInvoice(t.Context(), sats, memo, false)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// waitCalls waits up to a minute until the proxy has received n calls of
// method in all.
func waitCalls(t *testing.T, p *faultproxy.Proxy, method string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := p.WaitCalls(ctx, method, n); err != nil {
		t.Fatal(err)
	}
}

// stopNode stops name's lnd and returns what starts it again, which runs
// when the test ends if the test has not run it.
func stopNode(t *testing.T, name string) (start func()) {
	t.Helper()
	if err := env.network.StopNode(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	start = func() {
		once.Do(func() {
			if err := env.network.StartNode(context.Background(), name); err != nil {
				t.Errorf("restarting %s: %v", name, err)
			}
		})
	}
	t.Cleanup(start)
	return start
}
