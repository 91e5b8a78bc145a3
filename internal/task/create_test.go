package task_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

const preimageSecret = "preimage-secret-for-tests"

func newCreator(node lightning.Node) *task.Creator {
	return &task.Creator{Node: node, Secret: []byte(preimageSecret), Retry: fastRetry}
}

func TestCreatePreimageIsHMACOfRequestID(t *testing.T) {
	c := &task.Creator{Secret: []byte("secret one")}
	id := request("a", wire.TaskCreate, t0, nil).ID()
	other := request("b", wire.TaskCreate, t0, nil).ID()

	p := c.Preimage(id)
	if c.Preimage(id) != p {
		t.Error("the same request id gives a different preimage")
	}
	if c.Preimage(other) == p {
		t.Error("another request id gives the same preimage")
	}
	if (&task.Creator{Secret: []byte("secret two")}).Preimage(id) == p {
		t.Error("another secret gives the same preimage")
	}
	m := hmac.New(sha256.New, []byte("secret one"))
	m.Write([]byte(id))
	if want := lightning.Hash(m.Sum(nil)); p != want {
		t.Errorf("preimage %s, want HMAC-SHA256(secret, request id) %s", p, want)
	}
}

func TestCreateIssuesTheRequestedInvoice(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		amount, memo, expiry string
		valueSat             int64
		expirySec            int64
	}{
		{"plain", "10039", "17 Febrero", "9200", 10039, 9200},
		{"non-ASCII memo", "83264", "Préstame 36", "86399", 83264, 86399},
		{"leading zeros, empty memo", "0000000000000000000000000000000022000", "", "0000000000000000000000000000000003600", 22000, 3600},
		{"payer chooses the amount", "0", "tip", "60", 0, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := &lightningtest.Stateful{Now: func() time.Time { return t0 }}
			fake := &lightningtest.Fake{Node: state}
			c := newCreator(fake)
			req := request(tc.name, wire.TaskCreate, t0, createPayload(tc.amount, tc.memo, tc.expiry))

			out := c.Create(context.Background(), req)
			wantSuccess(t, out)

			calls := fake.Calls()
			if len(calls) != 1 || calls[0].Method != lightningtest.MethodAddInvoice {
				t.Fatalf("calls %v, want one AddInvoice", calls)
			}
			want := lightning.InvoiceParams{
				Preimage: c.Preimage(req.ID()),
				ValueSat: tc.valueSat,
				Memo:     tc.memo,
				Expiry:   time.Duration(tc.expirySec) * time.Second,
			}
			if got := calls[0].Arg.(lightning.InvoiceParams); got != want {
				t.Errorf("AddInvoice(%+v), want %+v", got, want)
			}

			pr, ok := out.Message.(string)
			if !ok {
				t.Fatalf("message is %T, want the payment request string", out.Message)
			}
			hash := lightning.Hash(sha256.Sum256(want.Preimage[:]))
			if out.PaymentHash != hash.String() {
				t.Errorf("payment hash %s, want sha256 of the preimage %s", out.PaymentHash, hash)
			}
			dec, err := lightning.Decode(pr, regtest)
			if err != nil {
				t.Fatalf("the payment request does not decode: %v", err)
			}
			if dec.PaymentHash != hash || dec.NumSatoshis != tc.valueSat || dec.Description != tc.memo || dec.Expiry != tc.expirySec {
				t.Errorf("invoice hash %s, %d sat, memo %q, expiry %d; want %s, %d, %q, %d",
					dec.PaymentHash, dec.NumSatoshis, dec.Description, dec.Expiry, hash, tc.valueSat, tc.memo, tc.expirySec)
			}
		})
	}
}

// A redelivered create makes no second invoice: the node refuses the same
// hash and the first invoice is answered again.
func TestCreateRedeliveredAnswersTheSameInvoice(t *testing.T) {
	fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
	c := newCreator(fake)
	req := request("create", wire.TaskCreate, t0, createPayload("1000", "coffee", "3600"))

	first := c.Create(context.Background(), req)
	wantSuccess(t, first)
	again := c.Create(context.Background(), req)
	wantSuccess(t, again)
	if !reflect.DeepEqual(again, first) {
		t.Errorf("redelivery answered %+v, first answer %+v", again, first)
	}
	if n := fake.Count(lightningtest.MethodAddInvoice); n != 2 {
		t.Errorf("%d AddInvoice calls, want 2", n)
	}
	if n := fake.Count(lightningtest.MethodLookupInvoice); n != 1 {
		t.Errorf("%d LookupInvoice calls, want 1", n)
	}

	other := c.Create(context.Background(), request("another create", wire.TaskCreate, t0, createPayload("1000", "coffee", "3600")))
	wantSuccess(t, other)
	if other.PaymentHash == first.PaymentHash || other.Message == first.Message {
		t.Error("another request with the same fields got the same invoice")
	}
}

