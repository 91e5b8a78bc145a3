//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/lightning/lightningtest"
	"lightning-service/internal/wire"
)

var bg = context.Background()

// decode of invoices made by bob and carol equals LND's own DecodePayReq,
// field for field.
func TestE2EDecodeEqualsLND(t *testing.T) {
	bob, carol := env.network.Bob, env.network.Carol
	descHash := sha256.Sum256([]byte("e2e: terms of the description-hash invoice"))
	invoices := map[string]*lnrpc.Invoice{
		"non-ASCII memo":     {Value: 1200, Memo: "Préstame ☕ 36 — ¡gracias!"},
		"long memo":          {Value: 50, Memo: strings.Repeat("a long memo, ", 46)},
		"zero amount":        {Memo: "any amount"},
		"description hash":   {Value: 99, DescriptionHash: descHash[:]},
		"carol route hints":  {Value: 777, Memo: "behind a private channel", Private: true},
		"carol plain, msats": {ValueMsat: 123456, Memo: "sub-satoshi"},
	}
	for name, inv := range invoices {
		t.Run(name, func(t *testing.T) {
			node := bob
			if strings.HasPrefix(name, "carol") {
				node = carol
			}
			resp, err := node.Lightning.AddInvoice(bg, inv)
			if err != nil {
				t.Fatal(err)
			}
			pr := resp.PaymentRequest
			if name == "long memo" && len(pr) <= wire.PaymentRequestWidth {
				t.Fatalf("payment request is %d characters; the test wants more than 400", len(pr))
			}
			r := call(t, "decode", wire.DecodePayload(pr))
			wantSuccess(t, r)
			ours := jsonValue(t, r.Data.Message)
			if err := sameJSON("message", ours, lndDecode(t, pr)); err != nil {
				t.Fatalf("%v\nours: %s", err, r.Data.Message)
			}
			if name == "carol route hints" {
				hints := ours.(map[string]any)["route_hints"].([]any)
				if len(hints) == 0 {
					t.Fatal("carol's private invoice decoded without route hints")
				}
			}
		})
	}
}

// create makes the invoice asked for on alice; bob can pay it; a redelivered
// request answers the same invoice.
func TestE2ECreate(t *testing.T) {
	memo := "e2e: créer ✓ €"
	payload, err := wire.CreatePayload(4321, memo, 900)
	if err != nil {
		t.Fatal(err)
	}
	value, id := send(t, "create", payload)
	r := wait(t, id)
	wantSuccess(t, r)
	var pr string
	if err := json.Unmarshal(r.Data.Message, &pr); err != nil {
		t.Fatal(err)
	}
	dec, err := env.network.Alice.Lightning.DecodePayReq(bg, &lnrpc.PayReqString{PayReq: pr})
	if err != nil {
		t.Fatal(err)
	}
	if dec.NumSatoshis != 4321 || dec.Description != memo || dec.Expiry != 900 || dec.Destination != env.network.Alice.PubKey {
		t.Fatalf("invoice decodes to %d sat, %q, expiry %d, destination %s", dec.NumSatoshis, dec.Description, dec.Expiry, dec.Destination)
	}
	if r.Data.PaymentHash != dec.PaymentHash {
		t.Fatalf("data.payment_hash %s, invoice has %s", r.Data.PaymentHash, dec.PaymentHash)
	}
	if _, err := env.network.Bob.Pay(bg, pr); err != nil {
		t.Fatalf("bob cannot pay the created invoice: %v", err)
	}

	// The same record again, as Kafka redelivers it.
	sendValue(t, value)
	eventually(t, time.Minute, "the redelivered create's result", func() bool { return len(env.caller.Results(id)) >= 2 })
	again := env.caller.Results(id)[1]
	if string(again.Data.Message) != string(r.Data.Message) {
		t.Fatalf("redelivered create answered %s, first %s", again.Data.Message, r.Data.Message)
	}
	hash, _ := hex.DecodeString(dec.PaymentHash)
	inv, err := env.network.Alice.Lightning.LookupInvoice(bg, &lnrpc.PaymentHash{RHash: hash})
	if err != nil {
		t.Fatal(err)
	}
	if inv.State != lnrpc.Invoice_SETTLED || inv.AmtPaidSat != 4321 {
		t.Fatalf("alice's invoice is %s with %d sat paid", inv.State, inv.AmtPaidSat)
	}
}

