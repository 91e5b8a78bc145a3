// Package payment owns the service's outgoing payments: each is one state
// machine (claimed → sending → tracking → ended) with one owner at a time,
// under a lease in the ledger.
package payment

import (
	"context"
	"errors"
	"time"

	"lightning-service/internal/lightning"
)

// State is where a pay request stands with its invoice's payment hash.
// At most one request holds a hash (Sending or Paid) at any time.
type State string

const (
	// Waiting: recorded, holding no hash: another request held it when
	// this one asked, or it was never claimed.
	Waiting State = ""
	// Sending: this request holds the hash and may have sent its payment:
	// from the claim on, any payment of the hash on the node is its own.
	Sending State = "sending"
	// Paid: this request's payment succeeded; it holds the hash for good.
	Paid State = "paid"
	// Unpaid: this request's payment failed, or was proved never sent;
	// another request may claim the hash.
	Unpaid State = "unpaid"
)

// Header is a record header, kept so that a result published outside the
// consume loop carries the request record's key and headers.
type Header struct {
	Key   string
	Value []byte
}

// Record is a pay request as the ledger holds it.
type Record struct {
	ID             string // the request id: its signature in lower-case hex
	Hash           lightning.Hash
	PaymentRequest string // the BOLT11 string, so that any owner can resume it
	State          State
	Final          bool   // answered: Result is the sealed result
	Unpublished    bool   // Final, but its result not yet published (End)
	Result         []byte // set when Final
	Owner          string // the instance that owns the request's work, while not Final
	LeaseUntil     time.Time
	Key            []byte   // the request record's key
	Headers        []Header // the request record's headers
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Claim asks Store.Claim to record a pay request and claim its hash.
type Claim struct {
	ID             string
	Task           string // the task field as sent, trimmed
	Hash           lightning.Hash
	PaymentRequest string
	Key            []byte
	Headers        []Header
	Owner          string
	Until          time.Time // the lease's end
}

// Claimed is what Store.Claim found and did.
type Claimed struct {
	// Self is the request as stored after the call.
	Self Record
	// Owned reports whether Owner owns the request after the call: false
	// when it is Final, or owned under a live lease by another instance.
	Owned bool
	// Holder is the other request that holds the hash (Sending or Paid),
	// when there is one: then Self holds nothing and is Waiting.
	Holder *Record
	// Resumed reports that Self held the hash (Sending) before the call:
	// an earlier owner may have sent its payment.
	Resumed bool
}

// End asks Store.End to end a request.
type End struct {
	ID    string
	Owner string
	// State is the hash's outcome: Paid or Unpaid for a request that held
	// the hash (Sending), Waiting for one that never did.
	State  State
	Result []byte // the sealed result
	// Unpublished: no worker is waiting to publish the result, so the
	// owner publishes it and then calls Published; until then the request
	// keeps its owner and lease, and an owner that stops before
	// publishing leaves it to Orphans.
	Unpublished bool
}

// ErrLeaseLost: the request is owned by another instance now (its lease
// expired and was taken over); this owner must not answer it.
var ErrLeaseLost = errors.New("payment: lease lost to another owner")

// ErrNotRecorded: the ledger has no such request, or no request holds the
// hash.
var ErrNotRecorded = errors.New("payment: not in the ledger")

// Store is what the owner of payments needs of the ledger. Each method
// is one transaction, safe for concurrent use, also from several processes
// sharing a store. Every write is durable when it returns.
//
// A pay request is owned by one instance at a time, under a lease the owner
// renews while it works; a lease that expired may be taken by another
// instance. Only the owner ends a request, so a result is stored only by
// the owner whose update took effect.
type Store interface {
	// Claim records c's request if it is new, and, unless it is Final or
	// owned by another instance under a live lease, makes c.Owner its
	// owner until c.Until and makes it the holder of c.Hash (Sending) if
	// no other request holds it. One durable write.
	Claim(ctx context.Context, c Claim) (Claimed, error)

	// Take makes owner the owner of request id until until, if it is not
	// Final (or Final and Unpublished) and its lease expired (or is
	// owner's already): ok reports whether it did. For resuming a request
	// another owner left, and before each send but the first.
	Take(ctx context.Context, id, owner string, until time.Time) (rec Record, ok bool, err error)

	// Retry makes the Waiting request id, owned by owner, the holder of
	// its hash (Sending) if no other request holds it now; otherwise it
	// returns that holder.
	Retry(ctx context.Context, id, owner string) (Claimed, error)

	// End stores the sealed result of request id and makes it Final, with
	// the hash's outcome, if owner owns it; ErrLeaseLost if another owner
	// does. A request Final already is returned as stored: the first
	// result stored is the answer.
	End(ctx context.Context, e End) (Record, error)

	// Published records that the result of request id, ended Unpublished,
	// was acknowledged by the broker.
	Published(ctx context.Context, id string) error

	// Renew extends to until the lease of every request owner owns that is
	// not Final: one write, however many.
	Renew(ctx context.Context, owner string, until time.Time) error

	// Get returns request id, or ErrNotRecorded.
	Get(ctx context.Context, id string) (Record, error)

	// Holder returns the request that holds hash (Sending or Paid), or
	// ErrNotRecorded.
	Holder(ctx context.Context, hash lightning.Hash) (Record, error)

	// Waiters returns the Waiting requests for hash that are not Final.
	Waiters(ctx context.Context, hash lightning.Hash) ([]Record, error)

	// Orphans returns, oldest first, the pay requests not Final, or Final
	// and Unpublished, whose lease ended before now: the work of owners
	// that stopped. A request recorded without its payment request (by an
	// older build) is none: it goes on when Kafka delivers it again.
	Orphans(ctx context.Context, now time.Time) ([]Record, error)
}
