package task_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/core"
	"lightning-service/internal/ledger"
	"lightning-service/internal/ledger/ledgertest"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/payment"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

var testFeeLimit = payment.FeeLimit{FloorSat: 10, PPM: 5000}

// The pay tests run the owner of payments on the wall clock, as the
// ledger's leases do, so their invoices are made relative to it; requests
// are never opened here, so their timestamps only name them.

// books is what the payers of one test share, as instances of the service
// share a ledger: the ledger itself, and what the payment owners over it
// sealed and published. Seal records each outcome under a token that it
// returns as the sealed result, so that the result the ledger kept for a
// request, whoever stored it, reads back as the task's outcome.
type books struct {
	t  *testing.T
	lg ledger.Ledger

	mu        sync.Mutex
	sealed    map[string]task.Outcome     // by token
	seals     map[string]int              // Seal calls, by request id
	published map[string][]payment.Record // by request id
	changed   chan struct{}               // closed and replaced at each publish
	stops     map[*task.Payer]func()      // each payer's owner
}

// newBooks returns books over a SQLite ledger of the test's own.
func newBooks(t *testing.T) *books {
	return &books{
		t: t, lg: ledgertest.OpenSQLite(t),
		sealed: map[string]task.Outcome{}, seals: map[string]int{}, published: map[string][]payment.Record{},
		changed: make(chan struct{}), stops: map[*task.Payer]func(){},
	}
}

func (b *books) seal(id string, hash lightning.Hash, o payment.Outcome) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seals[id]++
	token := fmt.Sprintf("%s#%d", id, b.seals[id])
	b.sealed[token] = task.PayOutcome(o, hash)
	return []byte(token), nil
}

func (b *books) publish(_ context.Context, r payment.Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published[r.ID] = append(b.published[r.ID], r)
	close(b.changed)
	b.changed = make(chan struct{})
	return nil
}

// payer starts an owner of payments on node over the books' ledger, as one
// instance of the service does, and returns its Payer. The owner runs until
// the test ends or stop is called; tune adjusts its configuration.
func (b *books) payer(node lightning.Node, tune ...func(*payment.Config)) *task.Payer {
	b.t.Helper()
	cfg := payment.Config{
		Node:  node,
		Store: b.lg.Payments(),
		Decode: func(_ context.Context, pr string) (lightning.PayReq, error) {
			return lightning.Decode(pr, regtest)
		},
		Seal:         b.seal,
		Publish:      b.publish,
		FeeLimit:     testFeeLimit,
		RouteTimeout: time.Minute,
		Retry:        payment.Retry{Budget: fastRetry.Budget, Initial: fastRetry.Initial, Max: fastRetry.Max},
		Lease:        3 * time.Second,
		HandOff:      5 * time.Second,
		Sweep:        100 * time.Millisecond,
		Log:          testLogger(b.t),
	}
	for _, f := range tune {
		f(&cfg)
	}
	o := payment.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	b.t.Cleanup(stop)
	p := &task.Payer{Owner: o, Network: task.FixedNetwork(regtest)}
	b.mu.Lock()
	b.stops[p] = stop
	b.mu.Unlock()
	return p
}

// stop stops p's owner, as its instance stopping does, and waits for it.
func (b *books) stop(p *task.Payer) {
	b.mu.Lock()
	stop := b.stops[p]
	b.mu.Unlock()
	stop()
}

// newPayer is a payer with books of its own: a fresh service.
func newPayer(t *testing.T, node lightning.Node, tune ...func(*payment.Config)) (*books, *task.Payer) {
	b := newBooks(t)
	return b, b.payer(node, tune...)
}

// clockAt fixes the owner's clock at an instant.
func clockAt(at time.Time) func(*payment.Config) {
	return func(c *payment.Config) { c.Now = func() time.Time { return at } }
}

// recordKey and recordHeaders are the key and headers of the record that
// carried req.
func recordKey(req *wire.Request) []byte { return []byte("key-" + req.ID()[:8]) }

func recordHeaders(req *wire.Request) []payment.Header {
	return []payment.Header{{Key: "caller", Value: []byte(req.ID())}}
}

// payRaw hands req to p as a worker does and returns what the Payer
// answers, unresolved.
func payRaw(ctx context.Context, p *task.Payer, req *wire.Request) task.Outcome {
	return p.Pay(ctx, req, recordKey(req), recordHeaders(req))
}

// pay hands req to p and returns the request's outcome: resolved by answer.
func (b *books) pay(ctx context.Context, p *task.Payer, req *wire.Request) task.Outcome {
	b.t.Helper()
	return b.answer(req, payRaw(ctx, p, req))
}

