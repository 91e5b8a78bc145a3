package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/lightningnetwork/lnd/lnrpc"
	"golang.org/x/sync/errgroup"

	"lightning-service/internal/regtest"
	"lightning-service/internal/wire"
)

// source hands out the input of each request: decode cycles over a few
// invoices, pay takes each invoice once, create needs none.
type source struct {
	task     string
	mu       sync.Mutex
	invoices []string
	i        int
	seq      atomic.Int64
}

// invoice returns the next payment request ("" for create).
func (s *source) invoice() (string, error) {
	if s.task == "create" {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.task == "decode" {
		pr := s.invoices[s.i%len(s.invoices)]
		s.i++
		return pr, nil
	}
	if s.i >= len(s.invoices) {
		return "", fmt.Errorf("no invoice left to pay (%d made)", len(s.invoices))
	}
	pr := s.invoices[s.i]
	s.i++
	return pr, nil
}

// createAmountSat, createMemo and createExpirySec are what every create asks.
const (
	createAmountSat = 1000
	createMemo      = "lightning-service bench"
	createExpirySec = 3600
)

// payload returns the next request's payload for the service.
func (s *source) payload() string {
	if s.task == "create" {
		// A memo of its own: two requests signed in the same millisecond
		// would otherwise be one request to the service.
		p, _ := wire.CreatePayload(createAmountSat, fmt.Sprintf("%s %d", createMemo, s.seq.Add(1)), createExpirySec)
		return p
	}
	pr, err := s.invoice()
	if err != nil {
		return "" // answered as malformed_payload: counted as an error
	}
	return wire.PayPayload(pr)
}

// makeInvoices makes n distinct invoices on the payee.
func makeInvoices(ctx context.Context, payee *regtest.Node, n int) ([]string, error) {
	out := make([]string, n)
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range min(n, 8) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				resp, err := payee.Lightning.AddInvoice(ctx, &lnrpc.Invoice{
					Value: payAmountSat, Memo: fmt.Sprintf("bench %d", i), Expiry: 24 * 3600,
				})
				if err != nil {
					return fmt.Errorf("making invoices on %s: %w", payee.Name, err)
				}
				out[i] = resp.PaymentRequest
			}
		})
	}
	return out, g.Wait()
}
