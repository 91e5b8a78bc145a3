package faultproxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// A Fault is what the proxy does to a call instead of passing it through.
// Make one with BreakAfterForward, BreakAfterResponses, Answer, Delay or
// Hold, and install it with Proxy.Inject. It applies to the next call of its
// method unless Times or UntilCleared says otherwise.
type Fault struct {
	kind      kind
	code      codes.Code
	msg       string
	responses int // breakAfter: responses relayed before the break
	delay     time.Duration
	keep      bool
	times     int // calls it applies to; 0 means 1, and -1 until cleared
}

type kind int

const (
	passThrough kind = iota
	breakAfter
	answer
	delay
	hold
)

// BreakAfterForward forwards the client's request to the target, waits for
// the target's first answer, and ends the client's call with code before
// relaying anything: the target did the work, the client never learns of it.
// Waiting makes "the target has the request" certain; for a unary call the
// target has then finished. For a stream it waits until the client has sent
// all its messages. Code OK means Unavailable, what a lost connection gives.
func BreakAfterForward(code codes.Code) Fault { return BreakAfterResponses(0, code) }

// BreakAfterResponses relays the target's headers and n responses, then ends
// the client's call with code (OK means Unavailable). A target that ends its
// call before n responses is relayed unchanged.
func BreakAfterResponses(n int, code codes.Code) Fault {
	if n < 0 {
		panic(fmt.Sprintf("faultproxy: BreakAfterResponses(%d): n must be 0 or more", n))
	}
	if code == codes.OK {
		code = codes.Unavailable
	}
	return Fault{kind: breakAfter, code: code, responses: n}
}

// KeepUpstream makes a break leave the target's call running to its end, as
// if the client were still there, instead of cancelling it. For
// SendPaymentV2 it changes nothing for the payment, which LND pursues either
// way; it matters for targets whose work ends with the call. It applies only
// to BreakAfterForward and BreakAfterResponses.
func (f Fault) KeepUpstream() Fault {
	f.keep = true
	return f
}

// Answer answers the call with code and msg and forwards nothing: the
// request is lost before it reaches the target.
func Answer(code codes.Code, msg string) Fault { return Fault{kind: answer, code: code, msg: msg} }

// Delay holds the call for d before forwarding it; a client whose deadline
// comes first gets DeadlineExceeded and the target never sees the call.
func Delay(d time.Duration) Fault { return Fault{kind: delay, delay: d} }

// Hold makes calls wait, unforwarded, until the Injection is cleared (then
// they go on to the target) or their client gives up: a node that never
// answers. Proxy.WaitCalls tells when a call has arrived and is held.
func Hold() Fault { return Fault{kind: hold} }

// Times makes f apply to the next n calls of its method.
func (f Fault) Times(n int) Fault {
	if n < 1 {
		panic(fmt.Sprintf("faultproxy: Times(%d): n must be 1 or more", n))
	}
	f.times = n
	return f
}

// UntilCleared makes f apply to every call of its method until it is cleared.
func (f Fault) UntilCleared() Fault {
	f.times = -1
	return f
}

// Injection is a fault installed for one method.
type Injection struct {
	p       *Proxy
	method  string
	fault   Fault
	left    int // calls it still applies to, -1 for all; guarded by p.mu
	cleared chan struct{}
	once    sync.Once
}

// Inject installs f for method, the full gRPC name such as
// "/routerrpc.Router/SendPaymentV2", in place of any fault installed for it
// (which is cleared). Calls already in progress are not affected, except
// that calls held by a replaced Hold go on.
func (p *Proxy) Inject(method string, f Fault) *Injection {
	in := &Injection{p: p, method: method, fault: f, left: f.times, cleared: make(chan struct{})}
	if in.left == 0 {
		in.left = 1
	}
	p.mu.Lock()
	old := p.faults[method]
	p.faults[method] = in
	p.mu.Unlock()
	if old != nil {
		old.Clear()
	}
	return in
}

// Clear uninstalls the injection if it is still installed, and lets the
// calls it holds go on to the target. It is safe to call more than once.
func (in *Injection) Clear() {
	in.p.mu.Lock()
	if in.p.faults[in.method] == in {
		delete(in.p.faults, in.method)
	}
	in.p.mu.Unlock()
	in.once.Do(func() { close(in.cleared) })
}

// Clear clears the fault installed for method, if any.
func (p *Proxy) Clear(method string) {
	p.mu.Lock()
	in := p.faults[method]
	p.mu.Unlock()
	if in != nil {
		in.Clear()
	}
}

// arrive counts a call of method and takes one use of its fault, returning
// the injection that applies to the call, or nil.
func (p *Proxy) arrive(method string) *Injection {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[method]++
	close(p.called)
	p.called = make(chan struct{})
	in := p.faults[method]
	if in == nil {
		return nil
	}
	if in.left > 0 {
		in.left--
		if in.left == 0 {
			delete(p.faults, method) // used up; a Hold still answers to its Clear
		}
	}
	return in
}

// Calls returns how many calls of method the proxy has received, whether
// forwarded, answered by a fault, or held.
func (p *Proxy) Calls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method]
}

// WaitCalls waits until the proxy has received n calls of method in all.
// Calls are counted on arrival, before any fault: a held call is counted.
func (p *Proxy) WaitCalls(ctx context.Context, method string, n int) error {
	for {
		p.mu.Lock()
		got, called := p.calls[method], p.called
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-called:
		case <-ctx.Done():
			return fmt.Errorf("faultproxy: %s called %d times, waiting for %d: %w", method, got, n, ctx.Err())
		}
	}
}