// answer resolves what a Payer answered for req into the request's outcome:
// an ordinary outcome as it is; a Stored result as the outcome sealed into
// it; Deferred as the outcome sealed into the result the owner publishes
// later, which must carry the request record's key and headers.
func (b *books) answer(req *wire.Request, out task.Outcome) task.Outcome {
	b.t.Helper()
	switch {
	case out.Stored != nil:
		if out.Deferred || out.Err != nil || out.Message != nil {
			b.t.Errorf("a stored result with more: %+v", out)
		}
		got := b.opened(out.Stored)
		if out.PaymentHash != got.PaymentHash {
			b.t.Errorf("stored result's outcome has payment hash %q, the Payer's %q", got.PaymentHash, out.PaymentHash)
		}
		return got
	case out.Deferred:
		if out.Err != nil || out.Message != nil {
			b.t.Errorf("a deferred answer with an outcome: %+v", out)
		}
		r := b.nextPublished(req.ID(), 0, 10*time.Second)
		if !bytes.Equal(r.Key, recordKey(req)) || !reflect.DeepEqual(r.Headers, recordHeaders(req)) {
			b.t.Errorf("published with key %q headers %+v, want the request record's %q %+v", r.Key, r.Headers, recordKey(req), recordHeaders(req))
		}
		return b.opened(r.Result)
	}
	return out
}

// opened is the outcome sealed into a result.
func (b *books) opened(result []byte) task.Outcome {
	b.t.Helper()
	b.mu.Lock()
	out, ok := b.sealed[string(result)]
	b.mu.Unlock()
	if !ok {
		b.t.Fatalf("result %q was never sealed", result)
	}
	return out
}

// nextPublished waits until more than n results were published for request
// id, and returns the one after the first n.
func (b *books) nextPublished(id string, n int, within time.Duration) payment.Record {
	b.t.Helper()
	timeout := time.After(within)
	for {
		b.mu.Lock()
		recs, changed := b.published[id], b.changed
		b.mu.Unlock()
		if len(recs) > n {
			return recs[n]
		}
		select {
		case <-changed:
		case <-timeout:
			b.t.Fatalf("no result published for request %s within %s", id, within)
		}
	}
}

// publishedFor returns the results published for request id so far.
func (b *books) publishedFor(id string) []payment.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]payment.Record(nil), b.published[id]...)
}

func (b *books) sealCount(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seals[id]
}

// record returns request id as the ledger holds it.
func (b *books) record(id string) payment.Record {
	b.t.Helper()
	r, err := b.lg.Payments().Get(context.Background(), id)
	if err != nil {
		b.t.Fatalf("request %s in the ledger: %v", id, err)
	}
	return r
}

// wantRecord checks that the ledger holds request id as final (or not) in
// state.
func (b *books) wantRecord(id string, final bool, state payment.State) {
	b.t.Helper()
	if r := b.record(id); r.Final != final || r.State != state {
		b.t.Errorf("ledger has %s final %v in state %q (%+v), want final %v in state %q", id, r.Final, r.State, r, final, state)
	}
}

// claimedByGone leaves req in the ledger as an instance that claimed its
// invoice and then stopped leaves it: holding the hash (sending), under a
// lease that has lapsed.
func (b *books) claimedByGone(req *wire.Request, pr string, hash lightning.Hash) {
	b.t.Helper()
	c, err := b.lg.Payments().Claim(context.Background(), payment.Claim{
		ID: req.ID(), Task: "pay", Hash: hash, PaymentRequest: pr,
		Key: recordKey(req), Headers: recordHeaders(req), Owner: "gone", Until: time.Now().Add(-time.Second),
	})
	if err != nil || !c.Owned || c.Self.State != payment.Sending {
		b.t.Fatalf("claim = %+v, %v", c, err)
	}
}

