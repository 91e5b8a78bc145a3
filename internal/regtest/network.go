// Package regtest runs a real Lightning network on one machine for
// end-to-end tests, benchmarks and the sandbox: btcd on regtest and three
// lnd nodes, alice → bob → carol, with funded channels ready to route.
//
// Build fetches and compiles the pinned btcd and lnd once and caches them;
// Start brings a fresh network up in its own temporary directory, on free
// ports of 127.0.0.1, in 7 to 11 seconds on two cores; Stop tears it down.
// Every process is the harness's own child, stopped by its PID.
//
// network.go is the Network and the order Start brings it up in;
// lifecycle.go starts, stops and restarts its lnd processes (btcd.go and
// lnd.go hold each daemon's flags and readiness, miner.go the key btcd mines
// to); topology.go is the chain and the channels: mining, funding, opening;
// wait.go is the polling every step ends in.
package regtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Options configure Start. The zero value gives the default network.
type Options struct {
	// Binaries to run. Zero: Start calls Build with Progress.
	Binaries Binaries

	// Progress receives a line per startup step; nil discards them.
	Progress io.Writer

	// Dir is where the network's temporary data directory is created.
	// Default: os.TempDir().
	Dir string

	// KeepData leaves the data directory (chain, wallets, logs) in place
	// after Stop, for a look at what happened.
	KeepData bool

	// ChannelSats is the capacity of each public channel, alice→bob and
	// bob→carol. Default 10,000,000; above 16,777,215 works too (wumbo).
	ChannelSats int64

	// PushSats is given to the far side of each public channel at opening,
	// so payments can flow back. Default ChannelSats/4; -1 pushes nothing.
	PushSats int64

	// ChannelsPerHop opens this many parallel public channels alice→bob and
	// as many bob→carol: each channel carries at most 483 HTLCs in flight,
	// so heavy concurrent benchmarks want several. Default 1.
	ChannelsPerHop int

	// PrivateChannelSats is the capacity of the private channel bob→carol,
	// the one that gives carol's private invoices their route hints.
	// Default 5,000,000; a quarter of it is pushed to carol.
	PrivateChannelSats int64

	// LndArgs are appended to every lnd's command line, after the
	// harness's own flags, which they override (single-valued flags).
	// Example: "--debuglevel=debug".
	LndArgs []string

	// Timeout bounds Start, building excluded. Default 5 minutes.
	Timeout time.Duration
}

