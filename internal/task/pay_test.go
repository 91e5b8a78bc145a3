package task_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/core"
	"lightning-service/internal/ledger"
	"lightning-service/internal/ledger/ledgertest"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

var testFeeLimit = task.FeeLimit{FloorSat: 10, PPM: 5000}

// newPayer returns a Payer with a ledger of its own: a fresh service.
func newPayer(t *testing.T, node lightning.Node, now time.Time) *task.Payer {
	return newPayerWith(t, node, now, ledgertest.OpenSQLite(t))
}

// newPayerWith returns a Payer on lg: a restarted service, or another
// instance, sharing the ledger.
func newPayerWith(t *testing.T, node lightning.Node, now time.Time, lg ledger.Ledger) *task.Payer {
	return &task.Payer{
		Node:     node,
		Ledger:   lg,
		Network:  task.FixedNetwork(regtest),
		FeeLimit: testFeeLimit,
		Timeout:  time.Minute,
		Retry:    fastRetry,
		Now:      func() time.Time { return now },
		Log:      testLogger(t),
	}
}

// payInvoice is an invoice of 1,000.5 sat made a minute before t0, expiring
// an hour after.
func payInvoice(t *testing.T) (string, lightning.Hash) {
	return lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{
		AmountMsat: 1_000_500, Memo: "invoice to pay", Expiry: time.Hour, Timestamp: t0.Add(-time.Minute),
	})
}

func payRequest(name string, ts time.Time, pr string) *wire.Request {
	return request(name, wire.TaskPay, ts, payReqPayload(pr))
}

// succeeded is a payment with every field of the success message set.
func succeeded(hash lightning.Hash, createdAt time.Time) lightning.Payment {
	return lightning.Payment{
		Hash:      hash,
		Preimage:  lightning.Hash{0xaa, 0xbb, 31: 0xcc},
		ValueMsat: 1_000_500,
		FeeMsat:   2_345,
		Status:    lightning.PaymentSucceeded,
		CreatedAt: createdAt,
		Route: &lightning.Route{
			TotalTimeLock: 680,
			TotalFeesMsat: 2_345,
			TotalAmtMsat:  1_002_845,
			Hops: []lightning.Hop{
				{ChanID: 123456789012345, ChanCapacity: 5_000_000, AmtToForwardMsat: 1_000_500, FeeMsat: 2_345, Expiry: 640, PubKey: "02" + strings.Repeat("11", 32), TLVPayload: true},
				{ChanID: 987654321, ChanCapacity: 2_000_000, AmtToForwardMsat: 1_000_500, FeeMsat: 0, Expiry: 600, PubKey: "03" + strings.Repeat("22", 32), TLVPayload: true,
					MPP: &lightning.MPPRecord{PaymentAddr: [32]byte{7, 31: 8}, TotalAmtMsat: 1_000_500}},
			},
		},
	}
}

func failedPayment(hash lightning.Hash, createdAt time.Time, r lightning.FailureReason) lightning.Payment {
	return lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentFailed, Failure: r, CreatedAt: createdAt}
}

func TestPayZeroAmountInvoice(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{Memo: "any amount", Timestamp: t0})
	fake := &lightningtest.Fake{}
	out := newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr))
	f := wantFailure(t, out, core.CodeAmountRequired)
	if f.PaymentError != "amount required" {
		t.Errorf("payment_error %q", f.PaymentError)
	}
	if out.PaymentHash != hash.String() {
		t.Errorf("payment hash %q, want %s", out.PaymentHash, hash)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("the node was called: %v", calls)
	}
}

func TestPayInvalidPaymentRequest(t *testing.T) {
	mainnet, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000, Network: &chaincfg.MainNetParams})
	for _, tc := range []struct {
		name    string
		payload []byte
		code    core.Code
	}{
		{"garbage", payReqPayload("lnbc1notaninvoice"), core.CodeInvalidPaymentRequest},
		{"empty", payReqPayload(""), core.CodeInvalidPaymentRequest},
		{"another network", payReqPayload(mainnet), core.CodeInvalidPaymentRequest},
		{"short payload", []byte("lnbcrt1"), core.CodeMalformedPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &lightningtest.Fake{}
			out := newPayer(t, fake, t0).Pay(context.Background(), request(tc.name, wire.TaskPay, t0, tc.payload))
			f := wantFailure(t, out, tc.code)
			if want := core.LegacyPaymentError(tc.code); f.PaymentError != want {
				t.Errorf("payment_error %q, want %q", f.PaymentError, want)
			}
			if out.PaymentHash != "" {
				t.Errorf("payment hash %q for a request that did not decode", out.PaymentHash)
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("the node was called: %v", calls)
			}
		})
	}
}

