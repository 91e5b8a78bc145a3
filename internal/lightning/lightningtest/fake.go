// Package lightningtest has fakes of lightning.Node for tests: Fake, whose
// every method a test can override and which records each call, and Stateful,
// an in-memory node that keeps invoices and payments by LND's rules. Wrap a
// Stateful in a Fake to override some calls and keep the rest faithful.
package lightningtest

import (
	"context"
	"fmt"
	"sync"

	"lightning-service/internal/lightning"
)

// Method names a Node method in a recorded Call.
type Method string

const (
	MethodInfo          Method = "Info"
	MethodAddInvoice    Method = "AddInvoice"
	MethodLookupInvoice Method = "LookupInvoice"
	MethodSendPayment   Method = "SendPayment"
	MethodTrackPayment  Method = "TrackPayment"
)

// Call is one call a Fake received. Arg is the method's argument after ctx:
// lightning.InvoiceParams, lightning.PaymentParams, lightning.Hash, or nil
// for Info.
type Call struct {
	Method Method
	Arg    any
}

// Fake is a lightning.Node whose methods run the test's hook when one is set
// and the embedded Node otherwise. With neither, a call returns an error
// naming the method, which a task reports as internal. Every call is
// recorded, hooks or not. The zero Fake is ready to use; set hooks before
// the first call.
type Fake struct {
	lightning.Node

	InfoFunc          func(ctx context.Context) (lightning.Info, error)
	AddInvoiceFunc    func(ctx context.Context, p lightning.InvoiceParams) (lightning.Invoice, error)
	LookupInvoiceFunc func(ctx context.Context, hash lightning.Hash) (lightning.Invoice, error)
	SendPaymentFunc   func(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error)
	TrackPaymentFunc  func(ctx context.Context, hash lightning.Hash) (lightning.Payment, error)

	// Notify, when set, receives every call as it starts, before its hook
	// runs, so that a test can wait for one. The call waits until the test
	// receives it or ctx ends.
	Notify chan<- Call

	mu    sync.Mutex
	calls []Call
}

var _ lightning.Node = (*Fake)(nil)

// Calls returns the calls received so far, in order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Count returns how many calls of m the Fake received.
func (f *Fake) Count(m Method) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Method == m {
			n++
		}
	}
	return n
}

// record notes a call and hands it to Notify. It fails only when ctx ends
// while Notify waits.
func (f *Fake) record(ctx context.Context, m Method, arg any) error {
	c := Call{Method: m, Arg: arg}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	if f.Notify == nil {
		return nil
	}
	select {
	case f.Notify <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func unexpected(m Method) error {
	return fmt.Errorf("lightningtest: unexpected %s call: the Fake has neither a hook nor a Node for it", m)
}

func (f *Fake) Info(ctx context.Context) (lightning.Info, error) {
	if err := f.record(ctx, MethodInfo, nil); err != nil {
		return lightning.Info{}, err
	}
	switch {
	case f.InfoFunc != nil:
		return f.InfoFunc(ctx)
	case f.Node != nil:
		return f.Node.Info(ctx)
	}
	return lightning.Info{}, unexpected(MethodInfo)
}

func (f *Fake) AddInvoice(ctx context.Context, p lightning.InvoiceParams) (lightning.Invoice, error) {
	if err := f.record(ctx, MethodAddInvoice, p); err != nil {
		return lightning.Invoice{}, err
	}
	switch {
	case f.AddInvoiceFunc != nil:
		return f.AddInvoiceFunc(ctx, p)
	case f.Node != nil:
		return f.Node.AddInvoice(ctx, p)
	}
	return lightning.Invoice{}, unexpected(MethodAddInvoice)
}

func (f *Fake) LookupInvoice(ctx context.Context, hash lightning.Hash) (lightning.Invoice, error) {
	if err := f.record(ctx, MethodLookupInvoice, hash); err != nil {
		return lightning.Invoice{}, err
	}
	switch {
	case f.LookupInvoiceFunc != nil:
		return f.LookupInvoiceFunc(ctx, hash)
	case f.Node != nil:
		return f.Node.LookupInvoice(ctx, hash)
	}
	return lightning.Invoice{}, unexpected(MethodLookupInvoice)
}

func (f *Fake) SendPayment(ctx context.Context, p lightning.PaymentParams) (lightning.Payment, error) {
	if err := f.record(ctx, MethodSendPayment, p); err != nil {
		return lightning.Payment{}, err
	}
	switch {
	case f.SendPaymentFunc != nil:
		return f.SendPaymentFunc(ctx, p)
	case f.Node != nil:
		return f.Node.SendPayment(ctx, p)
	}
	return lightning.Payment{}, unexpected(MethodSendPayment)
}

func (f *Fake) TrackPayment(ctx context.Context, hash lightning.Hash) (lightning.Payment, error) {
	if err := f.record(ctx, MethodTrackPayment, hash); err != nil {
		return lightning.Payment{}, err
	}
	switch {
	case f.TrackPaymentFunc != nil:
		return f.TrackPaymentFunc(ctx, hash)
	case f.Node != nil:
		return f.Node.TrackPayment(ctx, hash)
	}
	return lightning.Payment{}, unexpected(MethodTrackPayment)
}

// Answer is one result a hook gives.
type Answer[T any] struct {
	Value T
	Err   error
}

// Sequence returns a function giving the answers in turn and then the last
// one forever, for hooks whose outcome changes from call to call (a node
// unreachable a few times, then back). It is safe for concurrent use.
func Sequence[T any](answers ...Answer[T]) func() (T, error) {
	if len(answers) == 0 {
		panic("lightningtest.Sequence: no answers")
	}
	var mu sync.Mutex
	i := 0
	return func() (T, error) {
		mu.Lock()
		defer mu.Unlock()
		a := answers[i]
		if i < len(answers)-1 {
			i++
		}
		return a.Value, a.Err
	}
}
