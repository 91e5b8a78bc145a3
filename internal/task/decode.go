package task

import (
	"context"

	"lightning-service/internal/lightning"
	"lightning-service/internal/wire"
)

// Decode decodes a BOLT11 payment request locally, against the node's
// network: no RPC, so it answers while the node is down (once the network is
// known). The message has every field of LND's PayReq.
func Decode(ctx context.Context, net *Network, payload []byte) Outcome {
	pr, err := wire.PaymentRequest(payload)
	if err != nil {
		return failed(err)
	}
	params, err := net.Params(ctx)
	if err != nil {
		return failed(err)
	}
	req, err := lightning.Decode(string(pr), params)
	if err != nil {
		return failed(err)
	}
	return Outcome{Message: req}
}
