// Package service walks one record through the service: open it (shape,
// signature, clock), look it up in the ledger, run its task on the node, seal
// the result and store it. Process is that walk: it takes a Delivery and
// returns the Answer to publish, as plain values; the kafka package turns
// records into deliveries and answers into records, and names the topics.
// Payments are run by their owner (package payment); Service seals and
// publishes what the owner answers on its own.
package service

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lightning-service/internal/core"
	"lightning-service/internal/keylock"
	"lightning-service/internal/ledger"
	"lightning-service/internal/lightning"
	"lightning-service/internal/payment"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

// Service holds what every worker shares.
type Service struct {
	Keys    wire.Keys
	MaxSkew time.Duration

	// ClockFromBroker judges a request's freshness against the time the
	// broker appended its record instead of the service clock.
	ClockFromBroker bool

	Network *task.Network
	Payer   *task.Payer
	Creator *task.Creator
	Ledger  ledger.Ledger

	// Publisher publishes the answers the payment owner gives once no
	// worker waits for them.
	Publisher Publisher

	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics

	requests keylock.Map[[32]byte] // one delivery of a request id at a time in this process

	sealMu sync.Mutex // guards sealer
	sealer *Worker    // seals what the payment owner answers
}

// SealPayment seals the result of pay request id, for the payment owner.
func (s *Service) SealPayment(id string, hash lightning.Hash, o payment.Outcome) ([]byte, error) {
	req := wire.Request{Task: wire.TaskPay, TaskName: []byte(wire.TaskPay.String())}
	if _, err := hex.Decode(req.Signature[:], []byte(id)); err != nil {
		return nil, fmt.Errorf("request id %q is not one: %w", id, err)
	}
	s.sealMu.Lock()
	defer s.sealMu.Unlock()
	if s.sealer == nil {
		s.sealer = s.NewWorker()
	}
	out := task.PayOutcome(o, hash)
	value, err := s.sealer.sealResult(&req, s.sealer.result(&req, out))
	if err == nil {
		s.Metrics.Requests.WithLabelValues(wire.TaskPay.String(), string(status(out))).Inc()
	}
	return value, err
}

// PublishPayment publishes the stored result of a pay request with its
// record's key and headers, for the payment owner.
func (s *Service) PublishPayment(ctx context.Context, r payment.Record) error {
	hs := make([]Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = Header(h)
	}
	err := s.Publisher.Publish(ctx, Result{Value: r.Result, Key: r.Key, Headers: hs})
	if errors.Is(err, ErrUnpublishable) {
		// No retry will publish it; the result stays in the ledger, where
		// a copy of the request, delivered again, finds it.
		s.Log.Error("a payment's result cannot be published; it stays in the ledger", "request_id", r.ID, "error", err)
		return nil
	}
	if err != nil {
		return err
	}
	s.Metrics.Recovered.Inc()
	return nil
}

func status(out task.Outcome) wire.Status {
	if out.Err != nil {
		return wire.StatusError
	}
	return wire.StatusSuccess
}

// Worker processes one delivery at a time with its own codec state, so the hot
// path shares no locks.
type Worker struct {
	s      *Service
	verify *wire.Verifier
	seal   *wire.Sealer
}

// NewWorker returns a worker.
func (s *Service) NewWorker() *Worker {
	return &Worker{s: s, verify: s.Keys.Verifier(s.MaxSkew), seal: wire.NewSealer(s.Keys.Current)}
}

