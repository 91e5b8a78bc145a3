package task

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"lightning-service/internal/lightning"
	"lightning-service/internal/wire"
)

// Creator creates invoices. The preimage of each is derived from the request
// id with a secret only the service knows, so a redelivered request makes no
// second invoice: the node refuses the same hash, and the first invoice is
// looked up and answered again.
type Creator struct {
	Node   lightning.Node
	Secret []byte // LIGHTNING_PREIMAGE_SECRET; never the callers' HMAC key
	Retry  Retry
}

// Preimage derives the preimage for a request id.
func (c *Creator) Preimage(requestID string) lightning.Hash {
	m := hmac.New(sha256.New, c.Secret)
	m.Write([]byte(requestID))
	var p lightning.Hash
	m.Sum(p[:0])
	return p
}

// Create answers a create request with the invoice's payment request.
func (c *Creator) Create(ctx context.Context, req *wire.Request) Outcome {
	f, err := wire.Create(req.Payload)
	if err != nil {
		return failed(err)
	}
	params := lightning.InvoiceParams{
		Preimage: c.Preimage(req.ID()),
		ValueSat: f.AmountSat,
		Memo:     string(f.Memo),
		Expiry:   time.Duration(f.ExpirySec) * time.Second,
	}
	hash := sha256.Sum256(params.Preimage[:])

	var inv lightning.Invoice
	err = c.Retry.Do(ctx, func(ctx context.Context) (err error) {
		inv, err = c.Node.AddInvoice(ctx, params)
		return err
	})
	if errors.Is(err, lightning.ErrInvoiceExists) {
		err = c.Retry.Do(ctx, func(ctx context.Context) (err error) {
			inv, err = c.Node.LookupInvoice(ctx, hash)
			return err
		})
	}
	if err != nil {
		return failed(err)
	}
	return Outcome{Message: inv.PaymentRequest, PaymentHash: hex.EncodeToString(hash[:])}
}