// payInvoice is an invoice of 1,000.5 sat made a minute ago, expiring in
// an hour.
func payInvoice(t *testing.T) (string, lightning.Hash) {
	return lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{
		AmountMsat: 1_000_500, Memo: "invoice to pay", Expiry: time.Hour, Timestamp: time.Now().Add(-time.Minute),
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

func ptr[T any](v T) *T { return &v }

func TestPayZeroAmountInvoice(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{Memo: "any amount", Timestamp: time.Now()})
	fake := &lightningtest.Fake{}
	b, p := newPayer(t, fake)
	req := payRequest("r", t0, pr)
	out := payRaw(context.Background(), p, req)
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
	// Answered without a claim: the worker stores it as any other task's.
	if _, err := b.lg.Payments().Get(context.Background(), req.ID()); !errors.Is(err, payment.ErrNotRecorded) {
		t.Errorf("the payment owner recorded a request it had no invoice to pay for: %v", err)
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
			_, p := newPayer(t, fake)
			out := payRaw(context.Background(), p, request(tc.name, wire.TaskPay, t0, tc.payload))
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

// refusesExpired answers SendPayment as LND does for an expired invoice.
func refusesExpired(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
	return lightning.Payment{}, errors.New("rpc error: code = Unknown desc = invoice expired")
}

func TestPayExpiredInvoice(t *testing.T) {
	now := time.Now()
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 5000, Expiry: time.Hour, Timestamp: now.Add(-2 * time.Hour)})
	inv, err := lightning.Decode(pr, regtest)
	if err != nil {
		t.Fatal(err)
	}
	expiresAt := inv.ExpiresAt()
	req := payRequest("r", now, pr)

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
		// delivery claimed the invoice in the ledger, then its instance
		// stopped) gets its success again.
		{name: "paid for this request", earlier: ptr(succeeded(hash, expiresAt.Add(-time.Minute))), holder: "this", wantPaid: true},
		// A failed payment on the node is not known to be this request's
		// own (it may predate the claim): the owner sends again, the node
		// refuses the expired invoice, twice, and that is the answer. (The
		// service used to answer the failure as this request's.)
		{name: "this request's payment failed", earlier: ptr(failedPayment(hash, expiresAt.Add(-time.Minute), lightning.FailureTimeout)), holder: "this", code: core.CodeInvoiceExpired},
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
			b := newBooks(t)
			switch tc.holder {
			case "this":
				b.claimedByGone(req, pr, hash)
			case "other paid":
				other := payRequest("other", now.Add(-2*time.Hour), pr)
				b.claimedByGone(other, pr, hash)
				if _, err := b.lg.Payments().End(context.Background(), payment.End{ID: other.ID(), Owner: "gone", State: payment.Paid, Result: []byte("paid")}); err != nil {
					t.Fatal(err)
				}
			}
			fake := &lightningtest.Fake{Node: state, SendPaymentFunc: refusesExpired}
			out := b.pay(context.Background(), b.payer(fake), req)
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
			if out.PaymentHash != hash.String() {
				t.Errorf("payment hash %q, want %s", out.PaymentHash, hash)
			}
			// Only a request that may have sent already sends again (and
			// the node refuses it); nothing is ever paid.
			sends := fake.Count(lightningtest.MethodSendPayment)
			if tc.holder != "this" && sends != 0 || sends > 2 {
				t.Errorf("%d SendPayment calls for an expired invoice", sends)
			}
			if pmt, ok := state.Payment(hash); ok != (tc.earlier != nil) || ok && !reflect.DeepEqual(pmt, *tc.earlier) {
				t.Errorf("the node's payment is %+v, want %+v", pmt, tc.earlier)
			}
			if tc.holder == "this" {
				h, err := b.lg.Payments().Holder(context.Background(), hash)
				if paid := err == nil && h.ID == req.ID() && h.State == payment.Paid; paid != tc.wantPaid {
					t.Errorf("ledger holder %+v, %v after the payment's outcome", h, err)
				}
				b.wantRecord(req.ID(), true, map[bool]payment.State{true: payment.Paid, false: payment.Unpaid}[tc.wantPaid])
			}
		})
	}

	t.Run("node unreachable", func(t *testing.T) {
		fake := &lightningtest.Fake{TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrUnavailable
		}}
		b, p := newPayer(t, fake)
		wantFailure(t, b.pay(context.Background(), p, req), core.CodeNodeUnavailable)
		if n := fake.Count(lightningtest.MethodSendPayment); n != 0 {
			t.Errorf("%d SendPayment calls for an expired invoice", n)
		}
		if n := fake.Count(lightningtest.MethodTrackPayment); n < 2 {
			t.Errorf("%d TrackPayment calls; an unreachable node is retried", n)
		}
	})

	// LND refuses an invoice strictly after its expiry; at the instant
	// itself it pays.
	t.Run("at the expiry instant", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
		b, p := newPayer(t, fake, clockAt(expiresAt))
		wantSuccess(t, b.pay(context.Background(), p, payRequest("r", expiresAt, pr)))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1", n)
		}
	})
}

func TestPaySuccessMessage(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return succeeded(hash, t0), nil
	}}
	b, p := newPayer(t, fake)
	req := payRequest("r", t0, pr)
	raw := payRaw(context.Background(), p, req)
	if raw.Stored == nil {
		t.Fatalf("a payment that ended within the hand-off answered %+v, want its stored result", raw)
	}
	out := b.answer(req, raw)
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
	r := b.record(req.ID())
	if !r.Final || r.State != payment.Paid || !bytes.Equal(r.Result, raw.Stored) || r.Unpublished {
		t.Errorf("ledger has %+v; want it final, paid, with the stored result, published by the worker", r)
	}
	if !bytes.Equal(r.Key, recordKey(req)) || !reflect.DeepEqual(r.Headers, recordHeaders(req)) {
		t.Errorf("ledger keeps key %q headers %+v, want the record's", r.Key, r.Headers)
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
			b, p := newPayer(t, fake)
			req := payRequest("r", t0, pr)
			out := b.pay(context.Background(), p, req)
			f := wantFailure(t, out, tc.code)
			if want := core.LegacyPaymentError(tc.code); f.PaymentError != want || want == "" {
				t.Errorf("payment_error %q, want %q", f.PaymentError, want)
			}
			if out.PaymentHash != hash.String() {
				t.Errorf("payment hash %q, want %s", out.PaymentHash, hash)
			}
			b.wantRecord(req.ID(), true, payment.Unpaid)
		})
	}
}

func TestPayNodeUnavailable(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, fmt.Errorf("connection refused: %w", lightning.ErrUnavailable)
	}}
	b, p := newPayer(t, fake)
	out := b.pay(context.Background(), p, payRequest("r", t0, pr))
	f := wantFailure(t, out, core.CodeNodeUnavailable)
	if f.PaymentError != "failed to connect to all addresses" || out.PaymentHash != hash.String() {
		t.Errorf("payment_error %q, payment hash %q", f.PaymentError, out.PaymentHash)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n < 2 {
		t.Errorf("%d SendPayment calls; an unreachable node is retried", n)
	}
}

