package payment

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lightning-service/internal/backoff"
	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
)

// FeeLimit bounds what a payment's route may cost: the larger of a floor in
// satoshis and a share of the amount in parts per million.
type FeeLimit struct {
	FloorSat int64
	PPM      int64
}

// For returns the limit for an amount in millisatoshis, in satoshis.
func (f FeeLimit) For(amountMsat int64) int64 {
	return max(f.FloorSat, amountMsat/1000*f.PPM/1_000_000)
}

// Retry is how long a send keeps trying a node that cannot be reached
// before any payment of the request may have left, and how it backs off.
type Retry struct {
	Budget  time.Duration // then node_unavailable; 0: 30 s
	Initial time.Duration // first backoff; 0: 100 ms
	Max     time.Duration // longest backoff; 0: 5 s
}

// Config is what an Owner is made of.
type Config struct {
	Node  lightning.Node
	Store Store // wrapped once in Retrying by New
	// Decode decodes a payment request stored in the ledger, to resume it.
	Decode func(ctx context.Context, pr string) (lightning.PayReq, error)
	// Seal turns the outcome of request id, for the invoice with hash,
	// into its sealed result.
	Seal func(id string, hash lightning.Hash, out Outcome) ([]byte, error)
	// Publish publishes the stored result of a request no worker waits
	// for, with its record's key and headers, and returns once the broker
	// acknowledged it.
	Publish func(ctx context.Context, r Record) error

	FeeLimit     FeeLimit
	RouteTimeout time.Duration // how long the node may look for a route
	Retry        Retry

	Lease      time.Duration // how long a claim holds without renewal; 0: 30 s
	HandOff    time.Duration // how long a worker waits for an outcome; 0: 10 s
	Sweep      time.Duration // how often orphans and waiters are looked at; 0: 5 s
	MaxWaiters int           // workers that may wait on one payment at once; 0: 4
	Alert      time.Duration // a payment in flight longer is logged; 0: 10 min

	Now func() time.Time
	Log *slog.Logger
}

// Owner owns this instance's payments. Every pay request it claims is run
// by one goroutine of its own, under the Owner's lifetime rather than the
// worker's: a worker waits for the outcome for at most HandOff and is then
// freed, and the Owner publishes the answer when the payment ends. Leases
// in the Store keep one owner per request across instances; Run renews
// them and takes over the requests of owners that stopped.
type Owner struct {
	Config
	id string // this instance's owner id

	ctx     context.Context // the Owner's lifetime, from Run
	mu      sync.Mutex
	runs    map[string]*run              // by request id
	holders map[lightning.Hash]*run      // the run holding each hash
	waiting map[lightning.Hash]time.Time // hashes with Waiting requests of ours, since
	queued  map[lightning.Hash]int       // workers waiting now for another request's payment of each hash
	started chan struct{}
	wg      sync.WaitGroup
}

// run is one request's payment in this process.
type run struct {
	id      string
	hash    lightning.Hash
	since   time.Time
	alerted bool

	done    chan struct{} // closed once ended
	waiters int           // workers waiting for it now
	ending  bool          // End is being written with a waiter to publish
	result  []byte        // the stored result, once done; nil: no answer here
}

// Request is an authenticated pay request, decoded.
type Request struct {
	ID             string
	Task           string // the task field as sent, trimmed
	Invoice        lightning.PayReq
	PaymentRequest string
	Key            []byte
	Headers        []Header
}

// Answer is what a worker gets for a pay request.
type Answer struct {
	// Result is the request's sealed result, stored in the ledger: the
	// worker publishes it.
	Result []byte
	// Unclaimed is an outcome reached without claiming the invoice
	// (expired, already paid before the ledger knew): the worker seals
	// and stores it as for any other task.
	Unclaimed *Outcome
	// Deferred: the request is in the ledger with an owner who answers
	// it when its payment ends; the worker may move on and its record's
	// offset may be committed.
	Deferred bool
}

