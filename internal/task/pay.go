package task

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/wire"
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

// Payer pays invoices. The node pays a payment hash at most once; Payer adds
// that a redelivered request gets its own payment's outcome again, while
// another request for an invoice already paid gets already_paid.
type Payer struct {
	Node     lightning.Node
	Network  *Network
	FeeLimit FeeLimit
	Timeout  time.Duration // how long the node may look for a route
	Retry    Retry
	Now      func() time.Time
	Log      *slog.Logger

	owners owners
	locks  hashLocks
}

// Pay answers a pay request.
func (p *Payer) Pay(ctx context.Context, req *wire.Request) Outcome {
	pr, err := wire.PaymentRequest(req.Payload)
	if err != nil {
		return failed(err)
	}
	params, err := p.Network.Params(ctx)
	if err != nil {
		return failed(err)
	}
	inv, err := lightning.Decode(string(pr), params)
	if err != nil {
		return failed(err)
	}
	out := p.pay(ctx, req, string(pr), inv)
	out.PaymentHash = hex.EncodeToString(inv.PaymentHash[:])
	return out
}

func (p *Payer) pay(ctx context.Context, req *wire.Request, pr string, inv lightning.PayReq) Outcome {
	hash := inv.PaymentHash
	if !inv.HasAmount() {
		return failed(core.Errorf(core.CodeAmountRequired, "the invoice has no amount; the service pays only invoices that state one"))
	}
	if inv.Expired(p.Now()) {
		// A redelivered request whose payment went through before the
		// invoice expired must get its success again, so ask the node
		// before refusing. Nothing is sent.
		pmt, err := p.lookup(ctx, hash)
		if errors.Is(err, lightning.ErrPaymentNotFound) {
			return failed(core.Errorf(core.CodeInvoiceExpired, "the invoice expired at %s", inv.ExpiresAt().UTC().Format(time.RFC3339)))
		}
		if err != nil {
			return failed(err)
		}
		if pmt.Status == lightning.PaymentFailed && !p.isOwn(req, pmt) {
			return failed(core.Errorf(core.CodeInvoiceExpired, "the invoice expired at %s", inv.ExpiresAt().UTC().Format(time.RFC3339)))
		}
		return p.answerExisting(req, pmt)
	}

	// One request at a time per invoice in this process: a request for an
	// invoice another request is paying waits for that outcome, then answers
	// already_paid or, if it failed, pays.
	unlock, err := p.locks.lock(ctx, hash)
	if err != nil {
		return failed(err)
	}
	defer unlock()

	id := req.ID()
	for {
		sent := time.Now()
		var pmt lightning.Payment
		err := p.Retry.Do(ctx, func(ctx context.Context) (err error) {
			pmt, err = p.Node.SendPayment(ctx, lightning.PaymentParams{
				PaymentRequest: pr,
				FeeLimitSat:    p.FeeLimit.For(inv.NumMsat),
				Timeout:        p.Timeout,
			})
			return err
		})
		switch {
		case err == nil: // this request's own payment
			p.owners.set(hash, id)
			return answer(pmt)
		case errors.Is(err, lightning.ErrPaymentExists), errors.Is(err, lightning.ErrOutcomeUnknown):
			pmt, terr := p.track(ctx, hash)
			if errors.Is(terr, lightning.ErrPaymentNotFound) {
				continue // the lost request never reached the node: send again
			}
			if terr != nil {
				return failed(terr)
			}
			if errors.Is(err, lightning.ErrOutcomeUnknown) && !pmt.CreatedAt.Before(sent.Add(-time.Second)) {
				p.owners.set(hash, id) // the lost request did reach the node
			}
			if pmt.Status == lightning.PaymentFailed && !p.isOwn(req, pmt) {
				continue // another request's attempt failed: this one may pay
			}
			return p.answerExisting(req, pmt)
		default:
			return failed(err)
		}
	}
}

// track waits for the final state of a payment the node has, for as long as
// it takes: a payment whose outcome is unknown is never reported as failed.
// Only ctx (shutdown, partition revoked) ends the wait, and then nothing is
// published and the request is redelivered.
func (p *Payer) track(ctx context.Context, hash lightning.Hash) (lightning.Payment, error) {
	backoff := p.Retry.Initial
	if backoff <= 0 {
		backoff = DefaultRetry.Initial
	}
	for {
		pmt, err := p.Node.TrackPayment(ctx, hash)
		if !errors.Is(err, lightning.ErrUnavailable) && !errors.Is(err, lightning.ErrOutcomeUnknown) {
			return pmt, err
		}
		p.Log.Warn("tracking payment: node unreachable, retrying", "payment_hash", hex.EncodeToString(hash[:]), "error", err)
		if err := sleep(ctx, backoff); err != nil {
			return pmt, err
		}
		backoff = min(2*backoff, max(p.Retry.Max, DefaultRetry.Max))
	}
}

