package payment

import (
	"context"
	"errors"
	"time"

	"lightning-service/internal/lightning"
)

// sweep takes over the requests of owners that stopped, resumes Waiting
// requests whose invoice is free again, and logs payments in flight for
// longer than Alert. It only schedules: each request is resumed by the same
// code a worker's claim runs.
func (o *Owner) sweep(ctx context.Context) {
	orphans, err := o.Store.Orphans(ctx, o.now())
	if err != nil {
		return // ctx ended
	}
	for _, rec := range orphans {
		if o.running(rec.ID) != nil {
			continue
		}
		taken, ok, err := o.Store.Take(ctx, rec.ID, o.id, o.now().Add(o.Lease))
		if err != nil {
			return
		}
		if ok {
			o.Log.Info("taking over a payment's request whose owner stopped", "request_id", rec.ID,
				"payment_hash", rec.Hash.String(), "state", string(rec.State), "previous_owner", rec.Owner)
			o.resume(ctx, taken)
		}
	}

	o.mu.Lock()
	hashes := make([]lightning.Hash, 0, len(o.waiting))
	for h := range o.waiting {
		hashes = append(hashes, h)
	}
	o.mu.Unlock()
	for _, h := range hashes {
		holder, err := o.Store.Holder(ctx, h)
		if err == nil && holder.State == Sending {
			continue // still being paid; its end wakes the waiters if it is ours
		}
		if err != nil && !errors.Is(err, ErrNotRecorded) {
			return
		}
		o.resumeWaiters(ctx, h)
	}

	o.alert()
}

// resumeWaiters resumes the Waiting requests for hash.
func (o *Owner) resumeWaiters(ctx context.Context, hash lightning.Hash) {
	o.mu.Lock()
	delete(o.waiting, hash) // marked again if they still wait
	o.mu.Unlock()
	recs, err := o.Store.Waiters(ctx, hash)
	if err != nil {
		return
	}
	now := o.now()
	for _, rec := range recs {
		if rec.Owner != o.id && rec.LeaseUntil.After(now) {
			continue // another instance's, alive: it resumes them
		}
		taken, ok, err := o.Store.Take(ctx, rec.ID, o.id, now.Add(o.Lease))
		if err != nil {
			return
		}
		if ok {
			o.resume(ctx, taken)
		}
	}
}

// resume goes on with a request this instance has just taken, from where
// the ledger says it stands. No worker waits for it: its answer is
// published by the Owner.
func (o *Owner) resume(ctx context.Context, rec Record) {
	if rec.Final {
		if rec.Unpublished {
			o.publish(ctx, rec)
		}
		return
	}
	inv, err := o.Decode(ctx, rec.PaymentRequest)
	if err != nil {
		o.Log.Error("resuming a payment: its payment request does not decode; next sweep tries again",
			"request_id", rec.ID, "error", err)
		return
	}
	if rec.State == Sending {
		o.start(rec, inv, true, false)
		return
	}
	c, err := o.Store.Retry(ctx, rec.ID, o.id)
	switch {
	case err != nil:
		return
	case c.Self.Final:
		return
	case c.Holder == nil:
		o.start(c.Self, inv, false, true)
	case c.Holder.State == Paid:
		_, _ = o.alreadyPaid(ctx, c.Self, false)
	default:
		o.markWaiting(rec.Hash)
	}
}

// alert logs, once each, the payments in flight here for longer than Alert.
func (o *Owner) alert() {
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.runs {
		if age := now.Sub(r.since); age > o.Alert && !r.alerted {
			r.alerted = true
			o.Log.Warn("payment in flight for too long", "request_id", r.id, "payment_hash", r.hash.String(),
				"age", age.Round(time.Second).String())
		}
	}
}

// InFlight reports the payments this instance runs now and the age of the
// oldest.
func (o *Owner) InFlight() (n int, oldest time.Duration) {
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, r := range o.runs {
		oldest = max(oldest, now.Sub(r.since))
	}
	return len(o.runs), oldest
}
