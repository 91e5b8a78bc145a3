// Package task runs the service's tasks — decode, pay and create — on a
// lightning.Node, one file each. A task takes an authenticated request and
// returns an Outcome; it never sees Kafka or protobufs.
package task

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"lightning-service/internal/backoff"
	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
)

// Outcome is what a task answers.
type Outcome struct {
	Message     any    // the success message
	PaymentHash string // hex; create: carried in data; pay errors: in the message
	Err         error  // set on failure; described by core.Describe

	// A pay request's owner answers for itself: Stored is its sealed
	// result, kept in the ledger already; Deferred, that the owner
	// publishes it when the payment ends.
	Stored   []byte
	Deferred bool
}

func failed(err error) Outcome { return Outcome{Err: err} }

// Retry is how long a task keeps trying a node that cannot be reached.
type Retry struct {
	Budget  time.Duration // total time to keep trying; then node_unavailable
	Initial time.Duration // first backoff, doubled up to Max
	Max     time.Duration
}

// DefaultRetry fills the fields a Retry leaves zero.
var DefaultRetry = Retry{Budget: 30 * time.Second, Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Do calls fn until it returns anything but lightning.ErrUnavailable, backing
// off between calls, for at most the budget. Unavailability that outlasts
// the budget becomes node_unavailable. Only calls that had no effect on the
// node are retried, so retrying is always safe.
func (r Retry) Do(ctx context.Context, fn func(context.Context) error) error {
	// Each field on its own: the configuration sets only the budget, and a
	// zero backoff would give up at the first failure.
	if r.Budget <= 0 {
		r.Budget = DefaultRetry.Budget
	}
	b := backoff.Backoff{Initial: r.Initial, Max: r.Max}
	deadline := time.Now().Add(r.Budget)
	for {
		err := fn(ctx)
		if !errors.Is(err, lightning.ErrUnavailable) {
			return err
		}
		wait := min(b.Next(), time.Until(deadline))
		if wait <= 0 {
			return core.Wrap(core.CodeNodeUnavailable, err, fmt.Sprintf("the Lightning node could not be reached within %s", r.Budget))
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// Network is the chain the node is on, which decoding checks invoices
// against: configured, or learnt from the node once and kept.
type Network struct {
	node  lightning.Node
	retry Retry

	mu     sync.Mutex
	params *chaincfg.Params
}

// FixedNetwork returns a Network that never asks the node.
func FixedNetwork(p *chaincfg.Params) *Network { return &Network{params: p} }

// NodeNetwork returns a Network learnt from the node's GetInfo on first use.
func NodeNetwork(node lightning.Node, retry Retry) *Network {
	return &Network{node: node, retry: retry}
}

// Params returns the network's parameters.
func (n *Network) Params(ctx context.Context) (*chaincfg.Params, error) {
	n.mu.Lock()
	p := n.params
	n.mu.Unlock()
	if p != nil {
		return p, nil
	}
	var info lightning.Info
	err := n.retry.Do(ctx, func(ctx context.Context) (err error) {
		info, err = n.node.Info(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	p, err = lightning.NetworkParams(info.Network)
	if err != nil {
		return nil, fmt.Errorf("node reports network %q: %w", info.Network, err)
	}
	n.mu.Lock()
	n.params = p
	n.mu.Unlock()
	return p, nil
}

// Decode decodes a BOLT11 payment request for the network's chain.
func (n *Network) Decode(ctx context.Context, pr string) (lightning.PayReq, error) {
	params, err := n.Params(ctx)
	if err != nil {
		return lightning.PayReq{}, err
	}
	return lightning.Decode(pr, params)
}
