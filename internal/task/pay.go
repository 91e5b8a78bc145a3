package task

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/keylock"
	"lightning-service/internal/ledger"
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

// Payer pays invoices. The node pays a payment hash at most once; the
// ledger adds which request holds each hash — the one paying it or the one
// that paid it — so that a request delivered again gets its own payment's
// outcome, another request for an invoice already paid gets already_paid, and
// a request for an invoice another request is paying waits for that outcome.
type Payer struct {
	Node     lightning.Node
	Ledger   ledger.Ledger
	Network  *Network
	FeeLimit FeeLimit
	Timeout  time.Duration // how long the node may look for a route
	Retry    Retry
	Now      func() time.Time
	Log      *slog.Logger

	locks keylock.Map[lightning.Hash] // one request per invoice at a time in this process
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
	out := p.pay(ctx, req.ID(), string(pr), inv)
	out.PaymentHash = hex.EncodeToString(inv.PaymentHash[:])
	return out
}

// Outcome answers a request whose payment is final, as if the request had
// waited for it: recovery uses it for payments it tracked to the end.
func (p *Payer) Outcome(pmt lightning.Payment) Outcome {
	out := answer(pmt)
	out.PaymentHash = hex.EncodeToString(pmt.Hash[:])
	return out
}

func (p *Payer) pay(ctx context.Context, id, pr string, inv lightning.PayReq) Outcome {
	if !inv.HasAmount() {
		return failed(core.Errorf(core.CodeAmountRequired, "the invoice has no amount; the service pays only invoices that state one"))
	}
	// Another request holds the invoice: wait for its outcome, polling the
	// ledger (the holder may be in another process, or a request of an
	// earlier run that Kafka has yet to deliver again), with the in-process
	// lock released so that the holder, if it is here, can proceed.
	backoff := 20 * time.Millisecond
	for {
		unlock, err := p.locks.Lock(ctx, inv.PaymentHash)
		if err != nil {
			return failed(err)
		}
		out, wait := p.attempt(ctx, id, pr, inv)
		unlock()
		if !wait {
			return out
		}
		if err := sleep(ctx, backoff); err != nil {
			return failed(err)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attempt answers the request, or reports that another request holds the
// invoice and is paying it.
func (p *Payer) attempt(ctx context.Context, id, pr string, inv lightning.PayReq) (out Outcome, wait bool) {
	hash := inv.PaymentHash
	hashHex := hex.EncodeToString(hash[:])
	if inv.Expired(p.Now()) {
		return p.expired(ctx, id, inv)
	}

	var claim ledger.Claim
	if err := ledger.Retry(ctx, p.Log, "claim payment", func(ctx context.Context) (err error) {
		claim, err = p.Ledger.ClaimPayment(ctx, id, hashHex)
		return err
	}); err != nil {
		return failed(err), false
	}
	if !claim.Mine(id) {
		if claim.Holder.PayState == ledger.Paid {
			return alreadyPaid(), false
		}
		return Outcome{}, true
	}

	if claim.Resumed {
		// An earlier delivery of this request claimed the invoice and may
		// have paid: its payment, if the node has one, is this request's.
		pmt, err := p.track(ctx, hash)
		if err == nil {
			return p.own(ctx, id, pmt), false
		}
		if !errors.Is(err, lightning.ErrPaymentNotFound) {
			return failed(err), false
		}
	}

	for {
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
		case err == nil:
			return p.own(ctx, id, pmt), false
		case errors.Is(err, lightning.ErrPaymentExists), errors.Is(err, lightning.ErrOutcomeUnknown):
			pmt, terr := p.track(ctx, hash)
			if errors.Is(terr, lightning.ErrPaymentNotFound) {
				continue // the lost request never reached the node: send again
			}
			if terr != nil {
				// The claim stays open: recovery tracks the payment to
				// its end.
				return failed(terr), false
			}
			// This request holds the invoice, so a payment it may have
			// sent (outcome unknown) or one a copy of it sent (resumed) is
			// its own; any other predates the ledger or was made by
			// another client of the node.
			if errors.Is(err, lightning.ErrOutcomeUnknown) || claim.Resumed {
				return p.own(ctx, id, pmt), false
			}
			if pmt.Status == lightning.PaymentFailed {
				continue // that attempt failed: this request may pay
			}
			p.endPayment(ctx, id, false)
			return alreadyPaid(), false
		case errors.Is(err, lightning.ErrUnavailable):
			p.endPayment(ctx, id, false) // nothing reached the node
			return failed(err), false
		default:
			// Refused by the node, or the call was abandoned: the claim
			// stays open until recovery confirms nothing was sent.
			return failed(err), false
		}
	}
}

// expired answers a request for an expired invoice: nothing is sent, but a
// request whose payment went through before the invoice expired gets its
// success again, and another request gets already_paid.
func (p *Payer) expired(ctx context.Context, id string, inv lightning.PayReq) (Outcome, bool) {
	hash := inv.PaymentHash
	expiredErr := failed(core.Errorf(core.CodeInvoiceExpired, "the invoice expired at %s", inv.ExpiresAt().UTC().Format(time.RFC3339)))
	var holder ledger.Entry
	err := ledger.Retry(ctx, p.Log, "read payment holder", func(ctx context.Context) (err error) {
		holder, err = p.Ledger.Holder(ctx, hex.EncodeToString(hash[:]))
		return err
	})
	switch {
	case err == nil && holder.ID == id:
		pmt, err := p.track(ctx, hash)
		if errors.Is(err, lightning.ErrPaymentNotFound) {
			p.endPayment(ctx, id, false)
			return expiredErr, false
		}
		if err != nil {
			return failed(err), false
		}
		return p.own(ctx, id, pmt), false
	case err == nil && holder.PayState == ledger.Paid:
		return alreadyPaid(), false
	case err == nil:
		return Outcome{}, true // another request is paying it
	case !errors.Is(err, ledger.ErrNotFound):
		return failed(err), false
	}
	// No request in the ledger holds it; the node may still have paid it
	// before the ledger knew (another client of the node, an older build).
	pmt, err := p.lookup(ctx, hash)
	if errors.Is(err, lightning.ErrPaymentNotFound) {
		return expiredErr, false
	}
	if err != nil {
		return failed(err), false
	}
	if pmt.Status == lightning.PaymentSucceeded {
		return alreadyPaid(), false
	}
	return expiredErr, false
}

// own answers with this request's own final payment, recording its outcome
// in the ledger first: a success keeps the invoice held, a failure frees it
// for another request.
func (p *Payer) own(ctx context.Context, id string, pmt lightning.Payment) Outcome {
	p.endPayment(ctx, id, pmt.Status == lightning.PaymentSucceeded)
	return answer(pmt)
}

// endPayment records the end of this request's payment. If the ledger
// cannot be reached before ctx ends, the claim stays open and recovery
// records it.
func (p *Payer) endPayment(ctx context.Context, id string, paid bool) {
	_ = ledger.Retry(ctx, p.Log, "end payment", func(ctx context.Context) error {
		return p.Ledger.EndPayment(ctx, id, paid)
	})
}

func alreadyPaid() Outcome {
	return failed(core.Errorf(core.CodeAlreadyPaid, "invoice is already paid"))
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

// Track is track for recovery: it waits until the payment is final.
func (p *Payer) Track(ctx context.Context, hash lightning.Hash) (lightning.Payment, error) {
	return p.track(ctx, hash)
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
