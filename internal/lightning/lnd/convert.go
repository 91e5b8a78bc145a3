package lnd

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"

	"lightning-service/internal/lightning"
)

// This file turns LND's protobufs into the typed values of package
// lightning, once, so that nothing past this package sees a protobuf.

func infoFromRPC(r *lnrpc.GetInfoResponse) (lightning.Info, error) {
	// LND reports exactly one chain, bitcoin, under its normalized network
	// name (lncfg.NormalizeNetwork: testnet3 is "testnet").
	if len(r.GetChains()) == 0 {
		return lightning.Info{}, fmt.Errorf("lnd GetInfo: no chains in the answer")
	}
	return lightning.Info{
		PubKey:  r.GetIdentityPubkey(),
		Alias:   r.GetAlias(),
		Network: r.GetChains()[0].GetNetwork(),
		Synced:  r.GetSyncedToChain() && r.GetSyncedToGraph(),
	}, nil
}

func invoiceFromRPC(r *lnrpc.Invoice) (lightning.Invoice, error) {
	hash, err := hashFromBytes(r.GetRHash())
	if err != nil {
		return lightning.Invoice{}, fmt.Errorf("lnd invoice r_hash: %w", err)
	}
	state, err := invoiceState(r.GetState())
	if err != nil {
		return lightning.Invoice{}, err
	}
	return lightning.Invoice{
		PaymentRequest: r.GetPaymentRequest(),
		Hash:           hash,
		ValueSat:       r.GetValue(),
		Memo:           r.GetMemo(),
		Expiry:         time.Duration(r.GetExpiry()) * time.Second,
		State:          state,
	}, nil
}

func invoiceState(s lnrpc.Invoice_InvoiceState) (lightning.InvoiceState, error) {
	switch s {
	case lnrpc.Invoice_OPEN:
		return lightning.InvoiceOpen, nil
	case lnrpc.Invoice_SETTLED:
		return lightning.InvoiceSettled, nil
	case lnrpc.Invoice_CANCELED:
		return lightning.InvoiceCanceled, nil
	case lnrpc.Invoice_ACCEPTED:
		return lightning.InvoiceAccepted, nil
	}
	return 0, fmt.Errorf("lnd invoice: unknown state %v", s)
}

func paymentFromRPC(r *lnrpc.Payment) (lightning.Payment, error) {
	hash, err := lightning.ParseHash(r.GetPaymentHash())
	if err != nil {
		return lightning.Payment{}, fmt.Errorf("lnd payment payment_hash: %w", err)
	}
	p := lightning.Payment{
		Hash:      hash,
		ValueMsat: r.GetValueMsat(),
		FeeMsat:   r.GetFeeMsat(),
		Status:    paymentStatus(r.GetStatus()),
		CreatedAt: time.Unix(0, r.GetCreationTimeNs()),
	}
	switch p.Status {
	case lightning.PaymentSucceeded:
		if p.Preimage, err = lightning.ParseHash(r.GetPaymentPreimage()); err != nil {
			return lightning.Payment{}, fmt.Errorf("lnd payment payment_preimage: %w", err)
		}
		for _, h := range r.GetHtlcs() {
			if h.GetStatus() == lnrpc.HTLCAttempt_SUCCEEDED && h.GetRoute() != nil {
				if p.Route, err = routeFromRPC(h.GetRoute()); err != nil {
					return lightning.Payment{}, err
				}
				break
			}
		}
	case lightning.PaymentFailed:
		p.Failure = failureReason(r.GetFailureReason())
	}
	return p, nil
}

// paymentStatus maps INITIATED, which LND sends only when configured to,
// and the deprecated UNKNOWN to in flight: neither is final.
func paymentStatus(s lnrpc.Payment_PaymentStatus) lightning.PaymentStatus {
	switch s {
	case lnrpc.Payment_SUCCEEDED:
		return lightning.PaymentSucceeded
	case lnrpc.Payment_FAILED:
		return lightning.PaymentFailed
	}
	return lightning.PaymentInFlight
}

// failureReason maps a failed payment's reason. A failed payment always has
// one; NONE or a reason newer than this code is reported as a generic error.
func failureReason(r lnrpc.PaymentFailureReason) lightning.FailureReason {
	switch r {
	case lnrpc.PaymentFailureReason_FAILURE_REASON_TIMEOUT:
		return lightning.FailureTimeout
	case lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE:
		return lightning.FailureNoRoute
	case lnrpc.PaymentFailureReason_FAILURE_REASON_INCORRECT_PAYMENT_DETAILS:
		return lightning.FailureIncorrectPaymentDetails
	case lnrpc.PaymentFailureReason_FAILURE_REASON_INSUFFICIENT_BALANCE:
		return lightning.FailureInsufficientBalance
	case lnrpc.PaymentFailureReason_FAILURE_REASON_CANCELED:
		return lightning.FailureCanceled
	}
	return lightning.FailureError
}

func routeFromRPC(r *lnrpc.Route) (*lightning.Route, error) {
	route := &lightning.Route{
		TotalTimeLock: r.GetTotalTimeLock(),
		TotalFeesMsat: r.GetTotalFeesMsat(),
		TotalAmtMsat:  r.GetTotalAmtMsat(),
		Hops:          make([]lightning.Hop, 0, len(r.GetHops())),
	}
	for i, h := range r.GetHops() {
		hop := lightning.Hop{
			ChanID:           h.GetChanId(),
			AmtToForwardMsat: h.GetAmtToForwardMsat(),
			FeeMsat:          h.GetFeeMsat(),
			Expiry:           h.GetExpiry(),
			PubKey:           h.GetPubKey(),
		}
		// Deprecated in lightning.proto, but LND still fills them and the
		// pay result publishes them.
		hop.ChanCapacity = h.GetChanCapacity() //lint:ignore SA1019 see above
		hop.TLVPayload = h.GetTlvPayload()     //lint:ignore SA1019 see above
		if m := h.GetMppRecord(); m != nil {
			if len(m.GetPaymentAddr()) != 32 {
				return nil, fmt.Errorf("lnd route hop %d: mpp_record payment_addr has %d bytes, want 32", i, len(m.GetPaymentAddr()))
			}
			hop.MPP = &lightning.MPPRecord{TotalAmtMsat: m.GetTotalAmtMsat()}
			copy(hop.MPP.PaymentAddr[:], m.GetPaymentAddr())
		}
		route.Hops = append(route.Hops, hop)
	}
	return route, nil
}

func hashFromBytes(b []byte) (lightning.Hash, error) {
	var h lightning.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%d bytes (%s), want %d", len(b), hex.EncodeToString(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}