// A refusal in the node's own words is checked before it is the answer:
// sent twice, with nothing on the node, it is; its text is never published.
func TestPayNodeErrorIsInternal(t *testing.T) {
	pr, _ := payInvoice(t)
	fake := &lightningtest.Fake{
		SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
			return lightning.Payment{}, errors.New("rpc error: router at 10.1.2.3:10009 exploded")
		},
		TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrPaymentNotFound
		},
	}
	b, p := newPayer(t, fake)
	out := b.pay(context.Background(), p, payRequest("r", t0, pr))
	f := wantFailure(t, out, core.CodeInternal)
	noSecretIn(t, "published detail", f.Detail, "10.1.2.3")
	if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
		t.Errorf("%d SendPayment calls, want 2: a refusal is the answer only when made again", n)
	}
}

// A request delivered again gets the result stored for it, byte for byte,
// without paying twice or asking the node: from the same instance, from
// another one, and after a restart. (The service answers a request whose
// result it stored without calling the Payer; this is a copy that reached
// the Payer, racing the first or after it.)
func TestPayRedeliveredGetsSameSuccess(t *testing.T) {
	pr, hash := payInvoice(t)
	state := &lightningtest.Stateful{
		Settle: func(_ context.Context, p lightning.Payment) lightning.Payment { return succeeded(hash, p.CreatedAt) },
	}
	fake := &lightningtest.Fake{Node: state}
	req := payRequest("r", t0, pr)
	b := newBooks(t)
	p := b.payer(fake)

	first := payRaw(context.Background(), p, req)
	wantSuccess(t, b.answer(req, first))
	again := payRaw(context.Background(), p, req)
	other := payRaw(context.Background(), b.payer(fake), req)
	b.stop(p)
	restarted := payRaw(context.Background(), b.payer(fake), req)

	for name, out := range map[string]task.Outcome{"again": again, "another instance": other, "restarted": restarted} {
		if out.Stored == nil || !bytes.Equal(out.Stored, first.Stored) || out.PaymentHash != first.PaymentHash {
			t.Errorf("%s: %+v, want the first stored result %+v", name, out, first)
		}
	}
	if n := b.sealCount(req.ID()); n != 1 {
		t.Errorf("request sealed %d times, want once", n)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
	if n := fake.Count(lightningtest.MethodTrackPayment); n != 0 {
		t.Errorf("%d TrackPayment calls, want 0: the ledger answers", n)
	}
}

// An earlier delivery claimed the invoice and its instance stopped before
// the answer; a delivery again resumes from what the node has, as the
// ledger says the payment, if any, is its own: it pays once when nothing
// reached the node, and takes the node's payment for its own otherwise.
func TestPayResumedClaim(t *testing.T) {
	pr, hash := payInvoice(t)
	req := payRequest("r", t0, pr)

	t.Run("never sent", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
		b := newBooks(t)
		b.claimedByGone(req, pr, hash)
		wantSuccess(t, b.pay(context.Background(), b.payer(fake), req))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1", n)
		}
		if h, err := b.lg.Payments().Holder(context.Background(), hash); err != nil || h.ID != req.ID() || h.State != payment.Paid {
			t.Errorf("holder %+v, %v", h, err)
		}
	})

	t.Run("paid", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(succeeded(hash, t0))
		fake := &lightningtest.Fake{Node: state}
		b := newBooks(t)
		b.claimedByGone(req, pr, hash)
		out := b.pay(context.Background(), b.payer(fake), req)
		wantSuccess(t, out)
		if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(succeeded(hash, t0))) {
			t.Errorf("message %+v", out.Message)
		}
		if n := fake.Count(lightningtest.MethodSendPayment); n != 0 {
			t.Errorf("%d SendPayment calls, want 0", n)
		}
		b.wantRecord(req.ID(), true, payment.Paid)
	})

	t.Run("in flight", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentInFlight, CreatedAt: t0})
		calls := make(chan lightningtest.Call, 64)
		fake := &lightningtest.Fake{Node: state, Notify: calls}
		b := newBooks(t)
		b.claimedByGone(req, pr, hash)
		done := make(chan task.Outcome, 1)
		p := b.payer(fake)
		go func() { done <- payRaw(context.Background(), p, req) }()
		waitFor(t, calls, lightningtest.MethodTrackPayment)
		state.Resolve(hash, failedPayment(hash, t0, lightning.FailureNoRoute))
		// The payment it found failed. A failure is not known to be the
		// request's own (it may predate the claim): it sends again, and
		// that payment is the answer.
		wantSuccess(t, b.answer(req, <-done))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1", n)
		}
	})
}

