package lnd

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lightning-service/internal/lightning"
)

var sentinels = []error{
	lightning.ErrUnavailable, lightning.ErrOutcomeUnknown, lightning.ErrInvoiceExists,
	lightning.ErrInvoiceNotFound, lightning.ErrPaymentExists, lightning.ErrPaymentNotFound,
}

// requireIs checks that err is want and no other sentinel; want nil means
// none.
func requireIs(t *testing.T, name string, err, want error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: nil error", name)
		return
	}
	for _, s := range sentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("%s: errors.Is(%q, %q) = %v", name, err, s, got)
		}
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

var (
	errUnknown     = status.Error(codes.Unknown, "invoice expired. Valid until 2025-01-01")
	errUnavailable = status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\"")
	errLocked      = status.Error(codes.Unknown, "wallet locked, unlock it to enable full RPC access")
	errStarting    = status.Error(codes.Unknown, "the RPC server is in the process of starting up, but not yet ready to accept calls")
	errDeadline    = status.Error(codes.DeadlineExceeded, "context deadline exceeded")
)

func TestUnaryError(t *testing.T) {
	bg := context.Background()
	for _, c := range []struct {
		name   string
		parent context.Context
		err    error
		want   error
	}{
		{"unavailable", bg, errUnavailable, lightning.ErrUnavailable},
		{"call deadline", bg, errDeadline, lightning.ErrUnavailable},
		{"wallet locked", bg, errLocked, lightning.ErrUnavailable},
		{"starting", bg, errStarting, lightning.ErrUnavailable},
		{"rejected", bg, errUnknown, nil},
		{"permission", bg, status.Error(codes.Unknown, "verification failed: signature mismatch after caveat verification"), nil},
		{"caller canceled", canceledCtx(), status.Error(codes.Canceled, "context canceled"), lightning.ErrUnavailable},
	} {
		err := unaryError(c.parent, "GetInfo", c.err)
		requireIs(t, c.name, err, c.want)
	}
	if err := unaryError(canceledCtx(), "GetInfo", status.Error(codes.Canceled, "x")); !errors.Is(err, context.Canceled) {
		t.Errorf("caller canceled: %v does not wrap context.Canceled", err)
	}
}

func TestAddInvoiceError(t *testing.T) {
	requireIs(t, "duplicate", addInvoiceError(context.Background(),
		status.Error(codes.Unknown, "invoice with payment hash already exists")), lightning.ErrInvoiceExists)
	requireIs(t, "unavailable", addInvoiceError(context.Background(), errUnavailable), lightning.ErrUnavailable)
	requireIs(t, "other", addInvoiceError(context.Background(),
		status.Error(codes.Unknown, "expiry of 40000000 seconds greater than max expiry of 31536000 seconds")), nil)
}

func TestLookupInvoiceError(t *testing.T) {
	bg := context.Background()
	var h lightning.Hash
	requireIs(t, "not found", lookupInvoiceError(bg, h, status.Error(codes.NotFound, "unable to locate invoice")), lightning.ErrInvoiceNotFound)
	requireIs(t, "no invoices", lookupInvoiceError(bg, h, status.Error(codes.NotFound, "there are no existing invoices")), lightning.ErrInvoiceNotFound)
	requireIs(t, "old lnd", lookupInvoiceError(bg, h, status.Error(codes.Unknown, "unable to locate invoice")), lightning.ErrInvoiceNotFound)
	requireIs(t, "unavailable", lookupInvoiceError(bg, h, errUnavailable), lightning.ErrUnavailable)
	requireIs(t, "other", lookupInvoiceError(bg, h, errUnknown), nil)
}

func TestStreamError(t *testing.T) {
	bg := context.Background()
	unsent := func(err error) error { return &unsentError{err: err} }
	for _, c := range []struct {
		name    string
		parent  context.Context
		err     error
		updates int
		want    error
	}{
		{"open failed", bg, unsent(errUnavailable), 0, lightning.ErrUnavailable},
		{"open timed out", bg, unsent(errDeadline), 0, lightning.ErrUnavailable},
		{"open canceled", canceledCtx(), unsent(status.Error(codes.Canceled, "context canceled")), 0, lightning.ErrUnavailable},
		{"connection lost before first update", bg, errUnavailable, 0, lightning.ErrOutcomeUnknown},
		{"connection lost after first update", bg, errUnavailable, 1, lightning.ErrOutcomeUnknown},
		{"stream reset", bg, status.Error(codes.Internal, "stream terminated by RST_STREAM with error code: INTERNAL_ERROR"), 0, lightning.ErrOutcomeUnknown},
		{"caller canceled after open", canceledCtx(), status.Error(codes.Canceled, "context canceled"), 0, lightning.ErrOutcomeUnknown},
		{"lnd shutting down", bg, status.Error(codes.Unknown, "routerrpc server shutting down"), 0, lightning.ErrOutcomeUnknown},
		{"error after an update", bg, errUnknown, 2, lightning.ErrOutcomeUnknown},
		{"already paid", bg, status.Error(codes.AlreadyExists, "invoice is already paid"), 0, lightning.ErrPaymentExists},
		{"in flight", bg, status.Error(codes.AlreadyExists, "payment is in transition"), 0, lightning.ErrPaymentExists},
		{"not initiated", bg, status.Error(codes.NotFound, "payment isn't initiated"), 0, lightning.ErrPaymentNotFound},
		{"wallet locked", bg, errLocked, 0, lightning.ErrUnavailable},
		{"validation", bg, errUnknown, 0, nil},
		{"bad hash", bg, status.Error(codes.Unknown, "invalid hash length of 4, want 32"), 0, nil},
	} {
		err := streamError(c.parent, "SendPaymentV2", c.err, c.updates)
		requireIs(t, c.name, err, c.want)
	}
	err := streamError(canceledCtx(), "TrackPaymentV2", status.Error(codes.Canceled, "context canceled"), 1)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("caller canceled: %v does not wrap context.Canceled", err)
	}
}
