// Package core holds what every other package of the service shares: the
// error codes of the wire contract and the one error type that carries them.
// It imports nothing of ours.
package core

import (
	"context"
	"errors"
	"fmt"
)

// Code is an error code published in a result's message.error field.
type Code string

// The codes of the wire contract (docs/protocol.md).
const (
	CodeInvalidPaymentRequest   Code = "invalid_payment_request"
	CodeInvoiceExpired          Code = "invoice_expired"
	CodeAlreadyPaid             Code = "already_paid"
	CodeNoRoute                 Code = "no_route"
	CodeTimeout                 Code = "timeout"
	CodeInsufficientBalance     Code = "insufficient_balance"
	CodeIncorrectPaymentDetails Code = "incorrect_payment_details"
	CodeAmountRequired          Code = "amount_required"
	CodeInvalidAmount           Code = "invalid_amount"
	CodeInvalidExpiry           Code = "invalid_expiry"
	CodeMalformedPayload        Code = "malformed_payload"
	CodeUnknownTask             Code = "unknown_task"
	CodeNodeUnavailable         Code = "node_unavailable"
	CodeInternal                Code = "internal"
)

// legacyPaymentError is the payment_error text that callers of pay already
// match on, by code. Codes without an entry carry no payment_error.
var legacyPaymentError = map[Code]string{
	CodeInvalidPaymentRequest:   "invalid payment request",
	CodeInvoiceExpired:          "invoice expired",
	CodeAlreadyPaid:             "invoice is already paid",
	CodeNoRoute:                 "no_route",
	CodeTimeout:                 "timeout",
	CodeInsufficientBalance:     "insufficient_balance",
	CodeIncorrectPaymentDetails: "incorrect_payment_details",
	CodeAmountRequired:          "amount required",
	CodeNodeUnavailable:         "failed to connect to all addresses",
	CodeInternal:                "internal error",
}

// LegacyPaymentError returns the payment_error text for code, or "" when the
// contract gives none.
func LegacyPaymentError(code Code) string { return legacyPaymentError[code] }

// Error is an error with a wire code. Detail is human text safe to publish;
// Err, when set, is the underlying cause, which is logged and never published.
type Error struct {
	Code   Code
	Detail string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted, publishable detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with code and detail whose cause is err.
func Wrap(code Code, err error, detail string) *Error {
	return &Error{Code: code, Detail: detail, Err: err}
}

// Failure is what a result says about an error: the one place where any
// error becomes a code, a publishable detail and the legacy payment_error.
type Failure struct {
	Code         Code
	Detail       string
	PaymentError string
}

// Describe maps err to its Failure. Errors without a code are internal: their
// text may hold anything (addresses, node output), so it is never published.
func Describe(err error) Failure {
	var e *Error
	if errors.As(err, &e) && e.Code != CodeInternal {
		return Failure{Code: e.Code, Detail: e.Detail, PaymentError: LegacyPaymentError(e.Code)}
	}
	return Failure{Code: CodeInternal, Detail: "internal error; see the service log", PaymentError: LegacyPaymentError(CodeInternal)}
}

// IsCanceled reports whether err comes from the work being abandoned (shutdown,
// partition revoked). Such work publishes nothing and is redelivered.
func IsCanceled(err error) bool {
	return errors.Is(err, context.Canceled)
}