// Another, later request for an invoice already paid gets already_paid, in
// the same run and after a restart, when the ledger no longer knows which
// request paid.
func TestPayLaterRequestAlreadyPaid(t *testing.T) {
	pr, hash := payInvoice(t)
	later := payRequest("later", t0.Add(time.Minute), pr)

	check := func(t *testing.T, out task.Outcome) {
		t.Helper()
		f := wantFailure(t, out, core.CodeAlreadyPaid)
		if f.PaymentError != "invoice is already paid" || out.PaymentHash != hash.String() {
			t.Errorf("payment_error %q, payment hash %q", f.PaymentError, out.PaymentHash)
		}
	}

	t.Run("same run", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
		b, p := newPayer(t, fake)
		wantSuccess(t, b.pay(context.Background(), p, payRequest("first", t0, pr)))
		check(t, b.pay(context.Background(), p, later))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1: the ledger says the invoice is paid", n)
		}
		b.wantRecord(later.ID(), true, payment.Waiting)
	})

	t.Run("after a restart", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(succeeded(hash, t0.Add(time.Second)))
		fake := &lightningtest.Fake{Node: state}
		b, p := newPayer(t, fake)
		check(t, b.pay(context.Background(), p, later))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want the one refused", n)
		}
		// It held the hash and paid nothing: the hash is free.
		b.wantRecord(later.ID(), true, payment.Unpaid)
	})
}

// A payment another request left in flight (before a restart) fails: this
// request may then pay, and does.
func TestPayAfterEarlierPaymentInFlightFails(t *testing.T) {
	pr, hash := payInvoice(t)
	state := &lightningtest.Stateful{
		Settle: func(_ context.Context, p lightning.Payment) lightning.Payment { return succeeded(hash, p.CreatedAt) },
	}
	state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentInFlight, CreatedAt: t0.Add(-time.Minute)})
	calls := make(chan lightningtest.Call, 16)
	fake := &lightningtest.Fake{Node: state, Notify: calls}
	b, p := newPayer(t, fake)
	req := payRequest("r", t0, pr)

	done := make(chan task.Outcome)
	go func() { done <- payRaw(context.Background(), p, req) }()
	waitFor(t, calls, lightningtest.MethodTrackPayment)
	state.Resolve(hash, failedPayment(hash, t0.Add(-time.Minute), lightning.FailureNoRoute))

	out := b.answer(req, <-done)
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
	b, p := newPayer(t, fake)
	firstReq, secondReq := payRequest("first", t0, pr), payRequest("second", t0.Add(time.Minute), pr)

	first, second := make(chan task.Outcome), make(chan task.Outcome)
	go func() { first <- payRaw(context.Background(), p, firstReq) }()
	firstOutcome := <-settling // the first payment is in flight
	waitFor(t, calls, lightningtest.MethodSendPayment)

	go func() { second <- payRaw(context.Background(), p, secondReq) }()
	// The second request waits for the first's outcome: it sends nothing
	// while the first payment is in flight.
	select {
	case c := <-calls:
		t.Fatalf("second request called %s while the first payment was in flight", c.Method)
	case <-time.After(200 * time.Millisecond):
	}

	firstOutcome <- failedPayment(hash, t0, lightning.FailureNoRoute)
	wantFailure(t, b.answer(firstReq, <-first), core.CodeNoRoute)

	secondOutcome := <-settling // the first failed: the second request pays
	secondOutcome <- succeeded(hash, t0)
	wantSuccess(t, b.answer(secondReq, <-second))
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
	b, p := newPayer(t, fake)
	firstReq, secondReq := payRequest("first", t0, pr), payRequest("second", t0, pr)

	first, second := make(chan task.Outcome), make(chan task.Outcome)
	go func() { first <- payRaw(context.Background(), p, firstReq) }()
	firstOutcome := <-settling
	// Signed at the same time as the first, so the clock alone could not
	// tell it from a redelivery of the first request.
	go func() { second <- payRaw(context.Background(), p, secondReq) }()
	time.Sleep(100 * time.Millisecond)
	firstOutcome <- succeeded(hash, t0.Add(time.Second))
	wantSuccess(t, b.answer(firstReq, <-first))
	wantFailure(t, b.answer(secondReq, <-second), core.CodeAlreadyPaid)
	// The ledger says the first request paid: the second does not even ask
	// the node.
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
// it is never reported as failed meanwhile, and never sent again while the
// node may have it in flight.
func TestPayOutcomeUnknownTracksUntilFinal(t *testing.T) {
	pr, hash := payInvoice(t)
	// Unreachable for longer than the retry budget.
	unreachable := []lightningtest.Answer[lightning.Payment]{{Err: lightning.ErrUnavailable}, {Err: lightning.ErrOutcomeUnknown}}
	for range 20 {
		unreachable = append(unreachable, lightningtest.Answer[lightning.Payment]{Err: lightning.ErrUnavailable})
	}
	outcomeUnknown := lightningtest.Answer[lightning.Payment]{Err: fmt.Errorf("stream reset: %w", lightning.ErrOutcomeUnknown)}

	t.Run("succeeds", func(t *testing.T) {
		final := succeeded(hash, t0.Add(time.Second))
		track := lightningtest.Sequence(append(unreachable, lightningtest.Answer[lightning.Payment]{Value: final})...)
		fake := &lightningtest.Fake{
			SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
				return lightning.Payment{}, outcomeUnknown.Err
			},
			TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) { return track() },
		}
		b, p := newPayer(t, fake)
		req := payRequest("r", t0, pr)
		start := time.Now()
		out := b.pay(context.Background(), p, req)
		wantSuccess(t, out)
		if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(final)) {
			t.Errorf("message %+v", out.Message)
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
		b.wantRecord(req.ID(), true, payment.Paid)
	})

	// A failure read after a send whose outcome is unknown is not known to
	// be this request's (the node may not have registered the request's
	// payment yet): it sends again, and the answer is what that send's own
	// stream reports.
	t.Run("fails", func(t *testing.T) {
		own := failedPayment(hash, t0.Add(time.Second), lightning.FailureInsufficientBalance)
		track := lightningtest.Sequence(append(unreachable, lightningtest.Answer[lightning.Payment]{Value: own})...)
		send := lightningtest.Sequence(outcomeUnknown, lightningtest.Answer[lightning.Payment]{Value: own})
		fake := &lightningtest.Fake{
			SendPaymentFunc:  func(context.Context, lightning.PaymentParams) (lightning.Payment, error) { return send() },
			TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) { return track() },
		}
		b, p := newPayer(t, fake)
		req := payRequest("r", t0, pr)
		wantFailure(t, b.pay(context.Background(), p, req), core.CodeInsufficientBalance)
		if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
			t.Errorf("%d SendPayment calls, want 2", n)
		}
		if n := fake.Count(lightningtest.MethodTrackPayment); n != len(unreachable)+1 {
			t.Errorf("%d TrackPayment calls, want %d", n, len(unreachable)+1)
		}
		b.wantRecord(req.ID(), true, payment.Unpaid)
	})

	// The request was lost before the node saw it: send again.
	t.Run("not found", func(t *testing.T) {
		send := lightningtest.Sequence(outcomeUnknown, lightningtest.Answer[lightning.Payment]{Value: succeeded(hash, t0.Add(time.Second))})
		fake := &lightningtest.Fake{
			SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) { return send() },
			TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) {
				return lightning.Payment{}, lightning.ErrPaymentNotFound
			},
		}
		b, p := newPayer(t, fake)
		wantSuccess(t, b.pay(context.Background(), p, payRequest("r", t0, pr)))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
			t.Errorf("%d SendPayment calls, want 2", n)
		}
	})

	// "Not found" right after the send only meant the node had not
	// registered the payment yet: sending again, the node refuses a
	// duplicate. The payment it has is this request's own, and its outcome
	// the answer. (The service used to answer already_paid, for a payment
	// of its own, and free the invoice.)
	for _, tc := range []struct {
		name  string
		final lightning.Payment
		code  core.Code // "": success
		state payment.State
	}{
		{"not found, then the node has it", succeeded(hash, t0.Add(time.Second)), "", payment.Paid},
		{"not found, then the node has it, and it fails", failedPayment(hash, t0.Add(time.Second), lightning.FailureNoRoute), core.CodeNoRoute, payment.Unpaid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := lightningtest.Sequence(outcomeUnknown, lightningtest.Answer[lightning.Payment]{Err: fmt.Errorf("payment is in flight: %w", lightning.ErrPaymentExists)})
			track := lightningtest.Sequence(
				lightningtest.Answer[lightning.Payment]{Err: lightning.ErrPaymentNotFound},
				lightningtest.Answer[lightning.Payment]{Value: tc.final},
			)
			fake := &lightningtest.Fake{
				SendPaymentFunc:  func(context.Context, lightning.PaymentParams) (lightning.Payment, error) { return send() },
				TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) { return track() },
			}
			b, p := newPayer(t, fake)
			req := payRequest("r", t0, pr)
			out := b.pay(context.Background(), p, req)
			if tc.code == "" {
				wantSuccess(t, out)
				if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(tc.final)) {
					t.Errorf("message %+v", out.Message)
				}
			} else {
				wantFailure(t, out, tc.code)
			}
			if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
				t.Errorf("%d SendPayment calls, want 2", n)
			}
			b.wantRecord(req.ID(), true, tc.state)
			h, err := b.lg.Payments().Holder(context.Background(), hash)
			if tc.state == payment.Paid && (err != nil || h.ID != req.ID()) {
				t.Errorf("holder %+v, %v; want this request", h, err)
			}
			if tc.state == payment.Unpaid && !errors.Is(err, payment.ErrNotRecorded) {
				t.Errorf("holder %+v, %v; want the invoice free", h, err)
			}
		})
	}
}

