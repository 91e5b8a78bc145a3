package payment_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/payment"
)

// node is a Stateful node whose calls a test can script, one behaviour per
// call in order; calls past the script reach the node itself.
type node struct {
	*lightningtest.Stateful
	mu    sync.Mutex
	send  []func(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error)
	track []func(ctx context.Context, h lightning.Hash) (lightning.Payment, error)
	sends int
}

func newNode() *node { return &node{Stateful: &lightningtest.Stateful{}} }

func (n *node) SendPayment(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
	n.mu.Lock()
	n.sends++
	var f func(context.Context, lightning.PaymentParams) (lightning.Payment, error)
	if len(n.send) > 0 {
		f, n.send = n.send[0], n.send[1:]
	}
	n.mu.Unlock()
	if f != nil {
		return f(ctx, p)
	}
	return n.Stateful.SendPayment(ctx, p)
}

func (n *node) TrackPayment(ctx context.Context, h lightning.Hash) (lightning.Payment, error) {
	n.mu.Lock()
	var f func(context.Context, lightning.Hash) (lightning.Payment, error)
	if len(n.track) > 0 {
		f, n.track = n.track[0], n.track[1:]
	}
	n.mu.Unlock()
	if f != nil {
		return f(ctx, h)
	}
	return n.Stateful.TrackPayment(ctx, h)
}

// lostAfterSending reaches the node (which pays) but reports the outcome
// unknown, as a stream broken after the request left does.
func (n *node) lostAfterSending(registered chan<- struct{}) func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
	return func(_ context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
		go func() {
			_, _ = n.Stateful.SendPayment(context.Background(), p)
		}()
		if registered != nil {
			close(registered)
		}
		return lightning.Payment{}, fmt.Errorf("%w: stream broke", lightning.ErrOutcomeUnknown)
	}
}

func trackErr(err error) func(context.Context, lightning.Hash) (lightning.Payment, error) {
	return func(context.Context, lightning.Hash) (lightning.Payment, error) { return lightning.Payment{}, err }
}

func sendErr(err error) func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
	return func(context.Context, lightning.PaymentParams) (lightning.Payment, error) {
		return lightning.Payment{}, err
	}
}

// published collects what an Owner publishes.
type published struct {
	mu   sync.Mutex
	recs []payment.Record
	ch   chan payment.Record
}

func newPublished() *published { return &published{ch: make(chan payment.Record, 1000)} }

func (p *published) publish(_ context.Context, r payment.Record) error {
	p.mu.Lock()
	p.recs = append(p.recs, r)
	p.mu.Unlock()
	p.ch <- r
	return nil
}

func (p *published) next(t *testing.T, within time.Duration) payment.Record {
	t.Helper()
	select {
	case r := <-p.ch:
		return r
	case <-time.After(within):
		t.Fatalf("nothing published within %s", within)
		return payment.Record{}
	}
}

// sealed is the test's stand-in for a sealed result: the outcome as JSON.
type sealed struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Code     string `json:"code,omitempty"`
	Preimage string `json:"preimage,omitempty"`
}

func seal(id string, _ lightning.Hash, out payment.Outcome) ([]byte, error) {
	s := sealed{ID: id}
	switch {
	case out.Err != nil:
		s.Status, s.Code = "error", string(core.Describe(out.Err).Code)
	case out.Payment.Status == lightning.PaymentSucceeded:
		s.Status, s.Preimage = "success", out.Payment.Preimage.String()
	default:
		s.Status, s.Code = "error", out.Payment.Failure.String()
	}
	return json.Marshal(s)
}

func opened(t *testing.T, b []byte) sealed {
	t.Helper()
	var s sealed
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("result %q: %v", b, err)
	}
	return s
}

type harness struct {
	t     *testing.T
	node  *node
	store *memStore
	pub   *published
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, node: newNode(), store: newMemStore(), pub: newPublished()}
}