func TestCreateRedeliveredLookupRetriesUnreachableNode(t *testing.T) {
	want := lightning.Invoice{PaymentRequest: "lnbcrt1...", Hash: lightning.Hash{1}}
	lookup := lightningtest.Sequence(
		lightningtest.Answer[lightning.Invoice]{Err: lightning.ErrUnavailable},
		lightningtest.Answer[lightning.Invoice]{Err: lightning.ErrUnavailable},
		lightningtest.Answer[lightning.Invoice]{Value: want},
	)
	fake := &lightningtest.Fake{
		AddInvoiceFunc: func(context.Context, lightning.InvoiceParams) (lightning.Invoice, error) {
			return lightning.Invoice{}, fmt.Errorf("rpc: %w", lightning.ErrInvoiceExists)
		},
		LookupInvoiceFunc: func(context.Context, lightning.Hash) (lightning.Invoice, error) { return lookup() },
	}
	out := newCreator(fake).Create(context.Background(), request("r", wire.TaskCreate, t0, createPayload("1", "x", "60")))
	wantSuccess(t, out)
	if out.Message != want.PaymentRequest {
		t.Errorf("message %v, want %s", out.Message, want.PaymentRequest)
	}
	if n := fake.Count(lightningtest.MethodLookupInvoice); n != 3 {
		t.Errorf("%d LookupInvoice calls, want 3", n)
	}
}

func TestCreateInvalidPayload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		code    core.Code
	}{
		{"amount not a number", createPayload("ten", "x", "60"), core.CodeInvalidAmount},
		{"negative amount", createPayload("-5", "x", "60"), core.CodeInvalidAmount},
		{"fractional amount", createPayload("1.5", "x", "60"), core.CodeInvalidAmount},
		{"empty amount", createPayload("", "x", "60"), core.CodeInvalidAmount},
		{"amount above LND's maximum", createPayload(fmt.Sprint(wire.MaxAmountSat+1), "x", "60"), core.CodeInvalidAmount},
		{"zero expiry", createPayload("100", "x", "0"), core.CodeInvalidExpiry},
		{"expiry not a number", createPayload("100", "x", "1h"), core.CodeInvalidExpiry},
		{"expiry above a year", createPayload("100", "x", fmt.Sprint(wire.MaxExpirySec+1)), core.CodeInvalidExpiry},
		{"short payload", createPayload("100", "x", "60")[:2*wire.CreateFieldWidth], core.CodeMalformedPayload},
		{"long payload", append(createPayload("100", "x", "60"), ' '), core.CodeMalformedPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &lightningtest.Fake{}
			out := newCreator(fake).Create(context.Background(), request(tc.name, wire.TaskCreate, t0, tc.payload))
			f := wantFailure(t, out, tc.code)
			if f.PaymentError != "" {
				t.Errorf("create failure carries payment_error %q", f.PaymentError)
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("the node was called: %v", calls)
			}
		})
	}
}

func TestCreateNodeUnavailableBeyondBudget(t *testing.T) {
	fake := &lightningtest.Fake{
		AddInvoiceFunc: func(context.Context, lightning.InvoiceParams) (lightning.Invoice, error) {
			return lightning.Invoice{}, fmt.Errorf("dial: %w", lightning.ErrUnavailable)
		},
	}
	start := time.Now()
	out := newCreator(fake).Create(context.Background(), request("r", wire.TaskCreate, t0, createPayload("1", "x", "60")))
	elapsed := time.Since(start)

	f := wantFailure(t, out, core.CodeNodeUnavailable)
	if f.PaymentError != "failed to connect to all addresses" {
		t.Errorf("payment_error %q", f.PaymentError)
	}
	if elapsed < fastRetry.Budget {
		t.Errorf("gave up after %s, before the %s budget", elapsed, fastRetry.Budget)
	}
	// 1 ms doubling to 4 ms over 40 ms: about a dozen tries, not a busy loop.
	if n := fake.Count(lightningtest.MethodAddInvoice); n < 3 || n > int(fastRetry.Budget/fastRetry.Initial) {
		t.Errorf("%d AddInvoice calls; want a retry with backoff", n)
	}
}

func TestCreateNodeBackWithinBudget(t *testing.T) {
	state := &lightningtest.Stateful{}
	down := 3
	fake := &lightningtest.Fake{}
	fake.AddInvoiceFunc = func(ctx context.Context, p lightning.InvoiceParams) (lightning.Invoice, error) {
		if fake.Count(lightningtest.MethodAddInvoice) <= down {
			return lightning.Invoice{}, lightning.ErrUnavailable
		}
		return state.AddInvoice(ctx, p)
	}
	out := newCreator(fake).Create(context.Background(), request("r", wire.TaskCreate, t0, createPayload("1", "x", "60")))
	wantSuccess(t, out)
	if n := fake.Count(lightningtest.MethodAddInvoice); n != down+1 {
		t.Errorf("%d AddInvoice calls, want %d", n, down+1)
	}
}

func TestCreateCanceledWhileNodeUnavailable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	fake := &lightningtest.Fake{
		AddInvoiceFunc: func(context.Context, lightning.InvoiceParams) (lightning.Invoice, error) {
			cancel()
			return lightning.Invoice{}, lightning.ErrUnavailable
		},
	}
	c := newCreator(fake)
	c.Retry.Budget = time.Hour
	out := c.Create(ctx, request("r", wire.TaskCreate, t0, createPayload("1", "x", "60")))
	if !core.IsCanceled(out.Err) {
		t.Errorf("err %v, want a cancellation", out.Err)
	}
}

func TestCreateNodeErrorIsInternal(t *testing.T) {
	fake := &lightningtest.Fake{
		AddInvoiceFunc: func(context.Context, lightning.InvoiceParams) (lightning.Invoice, error) {
			return lightning.Invoice{}, errors.New("rpc error: invoice database at /var/lib/lnd is full")
		},
	}
	out := newCreator(fake).Create(context.Background(), request("r", wire.TaskCreate, t0, createPayload("1", "x", "60")))
	f := wantFailure(t, out, core.CodeInternal)
	noSecretIn(t, "published detail", f.Detail, "/var/lib/lnd")
}