// Reading a payment's outcome failing in any way (an odd error, neither
// "unreachable" nor "not found") is never an answer: the owner goes on
// tracking until the node gives one. (The service used to answer the error
// as internal and keep the invoice claimed.)
func TestPayTrackingErrorIsNoAnswer(t *testing.T) {
	pr, hash := payInvoice(t)
	var answers []lightningtest.Answer[lightning.Payment]
	for range 5 {
		answers = append(answers, lightningtest.Answer[lightning.Payment]{Err: errors.New("rpc error: code = Unknown desc = something odd")})
	}
	final := succeeded(hash, t0.Add(time.Second))
	track := lightningtest.Sequence(append(answers, lightningtest.Answer[lightning.Payment]{Value: final})...)
	fake := &lightningtest.Fake{
		SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrOutcomeUnknown
		},
		TrackPaymentFunc: func(context.Context, lightning.Hash) (lightning.Payment, error) { return track() },
	}
	b, p := newPayer(t, fake)
	req := payRequest("r", t0, pr)
	out := b.pay(context.Background(), p, req)
	wantSuccess(t, out)
	if !reflect.DeepEqual(out.Message, task.PaymentMessageFor(final)) {
		t.Errorf("message %+v", out.Message)
	}
	if n := fake.Count(lightningtest.MethodTrackPayment); n != len(answers)+1 {
		t.Errorf("%d TrackPayment calls, want %d", n, len(answers)+1)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
	if n := b.sealCount(req.ID()); n != 1 {
		t.Errorf("sealed %d answers, want 1", n)
	}
}

