// Package service walks one record through the service: open it (shape,
// signature, clock), run its task on the node, seal the result. Process is
// that walk; the kafka package feeds it records and publishes what it returns.
package service

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/core"
	"lightning-service/internal/task"
	"lightning-service/internal/wire"
)

// Service holds what every worker shares.
type Service struct {
	Keys        wire.Keys
	MaxSkew     time.Duration
	OutputTopic string
	DLQTopic    string

	Network *task.Network
	Payer   *task.Payer
	Creator *task.Creator

	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
}

// Worker processes one record at a time with its own codec state, so the hot
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

// Process returns the record to publish for rec: its result on the output
// topic, or rec itself on the dead-letter topic when it cannot be trusted or
// read. It returns an error only when the work was abandoned (ctx canceled)
// before an answer: then nothing may be published or committed, and the
// record is redelivered.
func (w *Worker) Process(ctx context.Context, rec *kgo.Record) (*kgo.Record, error) {
	s := w.s
	start := s.Now()
	req, err := w.verify.Open(rec.Value, start)
	if err != nil {
		rej := err.(*wire.RejectError)
		s.Metrics.DeadLetters.WithLabelValues(string(rej.Reason)).Inc()
		s.Log.Warn("dead-lettering record", "reason", rej.Reason, "detail", rej.Detail,
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
		return w.deadLetter(rec, rej), nil
	}

	out := w.run(ctx, &req)
	if out.Err != nil && core.IsCanceled(out.Err) {
		s.Metrics.Abandoned.Inc()
		return nil, out.Err
	}

	result := w.result(&req, out)
	value, err := w.seal.Seal(s.Now(), result)
	if err != nil { // a message that cannot be encoded is a bug; answer it as one
		s.Log.Error("encoding result", "request_id", req.ID(), "error", err)
		out = task.Outcome{Err: err}
		if value, err = w.seal.Seal(s.Now(), w.result(&req, out)); err != nil {
			return nil, err
		}
	}
	s.Metrics.Requests.WithLabelValues(req.Task.String(), string(result.Data.Status)).Inc()
	s.Metrics.Duration.WithLabelValues(req.Task.String()).Observe(s.Now().Sub(start).Seconds())
	return &kgo.Record{Topic: s.OutputTopic, Key: rec.Key, Headers: rec.Headers, Value: value}, nil
}

// run dispatches by task.
func (w *Worker) run(ctx context.Context, req *wire.Request) task.Outcome {
	s := w.s
	switch req.Task {
	case wire.TaskDecode:
		return task.Decode(ctx, s.Network, req.Payload)
	case wire.TaskPay:
		return s.Payer.Pay(ctx, req)
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

// deadLetter is rec, untouched, bound for the dead-letter topic with the
// reason and its origin in headers.
func (w *Worker) deadLetter(rec *kgo.Record, rej *wire.RejectError) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+5)
	headers = append(headers, rec.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: "error", Value: []byte(rej.Reason)},
		kgo.RecordHeader{Key: "detail", Value: []byte(rej.Detail)},
		kgo.RecordHeader{Key: "source-topic", Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: "source-partition", Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		kgo.RecordHeader{Key: "source-offset", Value: strconv.AppendInt(nil, rec.Offset, 10)},
	)
	return &kgo.Record{Topic: w.s.DLQTopic, Key: rec.Key, Value: rec.Value, Headers: headers}
}