// owner starts an Owner on the harness's node and store; it stops when
// the test ends, or when stop is called.
func (h *harness) owner(tune func(*payment.Config)) (o *payment.Owner, stop func()) {
	cfg := payment.Config{
		Node:  h.node,
		Store: h.store,
		Decode: func(_ context.Context, pr string) (lightning.PayReq, error) {
			return lightning.Decode(pr, &chaincfg.RegressionNetParams)
		},
		Seal:         seal,
		Publish:      h.pub.publish,
		FeeLimit:     payment.FeeLimit{FloorSat: 10, PPM: 5000},
		RouteTimeout: time.Minute,
		Retry:        payment.Retry{Budget: 300 * time.Millisecond, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		Lease:        600 * time.Millisecond,
		HandOff:      300 * time.Millisecond,
		Sweep:        50 * time.Millisecond,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if tune != nil {
		tune(&cfg)
	}
	o = payment.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	h.t.Cleanup(stop)
	return o, stop
}

// invoice is a payee's invoice for 1000 sat.
func (h *harness) invoice() (string, lightning.PayReq) {
	pr, _ := lightningtest.NewInvoice(h.t, lightningtest.InvoiceOpts{AmountMsat: 1_000_000, Key: lightningtest.PayeeKey, Expiry: time.Hour})
	inv, err := lightning.Decode(pr, &chaincfg.RegressionNetParams)
	if err != nil {
		h.t.Fatal(err)
	}
	return pr, inv
}

func request(id, pr string, inv lightning.PayReq) payment.Request {
	return payment.Request{ID: id, Task: "pay", Invoice: inv, PaymentRequest: pr, Key: []byte("key-" + id),
		Headers: []payment.Header{{Key: "h", Value: []byte(id)}}}
}

// answer is the result a request got: from its worker at once, or
// published later by the Owner.
func (h *harness) answer(a payment.Answer, err error, id string) sealed {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("Pay %s: %v", id, err)
	}
	if a.Result != nil {
		return opened(h.t, a.Result)
	}
	if !a.Deferred {
		h.t.Fatalf("Pay %s: neither a result nor deferred: %+v", id, a)
	}
	for {
		r := h.pub.next(h.t, 10*time.Second)
		if r.ID == id {
			return opened(h.t, r.Result)
		}
	}
}

func wantStatus(t *testing.T, got sealed, status, code string) {
	t.Helper()
	if got.Status != status || got.Code != code {
		t.Fatalf("answer %+v, want status %q code %q", got, status, code)
	}
}

func (h *harness) wantState(id string, final bool, state payment.State) {
	h.t.Helper()
	r, ok := h.store.get(id)
	if !ok || r.Final != final || r.State != state {
		h.t.Fatalf("ledger has %s as %+v (found %v), want final %v state %q", id, r, ok, final, state)
	}
}

// Case 1: the stream breaks after the request left; the node has not
// registered the payment when it is first tracked; sending again finds it.
// The payment is this request's own, and succeeded.
func TestOutcomeUnknownThenNotFoundThenExistsIsOwnSuccess(t *testing.T) {
	h := newHarness(t)
	registered := make(chan struct{})
	h.node.send = append(h.node.send, h.node.lostAfterSending(registered))
	h.node.track = append(h.node.track, func(context.Context, lightning.Hash) (lightning.Payment, error) {
		<-registered // the node has it by now, but says not yet
		time.Sleep(20 * time.Millisecond)
		return lightning.Payment{}, lightning.ErrPaymentNotFound
	})
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	got := h.answer(a, err, "r1")
	wantStatus(t, got, "success", "")
	h.wantState("r1", true, payment.Paid)
}

// Case 1, variant: after a send whose outcome is unknown, the node is
// unreachable for longer than the retry budget. The claim must stay: the
// payment may still succeed, and it does.
func TestOutcomeUnknownThenUnavailableKeepsTheClaim(t *testing.T) {
	h := newHarness(t)
	h.node.send = append(h.node.send,
		h.node.lostAfterSending(nil),
		sendErr(fmt.Errorf("%w: refused", lightning.ErrUnavailable)))
	for range 30 {
		h.node.track = append(h.node.track, trackErr(fmt.Errorf("%w: down", lightning.ErrUnavailable)))
	}
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	got := h.answer(a, err, "r1")
	wantStatus(t, got, "success", "")
	h.wantState("r1", true, payment.Paid)
}

// Case 2: tracking returns an error that is neither "unavailable" nor "not
// found". Reading the outcome is never a reason to give up on it.
func TestOddTrackingErrorIsNoAnswer(t *testing.T) {
	h := newHarness(t)
	h.node.send = append(h.node.send, h.node.lostAfterSending(nil))
	for range 5 {
		h.node.track = append(h.node.track, trackErr(errors.New("rpc error: code = Unknown desc = something odd")))
	}
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	got := h.answer(a, err, "r1")
	wantStatus(t, got, "success", "")
}

// A refusal the node may not really have made (a proxy, a broken stream
// that looks like one) is checked: the payment it started is found.
func TestRefusalAfterTheNodeStartedThePaymentIsOwnSuccess(t *testing.T) {
	h := newHarness(t)
	h.node.send = append(h.node.send, func(_ context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
		_, err := h.node.lostAfterSending(nil)(context.Background(), p)
		_ = err
		return lightning.Payment{}, errors.New("rpc error: code = Unknown desc = refused")
	})
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a, err, "r1"), "success", "")
}