// New returns an Owner with its defaults filled in and its Store wrapped
// in retrying. Run must be running before Pay is called.
func New(c Config) *Owner {
	o := &Owner{Config: c}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.HandOff <= 0 {
		o.HandOff = 10 * time.Second
	}
	if o.Sweep <= 0 {
		o.Sweep = 5 * time.Second
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = 4
	}
	if o.Alert <= 0 {
		o.Alert = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Store = Retrying(o.Store, o.Log)
	o.id = newOwnerID()
	o.runs = make(map[string]*run)
	o.holders = make(map[lightning.Hash]*run)
	o.waiting = make(map[lightning.Hash]time.Time)
	o.queued = make(map[lightning.Hash]int)
	o.started = make(chan struct{})
	return o
}

func newOwnerID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// ID is this instance's owner id, as the ledger records it.
func (o *Owner) ID() string { return o.id }

func (o *Owner) now() time.Time { return o.Now() }

func (o *Owner) retryBudget() time.Duration {
	if o.Retry.Budget <= 0 {
		return 30 * time.Second
	}
	return o.Retry.Budget
}

// registrationGrace is how long after a refusal the node is given to show
// a payment it may have registered meanwhile.
func (o *Owner) registrationGrace() time.Duration { return time.Second }

// Run renews this instance's leases, takes over the requests of owners that
// stopped and resumes requests waiting for an invoice, until ctx ends; then
// it waits for the payments it runs to stop and releases their leases, for
// the next owner to resume them.
func (o *Owner) Run(ctx context.Context) {
	o.ctx = ctx
	close(o.started)
	defer o.release()
	renew := time.NewTicker(o.Lease / 3)
	defer renew.Stop()
	sweep := time.NewTicker(o.Sweep)
	defer sweep.Stop()
	o.sweep(ctx)
	for {
		select {
		case <-renew.C:
			if err := o.Store.Renew(ctx, o.id, o.now().Add(o.Lease)); err != nil && ctx.Err() == nil {
				o.Log.Error("renewing payment leases failed", "error", err)
			}
		case <-sweep.C:
			o.sweep(ctx)
		case <-ctx.Done():
			return
		}
	}
}

// release waits for the payments this instance runs to stop, then ends
// its leases at once, so that another instance, or the next start, takes
// their requests over without waiting for the leases to lapse.
func (o *Owner) release() {
	o.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.Store.Renew(ctx, o.id, o.now()); err != nil {
		o.Log.Warn("releasing payment leases at stop failed; they lapse by themselves", "error", err)
	}
}

// Pay answers a pay request: at once when it is answered already, after
// its payment when that ends within HandOff, and Deferred otherwise.
func (o *Owner) Pay(ctx context.Context, req Request) (Answer, error) {
	select {
	case <-o.started:
	case <-ctx.Done():
		return Answer{}, ctx.Err()
	}
	hash := lightning.Hash(req.Invoice.PaymentHash)
	for {
		if r := o.running(req.ID); r != nil {
			return o.await(ctx, r)
		}
		if req.Invoice.Expired(o.now()) {
			if a, done, err := o.expired(ctx, req, hash); done || err != nil {
				return a, err
			}
		}
		c, err := o.Store.Claim(ctx, Claim{
			ID: req.ID, Task: req.Task, Hash: hash, PaymentRequest: req.PaymentRequest,
			Key: req.Key, Headers: req.Headers, Owner: o.id, Until: o.now().Add(o.Lease),
		})
		if err != nil {
			return Answer{}, err
		}
		switch {
		case c.Self.Final:
			return Answer{Result: c.Self.Result}, nil
		case !c.Owned:
			// Another instance owns it under a live lease; it answers.
			return Answer{Deferred: true}, nil
		case c.Holder == nil:
			return o.await(ctx, o.start(c.Self, req.Invoice, c.Resumed, !c.Resumed))
		case c.Holder.State == Paid:
			return o.alreadyPaid(ctx, c.Self, true)
		}
		// Another request is paying the invoice: wait for it a while.
		if !o.waitForHolder(ctx, *c.Holder) {
			o.markWaiting(hash)
			return Answer{Deferred: true}, nil
		}
		// It ended: claim again.
	}
}

// expired answers a request for an expired invoice that no request of the
// ledger holds, without claiming it; done is false when the claim decides
// (this request holds it, or another request is paying it).
func (o *Owner) expired(ctx context.Context, req Request, hash lightning.Hash) (a Answer, done bool, err error) {
	h, err := o.Store.Holder(ctx, hash)
	switch {
	case err == nil && h.State == Paid && h.ID != req.ID:
		out := Outcome{Err: core.Errorf(core.CodeAlreadyPaid, "invoice is already paid")}
		return Answer{Unclaimed: &out}, true, nil
	case err == nil:
		return Answer{}, false, nil
	case !errors.Is(err, ErrNotRecorded):
		return Answer{}, true, err
	}
	// The node may have paid it before the ledger knew (another client
	// of the node, an older build).
	var pmt lightning.Payment
	err = o.withBudget(ctx, func(ctx context.Context) (err error) {
		pmt, err = o.Node.TrackPayment(ctx, hash)
		if errors.Is(err, lightning.ErrOutcomeUnknown) {
			err = fmt.Errorf("%w: %w", lightning.ErrUnavailable, err) // tracking changes nothing
		}
		return err
	})
	out := Outcome{Err: expiredError(req.Invoice)}
	switch {
	case err == nil && pmt.Status == lightning.PaymentSucceeded:
		out = Outcome{Err: core.Errorf(core.CodeAlreadyPaid, "invoice is already paid")}
	case err != nil && !errors.Is(err, lightning.ErrPaymentNotFound):
		out = Outcome{Err: err}
	}
	return Answer{Unclaimed: &out}, true, nil
}

// running returns this process's run of request id, if any.
func (o *Owner) running(id string) *run {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.runs[id]
}

// start runs the payment of rec, which this instance owns and which holds
// its hash, in a goroutine of its own.
func (o *Owner) start(rec Record, inv lightning.PayReq, mayHaveSent, leaseFresh bool) *run {
	o.mu.Lock()
	defer o.mu.Unlock()
	if r := o.runs[rec.ID]; r != nil {
		return r
	}
	r := &run{id: rec.ID, hash: rec.Hash, since: o.now(), done: make(chan struct{})}
	o.runs[rec.ID] = r
	o.holders[rec.Hash] = r
	a := &attempt{o: o, id: rec.ID, inv: inv, pr: rec.PaymentRequest, hash: rec.Hash,
		mayHaveSent: mayHaveSent, leaseFresh: leaseFresh}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.drive(r, a)
	}()
	return r
}

