package task_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/task"
)

func TestDecodeValidInvoice(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{
		AmountMsat: 1_234_567, Memo: "café ☕", Expiry: 20 * time.Minute, Timestamp: t0,
	})
	out := task.Decode(context.Background(), task.FixedNetwork(regtest), payReqPayload(pr))
	wantSuccess(t, out)
	got, ok := out.Message.(lightning.PayReq)
	if !ok {
		t.Fatalf("message is %T, want lightning.PayReq", out.Message)
	}
	if got.PaymentHash != hash || got.NumMsat != 1_234_567 || got.NumSatoshis != 1234 ||
		got.Description != "café ☕" || got.Expiry != 1200 || got.Timestamp != t0.Unix() {
		t.Errorf("decoded %+v", got)
	}
	if want, _ := lightning.Decode(pr, regtest); !reflect.DeepEqual(got, want) {
		t.Errorf("task decode %+v, lightning.Decode %+v", got, want)
	}
}

func TestDecodeLongerPaymentRequestUnpadded(t *testing.T) {
	pr, hash := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000, Memo: strings.Repeat("m", 500)})
	if len(pr) <= 400 {
		t.Fatalf("invoice is %d characters; the test wants one longer than the field", len(pr))
	}
	out := task.Decode(context.Background(), task.FixedNetwork(regtest), []byte(pr))
	wantSuccess(t, out)
	if got := out.Message.(lightning.PayReq).PaymentHash; got != hash {
		t.Errorf("hash %s, want %s", got, hash)
	}
}

func TestDecodeInvalid(t *testing.T) {
	mainnet, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000, Network: &chaincfg.MainNetParams})
	testnet, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000, Network: &chaincfg.TestNet3Params})
	for _, tc := range []struct {
		name    string
		payload []byte
		code    core.Code
	}{
		{"garbage", payReqPayload("lnbc1notaninvoice"), core.CodeInvalidPaymentRequest},
		{"empty", payReqPayload(""), core.CodeInvalidPaymentRequest},
		{"mainnet invoice", payReqPayload(mainnet), core.CodeInvalidPaymentRequest},
		{"testnet invoice", payReqPayload(testnet), core.CodeInvalidPaymentRequest},
		{"short payload", []byte("lnbcrt1"), core.CodeMalformedPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := task.Decode(context.Background(), task.FixedNetwork(regtest), tc.payload)
			wantFailure(t, out, tc.code)
		})
	}
}

// With the network configured, decode needs no node: it answers while the
// node is down. Learnt from the node, the network is asked for once.
func TestDecodeNetwork(t *testing.T) {
	pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000})
	ctx := context.Background()

	t.Run("fixed, node down", func(t *testing.T) {
		down := &lightningtest.Fake{InfoFunc: func(context.Context) (lightning.Info, error) {
			return lightning.Info{}, lightning.ErrUnavailable
		}}
		wantFailure(t, task.Decode(ctx, task.NodeNetwork(down, fastRetry), payReqPayload(pr)), core.CodeNodeUnavailable)
		wantSuccess(t, task.Decode(ctx, task.FixedNetwork(regtest), payReqPayload(pr)))
	})

	t.Run("learnt once", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{}}
		net := task.NodeNetwork(fake, fastRetry)
		for range 3 {
			wantSuccess(t, task.Decode(ctx, net, payReqPayload(pr)))
		}
		if calls := fake.Calls(); len(calls) != 1 || calls[0].Method != lightningtest.MethodInfo {
			t.Errorf("calls %v, want one Info", calls)
		}
	})

	t.Run("learnt when the node is back", func(t *testing.T) {
		info := lightningtest.Sequence(
			lightningtest.Answer[lightning.Info]{Err: lightning.ErrUnavailable},
			lightningtest.Answer[lightning.Info]{Err: lightning.ErrUnavailable},
			lightningtest.Answer[lightning.Info]{Value: lightning.Info{Network: "regtest"}},
		)
		fake := &lightningtest.Fake{InfoFunc: func(context.Context) (lightning.Info, error) { return info() }}
		wantSuccess(t, task.Decode(ctx, task.NodeNetwork(fake, fastRetry), payReqPayload(pr)))
		if n := fake.Count(lightningtest.MethodInfo); n != 3 {
			t.Errorf("%d Info calls, want 3", n)
		}
	})

	t.Run("failure not kept", func(t *testing.T) {
		up := false
		fake := &lightningtest.Fake{InfoFunc: func(context.Context) (lightning.Info, error) {
			if !up {
				return lightning.Info{}, lightning.ErrUnavailable
			}
			return lightning.Info{Network: "regtest"}, nil
		}}
		net := task.NodeNetwork(fake, fastRetry)
		wantFailure(t, task.Decode(ctx, net, payReqPayload(pr)), core.CodeNodeUnavailable)
		up = true
		wantSuccess(t, task.Decode(ctx, net, payReqPayload(pr)))
	})

	t.Run("node on another network", func(t *testing.T) {
		fake := &lightningtest.Fake{Node: &lightningtest.Stateful{Params: &chaincfg.MainNetParams}}
		wantFailure(t, task.Decode(ctx, task.NodeNetwork(fake, fastRetry), payReqPayload(pr)), core.CodeInvalidPaymentRequest)
	})

	t.Run("unknown network", func(t *testing.T) {
		fake := &lightningtest.Fake{InfoFunc: func(context.Context) (lightning.Info, error) {
			return lightning.Info{Network: "dogecoin"}, nil
		}}
		wantFailure(t, task.Decode(ctx, task.NodeNetwork(fake, fastRetry), payReqPayload(pr)), core.CodeInternal)
	})
}