// A payment in flight past the hand-off holds no worker: the worker gets
// Deferred, and so does a copy of the request meanwhile; when the payment
// ends its owner publishes the one answer with the request record's key and
// headers, and a copy after that gets the same result from the ledger.
func TestPayDeferredPastHandOff(t *testing.T) {
	pr, hash := payInvoice(t)
	state, settling := settledByHand()
	fake := &lightningtest.Fake{Node: state}
	b, p := newPayer(t, fake, func(c *payment.Config) { c.HandOff = 100 * time.Millisecond })
	req := payRequest("r", t0, pr)

	done := make(chan task.Outcome, 1)
	go func() { done <- payRaw(context.Background(), p, req) }()
	outcome := <-settling
	var out task.Outcome
	select {
	case out = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the worker was held past the hand-off")
	}
	if !out.Deferred || out.Stored != nil || out.Err != nil || out.PaymentHash != hash.String() {
		t.Fatalf("a payment in flight past the hand-off answered %+v, want deferred with its payment hash", out)
	}
	if copyOut := payRaw(context.Background(), p, req); !copyOut.Deferred {
		t.Fatalf("a copy while the payment is in flight answered %+v, want deferred", copyOut)
	}
	if got := b.publishedFor(req.ID()); len(got) != 0 {
		t.Fatalf("published %+v while the payment was in flight", got)
	}
	b.wantRecord(req.ID(), false, payment.Sending)

	outcome <- succeeded(hash, t0)
	wantSuccess(t, b.answer(req, out)) // waits for the owner's publication
	r := b.nextPublished(req.ID(), 0, time.Second)
	later := payRaw(context.Background(), p, req)
	if later.Stored == nil || !bytes.Equal(later.Stored, r.Result) {
		t.Errorf("a copy after the answer got %+v, want the published result %q", later, r.Result)
	}
	for deadline := time.Now().Add(5 * time.Second); b.record(req.ID()).Unpublished; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the published result is still marked unpublished")
		}
	}
	b.wantRecord(req.ID(), true, payment.Paid)
	time.Sleep(200 * time.Millisecond) // a sweep or two
	if n := len(b.publishedFor(req.ID())); n != 1 {
		t.Errorf("%d answers published, want 1", n)
	}
	if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
		t.Errorf("%d SendPayment calls, want 1", n)
	}
}

// Shutdown or a revoked partition while the worker waits: the worker's
// outcome is a cancellation, which publishes nothing, not a failure; the
// payment is no worker's, and goes on under its owner, which publishes its
// answer when it ends.
func TestPayCanceledWhileTracking(t *testing.T) {
	pr, hash := payInvoice(t)

	t.Run("node unreachable", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
			return lightning.Payment{}, lightning.ErrOutcomeUnknown
		}}
		final := succeeded(hash, t0)
		fake.TrackPaymentFunc = func(context.Context, lightning.Hash) (lightning.Payment, error) {
			switch n := fake.Count(lightningtest.MethodTrackPayment); {
			case n == 3:
				cancel()
			case n >= 10:
				return final, nil // the node is back
			}
			return lightning.Payment{}, lightning.ErrUnavailable
		}
		b, p := newPayer(t, fake)
		req := payRequest("r", t0, pr)
		out := payRaw(ctx, p, req)
		if !core.IsCanceled(out.Err) || out.Stored != nil || out.Deferred {
			t.Errorf("outcome %+v, want a cancellation", out)
		}
		r := b.nextPublished(req.ID(), 0, 10*time.Second)
		got := b.opened(r.Result)
		wantSuccess(t, got)
		if !reflect.DeepEqual(got.Message, task.PaymentMessageFor(final)) {
			t.Errorf("message %+v", got.Message)
		}
		if !bytes.Equal(r.Key, recordKey(req)) {
			t.Errorf("published with key %q, want the record's", r.Key)
		}
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want 1", n)
		}
	})

	t.Run("payment in flight", func(t *testing.T) {
		state := &lightningtest.Stateful{}
		state.AddPayment(lightning.Payment{Hash: hash, ValueMsat: 1_000_500, Status: lightning.PaymentInFlight, CreatedAt: t0.Add(-time.Minute)})
		calls := make(chan lightningtest.Call, 64)
		fake := &lightningtest.Fake{Node: state, Notify: calls}
		b, p := newPayer(t, fake)
		req := payRequest("r", t0, pr)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan task.Outcome)
		go func() { done <- payRaw(ctx, p, req) }()
		waitFor(t, calls, lightningtest.MethodTrackPayment)
		cancel()
		if out := <-done; !core.IsCanceled(out.Err) {
			t.Errorf("outcome %+v, want a cancellation", out)
		}
		if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
			t.Errorf("%d SendPayment calls, want the one refused", n)
		}
		if n := b.sealCount(req.ID()); n != 0 {
			t.Errorf("sealed %d answers while the earlier payment was in flight", n)
		}
		// The earlier payment fails: the owner pays, and answers.
		state.Resolve(hash, failedPayment(hash, t0.Add(-time.Minute), lightning.FailureNoRoute))
		wantSuccess(t, b.opened(b.nextPublished(req.ID(), 0, 10*time.Second).Result))
		if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
			t.Errorf("%d SendPayment calls, want 2 (refused, then paid)", n)
		}
	})
}