// pay: one hop and two, preimage and fees; then already_paid for another
// request, and the same success for a redelivery of the one that paid.
func TestE2EPay(t *testing.T) {
	direct, err := env.network.Bob.AddInvoice(bg, 1234, "e2e: direct", false)
	if err != nil {
		t.Fatal(err)
	}
	value, id := send(t, "pay", wire.PayPayload(direct.PaymentRequest))
	first := decodePay(t, wait(t, id))
	checkPayment(t, first, direct.RHash, 1234, 1)
	if first.FeeMsat != 0 {
		t.Errorf("direct payment reports fee %d msat", first.FeeMsat)
	}

	twoHops, err := env.network.Carol.AddInvoice(bg, 2345, "e2e: two hops", false)
	if err != nil {
		t.Fatal(err)
	}
	m := decodePay(t, call(t, "pay", wire.PayPayload(twoHops.PaymentRequest)))
	checkPayment(t, m, twoHops.RHash, 2345, 2)
	if m.FeeMsat <= 0 || m.FeeMsat != m.PaymentRoute.TotalFeesMsat || m.PaymentRoute.Hops[0].FeeMsat != m.FeeMsat {
		t.Errorf("two-hop fees: fee_msat %d, route total %d, first hop %d", m.FeeMsat, m.PaymentRoute.TotalFeesMsat, m.PaymentRoute.Hops[0].FeeMsat)
	}
	if m.PaymentRoute.Hops[0].PubKey != env.network.Bob.PubKey || m.PaymentRoute.Hops[1].PubKey != env.network.Carol.PubKey {
		t.Errorf("route is not alice → bob → carol: %+v", m.PaymentRoute.Hops)
	}

	// Another request for the invoice paid above.
	wantError(t, call(t, "pay", wire.PayPayload(direct.PaymentRequest)), "already_paid")

	// The request that paid it, delivered again.
	sendValue(t, value)
	eventually(t, time.Minute, "the redelivered pay's result", func() bool { return len(env.caller.Results(id)) >= 2 })
	again := decodePay(t, env.caller.Results(id)[1])
	if again.PaymentPreimage != first.PaymentPreimage || again.PaymentHash != first.PaymentHash {
		t.Fatalf("redelivered pay answered %+v, first %+v", again, first)
	}
	inv, err := env.network.Bob.Lightning.LookupInvoice(bg, &lnrpc.PaymentHash{RHash: direct.RHash})
	if err != nil {
		t.Fatal(err)
	}
	if inv.AmtPaidSat != 1234 || len(inv.Htlcs) != 1 {
		t.Fatalf("bob's invoice received %d sat in %d HTLCs; want 1234 in one", inv.AmtPaidSat, len(inv.Htlcs))
	}
}

func checkPayment(t *testing.T, m payMessage, hash []byte, sats int64, hops int) {
	t.Helper()
	pre, err := hex.DecodeString(m.PaymentPreimage)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(pre); hex.EncodeToString(sum[:]) != m.PaymentHash || m.PaymentHash != hex.EncodeToString(hash) {
		t.Fatalf("preimage %s does not hash to %s (invoice %x)", m.PaymentPreimage, m.PaymentHash, hash)
	}
	if m.Status != "SUCCEEDED" || m.ValueSat != sats || m.ValueMsat != sats*1000 || len(m.PaymentRoute.Hops) != hops {
		t.Fatalf("payment %+v, want %d sat over %d hops", m, sats, hops)
	}
}

// Each error the contract names, produced by real nodes.
func TestE2EPayErrors(t *testing.T) {
	bob := env.network.Bob

	t.Run("no_route", func(t *testing.T) {
		// A node the graph does not know.
		pr, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1_000_000, Memo: "nowhere"})
		wantError(t, call(t, "pay", wire.PayPayload(pr)), "no_route")
	})
	t.Run("insufficient_balance", func(t *testing.T) {
		inv, err := bob.AddInvoice(bg, 9_500_000, "more than alice has", false)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, call(t, "pay", wire.PayPayload(inv.PaymentRequest)), "insufficient_balance")
	})
	t.Run("incorrect_payment_details, cancelled invoice", func(t *testing.T) {
		inv, err := bob.AddInvoice(bg, 300, "cancelled by bob", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.Invoices.CancelInvoice(bg, &invoicesrpc.CancelInvoiceMsg{PaymentHash: inv.RHash}); err != nil {
			t.Fatal(err)
		}
		e := wantError(t, call(t, "pay", wire.PayPayload(inv.PaymentRequest)), "incorrect_payment_details")
		if e.PaymentHash != hex.EncodeToString(inv.RHash) {
			t.Errorf("payment_hash %s, want %x", e.PaymentHash, inv.RHash)
		}
	})
	t.Run("invoice_expired", func(t *testing.T) {
		resp, err := bob.Lightning.AddInvoice(bg, &lnrpc.Invoice{Value: 400, Memo: "short-lived", Expiry: 1})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2100 * time.Millisecond)
		wantError(t, call(t, "pay", wire.PayPayload(resp.PaymentRequest)), "invoice_expired")
		inv, err := bob.Lightning.LookupInvoice(bg, &lnrpc.PaymentHash{RHash: resp.RHash})
		if err != nil {
			t.Fatal(err)
		}
		if inv.AmtPaidSat != 0 {
			t.Fatalf("expired invoice was paid %d sat", inv.AmtPaidSat)
		}
	})
	t.Run("amount_required", func(t *testing.T) {
		inv, err := bob.AddInvoice(bg, 0, "zero amount", false)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, call(t, "pay", wire.PayPayload(inv.PaymentRequest)), "amount_required")
	})
	t.Run("invalid_payment_request", func(t *testing.T) {
		mainnet, _ := lightningtest.NewInvoice(t, lightningtest.InvoiceOpts{AmountMsat: 1000, Network: &chaincfg.MainNetParams})
		for _, pr := range []string{"lnbcrt1garbage", mainnet, "hello world"} {
			wantError(t, call(t, "pay", wire.PayPayload(pr)), "invalid_payment_request")
			wantError(t, call(t, "decode", wire.DecodePayload(pr)), "invalid_payment_request")
		}
	})
}

