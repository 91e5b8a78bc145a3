package lightningtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"

	"lightning-service/internal/lightning"
)

// Stateful is an in-memory lightning.Node that keeps what LND keeps: invoices
// by hash, refusing a second one with ErrInvoiceExists, and one payment per
// hash, refusing to send while one is in flight or succeeded
// (ErrPaymentExists) and letting TrackPayment wait for it. Its zero value is
// a regtest node whose payments all succeed.
type Stateful struct {
	Params *chaincfg.Params // nil: regtest
	Now    func() time.Time // invoice timestamps, payments' CreatedAt; nil: time.Now

	// Settle decides the outcome of each payment SendPayment starts: given
	// the payment in flight, it returns it final. It may block to keep the
	// payment in flight (TrackPayment waits meanwhile). nil: the payment
	// succeeds, with the preimage when the invoice is this node's own.
	Settle func(ctx context.Context, pmt lightning.Payment) lightning.Payment

	mu       sync.Mutex
	invoices map[lightning.Hash]invoice
	payments map[lightning.Hash]*payment
}

var _ lightning.Node = (*Stateful)(nil)

type invoice struct {
	lightning.Invoice
	preimage lightning.Hash
}

type payment struct {
	lightning.Payment
	final chan struct{} // closed when Payment is final
}

func (s *Stateful) params() *chaincfg.Params {
	if s.Params != nil {
		return s.Params
	}
	return &chaincfg.RegressionNetParams
}

func (s *Stateful) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Info reports the node's key and network by the names LND uses.
func (s *Stateful) Info(context.Context) (lightning.Info, error) {
	network := s.params().Name
	if network == chaincfg.TestNet3Params.Name {
		network = "testnet"
	}
	return lightning.Info{
		PubKey:  hex.EncodeToString(NodeKey.PubKey().SerializeCompressed()),
		Alias:   "lightningtest",
		Network: network,
		Synced:  true,
	}, nil
}

// AddInvoice issues an invoice signed with NodeKey.
func (s *Stateful) AddInvoice(_ context.Context, p lightning.InvoiceParams) (lightning.Invoice, error) {
	hash := lightning.Hash(sha256.Sum256(p.Preimage[:]))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.invoices[hash]; ok {
		return lightning.Invoice{}, fmt.Errorf("invoice with hash %s: %w", hash, lightning.ErrInvoiceExists)
	}
	pr, _, err := encodeInvoice(InvoiceOpts{
		AmountMsat: 1000 * p.ValueSat,
		Memo:       p.Memo,
		Expiry:     p.Expiry,
		Timestamp:  s.now(),
		Network:    s.params(),
		Preimage:   p.Preimage,
		Key:        NodeKey,
	})
	if err != nil {
		return lightning.Invoice{}, fmt.Errorf("lightningtest: encoding invoice: %w", err)
	}
	expiry := p.Expiry
	if expiry <= 0 {
		expiry = time.Hour // LND's default
	}
	inv := lightning.Invoice{PaymentRequest: pr, Hash: hash, ValueSat: p.ValueSat, Memo: p.Memo, Expiry: expiry, State: lightning.InvoiceOpen}
	if s.invoices == nil {
		s.invoices = make(map[lightning.Hash]invoice)
	}
	s.invoices[hash] = invoice{Invoice: inv, preimage: p.Preimage}
	return inv, nil
}

// LookupInvoice returns an invoice AddInvoice issued.
func (s *Stateful) LookupInvoice(_ context.Context, hash lightning.Hash) (lightning.Invoice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, ok := s.invoices[hash]
	if !ok {
		return lightning.Invoice{}, fmt.Errorf("invoice with hash %s: %w", hash, lightning.ErrInvoiceNotFound)
	}
	return inv.Invoice, nil
}

// SendPayment pays a BOLT11 invoice for the node's network that states an
// amount, and returns the payment once Settle has made it final.
func (s *Stateful) SendPayment(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
	inv, err := zpay32.Decode(p.PaymentRequest, s.params())
	if err != nil {
		return lightning.Payment{}, fmt.Errorf("lightningtest: decoding payment request: %w", err)
	}
	if inv.MilliSat == nil || *inv.MilliSat == 0 {
		return lightning.Payment{}, fmt.Errorf("lightningtest: the payment request has no amount")
	}
	hash := lightning.Hash(*inv.PaymentHash)
	s.mu.Lock()
	if old, ok := s.payments[hash]; ok && old.Status != lightning.PaymentFailed {
		s.mu.Unlock()
		return lightning.Payment{}, fmt.Errorf("payment %s is %s: %w", hash, old.Status, lightning.ErrPaymentExists)
	}
	pmt := &payment{
		Payment: lightning.Payment{Hash: hash, ValueMsat: int64(*inv.MilliSat), Status: lightning.PaymentInFlight, CreatedAt: s.now()},
		final:   make(chan struct{}),
	}
	if s.payments == nil {
		s.payments = make(map[lightning.Hash]*payment)
	}
	s.payments[hash] = pmt
	started, preimage := pmt.Payment, s.invoices[hash].preimage
	s.mu.Unlock()

	done := started
	if s.Settle != nil {
		done = s.Settle(ctx, started)
	} else {
		done.Status, done.Preimage = lightning.PaymentSucceeded, preimage
	}
	if done.Status == lightning.PaymentInFlight {
		panic("lightningtest: Settle returned a payment in flight")
	}
	return s.finish(pmt, done), nil
}

// finish makes pmt final with the outcome done, keeping its identity.
func (s *Stateful) finish(pmt *payment, done lightning.Payment) lightning.Payment {
	done.Hash, done.CreatedAt = pmt.Hash, pmt.CreatedAt
	if done.ValueMsat == 0 {
		done.ValueMsat = pmt.ValueMsat
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pmt.Payment = done
	close(pmt.final)
	return done
}

// TrackPayment waits until the payment with hash is final, or ctx ends.
func (s *Stateful) TrackPayment(ctx context.Context, hash lightning.Hash) (lightning.Payment, error) {
	s.mu.Lock()
	pmt, ok := s.payments[hash]
	s.mu.Unlock()
	if !ok {
		return lightning.Payment{}, fmt.Errorf("payment %s: %w", hash, lightning.ErrPaymentNotFound)
	}
	select {
	case <-pmt.final:
	case <-ctx.Done():
		return lightning.Payment{}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return pmt.Payment, nil
}

// AddPayment records a payment the node made before the test, as a previous
// run of the service would have left it. A payment in flight stays so until
// Resolve.
func (s *Stateful) AddPayment(p lightning.Payment) {
	pmt := &payment{Payment: p, final: make(chan struct{})}
	if p.Status != lightning.PaymentInFlight {
		close(pmt.final)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.payments == nil {
		s.payments = make(map[lightning.Hash]*payment)
	}
	s.payments[p.Hash] = pmt
}

// Resolve makes the in-flight payment AddPayment recorded with hash final.
func (s *Stateful) Resolve(hash lightning.Hash, done lightning.Payment) {
	s.mu.Lock()
	pmt, ok := s.payments[hash]
	s.mu.Unlock()
	if !ok || done.Status == lightning.PaymentInFlight {
		panic(fmt.Sprintf("lightningtest: Resolve(%s): no such payment, or not a final outcome", hash))
	}
	s.finish(pmt, done)
}

// Payment returns the node's payment with hash as it stands.
func (s *Stateful) Payment(hash lightning.Hash) (lightning.Payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pmt, ok := s.payments[hash]
	if !ok {
		return lightning.Payment{}, false
	}
	return pmt.Payment, true
}
