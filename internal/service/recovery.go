package service

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/wire"
)

// Recovery sees payments a crash or an outage left unfinished to their end:
// at start and then every Interval it lists what the ledger has unfinished,
// tracks each payment still held with the node until it is final, records
// its outcome, and answers the request if no one has. Whatever stays
// unfinished longer than Alert is logged and counted, never silently left.
type Recovery struct {
	Service   *Service
	Publisher Publisher
	Interval  time.Duration
	Alert     time.Duration

	mu       sync.Mutex
	tracking map[string]bool // request ids tracked now
	wg       sync.WaitGroup
}

// Run recovers until ctx ends, then waits for its trackers to stop.
func (r *Recovery) Run(ctx context.Context) {
	defer r.wg.Wait()
	r.Pass(ctx, true)
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.Pass(ctx, false)
		case <-ctx.Done():
			return
		}
	}
}

// Pass looks at every unfinished request once, starting a tracker for each
// payment held and not being seen to. On the first pass (at start) that is
// every one; later, one a worker of this process has in hand, or that
// changed within the last interval (another instance's work in progress), is
// left to its worker.
func (r *Recovery) Pass(ctx context.Context, first bool) {
	s := r.Service
	var es []ledger.Entry
	if err := ledger.Retry(ctx, s.Log, "list unfinished requests", func(ctx context.Context) (err error) {
		es, err = s.Ledger.Unfinished(ctx)
		return err
	}); err != nil {
		return
	}
	now := time.Now()
	overdue := 0
	for _, e := range es {
		if age := now.Sub(e.CreatedAt); age > r.Alert {
			overdue++
			s.Log.Warn("request unfinished for too long", "request_id", e.ID, "task", e.Task, "state", e.State,
				"pay_state", e.PayState, "payment_hash", e.PaymentHash, "age", age.Round(time.Second).String())
		}
		if e.PayState != ledger.Paying || e.PaymentHash == "" || s.active(e.ID) {
			continue
		}
		if !first && now.Sub(e.UpdatedAt) < r.Interval {
			continue
		}
		r.start(ctx, e)
	}
	s.Metrics.Unfinished.Set(float64(len(es)))
	s.Metrics.Overdue.Set(float64(overdue))
}

func (r *Recovery) start(ctx context.Context, e ledger.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracking == nil {
		r.tracking = make(map[string]bool)
	}
	if r.tracking[e.ID] {
		return
	}
	r.tracking[e.ID] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { r.mu.Lock(); delete(r.tracking, e.ID); r.mu.Unlock() }()
		r.recover(ctx, e)
	}()
}

// recover tracks one held payment to its end.
func (r *Recovery) recover(ctx context.Context, e ledger.Entry) {
	s := r.Service
	hash, err := lightning.ParseHash(e.PaymentHash)
	if err != nil {
		s.Log.Error("ledger holds a payment hash that is not one", "request_id", e.ID, "payment_hash", e.PaymentHash)
		return
	}
	s.Log.Info("recovering an unfinished payment", "request_id", e.ID, "payment_hash", e.PaymentHash, "state", e.State)
	pmt, err := s.Payer.Track(ctx, hash)
	if errors.Is(err, lightning.ErrPaymentNotFound) {
		// Never sent. A request already answered frees the invoice; one
		// not answered goes on when Kafka delivers it again.
		if e.State == ledger.Final {
			_ = ledger.Retry(ctx, s.Log, "release payment", func(ctx context.Context) error { return s.Ledger.EndPayment(ctx, e.ID, false) })
		}
		return
	}
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Warn("recovering a payment: tracking failed; next pass tries again", "request_id", e.ID, "payment_hash", e.PaymentHash, "error", err)
		}
		return
	}
	if err := ledger.Retry(ctx, s.Log, "end payment", func(ctx context.Context) error {
		return s.Ledger.EndPayment(ctx, e.ID, pmt.Status == lightning.PaymentSucceeded)
	}); err != nil {
		return
	}
	if e.State == ledger.Final {
		return
	}

	// Answer as the request would have, had it waited.
	w := s.NewWorker()
	req := wire.Request{Task: wire.TaskPay, TaskName: []byte(e.Task)}
	if _, err := hex.Decode(req.Signature[:], []byte(e.ID)); err != nil {
		s.Log.Error("ledger holds a request id that is not one", "request_id", e.ID)
		return
	}
	out := s.Payer.Outcome(pmt)
	value, err := w.sealResult(&req, w.result(&req, out))
	if err != nil {
		s.Log.Error("encoding a recovered result", "request_id", e.ID, "error", err)
		return
	}
	var stored ledger.Entry
	if err := ledger.Retry(ctx, s.Log, "store result", func(ctx context.Context) (err error) {
		stored, err = s.Ledger.Finish(ctx, ledger.Entry{ID: e.ID, Task: e.Task, Result: value, PaymentHash: e.PaymentHash})
		return err
	}); err != nil {
		return
	}
	if string(stored.Result) != string(value) {
		return // the request's own worker answered first
	}
	headers := make([]Header, len(stored.Headers))
	for i, h := range stored.Headers {
		headers[i] = Header{Key: h.Key, Value: h.Value}
	}
	// If publishing fails, the request itself, uncommitted, is delivered
	// again and publishes the stored result.
	if err := r.Publisher.Publish(ctx, Result{Value: stored.Result, Key: stored.Key, Headers: headers}); err != nil {
		s.Log.Warn("publishing a recovered result failed; the request's redelivery will publish it", "request_id", e.ID, "error", err)
		return
	}
	s.Metrics.Recovered.Inc()
	s.Log.Info("recovered payment answered", "request_id", e.ID, "payment_hash", e.PaymentHash, "status", pmt.Status.String())
}
