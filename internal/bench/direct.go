package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
)

// directOp is the task's work called on alice's LND directly, over the one
// gRPC connection the harness holds: the limit the service is held to.
func (e *env) directOp(task string, src *source) func(context.Context, int) (time.Duration, error) {
	alice := e.network.Alice
	return func(ctx context.Context, _ int) (time.Duration, error) {
		pr, err := src.invoice()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		switch task {
		case "decode":
			_, err = alice.Lightning.DecodePayReq(ctx, &lnrpc.PayReqString{PayReq: pr})
		case "create":
			_, err = alice.Lightning.AddInvoice(ctx, &lnrpc.Invoice{Value: createAmountSat, Memo: createMemo, Expiry: createExpirySec})
		case "pay":
			err = pay(ctx, alice.Router, pr)
		}
		return time.Since(start), err
	}
}

// pay pays pr as the service does (same fee limit and timeout) and waits
// until the payment is final.
func pay(ctx context.Context, router routerrpc.RouterClient, pr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := router.SendPaymentV2(ctx, &routerrpc.SendPaymentRequest{
		PaymentRequest: pr, FeeLimitSat: 10, TimeoutSeconds: 60,
	})
	if err != nil {
		return err
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			return err
		}
		switch p.Status {
		case lnrpc.Payment_SUCCEEDED:
			return nil
		case lnrpc.Payment_FAILED:
			return fmt.Errorf("payment failed: %s", p.FailureReason)
		}
	}
}
