package lightningtest

import (
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"

	"lightning-service/internal/lightning"
)

// The keys that sign invoices: NodeKey is the Stateful node's own, PayeeKey
// issues the invoices NewInvoice makes, as another node would.
var (
	NodeKey  = privKey(0x01)
	PayeeKey = privKey(0x02)
)

func privKey(b byte) *btcec.PrivateKey {
	var seed [32]byte
	for i := range seed {
		seed[i] = b
	}
	k, _ := btcec.PrivKeyFromBytes(seed[:])
	return k
}

// InvoiceOpts describes an invoice for NewInvoice. The zero value is a
// regtest invoice without amount or memo, made now, expiring in 3600 s.
type InvoiceOpts struct {
	AmountMsat int64         // 0: no amount
	Memo       string        // the description
	Expiry     time.Duration // 0: no expiry field, which means 3600 s
	Timestamp  time.Time     // zero: now; BOLT11 keeps whole seconds
	Network    *chaincfg.Params
	Preimage   lightning.Hash // zero: random
	Key        *btcec.PrivateKey
}

// NewInvoice returns a signed BOLT11 invoice as LND's AddInvoice would make
// it, with a payment address, and its payment hash.
func NewInvoice(t testing.TB, o InvoiceOpts) (string, lightning.Hash) {
	t.Helper()
	if o.Timestamp.IsZero() {
		o.Timestamp = time.Now()
	}
	if o.Preimage == (lightning.Hash{}) {
		if _, err := rand.Read(o.Preimage[:]); err != nil {
			t.Fatalf("preimage: %v", err)
		}
	}
	if o.Key == nil {
		o.Key = PayeeKey
	}
	s, hash, err := encodeInvoice(o)
	if err != nil {
		t.Fatalf("lightningtest.NewInvoice: %v", err)
	}
	return s, hash
}

// encodeInvoice makes and signs the invoice o describes.
func encodeInvoice(o InvoiceOpts) (string, lightning.Hash, error) {
	net := o.Network
	if net == nil {
		net = &chaincfg.RegressionNetParams
	}
	hash := lightning.Hash(sha256.Sum256(o.Preimage[:]))
	opts := []func(*zpay32.Invoice){
		zpay32.Description(o.Memo),
		zpay32.PaymentAddr(sha256.Sum256(append([]byte("payment address "), hash[:]...))),
		zpay32.Features(lnwire.NewFeatureVector(lnwire.NewRawFeatureVector(
			lnwire.TLVOnionPayloadRequired, lnwire.PaymentAddrRequired,
		), lnwire.Features)),
	}
	if o.AmountMsat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(o.AmountMsat)))
	}
	if o.Expiry > 0 {
		opts = append(opts, zpay32.Expiry(o.Expiry))
	}
	inv, err := zpay32.NewInvoice(net, hash, o.Timestamp, opts...)
	if err != nil {
		return "", hash, err
	}
	s, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(o.Key, chainhash.HashB(msg), true), nil
	}})
	return s, hash, err
}
