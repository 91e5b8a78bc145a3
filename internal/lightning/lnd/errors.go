package lnd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lightning-service/internal/lightning"
)

// LND's messages that this package recognises. LND returns most errors as
// plain Go errors, which reach us as codes.Unknown with only the text.
const (
	// invoices.ErrDuplicateInvoice, from AddInvoice.
	msgInvoiceExists = "invoice with payment hash already exists"
	// invoices.ErrInvoiceNotFound; LookupInvoice also sends codes.NotFound.
	msgInvoiceNotFound = "unable to locate invoice"
	// invoices.ErrNoInvoicesCreated, sent with codes.NotFound.
	msgNoInvoices = "there are no existing invoices"
	// paymentsdb.ErrPaymentNotInitiated, sent with codes.NotFound.
	msgPaymentNotFound = "payment isn't initiated"
	// routerrpc's errServerShuttingDown: a payment stream ended by LND
	// stopping, possibly after the payment started.
	msgRouterShuttingDown = "routerrpc server shutting down"
)

// notReady holds the errors of LND's RPC state interceptor (rpcperms): while
// LND starts or its wallet is locked it refuses every call before any
// handler runs, so the call certainly had no effect.
var notReady = map[string]bool{
	"waiting to start, RPC services not available":                                       true,
	"wallet not created, create one to enable full RPC access":                           true,
	"wallet locked, unlock it to enable full RPC access":                                 true,
	"the RPC server is in the process of starting up, but not yet ready to accept calls": true,
}

// unaryError classifies the error of a unary call made under parent. Every
// unary call this package makes is read-only or idempotent (AddInvoice by
// its preimage), so a connection failure at any point means "unavailable":
// repeating the call is safe.
func unaryError(parent context.Context, rpc string, err error) error {
	st := status.Convert(err)
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("%w: lnd %s: %w", lightning.ErrUnavailable, rpc, parent.Err())
	case st.Code() == codes.Unavailable, st.Code() == codes.DeadlineExceeded, notReady[st.Message()]:
		return fmt.Errorf("%w: lnd %s: %s", lightning.ErrUnavailable, rpc, st.Message())
	}
	return fmt.Errorf("lnd %s: %w", rpc, err)
}

// addInvoiceError classifies an AddInvoice error.
func addInvoiceError(parent context.Context, err error) error {
	if msg := status.Convert(err).Message(); strings.Contains(msg, msgInvoiceExists) {
		return fmt.Errorf("%w: lnd AddInvoice: %s", lightning.ErrInvoiceExists, msg)
	}
	return unaryError(parent, "AddInvoice", err)
}

// lookupInvoiceError classifies a LookupInvoice error.
func lookupInvoiceError(parent context.Context, hash lightning.Hash, err error) error {
	st := status.Convert(err)
	if st.Code() == codes.NotFound || strings.Contains(st.Message(), msgInvoiceNotFound) ||
		strings.Contains(st.Message(), msgNoInvoices) {
		return fmt.Errorf("%w: lnd LookupInvoice %s: %s", lightning.ErrInvoiceNotFound, hash, st.Message())
	}
	return unaryError(parent, "LookupInvoice", err)
}

// streamError classifies the error of a payment stream (SendPaymentV2,
// TrackPaymentV2) made under parent, after updates payment updates arrived.
// Unlike a unary call, a payment must not be called "unavailable" unless the
// request certainly never reached LND: the caller may then send it again.
func streamError(parent context.Context, rpc string, err error, updates int) error {
	var unsent *unsentError
	sent := !errors.As(err, &unsent)
	st := status.Convert(err)
	switch {
	case parent.Err() != nil && !sent:
		return fmt.Errorf("%w: lnd %s: %w", lightning.ErrUnavailable, rpc, parent.Err())
	case parent.Err() != nil:
		return fmt.Errorf("%w: lnd %s: %w", lightning.ErrOutcomeUnknown, rpc, parent.Err())
	case !sent, notReady[st.Message()]:
		return fmt.Errorf("%w: lnd %s: %s", lightning.ErrUnavailable, rpc, st.Message())
	case updates > 0 || !rejected(st):
		return fmt.Errorf("%w: lnd %s: %s", lightning.ErrOutcomeUnknown, rpc, st.Message())
	case st.Code() == codes.AlreadyExists:
		// LND's answer when the hash has a payment in flight or
		// succeeded (paymentsdb ErrPaymentExists, ErrPaymentInFlight,
		// ErrAlreadyPaid); it sent nothing for this request.
		return fmt.Errorf("%w: lnd %s: %s", lightning.ErrPaymentExists, rpc, st.Message())
	case st.Code() == codes.NotFound || strings.Contains(st.Message(), msgPaymentNotFound):
		return fmt.Errorf("%w: lnd %s: %s", lightning.ErrPaymentNotFound, rpc, st.Message())
	}
	return fmt.Errorf("lnd %s: %w", rpc, err)
}

// rejected reports whether a stream's error, arriving before any update, is
// LND's answer to the request (it validates a payment before starting it and
// answers with a status or a plain error) rather than the connection or the
// server failing, which may happen after the payment started.
func rejected(st *status.Status) bool {
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Internal,
		codes.ResourceExhausted, codes.Aborted, codes.DataLoss:
		return false
	}
	return st.Message() != msgRouterShuttingDown
}

// unsentError marks an error from opening a stream. grpc-go fails NewStream
// only before the stream exists on a transport, so the request never left
// this process.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// streamConn is a connection whose NewStream marks its errors unsent; the
// generated routerrpc client opens its streams through it.
type streamConn struct{ *grpc.ClientConn }

func (c streamConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := c.ClientConn.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, &unsentError{err: err}
	}
	return s, nil
}