// Process returns what to publish for d: its Result, or a DeadLetter of d
// itself when it cannot be trusted or read. It returns an error only when
// the work was abandoned (ctx canceled) before an answer: then nothing may be
// published or committed, and the delivery is redelivered.
//
// A request the ledger has answered gets its stored result again, byte for
// byte, and runs nothing. The ledger is asked before anything else happens
// and, for pay and create, records the request before its task runs.
func (w *Worker) Process(ctx context.Context, d Delivery) (Answer, error) {
	s := w.s
	start := s.Now()
	ref := start
	if s.ClockFromBroker {
		ref = d.AppendTime
	}
	req, err := w.verify.Open(d.Value, ref)
	var known *ledger.Entry
	if err != nil {
		rej := err.(*wire.RejectError)
		if rej.Reason == wire.StaleTimestamp {
			// Authentic but outside the clock window: a request the
			// ledger knows is no replay from outside; it goes on.
			e, err := w.lookup(ctx, req.ID())
			if err != nil {
				return w.abandon(err)
			}
			known = e
		}
		if known == nil {
			s.Metrics.DeadLetters.WithLabelValues(string(rej.Reason)).Inc()
			s.Log.Warn("dead-lettering record", "reason", rej.Reason, "detail", rej.Detail,
				"topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
			return DeadLetter{Delivery: d, Reason: string(rej.Reason), Detail: rej.Detail}, nil
		}
		s.Log.Info("request outside the clock window is in the ledger; continuing it", "request_id", req.ID(),
			"state", known.State, "topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
	}

	// Copies of one request (a replay, a redelivery racing the original)
	// take turns, so the later ones find the first one's result.
	unlock, err := s.requests.Lock(ctx, req.Signature)
	if err != nil {
		return w.abandon(err)
	}
	defer unlock()

	entry := ledger.Entry{ID: req.ID(), Task: string(req.TaskName), Key: d.Key, Headers: ledgerHeaders(d.Headers)}
	switch {
	case req.Task == wire.TaskPay:
		// The payment's owner records the request as it claims the
		// invoice; one answered before is only read.
		if known == nil {
			if known, err = w.lookup(ctx, entry.ID); err != nil {
				return w.abandon(err)
			}
		}
	case req.Task == wire.TaskCreate || known != nil:
		stored, err := w.begin(ctx, entry)
		if err != nil {
			return w.abandon(err)
		}
		known = &stored
	}
	if known != nil && known.State == ledger.Final {
		s.Metrics.Republished.WithLabelValues(req.Task.String()).Inc()
		s.Log.Info("request answered before; publishing its stored result", "request_id", entry.ID, "task", req.Task.String(),
			"topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
		return resultFor(d, known.Result), nil
	}

	out := w.run(ctx, &req, d)
	switch {
	case out.Err != nil && core.IsCanceled(out.Err):
		return w.abandon(out.Err)
	case out.Deferred:
		s.Log.Info("payment still in flight; its owner answers when it ends", "request_id", entry.ID, "payment_hash", out.PaymentHash,
			"topic", d.Topic, "partition", d.Partition, "offset", d.Offset)
		return Deferred{}, nil
	case out.Stored != nil:
		s.Metrics.Duration.WithLabelValues(req.Task.String()).Observe(s.Now().Sub(start).Seconds())
		return resultFor(d, out.Stored), nil
	}
	result := w.result(&req, out)
	value, err := w.sealResult(&req, result)
	if err != nil {
		return nil, err
	}

	// The first result stored is the answer, whoever stored it (a copy of
	// this request, recovery).
	entry.Result, entry.PaymentHash = value, out.PaymentHash
	var stored ledger.Entry
	if err := ledger.Retry(ctx, s.Log, "store result", func(ctx context.Context) (err error) {
		stored, err = s.Ledger.Finish(ctx, entry)
		return err
	}); err != nil {
		return w.abandon(err)
	}
	s.Metrics.Requests.WithLabelValues(req.Task.String(), string(result.Data.Status)).Inc()
	s.Metrics.Duration.WithLabelValues(req.Task.String()).Observe(s.Now().Sub(start).Seconds())
	return resultFor(d, stored.Result), nil
}

// begin records a request before its task runs, and returns the ledger's
// entry for it.
func (w *Worker) begin(ctx context.Context, e ledger.Entry) (ledger.Entry, error) {
	var stored ledger.Entry
	err := ledger.Retry(ctx, w.s.Log, "record request", func(ctx context.Context) (err error) {
		stored, _, err = w.s.Ledger.Begin(ctx, e)
		return err
	})
	return stored, err
}

// lookup returns the ledger's entry for id, or nil.
func (w *Worker) lookup(ctx context.Context, id string) (*ledger.Entry, error) {
	var e ledger.Entry
	err := ledger.Retry(ctx, w.s.Log, "look up request", func(ctx context.Context) (err error) {
		e, err = w.s.Ledger.Get(ctx, id)
		return err
	})
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
}

func (w *Worker) abandon(err error) (Answer, error) {
	w.s.Metrics.Abandoned.Inc()
	return nil, err
}

// sealResult seals a result body; one that cannot be encoded is a bug, and
// is answered as one.
func (w *Worker) sealResult(req *wire.Request, result *wire.Result) ([]byte, error) {
	s := w.s
	value, err := w.seal.Seal(s.Now(), result)
	if err != nil {
		s.Log.Error("encoding result", "request_id", req.ID(), "error", err)
		return w.seal.Seal(s.Now(), w.result(req, task.Outcome{Err: err}))
	}
	return value, nil
}

// resultFor is a result value with the key and headers of the request's
// delivery.
func resultFor(d Delivery, value []byte) Result {
	return Result{Value: value, Key: d.Key, Headers: d.Headers}
}

func ledgerHeaders(hs []Header) []ledger.Header {
	out := make([]ledger.Header, len(hs))
	for i, h := range hs {
		out[i] = ledger.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// run dispatches by task.
func (w *Worker) run(ctx context.Context, req *wire.Request, d Delivery) task.Outcome {
	s := w.s
	switch req.Task {
	case wire.TaskDecode:
		return task.Decode(ctx, s.Network, req.Payload)
	case wire.TaskPay:
		hs := make([]payment.Header, len(d.Headers))
		for i, h := range d.Headers {
			hs[i] = payment.Header(h)
		}
		return s.Payer.Pay(ctx, req, d.Key, hs)
	case wire.TaskCreate:
		return s.Creator.Create(ctx, req)
	}
	return task.Outcome{Err: core.Errorf(core.CodeUnknownTask, "unknown task %q; the service runs decode, pay and create", req.TaskName)}
}

// result builds the result body, logging what is not published.
func (w *Worker) result(req *wire.Request, out task.Outcome) *wire.Result {
	r := &wire.Result{Task: wire.TaskPrefix + string(req.TaskName)}
	r.Data.RequestID = req.ID()
	if out.Err == nil {
		r.Data.Status = wire.StatusSuccess
		r.Data.Message = out.Message
		if req.Task == wire.TaskCreate {
			r.Data.PaymentHash = out.PaymentHash
		}
		return r
	}

	f := core.Describe(out.Err)
	level := slog.LevelInfo
	if f.Code == core.CodeInternal || f.Code == core.CodeNodeUnavailable {
		level = slog.LevelError
	}
	w.s.Log.Log(context.Background(), level, "request failed", "task", req.Task.String(), "request_id", r.Data.RequestID,
		"code", f.Code, "error", out.Err.Error())

	m := wire.ErrorMessage{Error: string(f.Code), Detail: f.Detail}
	if req.Task == wire.TaskPay {
		m.PaymentError = f.PaymentError
		m.PaymentHash = out.PaymentHash
	}
	r.Data.Status = wire.StatusError
	r.Data.Message = m
	return r
}
