package service

import (
	"context"
	"errors"
	"time"
)

// Delivery is one request as the transport delivers it: the record's value,
// key and headers, where it was read from, and the time the broker gives it.
type Delivery struct {
	Value   []byte
	Key     []byte
	Headers []Header

	Topic     string
	Partition int32
	Offset    int64
	// AppendTime is the record's timestamp: the time the broker appended
	// it on a topic with message.timestamp.type=LogAppendTime.
	AppendTime time.Time
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Answer is what to publish for a delivery: a Result, a DeadLetter, or
// Deferred (nothing now).
type Answer interface{ answer() }

// Result is a sealed result, bound for the output topic with the key and
// headers of the request's delivery.
type Result struct {
	Value   []byte
	Key     []byte
	Headers []Header
}

// DeadLetter is a delivery that cannot be trusted or read, bound for the
// dead-letter topic untouched, with the reason it was rejected.
type DeadLetter struct {
	Delivery Delivery // as delivered; its coordinates name the source
	Reason   string   // machine-readable: malformed, bad_signature, stale_timestamp
	Detail   string   // human text
}

// Deferred means nothing is published for the delivery now: the request is
// durably in the ledger with an owner who will answer it later, so the
// delivery may be committed.
type Deferred struct{}

func (Result) answer()     {}
func (DeadLetter) answer() {}
func (Deferred) answer()   {}

// Publisher publishes a result outside the consume loop (recovery) and
// returns once the transport has acknowledged it. An error wrapping
// ErrUnpublishable means no retry will publish r (the transport refuses it
// for good, e.g. as too large); any other error may pass with a retry.
type Publisher interface {
	Publish(ctx context.Context, r Result) error
}

// ErrUnpublishable: see Publisher.
var ErrUnpublishable = errors.New("the transport refuses this result, however often it is tried")
