package service

import (
	"context"
	"time"

	"lightning-service/internal/ledger"
)

// Watch counts what the ledger holds unfinished, at start and then every
// Interval, and logs each request unfinished for longer than Alert: nothing
// is ever left silently. It changes nothing; the payment owner takes over
// and answers pay requests whose owner stopped, and other requests go on
// when Kafka delivers them again.
type Watch struct {
	Service  *Service
	Interval time.Duration
	Alert    time.Duration
}

// Run watches until ctx ends.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		w.Pass(ctx)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Pass looks at every unfinished request once.
func (w *Watch) Pass(ctx context.Context) {
	s := w.Service
	var es []ledger.Entry
	if err := ledger.Retry(ctx, s.Log, "list unfinished requests", func(ctx context.Context) (err error) {
		es, err = s.Ledger.Unfinished(ctx)
		return err
	}); err != nil {
		return
	}
	now := s.Now()
	overdue := 0
	for _, e := range es {
		if age := now.Sub(e.CreatedAt); age > w.Alert {
			overdue++
			s.Log.Warn("request unfinished for too long", "request_id", e.ID, "task", e.Task, "state", e.State,
				"pay_state", e.PayState, "payment_hash", e.PaymentHash, "age", age.Round(time.Second).String())
		}
	}
	s.Metrics.Unfinished.Set(float64(len(es)))
	s.Metrics.Overdue.Set(float64(overdue))
}