// With alice's lnd down, decode still answers, pay answers node_unavailable
// without paying, and once alice is back the service works again by itself.
func TestE2ENodeUnavailableAndRecovery(t *testing.T) {
	n := env.network
	inv, err := n.Bob.AddInvoice(bg, 555, "paid once alice is back", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.StopNode(bg, "alice"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = n.StartNode(bg, "alice")
		}
	}()

	wantSuccess(t, call(t, "decode", wire.DecodePayload(inv.PaymentRequest)))
	start := time.Now()
	e := wantError(t, call(t, "pay", wire.PayPayload(inv.PaymentRequest)), "node_unavailable")
	if took := time.Since(start); took < retryBudget {
		t.Errorf("node_unavailable after %s, before the %s retry budget", took, retryBudget)
	}
	if e.PaymentHash != hex.EncodeToString(inv.RHash) {
		t.Errorf("payment_hash %s, want %x", e.PaymentHash, inv.RHash)
	}
	payload, _ := wire.CreatePayload(10, "while alice is down", 60)
	wantError(t, call(t, "create", payload), "node_unavailable")

	if err := n.StartNode(bg, "alice"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	payload, _ = wire.CreatePayload(10, "alice is back", 60)
	wantSuccess(t, call(t, "create", payload))
	m := decodePay(t, call(t, "pay", wire.PayPayload(inv.PaymentRequest)))
	checkPayment(t, m, inv.RHash, 555, 1)
}

// Forged, stale and malformed records go to the dead-letter topic with their
// reason, and nothing is executed for them.
func TestE2EDeadLetters(t *testing.T) {
	bob := env.network.Bob
	inv, err := bob.AddInvoice(bg, 321, "must stay unpaid", false)
	if err != nil {
		t.Fatal(err)
	}
	payload := wire.PayPayload(inv.PaymentRequest)
	records := map[string][]byte{
		"bad_signature":   wire.SignRequest([]byte("a forger's key"), time.Now(), "pay", payload),
		"stale_timestamp": wire.SignRequest([]byte(hmacKey), time.Now().Add(-10*time.Minute), "pay", payload),
		"malformed":       []byte("pay this please " + inv.PaymentRequest),
	}
	dlq, err := kgo.NewClient(kgo.SeedBrokers(env.broker.Addr()), kgo.ConsumeTopics(dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	keyOf := map[string]string{}
	for reason, value := range records {
		key := "dlq-" + reason + "-" + time.Now().Format(time.RFC3339Nano)
		keyOf[key] = reason
		if err := dlq.ProduceSync(bg, &kgo.Record{Topic: inTopic, Key: []byte(key), Value: value,
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(reason)}}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(bg, time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < len(records) {
		fs := dlq.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("dead letters seen: %v of %d", seen, len(records))
		}
		fs.EachRecord(func(r *kgo.Record) {
			reason, ok := keyOf[string(r.Key)]
			if !ok {
				return
			}
			h := headers(r)
			if h["error"] != reason || h["detail"] == "" || h["source-topic"] != inTopic || h["source-offset"] == "" || h["trace"] != reason {
				t.Errorf("%s: headers %v", reason, h)
			}
			if string(r.Value) != string(records[reason]) {
				t.Errorf("%s: value changed", reason)
			}
			seen[reason] = true
		})
	}
	for _, value := range records {
		if id := strings.ToLower(string(value[max(0, len(value)-64):])); len(env.caller.Results(id)) > 0 {
			t.Errorf("a result was published for a dead-lettered record")
		}
	}
	got, err := bob.Lightning.LookupInvoice(bg, &lnrpc.PaymentHash{RHash: inv.RHash})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != lnrpc.Invoice_OPEN || got.AmtPaidSat != 0 {
		t.Fatalf("the invoice of the dead-lettered requests is %s, %d sat paid", got.State, got.AmtPaidSat)
	}
}

// A request signed with a rotated-out key is still answered; the result is
// signed with the current key only.
func TestE2EPreviousKey(t *testing.T) {
	inv, err := env.network.Bob.AddInvoice(bg, 10, "rotation", false)
	if err != nil {
		t.Fatal(err)
	}
	value := wire.SignRequest([]byte(previousKey), time.Now(), "decode", wire.DecodePayload(inv.PaymentRequest))
	r := wait(t, sendValue(t, value))
	wantSuccess(t, r)
	if _, _, err := wire.OpenResult(r.Record.Value, []byte(previousKey)); err == nil {
		t.Fatal("result verifies with the rotated-out key")
	}
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}