// Two instances sharing the ledger (separate owners: nothing in memory
// between them): a request for an invoice the other instance is paying
// sends nothing while that payment is in flight, then answers already_paid
// if it succeeded, or pays if it failed.
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
			b := newBooks(t)
			one, two := b.payer(fake), b.payer(fake)
			firstReq, secondReq := payRequest("first", t0, pr), payRequest("second", t0, pr)

			first, second := make(chan task.Outcome), make(chan task.Outcome)
			go func() { first <- payRaw(context.Background(), one, firstReq) }()
			firstOutcome := <-settling
			waitFor(t, calls, lightningtest.MethodSendPayment)
			go func() { second <- payRaw(context.Background(), two, secondReq) }()
			select {
			case c := <-calls:
				t.Fatalf("the other instance called %s while the first payment was in flight", c.Method)
			case <-time.After(300 * time.Millisecond):
			}

			if !tc.firstFails {
				firstOutcome <- succeeded(hash, t0.Add(time.Second))
				wantSuccess(t, b.answer(firstReq, <-first))
				wantFailure(t, b.answer(secondReq, <-second), core.CodeAlreadyPaid)
				if n := fake.Count(lightningtest.MethodSendPayment); n != 1 {
					t.Errorf("%d SendPayment calls, want 1", n)
				}
				return
			}
			firstOutcome <- failedPayment(hash, t0, lightning.FailureNoRoute)
			wantFailure(t, b.answer(firstReq, <-first), core.CodeNoRoute)
			(<-settling) <- succeeded(hash, t0.Add(time.Second))
			wantSuccess(t, b.answer(secondReq, <-second))
			if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
				t.Errorf("%d SendPayment calls, want 2", n)
			}
		})
	}
}

// A request whose payment failed leaves the invoice to the next request,
// which pays it; the ledger records who holds it at each step, and the
// first request, delivered again, keeps its own failure.
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
	b, p := newPayer(t, fake)
	first, second := payRequest("first", t0, pr), payRequest("second", t0.Add(time.Minute), pr)
	ctx := context.Background()

	wantFailure(t, b.pay(ctx, p, first), core.CodeNoRoute)
	if _, err := b.lg.Payments().Holder(ctx, hash); !errors.Is(err, payment.ErrNotRecorded) {
		t.Errorf("after a failed payment the invoice is held: %v", err)
	}
	b.wantRecord(first.ID(), true, payment.Unpaid)
	wantSuccess(t, b.pay(ctx, p, second))
	if h, err := b.lg.Payments().Holder(ctx, hash); err != nil || h.ID != second.ID() || h.State != payment.Paid {
		t.Errorf("holder %+v, %v; want the second request, paid", h, err)
	}
	wantFailure(t, b.pay(ctx, p, first), core.CodeNoRoute)
	if n := fake.Count(lightningtest.MethodSendPayment); n != 2 {
		t.Errorf("%d SendPayment calls, want 2", n)
	}
}

// The node unreachable for the whole budget: nothing was sent, so the
// invoice is free for the next request at once.
func TestPayNodeUnavailableReleasesTheInvoice(t *testing.T) {
	pr, hash := payInvoice(t)
	fake := &lightningtest.Fake{SendPaymentFunc: func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, lightning.ErrUnavailable
	}}
	b, p := newPayer(t, fake)
	req := payRequest("r", t0, pr)
	wantFailure(t, b.pay(context.Background(), p, req), core.CodeNodeUnavailable)
	if _, err := b.lg.Payments().Holder(context.Background(), hash); !errors.Is(err, payment.ErrNotRecorded) {
		t.Errorf("invoice still held after node_unavailable: %v", err)
	}
	b.wantRecord(req.ID(), true, payment.Unpaid)
}

// settledByHand is a node whose payments stay in flight until the test
// sends each one's outcome on the channel settling hands it (or the
// sender stops: then it fails).
func settledByHand() (*lightningtest.Stateful, chan chan lightning.Payment) {
	settling := make(chan chan lightning.Payment)
	return &lightningtest.Stateful{
		Settle: func(ctx context.Context, p lightning.Payment) lightning.Payment {
			outcome := make(chan lightning.Payment, 1)
			select {
			case settling <- outcome:
			case <-ctx.Done():
				return failedPayment(p.Hash, p.CreatedAt, lightning.FailureCanceled)
			}
			select {
			case done := <-outcome:
				return done
			case <-ctx.Done():
				return failedPayment(p.Hash, p.CreatedAt, lightning.FailureCanceled)
			}
		},
	}, settling
}
