package task

import (
	"context"
	"fmt"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
	"lightning-service/internal/wire"
)

// Payer answers pay requests: it reads the invoice and hands the request to
// the owner of payments, which claims the invoice in the ledger, pays it
// once, and answers.
type Payer struct {
	Owner   *payment.Owner
	Network *Network
}

// Pay answers a pay request whose record has key and headers. The Outcome
// is Stored (sealed and kept in the ledger already) or Deferred (the owner
// answers when the payment ends) for a request the owner took; it is an
// ordinary outcome for one answered without a claim.
func (p *Payer) Pay(ctx context.Context, req *wire.Request, key []byte, headers []payment.Header) Outcome {
	pr, err := wire.PaymentRequest(req.Payload)
	if err != nil {
		return failed(err)
	}
	inv, err := p.Network.Decode(ctx, string(pr))
	if err != nil {
		return failed(err)
	}
	hash := lightning.Hash(inv.PaymentHash)
	if !inv.HasAmount() {
		out := failed(core.Errorf(core.CodeAmountRequired, "the invoice has no amount; the service pays only invoices that state one"))
		out.PaymentHash = hash.String()
		return out
	}
	a, err := p.Owner.Pay(ctx, payment.Request{
		ID: req.ID(), Task: string(req.TaskName), Invoice: inv, PaymentRequest: string(pr), Key: key, Headers: headers,
	})
	switch {
	case err != nil:
		return failed(err)
	case a.Deferred:
		return Outcome{Deferred: true, PaymentHash: hash.String()}
	case a.Result != nil:
		return Outcome{Stored: a.Result, PaymentHash: hash.String()}
	}
	return PayOutcome(*a.Unclaimed, hash)
}

// PayOutcome turns how a pay request ended into the outcome callers see.
func PayOutcome(o payment.Outcome, hash lightning.Hash) Outcome {
	out := Outcome{PaymentHash: hash.String()}
	switch {
	case o.Err != nil:
		out.Err = o.Err
	case o.Payment.Status == lightning.PaymentSucceeded:
		out.Message = newPaymentMessage(o.Payment)
	case o.Payment.Status == lightning.PaymentFailed:
		out.Err = failureError(o.Payment.Failure)
	default:
		out.Err = fmt.Errorf("payment %s reported as final while %s", hash, o.Payment.Status)
	}
	return out
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
