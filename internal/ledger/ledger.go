// Package ledger is the service's durable record of requests: every
// authenticated request is recorded by its id before anything it asks for
// happens, a pay request claims its invoice's payment hash before it pays,
// and each request's sealed result is kept once it is final. Kafka delivers
// at least once; the ledger is what makes a redelivered or replayed request
// get its first answer again instead of running a second time.
//
// Two stores implement it: SQLite in a data directory (one instance), and
// PostgreSQL (several instances sharing one consumer group).
package ledger

import (
	"context"
	"errors"
	"time"

	"lightning-service/internal/payment"
)

// State is where a request stands.
type State string

const (
	// Pending: recorded; its work may have begun, and may have had effects.
	Pending State = "pending"
	// Final: answered; Entry.Result is the sealed result, published as is
	// whenever the request comes again.
	Final State = "final"
)

// PayState is where a pay request stands with its invoice's payment hash.
// At most one request holds a hash (Paying or Paid) at any time. The same
// states as payment.State, by their older names.
type PayState string

const (
	NotPaying PayState = ""
	// Paying: this request holds the hash; it is paying, or may have paid
	// (payment.Sending).
	Paying PayState = "sending"
	// Paid: this request's payment succeeded; it holds the hash for good.
	Paid PayState = "paid"
	// Unpaid: this request's payment failed or was never sent; another
	// request may claim the hash.
	Unpaid PayState = "unpaid"
)

// Header is a record header, kept so that a result published outside the
// consume loop carries the request record's key and headers.
type Header struct {
	Key   string `json:"k"`
	Value []byte `json:"v"`
}

// Entry is one request in the ledger.
type Entry struct {
	ID          string // the request id: its signature in lower-case hex
	Task        string // the task field as sent, trimmed: "pay", "create", …
	State       State
	PaymentHash string // hex; pay: the invoice's, once decoded; create: the invoice made
	PayState    PayState
	Key         []byte   // the request record's key
	Headers     []Header // the request record's headers
	Result      []byte   // the sealed result, when Final
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Claim is the answer to ClaimPayment: who holds the payment hash.
type Claim struct {
	Holder Entry // the request holding the hash: the claimer itself, or another
	// Resumed: the claimer held the hash already before this call (a
	// previous delivery of the same request claimed it).
	Resumed bool
}

// Mine reports whether the request with id holds the hash.
func (c Claim) Mine(id string) bool { return c.Holder.ID == id }

// ErrNotFound: no such request, or no request holds the hash.
var ErrNotFound = errors.New("ledger: not found")

// Ledger is what the service needs of its request ledger. Every method is
// safe for concurrent use, also from several processes sharing a store.
type Ledger interface {
	// Begin records a request (ID, Task, Key, Headers) as Pending unless it
	// is recorded already, and returns the ledger's entry for it; created
	// reports whether this call recorded it.
	Begin(ctx context.Context, e Entry) (stored Entry, created bool, err error)

	// Get returns the entry of a request id, or ErrNotFound.
	Get(ctx context.Context, id string) (Entry, error)

	// ClaimPayment makes the pay request id the holder of hash, unless
	// another request holds it (Paying or Paid): then it returns that one.
	// The request is recorded if it was not.
	ClaimPayment(ctx context.Context, id, hash string) (Claim, error)

	// Holder returns the request that holds hash (Paying or Paid), or
	// ErrNotFound.
	Holder(ctx context.Context, hash string) (Entry, error)

	// EndPayment records the final outcome of the payment of the request
	// id, which holds its hash: Paid keeps the hash, Unpaid releases it. It
	// changes nothing for a request that does not hold a hash.
	EndPayment(ctx context.Context, id string, paid bool) error

	// Finish stores a request's sealed result (e.Result; e.Task, Key,
	// Headers and PaymentHash when the request was not recorded) and makes
	// it Final. The first result stored wins: Finish returns the entry as
	// stored, whose Result is the one to publish.
	Finish(ctx context.Context, e Entry) (Entry, error)

	// Unfinished returns, oldest first, the requests not yet Final and the
	// pay requests still Paying: what recovery must see to the end.
	Unfinished(ctx context.Context) ([]Entry, error)

	// Payments returns the ledger's pay requests as the owner of payments
	// sees them: claims and leases, over the same requests. ClaimPayment,
	// EndPayment and Holder above are their older form, kept until every
	// caller uses these.
	Payments() payment.Store

	Close() error
}

// Open opens the ledger the configuration names: PostgreSQL at databaseURL
// when it is set, SQLite in dataDir otherwise. Either way the schema is
// migrated to this build's version first.
func Open(ctx context.Context, databaseURL, dataDir string) (Ledger, error) {
	if databaseURL != "" {
		return OpenPostgres(ctx, databaseURL)
	}
	return OpenSQLite(ctx, dataDir)
}