// drive runs one attempt to its end and stores its answer: published by a
// worker waiting for it, or by the Owner when none is.
func (o *Owner) drive(r *run, a *attempt) {
	ctx := o.ctx
	err := a.run(ctx)
	if err == nil {
		r.result = o.finish(ctx, r, End{ID: r.id, Owner: o.id, State: a.state}, r.hash, a.out)
	}
	o.mu.Lock()
	delete(o.runs, r.id)
	if o.holders[r.hash] == r {
		delete(o.holders, r.hash)
	}
	o.mu.Unlock()
	close(r.done)
	if err == nil {
		o.wake(ctx, r.hash)
	}
}

// finish seals the outcome and ends the request in the Store, then
// publishes the result unless a worker waiting for it does. It returns the
// stored result, or nil when this owner has no answer to give.
func (o *Owner) finish(ctx context.Context, r *run, e End, hash lightning.Hash, out Outcome) []byte {
	value, err := o.Seal(e.ID, hash, out)
	if err != nil {
		o.Log.Error("sealing a payment's result", "request_id", e.ID, "error", err)
		return nil
	}
	e.Result = value
	o.mu.Lock()
	if r != nil && r.waiters > 0 {
		r.ending = true // the waiters stay for the answer and publish it
	} else {
		e.Unpublished = true
	}
	o.mu.Unlock()
	rec, err := o.Store.End(ctx, e)
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			o.Log.Warn("a payment's request was taken over by another owner; it answers", "request_id", e.ID)
		}
		return nil
	}
	if e.Unpublished && rec.Unpublished {
		o.publish(ctx, rec)
	}
	return rec.Result
}

// publish publishes a stored result no worker waits for, until the broker
// acknowledges it or the Owner stops (then the next owner publishes it).
func (o *Owner) publish(ctx context.Context, rec Record) {
	b := backoff.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := o.Publish(ctx, rec)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		o.Log.Warn("publishing a payment's result failed; trying again", "request_id", rec.ID, "error", err)
		if b.Wait(ctx) != nil {
			return
		}
	}
	if err := o.Store.Published(ctx, rec.ID); err != nil && ctx.Err() == nil {
		o.Log.Error("recording a published result", "request_id", rec.ID, "error", err)
	}
}

// await waits for a run's answer for at most HandOff, or returns Deferred.
func (o *Owner) await(ctx context.Context, r *run) (Answer, error) {
	o.mu.Lock()
	if r.waiters >= o.MaxWaiters {
		o.mu.Unlock()
		return Answer{Deferred: true}, nil
	}
	r.waiters++
	o.mu.Unlock()
	leave := func() {
		o.mu.Lock()
		r.waiters--
		o.mu.Unlock()
	}
	t := time.NewTimer(o.HandOff)
	defer t.Stop()
	select {
	case <-r.done:
	case <-ctx.Done():
		leave()
		return Answer{}, ctx.Err()
	case <-t.C:
		o.mu.Lock()
		ending := r.ending
		if !ending {
			r.waiters--
		}
		o.mu.Unlock()
		if !ending {
			return Answer{Deferred: true}, nil
		}
		select { // its End is being written with this worker to publish it
		case <-r.done:
		case <-ctx.Done():
			leave()
			return Answer{}, ctx.Err()
		}
	}
	leave()
	if r.result == nil {
		// Stopped, or taken over: another owner answers.
		return Answer{Deferred: true}, nil
	}
	return Answer{Result: r.result}, nil
}

