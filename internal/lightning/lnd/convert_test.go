package lnd

import (
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"

	"lightning-service/internal/lightning"
)

var (
	hashHex     = strings.Repeat("ab", 32)
	preimageHex = strings.Repeat("cd", 32)
	created     = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
)

func mustHash(t *testing.T, s string) lightning.Hash {
	t.Helper()
	h, err := lightning.ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func rpcRoute(amt int64) *lnrpc.Route {
	return &lnrpc.Route{
		TotalTimeLock: 800, TotalFeesMsat: 1500, TotalAmtMsat: amt,
		Hops: []*lnrpc.Hop{
			{ChanId: 1 << 40, ChanCapacity: 5_000_000, AmtToForwardMsat: amt - 1500, FeeMsat: 1500, Expiry: 760, PubKey: "02aa", TlvPayload: true},
			{
				ChanId: 7, ChanCapacity: 1_000_000, AmtToForwardMsat: amt - 1500, Expiry: 720, PubKey: "03bb", TlvPayload: true,
				MppRecord: &lnrpc.MPPRecord{PaymentAddr: []byte(strings.Repeat("\x07", 32)), TotalAmtMsat: 2 * (amt - 1500)},
			},
		},
	}
}

func TestPaymentFromRPCSucceeded(t *testing.T) {
	got, err := paymentFromRPC(&lnrpc.Payment{
		PaymentHash: hashHex, PaymentPreimage: preimageHex,
		ValueSat: 2000, ValueMsat: 2_000_000, FeeSat: 3, FeeMsat: 3000,
		Status: lnrpc.Payment_SUCCEEDED, CreationTimeNs: created.UnixNano(),
		FailureReason: lnrpc.PaymentFailureReason_FAILURE_REASON_NONE,
		Htlcs: []*lnrpc.HTLCAttempt{
			{Status: lnrpc.HTLCAttempt_FAILED, Route: rpcRoute(9_999_000)},
			{Status: lnrpc.HTLCAttempt_SUCCEEDED, Route: rpcRoute(1_001_500)},
			{Status: lnrpc.HTLCAttempt_SUCCEEDED, Route: rpcRoute(1_001_500)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash != mustHash(t, hashHex) || got.Preimage != mustHash(t, preimageHex) ||
		got.ValueMsat != 2_000_000 || got.FeeMsat != 3000 || got.Status != lightning.PaymentSucceeded ||
		got.Failure != lightning.FailureNone || !got.CreatedAt.Equal(created) {
		t.Errorf("got %+v", got)
	}
	if got.Route == nil {
		t.Fatal("no route")
	}
	r := got.Route
	if r.TotalTimeLock != 800 || r.TotalFeesMsat != 1500 || r.TotalAmtMsat != 1_001_500 || len(r.Hops) != 2 {
		t.Fatalf("route %+v; want the first succeeded HTLC's", r)
	}
	h0, h1 := r.Hops[0], r.Hops[1]
	if h0 != (lightning.Hop{ChanID: 1 << 40, ChanCapacity: 5_000_000, AmtToForwardMsat: 1_000_000, FeeMsat: 1500, Expiry: 760, PubKey: "02aa", TLVPayload: true}) {
		t.Errorf("hop 0 %+v", h0)
	}
	if h1.MPP == nil || h1.MPP.TotalAmtMsat != 2_000_000 || h1.MPP.PaymentAddr != [32]byte(mustHash(t, strings.Repeat("07", 32))) {
		t.Errorf("hop 1 MPP %+v", h1.MPP)
	}
	if h1.ChanID != 7 || h1.FeeMsat != 0 || h1.Expiry != 720 || h1.PubKey != "03bb" {
		t.Errorf("hop 1 %+v", h1)
	}
}

func TestPaymentFromRPCStatusAndFailure(t *testing.T) {
	reasons := map[lnrpc.PaymentFailureReason]lightning.FailureReason{
		lnrpc.PaymentFailureReason_FAILURE_REASON_TIMEOUT:                   lightning.FailureTimeout,
		lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE:                  lightning.FailureNoRoute,
		lnrpc.PaymentFailureReason_FAILURE_REASON_ERROR:                     lightning.FailureError,
		lnrpc.PaymentFailureReason_FAILURE_REASON_INCORRECT_PAYMENT_DETAILS: lightning.FailureIncorrectPaymentDetails,
		lnrpc.PaymentFailureReason_FAILURE_REASON_INSUFFICIENT_BALANCE:      lightning.FailureInsufficientBalance,
		lnrpc.PaymentFailureReason_FAILURE_REASON_CANCELED:                  lightning.FailureCanceled,
		lnrpc.PaymentFailureReason_FAILURE_REASON_NONE:                      lightning.FailureError, // failed needs a reason
		lnrpc.PaymentFailureReason(99):                                      lightning.FailureError,
	}
	for rpcReason, want := range reasons {
		got, err := paymentFromRPC(&lnrpc.Payment{
			PaymentHash: hashHex, PaymentPreimage: strings.Repeat("00", 32),
			Status: lnrpc.Payment_FAILED, FailureReason: rpcReason,
			Htlcs: []*lnrpc.HTLCAttempt{{Status: lnrpc.HTLCAttempt_FAILED, Route: rpcRoute(1000)}},
		})
		if err != nil || got.Status != lightning.PaymentFailed || got.Failure != want || got.Route != nil || got.Preimage != (lightning.Hash{}) {
			t.Errorf("%v: got %+v, %v; want failed with %v", rpcReason, got, err, want)
		}
	}
	for _, s := range []lnrpc.Payment_PaymentStatus{lnrpc.Payment_IN_FLIGHT, lnrpc.Payment_INITIATED, 0 /* UNKNOWN, deprecated */} {
		got, err := paymentFromRPC(&lnrpc.Payment{PaymentHash: hashHex, Status: s})
		if err != nil || got.Status != lightning.PaymentInFlight || got.Failure != lightning.FailureNone {
			t.Errorf("%v: got %+v, %v; want in flight", s, got, err)
		}
	}
}

func TestPaymentFromRPCRejectsBadValues(t *testing.T) {
	for name, p := range map[string]*lnrpc.Payment{
		"hash":     {PaymentHash: "abcd", Status: lnrpc.Payment_IN_FLIGHT},
		"preimage": {PaymentHash: hashHex, PaymentPreimage: "", Status: lnrpc.Payment_SUCCEEDED},
		"mpp": {PaymentHash: hashHex, PaymentPreimage: preimageHex, Status: lnrpc.Payment_SUCCEEDED,
			Htlcs: []*lnrpc.HTLCAttempt{{Status: lnrpc.HTLCAttempt_SUCCEEDED, Route: &lnrpc.Route{
				Hops: []*lnrpc.Hop{{MppRecord: &lnrpc.MPPRecord{PaymentAddr: []byte{1}}}},
			}}}},
	} {
		if _, err := paymentFromRPC(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestInvoiceFromRPC(t *testing.T) {
	states := map[lnrpc.Invoice_InvoiceState]lightning.InvoiceState{
		lnrpc.Invoice_OPEN:     lightning.InvoiceOpen,
		lnrpc.Invoice_SETTLED:  lightning.InvoiceSettled,
		lnrpc.Invoice_CANCELED: lightning.InvoiceCanceled,
		lnrpc.Invoice_ACCEPTED: lightning.InvoiceAccepted,
	}
	hash := mustHash(t, hashHex)
	for rpcState, want := range states {
		got, err := invoiceFromRPC(&lnrpc.Invoice{
			PaymentRequest: "lnbcrt1…", RHash: hash[:], Value: 1500, ValueMsat: 1_500_000,
			Memo: "café", Expiry: 3600, State: rpcState,
		})
		wantInv := lightning.Invoice{PaymentRequest: "lnbcrt1…", Hash: hash, ValueSat: 1500, Memo: "café", Expiry: time.Hour, State: want}
		if err != nil || got != wantInv {
			t.Errorf("%v: got %+v, %v; want %+v", rpcState, got, err, wantInv)
		}
	}
	if _, err := invoiceFromRPC(&lnrpc.Invoice{RHash: hash[:], State: 9}); err == nil {
		t.Error("unknown state: no error")
	}
	if _, err := invoiceFromRPC(&lnrpc.Invoice{RHash: hash[:4]}); err == nil {
		t.Error("short r_hash: no error")
	}
}

func TestInfoFromRPC(t *testing.T) {
	for _, c := range []struct{ chain, graph, want bool }{{true, true, true}, {true, false, false}, {false, true, false}} {
		got, err := infoFromRPC(&lnrpc.GetInfoResponse{
			IdentityPubkey: "02aa", Alias: "alice", SyncedToChain: c.chain, SyncedToGraph: c.graph,
			Chains: []*lnrpc.Chain{{Chain: "bitcoin", Network: "regtest"}},
		})
		want := lightning.Info{PubKey: "02aa", Alias: "alice", Network: "regtest", Synced: c.want}
		if err != nil || got != want {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := infoFromRPC(&lnrpc.GetInfoResponse{}); err == nil {
		t.Error("no chains: no error")
	}
}

func TestPaymentTimeout(t *testing.T) {
	for d, want := range map[time.Duration]int32{
		0: 1, -time.Second: 1, time.Nanosecond: 1, time.Second: 1,
		time.Second + time.Millisecond: 2, time.Minute: 60, 1 << 62: 1<<31 - 1,
	} {
		if got := paymentTimeout(d); got != want {
			t.Errorf("paymentTimeout(%v) = %d; want %d", d, got, want)
		}
	}
}