// A real refusal, made twice with nothing on the node, is the answer.
func TestRefusedTwiceIsTheAnswer(t *testing.T) {
	h := newHarness(t)
	refused := errors.New("lnd SendPaymentV2: self-payments not allowed")
	h.node.send = append(h.node.send, sendErr(refused), sendErr(refused))
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a, err, "r1"), "error", "internal")
	h.wantState("r1", true, payment.Unpaid)
	if h.node.sends != 2 {
		t.Fatalf("%d sends, want 2", h.node.sends)
	}
}

// A node unreachable before anything left: node_unavailable, and the
// invoice is free again.
func TestUnavailableBeforeSendingFreesTheInvoice(t *testing.T) {
	h := newHarness(t)
	for range 100 {
		h.node.send = append(h.node.send, sendErr(fmt.Errorf("%w: down", lightning.ErrUnavailable)))
	}
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a, err, "r1"), "error", "node_unavailable")
	h.wantState("r1", true, payment.Unpaid)
}

// An invoice another client of the node paid before: already_paid, and
// this request did not pay.
func TestPaidBeforeTheClaimIsAlreadyPaid(t *testing.T) {
	h := newHarness(t)
	pr, inv := h.invoice()
	h.node.AddPayment(lightning.Payment{Hash: inv.PaymentHash, Status: lightning.PaymentSucceeded})
	o, _ := h.owner(nil)
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a, err, "r1"), "error", "already_paid")
}

// Case 3: two owners of one request. The owner tracking a payment in flight
// is paused past its lease (its renewals stop); the other takes the request
// over. The payment then succeeds; exactly one answer is stored, and the
// paused owner, woken, does not answer.
func TestPausedOwnerLosesTheRequestAndDoesNotAnswer(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.node.Settle = func(ctx context.Context, p lightning.Payment) lightning.Payment {
		select {
		case <-release:
		case <-ctx.Done():
		}
		p.Status = lightning.PaymentSucceeded
		return p
	}
	a, _ := h.owner(nil)
	pr, inv := h.invoice()
	ans, err := a.Pay(context.Background(), request("r1", pr, inv))
	if err != nil || !ans.Deferred {
		t.Fatalf("Pay of a payment held in flight: %+v, %v; want deferred", ans, err)
	}
	// A's renewals stop, as a paused process's do, and its lease lapses;
	// its payment goroutine goes on following the payment.
	h.store.freeze(a.ID())
	b, _ := h.owner(nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, _ := h.store.get("r1")
		if r.Owner == b.ID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never took r1 over: %+v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	got := opened(t, h.pub.next(t, 5*time.Second).Result)
	wantStatus(t, got, "success", "")
	h.wantState("r1", true, payment.Paid)
	time.Sleep(200 * time.Millisecond)
	h.pub.mu.Lock()
	n := len(h.pub.recs)
	h.pub.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d answers published for r1, want 1", n)
	}
}

// Case 4: a request whose payment failed answers with its own failure,
// never with the payment another request made afterwards.
func TestFailedRequestKeepsItsOwnAnswer(t *testing.T) {
	h := newHarness(t)
	var fail sync.Once
	h.node.Settle = func(_ context.Context, p lightning.Payment) lightning.Payment {
		p.Status = lightning.PaymentSucceeded
		fail.Do(func() { p.Status, p.Failure = lightning.PaymentFailed, lightning.FailureNoRoute })
		return p
	}
	o, _ := h.owner(nil)
	pr, inv := h.invoice()
	a1, err := o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a1, err, "r1"), "error", "no_route")
	a2, err := o.Pay(context.Background(), request("r2", pr, inv))
	wantStatus(t, h.answer(a2, err, "r2"), "success", "")
	// r1 again (a redelivery, a sweep): its own answer.
	a1, err = o.Pay(context.Background(), request("r1", pr, inv))
	wantStatus(t, h.answer(a1, err, "r1"), "error", "no_route")
	h.wantState("r1", true, payment.Unpaid)
	h.wantState("r2", true, payment.Paid)
}