// waitForHolder waits up to HandOff for the request holding the invoice to
// end, and reports whether it did. At most MaxWaiters workers wait for one
// invoice; the others leave at once.
func (o *Owner) waitForHolder(ctx context.Context, h Record) bool {
	o.mu.Lock()
	r := o.holders[h.Hash]
	if o.queued[h.Hash] >= o.MaxWaiters {
		o.mu.Unlock()
		return false
	}
	o.queued[h.Hash]++
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		if o.queued[h.Hash]--; o.queued[h.Hash] == 0 {
			delete(o.queued, h.Hash)
		}
		o.mu.Unlock()
	}()
	t := time.NewTimer(o.HandOff)
	defer t.Stop()
	if r != nil {
		select {
		case <-r.done:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return false
	}
	// Held by another instance: look at the ledger now and then.
	b := backoff.Backoff{Initial: 50 * time.Millisecond, Max: time.Second}
	for {
		select {
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		case <-time.After(b.Next()):
		}
		cur, err := o.Store.Holder(ctx, h.Hash)
		if errors.Is(err, ErrNotRecorded) || (err == nil && (cur.ID != h.ID || cur.State != Sending)) {
			return true
		}
	}
}

// alreadyPaid ends the Waiting request rec as already_paid.
func (o *Owner) alreadyPaid(ctx context.Context, rec Record, waited bool) (Answer, error) {
	out := Outcome{Err: core.Errorf(core.CodeAlreadyPaid, "invoice is already paid")}
	e := End{ID: rec.ID, Owner: o.id, State: Waiting}
	if !waited {
		// Answered by the Owner: finish publishes it.
		o.finish(ctx, nil, e, rec.Hash, out)
		return Answer{}, nil
	}
	value, err := o.Seal(rec.ID, rec.Hash, out)
	if err != nil {
		return Answer{}, err
	}
	e.Result = value
	stored, err := o.Store.End(ctx, e)
	if errors.Is(err, ErrLeaseLost) {
		return Answer{Deferred: true}, nil
	}
	if err != nil {
		return Answer{}, err
	}
	return Answer{Result: stored.Result}, nil
}

func (o *Owner) markWaiting(hash lightning.Hash) {
	o.mu.Lock()
	if _, ok := o.waiting[hash]; !ok {
		o.waiting[hash] = o.now()
	}
	o.mu.Unlock()
}

// wake resumes the Waiting requests of this instance for a hash whose
// holder ended here.
func (o *Owner) wake(ctx context.Context, hash lightning.Hash) {
	o.mu.Lock()
	_, ok := o.waiting[hash]
	o.mu.Unlock()
	if ok {
		o.resumeWaiters(ctx, hash)
	}
}

// relet re-asserts this owner's lease on request id before a send.
func (o *Owner) relet(ctx context.Context, id string) error {
	_, ok, err := o.Store.Take(ctx, id, o.id, o.now().Add(o.Lease))
	if err != nil {
		return errStopped
	}
	if !ok {
		o.Log.Warn("a payment's request is owned by another instance now; leaving it to that one", "request_id", id)
		return errStopped
	}
	return nil
}

// sendPayment sends a payment, trying a node that cannot be reached (the
// request never left this process) for up to the retry budget.
func (o *Owner) sendPayment(ctx context.Context, p lightning.PaymentParams) (pmt lightning.Payment, err error) {
	err = o.withBudget(ctx, func(ctx context.Context) (err error) {
		pmt, err = o.Node.SendPayment(ctx, p)
		return err
	})
	return pmt, err
}

// withBudget calls fn until it returns anything but ErrUnavailable, for at
// most the retry budget; then it returns node_unavailable, wrapping fn's
// last error.
func (o *Owner) withBudget(ctx context.Context, fn func(context.Context) error) error {
	deadline := o.now().Add(o.retryBudget())
	b := backoff.Backoff{Initial: o.Retry.Initial, Max: o.Retry.Max}
	for {
		err := fn(ctx)
		if !errors.Is(err, lightning.ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		wait := min(b.Next(), deadline.Sub(o.now()))
		if wait <= 0 {
			return core.Wrap(core.CodeNodeUnavailable, err, fmt.Sprintf("the Lightning node could not be reached within %s", o.retryBudget()))
		}
		if backoff.Sleep(ctx, wait) != nil {
			return err
		}
	}
}