func (o *Options) setDefaults() error {
	if o.ChannelSats == 0 {
		o.ChannelSats = 10_000_000
	}
	if o.PushSats == 0 {
		o.PushSats = o.ChannelSats / 4
	}
	if o.PushSats < 0 {
		o.PushSats = 0
	}
	if o.ChannelsPerHop == 0 {
		o.ChannelsPerHop = 1
	}
	if o.PrivateChannelSats == 0 {
		o.PrivateChannelSats = 5_000_000
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	switch {
	case o.ChannelSats < 20_000:
		return fmt.Errorf("regtest: Options.ChannelSats %d is below lnd's minimum channel size of 20,000", o.ChannelSats)
	case o.PrivateChannelSats < 20_000:
		return fmt.Errorf("regtest: Options.PrivateChannelSats %d is below lnd's minimum channel size of 20,000", o.PrivateChannelSats)
	case o.PushSats >= o.ChannelSats:
		return fmt.Errorf("regtest: Options.PushSats %d must be below ChannelSats %d", o.PushSats, o.ChannelSats)
	case o.ChannelsPerHop < 0:
		return fmt.Errorf("regtest: Options.ChannelsPerHop %d is negative", o.ChannelsPerHop)
	}
	return nil
}

// Network is a running regtest network. It lives until Stop is called or
// the ctx given to Start ends, whichever comes first.
type Network struct {
	Alice, Bob, Carol *Node
	Btcd              *Btcd
	Dir               string    // data directory; removed by Stop unless KeepData
	Channels          []Channel // as opened by Start

	opts     Options
	nodes    []*Node
	miner    *miner
	chainMu  sync.Mutex // serialises mining and funding
	mu       sync.Mutex // guards Node.process and stopping
	stopping bool
	stopOnce sync.Once
	stopErr  error
	done     chan struct{} // closed when Stop has finished
}

// Start brings up btcd and lnd nodes alice, bob and carol; funds them; opens
// the public channels alice→bob and bob→carol and the private bob→carol;
// and returns once every channel is active, every node has the whole graph,
// and alice can route to carol and carol to alice. If it fails, it stops
// whatever it started; the error carries the end of the guilty log.
func Start(ctx context.Context, opts Options) (_ *Network, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if opts.Binaries == (Binaries{}) {
		if opts.Binaries, err = Build(ctx, BuildOptions{Progress: opts.Progress}); err != nil {
			return nil, err
		}
	}
	startCtx, cancel := context.WithTimeoutCause(ctx, opts.Timeout,
		fmt.Errorf("regtest network not ready within %s (Options.Timeout)", opts.Timeout))
	defer cancel()

	dir, err := os.MkdirTemp(opts.Dir, "regtest-")
	if err != nil {
		return nil, fmt.Errorf("regtest: creating the data directory: %w", err)
	}
	n := &Network{Dir: dir, opts: opts, done: make(chan struct{})}
	defer func() {
		if err != nil {
			n.Stop()
			// An RPC cut short by the deadline says only "context deadline
			// exceeded"; name the setting that set it.
			if cause := context.Cause(startCtx); ctx.Err() == nil && cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w: %w", cause, err)
			}
			if !opts.KeepData {
				err = fmt.Errorf("%w\n(the data directory is gone; Options.KeepData keeps it)", err)
			}
			err = fmt.Errorf("regtest: %w", err)
		}
	}()
	began := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(opts.Progress, "regtest: %-40s (%4.1fs)\n", fmt.Sprintf(format, args...), time.Since(began).Seconds())
	}

	if n.miner, err = newMiner(); err != nil {
		return nil, err
	}
	if n.Btcd, err = startBtcd(startCtx, opts.Binaries, filepath.Join(dir, "btcd"), n.miner.addr); err != nil {
		return nil, err
	}
	step("btcd up on %s", n.Btcd.RPCAddr)
	// lnd waits at startup for a chain tip with a recent timestamp; the
	// genesis block's is from 2011.
	if err := n.Btcd.generate(startCtx, 1); err != nil {
		return nil, err
	}

	n.Alice = newNode("alice", filepath.Join(dir, "alice"), opts.Binaries, n.Btcd, opts.LndArgs)
	n.Bob = newNode("bob", filepath.Join(dir, "bob"), opts.Binaries, n.Btcd, opts.LndArgs)
	n.Carol = newNode("carol", filepath.Join(dir, "carol"), opts.Binaries, n.Btcd, opts.LndArgs)
	n.nodes = []*Node{n.Alice, n.Bob, n.Carol}

	g, gctx := errgroup.WithContext(startCtx)
	g.Go(func() error { return n.Btcd.generate(gctx, initialBlocks-1) })
	for _, nd := range n.nodes {
		g.Go(func() error { return n.startFirst(gctx, nd) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := n.waitAllSynced(startCtx); err != nil {
		return nil, err
	}
	step("mined %d blocks; alice, bob, carol up", initialBlocks)

	plan := n.plan()
	if err := n.fund(startCtx, n.fundingFor(plan)); err != nil {
		return nil, err
	}
	step("funded the wallets")
	if err := n.openChannels(startCtx, plan); err != nil {
		return nil, err
	}
	// Six confirmations: lnd announces a public channel only then.
	if err := n.Mine(startCtx, 6); err != nil {
		return nil, err
	}
	step("opened %d channels", len(plan))
	if err := n.waitChannelsActive(startCtx); err != nil {
		return nil, err
	}
	if err := n.waitGraph(startCtx); err != nil {
		return nil, err
	}
	step("network ready")

	go func() {
		select {
		case <-ctx.Done():
			n.Stop()
		case <-n.done:
		}
	}()
	return n, nil
}

// Node returns the node called name (alice, bob or carol), or nil.
func (n *Network) Node(name string) *Node {
	for _, nd := range n.nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// Nodes returns alice, bob and carol.
func (n *Network) Nodes() []*Node { return append([]*Node(nil), n.nodes...) }

// Stop stops every lnd (in parallel) and then btcd, each by SIGTERM and,
// after a grace, SIGKILL, and removes the data directory unless KeepData.
// It is safe to call more than once and from several goroutines; all wait
// for the first call to finish and get its result.
func (n *Network) Stop() error {
	n.stopOnce.Do(func() {
		n.mu.Lock()
		n.stopping = true
		n.mu.Unlock()
		var (
			wg   sync.WaitGroup
			emu  sync.Mutex
			errs []error
		)
		for _, nd := range n.nodes {
			p := n.running(nd)
			if p == nil || !n.detach(nd, p) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.Stop(context.Background(), lndStopGrace); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, nd := range n.nodes {
			if nd.Conn != nil {
				nd.Conn.Close()
			}
		}
		if n.Btcd != nil {
			errs = append(errs, n.Btcd.stop())
		}
		if !n.opts.KeepData {
			errs = append(errs, os.RemoveAll(n.Dir))
		}
		if err := errors.Join(errs...); err != nil {
			n.stopErr = fmt.Errorf("regtest: stopping: %w", err)
		}
		close(n.done)
	})
	<-n.done
	return n.stopErr
}