// lookup returns a payment the node has, final, within the retry budget.
func (p *Payer) lookup(ctx context.Context, hash lightning.Hash) (pmt lightning.Payment, err error) {
	err = p.Retry.Do(ctx, func(ctx context.Context) error {
		pmt, err = p.Node.TrackPayment(ctx, hash)
		if errors.Is(err, lightning.ErrOutcomeUnknown) {
			// Tracking changes nothing on the node: safe to ask again.
			err = fmt.Errorf("%w: %w", lightning.ErrUnavailable, err)
		}
		return err
	})
	return pmt, err
}

// answerExisting answers with a payment the node already had when this
// request asked: its own (a redelivery) gets the payment's outcome, another
// request's success gets already_paid.
func (p *Payer) answerExisting(req *wire.Request, pmt lightning.Payment) Outcome {
	if p.isOwn(req, pmt) {
		return answer(pmt)
	}
	if pmt.Status == lightning.PaymentSucceeded {
		return failed(core.Errorf(core.CodeAlreadyPaid, "invoice is already paid"))
	}
	return answer(pmt)
}

// isOwn reports whether pmt was started by this request. While the service
// runs it knows which request started each payment; after a restart it
// judges by time: a payment created before the request was signed cannot be
// its own.
func (p *Payer) isOwn(req *wire.Request, pmt lightning.Payment) bool {
	if owner, ok := p.owners.get(pmt.Hash); ok {
		return owner == req.ID()
	}
	return !pmt.CreatedAt.Before(req.Timestamp)
}

// answer turns a final payment into the outcome callers see.
func answer(pmt lightning.Payment) Outcome {
	switch pmt.Status {
	case lightning.PaymentSucceeded:
		return Outcome{Message: newPaymentMessage(pmt)}
	case lightning.PaymentFailed:
		return failed(failureError(pmt.Failure))
	}
	return failed(fmt.Errorf("payment %x reported as final while %s", pmt.Hash, pmt.Status))
}

func failureError(r lightning.FailureReason) error {
	switch r {
	case lightning.FailureNoRoute:
		return core.Errorf(core.CodeNoRoute, "no route to the destination within the fee limit")
	case lightning.FailureTimeout:
		return core.Errorf(core.CodeTimeout, "no route found before the payment timeout")
	case lightning.FailureInsufficientBalance:
		return core.Errorf(core.CodeInsufficientBalance, "not enough outbound liquidity to pay the invoice")
	case lightning.FailureIncorrectPaymentDetails:
		return core.Errorf(core.CodeIncorrectPaymentDetails, "the receiver rejected the payment hash, amount or final CLTV")
	}
	return fmt.Errorf("payment failed: %s", r)
}

// owners remembers which request made the payment of each hash, for a
// bounded number of recent hashes.
type owners struct {
	mu    sync.Mutex
	byKey map[lightning.Hash]string
	order []lightning.Hash
}

const maxOwners = 100_000

func (o *owners) set(h lightning.Hash, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byKey == nil {
		o.byKey = make(map[lightning.Hash]string)
	}
	if _, ok := o.byKey[h]; !ok {
		if len(o.order) == maxOwners {
			delete(o.byKey, o.order[0])
			o.order = o.order[1:]
		}
		o.order = append(o.order, h)
	}
	o.byKey[h] = id
}

func (o *owners) get(h lightning.Hash) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	id, ok := o.byKey[h]
	return id, ok
}

// hashLocks serialises the requests paying one invoice.
type hashLocks struct {
	mu    sync.Mutex
	byKey map[lightning.Hash]*hashLock
}

type hashLock struct {
	ch      chan struct{} // holds a token while locked
	waiters int
}

// lock waits until no other request holds h, or ctx ends.
func (l *hashLocks) lock(ctx context.Context, h lightning.Hash) (unlock func(), err error) {
	l.mu.Lock()
	if l.byKey == nil {
		l.byKey = make(map[lightning.Hash]*hashLock)
	}
	hl := l.byKey[h]
	if hl == nil {
		hl = &hashLock{ch: make(chan struct{}, 1)}
		l.byKey[h] = hl
	}
	hl.waiters++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		if hl.waiters--; hl.waiters == 0 {
			delete(l.byKey, h)
		}
		l.mu.Unlock()
	}
	select {
	case hl.ch <- struct{}{}:
		return func() { <-hl.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
