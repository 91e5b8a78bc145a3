package payment

import (
	"context"
	"errors"
	"time"

	"lightning-service/internal/backoff"
	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
)

// Outcome is how a pay request ends.
type Outcome struct {
	// Payment is the request's own final payment (Succeeded or Failed)
	// when Err is nil.
	Payment lightning.Payment
	// Err is an end that is no payment of the request's own: already_paid,
	// invoice_expired, node_unavailable, or the node's refusal to send.
	Err error
}

// attempt is one request's payment, from its claim to its end, as a state
// machine its owner runs top to bottom:
//
//	sending ──sent, outcome unknown──▶ tracking ──final──▶ ended
//	   ▲                                  │
//	   └──────not found / failed, ────────┘
//	          not known to be ours
//
// The one rule it keeps: once a payment of this request may be on the node
// (mayHaveSent), nothing but the node's own final word on a payment known to
// be this request's ends it. "Not found" or an old failure after a possible
// send proves nothing (the node may not have registered the payment yet), so
// the attempt sends again and lets the node refuse a duplicate: LND starts a
// payment for a hash only when none is in flight or succeeded, so at most one
// succeeds. Errors while reading the outcome are never an answer.
type attempt struct {
	o    *Owner
	id   string
	inv  lightning.PayReq
	pr   string
	hash lightning.Hash

	// mayHaveSent: a payment of this request may be on the node, so
	// every payment of the hash there is this request's.
	mayHaveSent bool
	// following: the payment the node reports is known to be this
	// request's (the node refused a duplicate of it), so its failure is
	// this request's failure.
	following bool
	// foreign: the node refused the first send because it has a payment
	// of the hash that predates this request's claim.
	foreign bool
	// refused is the node's last refusal to start the payment, counted in
	// refusals: sent twice and still refused, with nothing on the node,
	// it is the answer.
	refused  error
	refusals int
	// leaseFresh: the lease was written just before the first send.
	leaseFresh bool

	out   Outcome
	state State // the hash's outcome once ended: Paid or Unpaid
}

type step int

const (
	stepSending step = iota
	stepTracking
	stepEnded
)

// errStopped ends an attempt without an answer: the owner is stopping, or
// it no longer owns the request. Its lease then lapses and another owner
// takes it over.
var errStopped = errors.New("payment: stopped without an answer")

// run drives the attempt until it ends, or returns errStopped.
func (a *attempt) run(ctx context.Context) error {
	next := stepSending
	if a.mayHaveSent {
		next = stepTracking
	}
	for next != stepEnded {
		var err error
		switch next {
		case stepSending:
			next, err = a.send(ctx)
		case stepTracking:
			next, err = a.track(ctx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *attempt) end(out Outcome, state State) (step, error) {
	a.out, a.state = out, state
	return stepEnded, nil
}

// send asks the node to pay the invoice.
func (a *attempt) send(ctx context.Context) (step, error) {
	o := a.o
	if !a.mayHaveSent && a.inv.Expired(o.now()) {
		return a.end(Outcome{Err: expiredError(a.inv)}, Unpaid)
	}
	// Every send but the first after a claim re-asserts the lease first,
	// so that an owner that lost the request sends nothing more for it.
	if !a.leaseFresh {
		if err := o.relet(ctx, a.id); err != nil {
			return 0, err
		}
	}
	a.leaseFresh = false
	a.following = false

	pmt, err := o.sendPayment(ctx, lightning.PaymentParams{
		PaymentRequest: a.pr,
		FeeLimitSat:    o.FeeLimit.For(a.inv.NumMsat),
		Timeout:        o.RouteTimeout,
	})
	switch {
	case err == nil:
		// The request's own stream reported its payment final.
		return a.payment(pmt)
	case ctx.Err() != nil:
		return 0, errStopped
	case errors.Is(err, lightning.ErrPaymentExists):
		if !a.mayHaveSent {
			a.foreign = true
		} else {
			a.following = true
		}
		return stepTracking, nil
	case errors.Is(err, lightning.ErrOutcomeUnknown):
		a.mayHaveSent = true
		return stepTracking, nil
	case errors.Is(err, lightning.ErrUnavailable):
		// Nothing left this process within the retry budget.
		if a.mayHaveSent {
			return stepTracking, nil
		}
		return a.end(Outcome{Err: err}, Unpaid)
	default:
		// A refusal, before the payment started, as far as this process
		// can tell: the answer only once the node has nothing for the
		// hash and refuses a second time.
		a.mayHaveSent = true
		a.refused = err
		a.refusals++
		o.Log.Warn("the node refused a payment; checking it has none before answering",
			"request_id", a.id, "payment_hash", a.hash.String(), "refusals", a.refusals, "error", err)
		return stepTracking, nil
	}
}

// track waits for the final state of the hash's payment on the node, for as
// long as it takes.
func (a *attempt) track(ctx context.Context) (step, error) {
	o := a.o
	b := backoff.Backoff{Initial: o.Retry.Initial, Max: o.Retry.Max}
	for {
		pmt, err := o.Node.TrackPayment(ctx, a.hash)
		switch {
		case ctx.Err() != nil:
			return 0, errStopped
		case err == nil && a.foreign:
			a.foreign = false
			if pmt.Status == lightning.PaymentSucceeded {
				return a.end(Outcome{Err: core.Errorf(core.CodeAlreadyPaid, "invoice is already paid")}, Unpaid)
			}
			return stepSending, nil // that payment failed: this request may pay
		case err == nil && (pmt.Status == lightning.PaymentSucceeded || a.following):
			return a.payment(pmt)
		case err == nil, errors.Is(err, lightning.ErrPaymentNotFound):
			// Nothing on the node, or a failure not known to be this
			// request's: send again, and let the node refuse a duplicate.
			a.foreign = false
			if a.refusals >= 2 {
				return a.end(Outcome{Err: a.refusal()}, Unpaid)
			}
			if a.refusals > 0 {
				if err := backoff.Sleep(ctx, o.registrationGrace()); err != nil {
					return 0, errStopped
				}
			}
			return stepSending, nil
		}
		// Reading the outcome failed (node unreachable, the stream
		// broke, an odd error): never a reason to give up on it.
		o.Log.Warn("tracking a payment failed; trying again", "request_id", a.id, "payment_hash", a.hash.String(), "error", err)
		if err := b.Wait(ctx); err != nil {
			return 0, errStopped
		}
	}
}

// payment ends the attempt with the request's own final payment.
func (a *attempt) payment(pmt lightning.Payment) (step, error) {
	switch pmt.Status {
	case lightning.PaymentSucceeded:
		return a.end(Outcome{Payment: pmt}, Paid)
	case lightning.PaymentFailed:
		return a.end(Outcome{Payment: pmt}, Unpaid)
	}
	// A node that calls an in-flight payment final breaks its contract;
	// keep following it.
	a.mayHaveSent = true
	return stepTracking, nil
}

// refusal is the answer for a payment the node refused twice.
func (a *attempt) refusal() error {
	if a.inv.Expired(a.o.now()) {
		return expiredError(a.inv)
	}
	return a.refused
}

func expiredError(inv lightning.PayReq) error {
	return core.Errorf(core.CodeInvoiceExpired, "the invoice expired at %s", inv.ExpiresAt().UTC().Format(time.RFC3339))
}
