package regtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
)

// ServiceRPCs are the only RPCs lightning-service calls: the least a
// macaroon for it must allow.
var ServiceRPCs = []string{
	"/lnrpc.Lightning/GetInfo",
	"/lnrpc.Lightning/AddInvoice",
	"/lnrpc.Lightning/LookupInvoice",
	"/routerrpc.Router/SendPaymentV2",
	"/routerrpc.Router/TrackPaymentV2",
}

// ServiceSettings bakes a macaroon allowing exactly ServiceRPCs, writes it
// to macaroonPath, and returns the settings (environment variables) that
// point lightning-service at nd with it.
func (nd *Node) ServiceSettings(ctx context.Context, macaroonPath string) (map[string]string, error) {
	mac, err := nd.BakeMacaroon(ctx, macaroonPath, ServiceRPCs...)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"LIGHTNING_LND_ADDRESS":  nd.RPCAddr,
		"LIGHTNING_LND_TLS_CERT": nd.TLSCertPath,
		"LIGHTNING_LND_MACAROON": mac,
		"LIGHTNING_NETWORK":      "regtest",
	}, nil
}

// BakeMacaroon bakes a macaroon allowing exactly the given RPC URIs, writes
// it to path and returns the path.
func (nd *Node) BakeMacaroon(ctx context.Context, path string, uris ...string) (string, error) {
	perms := make([]*lnrpc.MacaroonPermission, len(uris))
	for i, u := range uris {
		perms[i] = &lnrpc.MacaroonPermission{Entity: "uri", Action: u}
	}
	resp, err := nd.Lightning.BakeMacaroon(ctx, &lnrpc.BakeMacaroonRequest{Permissions: perms})
	if err != nil {
		return "", fmt.Errorf("%s: baking a macaroon: %w", nd.Name, err)
	}
	mac, err := hex.DecodeString(resp.Macaroon)
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, mac, 0o600)
}

// AddInvoice makes an invoice on the node; private ones carry route hints
// for the node's private channels.
func (nd *Node) AddInvoice(ctx context.Context, sats int64, memo string, private bool) (*lnrpc.AddInvoiceResponse, error) {
	resp, err := nd.Lightning.AddInvoice(ctx, &lnrpc.Invoice{Value: sats, Memo: memo, Private: private})
	if err != nil {
		return nil, fmt.Errorf("%s: AddInvoice: %w", nd.Name, err)
	}
	return resp, nil
}

// Pay pays a payment request from the node and waits until the payment is
// final.
func (nd *Node) Pay(ctx context.Context, paymentRequest string) (*lnrpc.Payment, error) {
	stream, err := nd.Router.SendPaymentV2(ctx, &routerrpc.SendPaymentRequest{
		PaymentRequest: paymentRequest,
		FeeLimitSat:    1000,
		TimeoutSeconds: 60,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: SendPaymentV2: %w", nd.Name, err)
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("%s: paying: %w", nd.Name, err)
		}
		switch p.Status {
		case lnrpc.Payment_SUCCEEDED:
			return p, nil
		case lnrpc.Payment_FAILED:
			return p, fmt.Errorf("%s: payment failed: %s", nd.Name, p.FailureReason)
		}
	}
}