// Case 4, the crash: r1's payment failed on the node but its owner stopped
// before ending it. Whoever resumes r1 must not take a later payment for
// the answer it did not get: here it pays anew itself (the failure was not
// known to be its own), and r2 is told already_paid.
func TestResumedFailureIsSentAgainNotBorrowed(t *testing.T) {
	h := newHarness(t)
	pr, inv := h.invoice()
	// The node has a failed payment of the hash; the ledger has r1 sending
	// under a lapsed lease of an owner that is gone.
	h.node.AddPayment(lightning.Payment{Hash: inv.PaymentHash, Status: lightning.PaymentFailed, Failure: lightning.FailureNoRoute})
	if _, err := h.store.Claim(context.Background(), payment.Claim{ID: "r1", Task: "pay", Hash: inv.PaymentHash, PaymentRequest: pr,
		Owner: "gone", Until: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	o, _ := h.owner(nil)
	got := opened(t, h.pub.next(t, 5*time.Second).Result)
	if got.ID != "r1" {
		t.Fatalf("published %+v first, want r1", got)
	}
	wantStatus(t, got, "success", "")
	a2, err := o.Pay(context.Background(), request("r2", pr, inv))
	wantStatus(t, h.answer(a2, err, "r2"), "error", "already_paid")
}

// Case 5: a payment the node keeps in flight for good holds no worker: the
// request and every copy and other request for that invoice are deferred
// within the hand-off, and other invoices are paid meanwhile.
func TestPaymentInFlightForGoodStallsNothing(t *testing.T) {
	h := newHarness(t)
	stuckPR, stuck := h.invoice()
	release := make(chan struct{})
	h.node.Settle = func(_ context.Context, p lightning.Payment) lightning.Payment {
		if p.Hash == stuck.PaymentHash {
			<-release
		}
		p.Status = lightning.PaymentSucceeded
		return p
	}
	o, _ := h.owner(func(c *payment.Config) { c.HandOff = 100 * time.Millisecond })
	var wg sync.WaitGroup
	start := time.Now()
	var deferred sync.Map
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("s%d", i%70) // 70 requests, 30 of them delivered twice
			a, err := o.Pay(context.Background(), request(id, stuckPR, stuck))
			if err != nil || !a.Deferred {
				t.Errorf("Pay %s: %+v, %v; want deferred", id, a, err)
			}
			deferred.Store(id, true)
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("100 pays for a stuck invoice took %s to be let go", d)
	}
	otherPR, other := h.invoice()
	a, err := o.Pay(context.Background(), request("other", otherPR, other))
	wantStatus(t, h.answer(a, err, "other"), "success", "")
	if n, _ := o.InFlight(); n != 1 {
		t.Fatalf("%d payments in flight, want 1 (the stuck one)", n)
	}

	close(release)
	got := map[string]sealed{}
	for len(got) < 70 {
		r := opened(t, h.pub.next(t, 10*time.Second).Result)
		if _, dup := got[r.ID]; dup {
			t.Fatalf("%s answered twice", r.ID)
		}
		got[r.ID] = r
	}
	success := 0
	for id, r := range got {
		switch {
		case r.Status == "success":
			success++
		case r.Code != "already_paid":
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if success != 1 {
		t.Fatalf("%d requests told they paid the invoice, want 1", success)
	}
}

// Case 6: a claim an owner made and never finished (it stopped before
// sending, and its request never comes back) is taken over when its lease
// lapses and paid by the next owner, which publishes the answer with the
// request record's key and headers.
func TestAbandonedClaimIsFinishedByTheNextOwner(t *testing.T) {
	h := newHarness(t)
	pr, inv := h.invoice()
	if _, err := h.store.Claim(context.Background(), payment.Claim{ID: "r1", Task: "pay", Hash: inv.PaymentHash, PaymentRequest: pr,
		Key: []byte("k1"), Headers: []payment.Header{{Key: "trace", Value: []byte("t1")}},
		Owner: "gone", Until: time.Now().Add(-time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	h.owner(nil)
	r := h.pub.next(t, 5*time.Second)
	wantStatus(t, opened(t, r.Result), "success", "")
	if string(r.Key) != "k1" || len(r.Headers) != 1 || string(r.Headers[0].Value) != "t1" {
		t.Fatalf("published with key %q headers %+v", r.Key, r.Headers)
	}
	h.wantState("r1", true, payment.Paid)
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if rec, _ := h.store.get("r1"); !rec.Unpublished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("published result still marked unpublished")
		}
	}
}

// A live lease is never taken: another instance's work in progress.
func TestLiveLeaseIsLeftToItsOwner(t *testing.T) {
	h := newHarness(t)
	pr, inv := h.invoice()
	if _, err := h.store.Claim(context.Background(), payment.Claim{ID: "r1", Task: "pay", Hash: inv.PaymentHash, PaymentRequest: pr,
		Owner: "alive", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	o, _ := h.owner(nil)
	time.Sleep(300 * time.Millisecond) // several sweeps
	if h.node.sends != 0 {
		t.Fatalf("%d sends for a request another owner holds", h.node.sends)
	}
	a, err := o.Pay(context.Background(), request("r1", pr, inv))
	if err != nil || !a.Deferred {
		t.Fatalf("a copy of another owner's request: %+v, %v; want deferred", a, err)
	}
}