func TestPayExpiredInvoice(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 5000, Expiry: time.Hour, Timestamp: t0.Add(-2 * time.Hour)})
	expiresAt := t0.Add(-time.Hour)
	req := payRequest("r", t0, pr)

	for _, tc := range []struct {
		name     string
		earlier  *lightning.Payment // the node's payment for the hash, if any
		holder   string             // the request the ledger says holds the invoice: "this", "other paid", or none
		code     core.Code          // "": success
		wantPaid bool
	}{
		{name: "never paid", code: core.CodeInvoiceExpired},
		{name: "paid for another request", earlier: ptr(succeeded(hash, expiresAt.Add(-time.Minute))), code: core.CodeAlreadyPaid},
		{name: "another request's payment failed", earlier: ptr(failedPayment(hash, expiresAt.Add(-time.Minute), lightning.FailureNoRoute)), code: core.CodeInvoiceExpired},
		{name: "another request in the ledger paid it", holder: "other paid", code: core.CodeAlreadyPaid},
		// A redelivered request whose payment went through (an earlier
		// delivery claimed the invoice in the ledger, then the service
		// crashed) gets its success again.
		{name: "paid for this request", earlier: ptr(succeeded(hash, expiresAt.Add(-time.Minute))), holder: "this", wantPaid: true},
		{name: "this request's payment failed", earlier: ptr(failedPayment(hash, expiresAt.Add(-time.Minute), lightning.FailureTimeout)), holder: "this", code: core.CodeTimeout},
		{name: "this request's payment never reached the node", holder: "this", code: core.CodeInvoiceExpired},
		// Without the ledger's word a payment is never taken for this
		// request's, however recent: the service used to guess by time.
		{name: "paid after the request was signed, not by it", earlier: ptr(succeeded(hash, req.Timestamp.Add(time.Second))), code: core.CodeAlreadyPaid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := &lightningtest.Stateful{}
			if tc.earlier != nil {
				state.AddPayment(*tc.earlier)
			}
			lg := ledgertest.OpenSQLite(t)
			switch tc.holder {
			case "this":
				claim(t, lg, req.ID(), hash)
			case "other paid":
				other := payRequest("other", t0.Add(-2*time.Hour), pr).ID()
				claim(t, lg, other, hash)
				if err := lg.EndPayment(context.Background(), other, true); err != nil {
					t.Fatal(err)
				}
			}
			fake := &lightningtest.Fake{Node: state}
			out := newPayerWith(t, fake, t0, lg).Pay(context.Background(), req)
			if tc.wantPaid {
				wantSuccess(t, out)
				if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(*tc.earlier)) {
					t.Errorf("message %+v", out.Message)
				}
			} else {
				f := wantFailure(t, out, tc.code)
				if want := core.LegacyPaymentError(tc.code); f.PaymentError != want {
					t.Errorf("payment_error %q, want %q", f.PaymentError, want)
				}
			}
			if n := fake.Count(lightningtest.MethodSendPayment); n != 0 {
				t.Errorf("%d SendPayment calls for an expired invoice", n)
			}
			if tc.holder == "this" {
				h, err := lg.Holder(context.Background(), hash.String())
				if paid := err == nil && h.PayState == ledger.Paid; paid != tc.wantPaid {
					t.Errorf("ledger holder %+v, %v after the payment's outcome", h, err)
				}
			}
		})
	}

	t.Run("node unreachable", func(t *testing.T) {
		fake := &lightningtest.Fake{TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrUnavailable
		}}
		wantFailure(t, newPayer(t, fake, t0).Pay(context.Background(), req), core.CodeNodeUnavailable)
		if n := fake.Count(lightningtest.MethodSendPayment); n != 0 {
			t.Errorf("%d SendPayment calls for an expired invoice", n)
		}
	})

	// LND refuses an invoice strictly after its expiry; at the instant
	// itself it pays.
	t.Run("at the expiry instant", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
		wantSuccess(t, newPayer(t, fake, expiresAt).Pay(context.Background(), payRequest("r", expiresAt, pr)))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1", n)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// claim makes request id the holder of hash in lg, as an earlier delivery of
// it would have before paying.
func claim(t *testing.T, lg ledger.Ledger, id string, hash lightning.Hash) {
	t.Helper()
	c, err := lg.ClaimPayment(context.Background(), id, hash.String())
	if err != nil || !c.Mine(id) {
		t.Fatalf("claim = %+v, %v", c, err)
	}
}

func TestPaySuccessMessage(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return succeeded(hash, t0), nil
	}}
	p := newPayer(t, fake, t0)
	out := p.Pay(context.Background(), payRequest("r", t0, pr))
	wantSuccess(t, out)

	calls := fake.Calls()
	if len(calls) != 1 || calls[0].Method != lightningtest.MethodSendPayment {
		t.Fatalf("calls %v, want one SendPayment", calls)
	}
	wantParams := lightning.PaymentParams{PaymentRequest: pr, FeeLimitSat: testFeeLimit.For(1_000_500), Timeout: time.Minute}
	if got := calls[0].Arg.(lightning.PaymentParams); got != wantParams {
		t.Errorf("SendPayment(%+v), want %+v", got, wantParams)
	}
	if out.PaymentHash != hash.String() {
		t.Errorf("outcome payment hash %s, want %s", out.PaymentHash, hash)
	}

	got, err := json.Marshal(out.Message)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"payment_hash":"` + hash.String() + `",` +
		`"payment_preimage":"aabb` + strings.Repeat("00", 29) + `cc",` +
		`"value_sat":1000,"value_msat":1000500,"fee_sat":2,"fee_msat":2345,"status":"SUCCEEDED",` +
		`"payment_route":{"total_time_lock":680,"total_fees":2,"total_amt":1002,"total_fees_msat":2345,"total_amt_msat":1002845,"hops":[` +
		`{"chan_id":123456789012345,"chan_capacity":5000000,"amt_to_forward":1000,"fee":2,"expiry":640,"amt_to_forward_msat":1000500,"fee_msat":2345,"pub_key":"02` + strings.Repeat("11", 32) + `","tlv_payload":true},` +
		`{"chan_id":987654321,"chan_capacity":2000000,"amt_to_forward":1000,"fee":0,"expiry":600,"amt_to_forward_msat":1000500,"fee_msat":0,"pub_key":"03` + strings.Repeat("22", 32) + `","tlv_payload":true,` +
		`"mpp_record":{"payment_addr":"07` + strings.Repeat("00", 30) + `08","total_amt_msat":1000500}}]}}`
	if string(got) != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}
}

func TestPayFeeLimit(t *testing.T) {
	for _, tc := range []struct{ msat, want int64 }{
		{1_000_500, 10},              // 0.5% of 1,000 sat is under the floor
		{10_000_000_000, 50_000},     // 0.5% of 10,000,000 sat
		{999, testFeeLimit.FloorSat}, // under a satoshi
	} {
		if got := testFeeLimit.For(tc.msat); got != tc.want {
			t.Errorf("For(%d) = %d, want %d", tc.msat, got, tc.want)
		}
	}
}

func TestPayFailureReasons(t *testing.T) {
	pr, hash := payInvoice(t)
	for _, tc := range []struct {
		reason lightning.FailureReason
		code   core.Code
	}{
		{lightning.FailureNoRoute, core.CodeNoRoute},
		{lightning.FailureTimeout, core.CodeTimeout},
		{lightning.FailureInsufficientBalance, core.CodeInsufficientBalance},
		{lightning.FailureIncorrectPaymentDetails, core.CodeIncorrectPaymentDetails},
		{lightning.FailureError, core.CodeInternal},
		{lightning.FailureCanceled, core.CodeInternal},
		{lightning.FailureNone, core.CodeInternal},
	} {
		t.Run(tc.reason.String(), func(t *testing.T) {
			fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
				return failedPayment(hash, t0, tc.reason), nil
			}}
			out := newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr))
			f := wantFailure(t, out, tc.code)
			if want := core.LegacyPaymentError(tc.code); f.PaymentError != want || want == "" {
				t.Errorf("payment_error %q, want %q", f.PaymentError, want)
			}
			if out.PaymentHash != hash.String() {
				t.Errorf("payment hash %q, want %s", out.PaymentHash, hash)
			}
		})
	}
}

func TestPayNodeUnavailable(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, fmt.Errorf("connection refused: %w", lightning.ErrUnavailable)
	}}
	out := newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr))
	f := wantFailure(t, out, core.CodeNodeUnavailable)
	if f.PaymentError != "failed to connect to all addresses" || out.PaymentHash != hash.String() {
		t.Errorf("payment_error %q, payment hash %q", f.PaymentError, out.PaymentHash)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n < 2 {
		t.Errorf("%d SendPayment calls; an unreachable node is retried", n)
	}
}

func TestPayNodeErrorIsInternal(t *testing.T) {
	pr, _ := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, errors.New("rpc error: router at 10.1.2.3:10009 exploded")
	}}
	out := newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr))
	f := wantFailure(t, out, core.CodeInternal)
	noSecretIn(t, "published detail", f.Detail, "10.1.2.3")
}

// A redelivered request finds its own payment on the node and answers its
// success again, without paying twice; in the same run and after a restart.
// (The service answers a request whose result it stored from the ledger
// without calling the Payer; this is the case of a crash before the result
// was stored.) The ledger says which request holds the invoice, so the
// redelivered request tracks its payment instead of sending again.
func TestPayRedeliveredGetsSameSuccess(t *testing.T) {
	pr, hash := payInvoice(t)
	state := &lightningtest.Stateful{
		Now:    func() time.Time { return t0.Add(time.Second) },
		Settle: func(_ context.Context, p lightning.Payment) lightning.Payment { return succeeded(hash, p.CreatedAt) },
	}
	fake := &lightningtest.Fake{Node: state}
	req := payRequest("r", t0, pr)
	lg := ledgertest.OpenSQLite(t)
	p := newPayerWith(t, fake, t0, lg)

	first := p.Pay(context.Background(), req)
	wantSuccess(t, first)
	again := p.Pay(context.Background(), req)
	wantSuccess(t, again)
	restarted := newPayerWith(t, fake, t0, lg).Pay(context.Background(), req)
	wantSuccess(t, restarted)

	if !reflect.DeepEqual(again, first) || !reflect.DeepEqual(restarted, first) {
		t.Errorf("answers differ:\n first %+v\n again %+v\n restarted %+v", first, again, restarted)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
	if n := fake.Count(lightningtest.MethodTrackPayment); n != 2 {
		t.Errorf("%d TrackPayment calls, want 2", n)
	}
}

// Another, later request for an invoice already paid gets already_paid, in
// the same run and after a restart, when the service no longer remembers
// which request paid.
func TestPayLaterRequestAlreadyPaid(t *testing.T) {
	pr, hash := payInvoice(t)
	paidAt := t0.Add(time.Second)
	later := payRequest("later", t0.Add(time.Minute), pr)

	check := func(t *testing.T, out task.Outcome) {
		t.Helper()
		f := wantFailure(t, out, core.CodeAlreadyPaid)
		if f.PaymentError != "invoice is already paid" || out.PaymentHash != hash.String() {
			t.Errorf("payment_error %q, payment hash %q", f.PaymentError, out.PaymentHash)
		}
	}

	t.Run("same run", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{Now: func() time.Time { return paidAt }}}
		p := newPayer(t, fake, later.Timestamp)
		wantSuccess(t, p.Pay(context.Background(), payRequest("first", t0, pr)))
		check(t, p.Pay(context.Background(), later))
	})

	t.Run("after a restart", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(succeeded(hash, paidAt))
		fake := &lightningtest.Fake{Node: state}
		check(t, newPayer(t, fake, later.Timestamp).Pay(context.Background(), later))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want the one refused", n)
		}
	})
}

// A payment another request left in flight (before a restart) fails: this
// request may then pay, and does.
func TestPayAfterEarlierPaymentInFlightFails(t *testing.T) {
	pr, hash := payInvoice(t)
	state := &lightningtest.Stateful{
		Now:    func() time.Time { return t0.Add(time.Second) },
		Settle: func(_ context.Context, p lightning.Payment) lightning.Payment { return succeeded(hash, p.CreatedAt) },
	}
	state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentInFlight, CreatedAt: t0.Add(-time.Minute)})
	calls := make(chan lightningtest.Call, 16)
	fake := &lightningtest.Fake{Node: state, Notify: calls}

	done := make(chan task.Outcome)
	go func() { done <- newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr)) }()
	waitFor(t, calls, lightningtest.MethodTrackPayment)
	state.Resolve(hash, failedPayment(hash, t0.Add(-time.Minute), lightning.FailureNoRoute))

	out := <-done
	wantSuccess(t, out)
	if got := out.Message.(task.PaymentMessage).PaymentHash; got != hash.String() {
		t.Errorf("paid %s, want %s", got, hash)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
		t.Errorf("%d SendPayment calls, want 2 (refused, then paid)", n)
	}
}

// Two requests for one invoice in the same run: the first one's payment is
// in flight when the second asks, and then fails; the second pays.
func TestPayConcurrentRequestAfterInFlightFails(t *testing.T) {
	pr, hash := payInvoice(t)
	state, settling := settledByHand()
	calls := make(chan lightningtest.Call, 16)
	fake := &lightningtest.Fake{Node: state, Notify: calls}
	p := newPayer(t, fake, t0.Add(time.Minute))

	first, second := make(chan task.Outcome), make(chan task.Outcome)
	go func() { first <- p.Pay(context.Background(), payRequest("first", t0, pr)) }()
	firstOutcome := <-settling // the first payment is in flight
	waitFor(t, calls, lightningtest.MethodSendPayment)

	go func() { second <- p.Pay(context.Background(), payRequest("second", t0.Add(time.Minute), pr)) }()
	// The second request waits for the first's outcome: it sends nothing
	// while the first payment is in flight.
	select {
	case c := <-calls:
		t.Fatalf("second request called %s while the first payment was in flight", c.Method)
	case <-time.After(200 * time.Millisecond):
	}

	firstOutcome <- failedPayment(hash, t0, lightning.FailureNoRoute)
	wantFailure(t, <-first, core.CodeNoRoute)

	secondOutcome := <-settling // the first failed: the second request pays
	secondOutcome <- succeeded(hash, t0)
	out := <-second
	wantSuccess(t, out)
	if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
		t.Errorf("%d SendPayment calls, want 2", n)
	}
}

// A request for an invoice another request in this process has just paid
// waits for that payment and answers already_paid; it never pays again.
func TestPayConcurrentRequestAfterInFlightSucceeds(t *testing.T) {
	pr, hash := payInvoice(t)
	state, settling := settledByHand()
	fake := &lightningtest.Fake{Node: state}
	p := newPayer(t, fake, t0.Add(time.Minute))

	first, second := make(chan task.Outcome), make(chan task.Outcome)
	go func() { first <- p.Pay(context.Background(), payRequest("first", t0, pr)) }()
	firstOutcome := <-settling
	// Signed before the first payment was made, so the clock alone could
	// not tell it from a redelivery of the first request.
	go func() { second <- p.Pay(context.Background(), payRequest("second", t0, pr)) }()
	time.Sleep(100 * time.Millisecond)
	firstOutcome <- succeeded(hash, t0.Add(time.Second))
	wantSuccess(t, <-first)
	wantFailure(t, <-second, core.CodeAlreadyPaid)
	// The ledger says the first request paid: the second does not even ask
	// the node (it used to send, and be refused).
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
}

// waitFor receives calls until one of m.
func waitFor(t *testing.T, calls <-chan lightningtest.Call, m lightningtest.Method) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-calls:
			if c.Method == m {
				return
			}
		case <-timeout:
			t.Fatalf("no %s call", m)
		}
	}
}

// When the connection drops after SendPayment may have reached the node, the
// payment is tracked until final, however long the node stays unreachable:
// it is never reported as failed meanwhile, and never sent twice.
func TestPayOutcomeUnknownTracksUntilFinal(t *testing.T) {
	pr, hash := payInvoice(t)
	unreachable := []lightningtest.Answer[lightning.Payment]{
		{Err: lightning.ErrUnavailable}, {Err: lightning.ErrOutcomeUnknown},
		{Err: lightning.ErrUnavailable}, {Err: lightning.ErrUnavailable},
		{Err: lightning.ErrUnavailable}, {Err: lightning.ErrUnavailable},
		{Err: lightning.ErrUnavailable},
	}

	for _, tc := range []struct {
		name  string
		final lightning.Payment
		code  core.Code // "": success
	}{
		{"succeeds", succeeded(hash, t0.Add(time.Second)), ""},
		{"fails", failedPayment(hash, t0.Add(time.Second), lightning.FailureInsufficientBalance), core.CodeInsufficientBalance},
	} {
		t.Run(tc.name, func(t *testing.T) {
			track := lightningtest.Sequence(append(unreachable, lightningtest.Answer[lightning.Payment]{Value: tc.final})...)
			fake := &lightningtest.Fake{
				SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
					return lightning.Payment{}, fmt.Errorf("stream reset: %w", lightning.ErrOutcomeUnknown)
				},
				TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) { return track() },
			}
			start := time.Now()
			out := newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr))
			if tc.code == "" {
				wantSuccess(t, out)
				if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(tc.final)) {
					t.Errorf("message %+v", out.Message)
				}
			} else {
				wantFailure(t, out, tc.code)
			}
			if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
				t.Errorf("%d SendPayment calls, want 1", n)
			}
			if n := fake.Count(lightningtest.MethodTrackPayment); n != len(unreachable)+1 {
				t.Errorf("%d TrackPayment calls, want %d", n, len(unreachable)+1)
			}
			if d := time.Since(start); d < fastRetry.Budget {
				t.Errorf("tracked for %s only; the test wants it to outlast the retry budget %s", d, fastRetry.Budget)
			}
		})
	}

	// The request was lost before the node saw it: send again.
	t.Run("not found", func(t *testing.T) {
		send := lightningtest.Sequence(
			lightningtest.Answer[lightning.Payment]{Err: lightning.ErrOutcomeUnknown},
			lightningtest.Answer[lightning.Payment]{Value: succeeded(hash, t0.Add(time.Second))},
		)
		fake := &lightningtest.Fake{
			SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) { return send() },
			TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) {
				return lightning.Payment{}, lightning.ErrPaymentNotFound
			},
		}
		wantSuccess(t, newPayer(t, fake, t0).Pay(context.Background(), payRequest("r", t0, pr)))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
			t.Errorf("%d SendPayment calls, want 2", n)
		}
	})
}

// Shutdown or a revoked partition while tracking: the outcome is a
// cancellation, which publishes nothing, not a failure.
func TestPayCanceledWhileTracking(t *testing.T) {
	pr, hash := payInvoice(t)

	t.Run("node unreachable", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrOutcomeUnknown
		}}
		fake.TrackPaymentFunc = func(context.Context, lightning.Hash) (lightning.Payment, error) {
			if fake.Count(lightningtest.MethodTrackPayment) == 3 {
				cancel()
			}
			return lightning.Payment{}, lightning.ErrUnavailable
		}
		out := newPayer(t, fake, t0).Pay(ctx, payRequest("r", t0, pr))
		if !core.IsCanceled(out.Err) {
			t.Errorf("err %v, want a cancellation", out.Err)
		}
	})

	t.Run("payment in flight", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentInFlight, CreatedAt: t0.Add(-time.Minute)})
		calls := make(chan lightningtest.Call, 16)
		fake := &lightningtest.Fake{Node: state, Notify: calls}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan task.Outcome)
		go func() { done <- newPayer(t, fake, t0).Pay(ctx, payRequest("r", t0, pr)) }()
		waitFor(t, calls, lightningtest.MethodTrackPayment)
		cancel()
		if out := <-done; !core.IsCanceled(out.Err) {
			t.Errorf("err %v, want a cancellation", out.Err)
		}
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want the one refused", n)
		}
	})
}

// Two instances sharing the ledger (separate processes: no in-process lock
// between them): a request for an invoice the other instance is paying sends
// nothing while that payment is in flight, then answers already_paid if it
// succeeded, or pays if it failed.
func TestPayWaitsForAnotherInstance(t *testing.T) {
	for _, tc := range []struct {
		name       string
		firstFails bool
	}{{"first succeeds", false}, {"first fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			pr, hash := payInvoice(t)
			state, settling := settledByHand()
			calls := make(chan lightningtest.Call, 64)
			fake := &lightningtest.Fake{Node: state, Notify: calls}
			lg := ledgertest.OpenSQLite(t)
			one, two := newPayerWith(t, fake, t0, lg), newPayerWith(t, fake, t0, lg)

			first, second := make(chan task.Outcome), make(chan task.Outcome)
			go func() { first <- one.Pay(context.Background(), payRequest("first", t0, pr)) }()
			firstOutcome := <-settling
			waitFor(t, calls, lightningtest.MethodSendPayment)
			go func() { second <- two.Pay(context.Background(), payRequest("second", t0, pr)) }()
			select {
			case c := <-calls:
				t.Fatalf("the other instance called %s while the first payment was in flight", c.Method)
			case <-time.After(300 * time.Millisecond):
			}

			if !tc.firstFails {
				firstOutcome <- succeeded(hash, t0.Add(time.Second))
				wantSuccess(t, <-first)
				wantFailure(t, <-second, core.CodeAlreadyPaid)
				if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
					t.Errorf("%d SendPayment calls, want 1", n)
				}
				return
			}
			firstOutcome <- failedPayment(hash, t0, lightning.FailureNoRoute)
			wantFailure(t, <-first, core.CodeNoRoute)
			(<-settling) <- succeeded(hash, t0.Add(time.Second))
			wantSuccess(t, <-second)
			if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
				t.Errorf("%d SendPayment calls, want 2", n)
			}
		})
	}
}

// A request whose payment failed leaves the invoice to the next request,
// which pays it; the ledger records who holds it at each step.
func TestPayFailedPaymentRetriedByNewRequest(t *testing.T) {
	pr, hash := payInvoice(t)
	outcomes := lightningtest.Sequence(
		lightningtest.Answer[lightning.FailureReason]{Value: lightning.FailureNoRoute},
		lightningtest.Answer[lightning.FailureReason]{Value: lightning.FailureNone},
	)
	state := &lightningtest.Stateful{Settle: func(_ context.Context, p lightning.Payment) lightning.Payment {
		if r, _ := outcomes(); r != lightning.FailureNone {
			return failedPayment(hash, p.CreatedAt, r)
		}
		return succeeded(hash, p.CreatedAt)
	}}
	fake := &lightningtest.Fake{Node: state}
	lg := ledgertest.OpenSQLite(t)
	p := newPayerWith(t, fake, t0, lg)
	first, second := payRequest("first", t0, pr), payRequest("second", t0.Add(time.Minute), pr)

	wantFailure(t, p.Pay(context.Background(), first), core.CodeNoRoute)
	if _, err := lg.Holder(context.Background(), hash.String()); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("after a failed payment the invoice is held: %v", err)
	}
	if e, _ := lg.Get(context.Background(), first.ID()); e.PayState != ledger.Unpaid {
		t.Errorf("first request's pay state %q, want unpaid", e.PayState)
	}
	wantSuccess(t, p.Pay(context.Background(), second))
	if h, err := lg.Holder(context.Background(), hash.String()); err != nil || h.ID != second.ID() || h.PayState != ledger.Paid {
		t.Errorf("holder %+v, %v; want the second request, paid", h, err)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
		t.Errorf("%d SendPayment calls, want 2", n)
	}
}

// An earlier delivery claimed the invoice but crashed before its payment
// reached the node: the redelivered request finds nothing on the node and
// pays, once.
func TestPayResumedClaimNeverSentPays(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
	lg := ledgertest.OpenSQLite(t)
	req := payRequest("r", t0, pr)
	claim(t, lg, req.ID(), hash)
	wantSuccess(t, newPayerWith(t, fake, t0, lg).Pay(context.Background(), req))
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
	if h, err := lg.Holder(context.Background(), hash.String()); err != nil || h.ID != req.ID() || h.PayState != ledger.Paid {
		t.Errorf("holder %+v, %v", h, err)
	}
}

// The node unreachable for the whole budget: nothing was sent, so the
// invoice is free for the next request at once.
func TestPayNodeUnavailableReleasesTheInvoice(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, lightning.ErrUnavailable
	}}
	lg := ledgertest.OpenSQLite(t)
	wantFailure(t, newPayerWith(t, fake, t0, lg).Pay(context.Background(), payRequest("r", t0, pr)), core.CodeNodeUnavailable)
	if _, err := lg.Holder(context.Background(), hash.String()); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("invoice still held after node_unavailable: %v", err)
	}
}

// settledByHand is a node whose payments stay in flight until the test
// sends each one's outcome on the channel settling hands it.
func settledByHand() (*lightningtest.Stateful, chan chan lightning.Payment) {
	settling := make(chan chan lightning.Payment)
	return &lightningtest.Stateful{
		Now: func() time.Time { return t0.Add(time.Second) },
		Settle: func(ctx context.Context, p lightning.Payment) lightning.Payment {
			outcome := make(chan lightning.Payment)
			settling <- outcome
			return <-outcome
		},
	}, settling
}
