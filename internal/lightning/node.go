// Package lightning is the service's narrow view of a Lightning node: the
// Node interface, the typed values it returns, and local BOLT11 decoding.
// Handlers see these types, never protobufs; the lnd package adapts LND's
// gRPC API to them.
package lightning

import (
	"context"
	"errors"
	"time"
)

// Hash is a payment hash or preimage.
type Hash [32]byte

// Node is what the service needs of a Lightning node. Every method takes ctx
// first and gives each RPC a deadline derived from it.
type Node interface {
	// Info reports the node's identity and network.
	Info(ctx context.Context) (Info, error)

	// AddInvoice creates an invoice with the given preimage. If an invoice
	// with the preimage's hash exists, it returns ErrInvoiceExists.
	AddInvoice(ctx context.Context, p InvoiceParams) (Invoice, error)

	// LookupInvoice returns the invoice with hash, or ErrInvoiceNotFound.
	LookupInvoice(ctx context.Context, hash Hash) (Invoice, error)

	// SendPayment pays the BOLT11 invoice and waits until the payment is
	// final (Succeeded or Failed). If the node already has a payment for
	// the invoice's hash (in flight or succeeded) it returns
	// ErrPaymentExists and has sent nothing.
	SendPayment(ctx context.Context, p PaymentParams) (Payment, error)

	// TrackPayment waits until the payment with hash is final and returns
	// it, or returns ErrPaymentNotFound if the node has no such payment.
	TrackPayment(ctx context.Context, hash Hash) (Payment, error)
}

// Errors a Node returns, tested with errors.Is. Implementations wrap them
// with detail.
var (
	// ErrUnavailable: the node could not be reached and the call had no
	// effect on it (the request never left this process).
	ErrUnavailable = errors.New("lightning node unavailable")

	// ErrOutcomeUnknown: the connection failed after the request may have
	// reached the node, so whether it took effect is unknown.
	ErrOutcomeUnknown = errors.New("lightning node connection lost; outcome unknown")

	ErrInvoiceExists   = errors.New("invoice already exists")
	ErrInvoiceNotFound = errors.New("invoice not found")
	ErrPaymentExists   = errors.New("payment already exists")
	ErrPaymentNotFound = errors.New("payment not found")
)

// Info identifies a node.
type Info struct {
	PubKey  string // hex, compressed
	Alias   string
	Network string // "mainnet", "testnet", "testnet4", "signet", "regtest", "simnet"
	Synced  bool   // synced to chain and graph
}

// InvoiceParams asks for an invoice.
type InvoiceParams struct {
	Preimage Hash
	ValueSat int64 // 0: the payer chooses the amount
	Memo     string
	Expiry   time.Duration
}

// InvoiceState is the state of an invoice on the node that issued it.
type InvoiceState int

const (
	InvoiceOpen InvoiceState = iota
	InvoiceSettled
	InvoiceCanceled
	InvoiceAccepted
)

// Invoice is an invoice issued by the node.
type Invoice struct {
	PaymentRequest string
	Hash           Hash
	ValueSat       int64
	Memo           string
	Expiry         time.Duration
	State          InvoiceState
}

// PaymentParams asks for a payment.
type PaymentParams struct {
	PaymentRequest string
	FeeLimitSat    int64         // the most the route may cost
	Timeout        time.Duration // how long the node may look for a route
}

// PaymentStatus is the state of an outgoing payment.
type PaymentStatus int

const (
	PaymentInFlight PaymentStatus = iota
	PaymentSucceeded
	PaymentFailed
)

func (s PaymentStatus) String() string {
	switch s {
	case PaymentSucceeded:
		return "SUCCEEDED"
	case PaymentFailed:
		return "FAILED"
	default:
		return "IN_FLIGHT"
	}
}

// FailureReason says why a payment failed.
type FailureReason int

const (
	FailureNone FailureReason = iota
	FailureTimeout
	FailureNoRoute
	FailureError
	FailureIncorrectPaymentDetails
	FailureInsufficientBalance
	FailureCanceled
)

func (r FailureReason) String() string {
	switch r {
	case FailureNone:
		return "none"
	case FailureTimeout:
		return "timeout"
	case FailureNoRoute:
		return "no_route"
	case FailureIncorrectPaymentDetails:
		return "incorrect_payment_details"
	case FailureInsufficientBalance:
		return "insufficient_balance"
	case FailureCanceled:
		return "canceled"
	default:
		return "error"
	}
}

// Payment is an outgoing payment as the node knows it.
type Payment struct {
	Hash      Hash
	Preimage  Hash // set when Succeeded
	ValueMsat int64
	FeeMsat   int64
	Status    PaymentStatus
	Failure   FailureReason // set when Failed
	Route     *Route        // the route of a succeeded HTLC, when Succeeded
	CreatedAt time.Time
}

// Route is the path a payment took.
type Route struct {
	TotalTimeLock uint32
	TotalFeesMsat int64
	TotalAmtMsat  int64
	Hops          []Hop
}

// Hop is one channel of a route.
type Hop struct {
	ChanID           uint64
	ChanCapacity     int64
	AmtToForwardMsat int64
	FeeMsat          int64
	Expiry           uint32
	PubKey           string // hex, compressed
	TLVPayload       bool
	MPP              *MPPRecord
}

// MPPRecord is the multi-path record of the final hop.
type MPPRecord struct {
	PaymentAddr  [32]byte
	TotalAmtMsat int64
}
