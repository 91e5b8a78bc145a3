// Package regtest runs a real Lightning network on one machine for
// end-to-end tests, benchmarks and the sandbox: btcd on regtest and three
// lnd nodes, alice → bob → carol, with funded channels ready to route.
//
// Build fetches and compiles the pinned btcd and lnd once and caches them;
// Start brings a fresh network up in its own temporary directory, on free
// ports of 127.0.0.1, in 7 to 11 seconds on two cores; Stop tears it down.
// Every process is the harness's own child, stopped by its PID.
package regtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/lightningnetwork/lnd/lnrpc"
	"golang.org/x/sync/errgroup"

	"lightning-service/internal/proc"
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

// Channel is one channel the network opened.
type Channel struct {
	From, To     string // opener and peer
	ChannelPoint string // funding txid:output
	ChanID       uint64 // short channel id
	CapacitySats int64
	PushSats     int64
	Private      bool
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

// initialBlocks is how far Start mines before anything else: btcd's regtest
// activates segwit (and taproot) only at block 432, and lnd's funding
// transactions are rejected before ("has witness data, but segwit isn't
// active yet"), leaving channels pending for ever.
const initialBlocks = 440

// lndStopGrace is how long an lnd gets to shut down after SIGTERM.
const lndStopGrace = 20 * time.Second

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

// launch starts nd's lnd unless the network is stopping or it runs already.
func (n *Network) launch(nd *Node) (*proc.Process, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopping {
		return nil, errors.New("the network is stopping")
	}
	if nd.process != nil {
		return nil, fmt.Errorf("%s is already running", nd.Name)
	}
	// An empty lnd.conf in --lnddir: lnd reads no other, and warns if absent.
	if err := os.MkdirAll(nd.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(nd.Dir, "lnd.conf"), nil, 0o644); err != nil {
		return nil, err
	}
	p, err := proc.Start(proc.Command{Name: nd.Name, Path: nd.bins.Lnd, Args: nd.args(n.opts.ChannelsPerHop + 4), LogPath: nd.LogPath})
	if err != nil {
		return nil, err
	}
	nd.process = p
	return p, nil
}

// detach forgets nd's process if it is still p, and returns whether it was.
func (n *Network) detach(nd *Node, p *proc.Process) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd.process != p {
		return false
	}
	nd.process = nil
	return true
}

func (n *Network) running(nd *Node) *proc.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return nd.process
}

// startFirst starts a new node on free ports, choosing others if one was
// taken meanwhile.
func (n *Network) startFirst(ctx context.Context, nd *Node) error {
	var err error
	for range 3 {
		ports, perr := proc.FreePorts(2)
		if perr != nil {
			return perr
		}
		nd.RPCAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		nd.P2PAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		p, lerr := n.launch(nd)
		if lerr != nil {
			return lerr
		}
		if err = nd.waitReady(ctx, p); err == nil {
			return nil
		}
		if n.detach(nd, p) {
			p.Stop(context.Background(), 5*time.Second)
		}
		if !p.AddrInUse() {
			return err
		}
		if nd.Conn != nil {
			nd.Conn.Close()
			nd.Conn = nil
		}
	}
	return err
}

// StopNode shuts one lnd down (SIGTERM, then SIGKILL after a grace or when
// ctx ends), keeping its data for StartNode. Its peers see it go offline.
func (n *Network) StopNode(ctx context.Context, name string) error {
	nd := n.Node(name)
	if nd == nil {
		return fmt.Errorf("regtest: no node %q", name)
	}
	p := n.running(nd)
	if p == nil || !n.detach(nd, p) {
		return fmt.Errorf("regtest: %s is not running", name)
	}
	if err := p.Stop(ctx, lndStopGrace); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	return nil
}

// StartNode restarts a node stopped by StopNode, on the same ports and with
// the same data, and returns once it is synced to the chain and all its
// channels to running peers are active again, on both sides. With
// --noseedbackup, lnd unlocks its wallet by itself.
func (n *Network) StartNode(ctx context.Context, name string) error {
	nd := n.Node(name)
	if nd == nil {
		return fmt.Errorf("regtest: no node %q", name)
	}
	p, err := n.launch(nd)
	if err != nil {
		return fmt.Errorf("regtest: starting %s: %w", name, err)
	}
	err = nd.waitReady(ctx, p)
	if err == nil {
		err = n.waitAllSynced(ctx)
	}
	if err == nil {
		err = n.waitChannelsActive(ctx)
	}
	if err != nil {
		if n.detach(nd, p) {
			p.Stop(context.Background(), 5*time.Second)
		}
		return fmt.Errorf("regtest: restarting %s: %w", name, err)
	}
	return nil
}

// Mine mines blocks and waits until every running node has processed them.
// The coinbases go to the harness's own key, so wallet balances don't move.
func (n *Network) Mine(ctx context.Context, blocks int) error {
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	if err := n.Btcd.generate(ctx, blocks); err != nil {
		return err
	}
	return n.waitAllSynced(ctx)
}

// Fund sends the node one confirmed on-chain output per amount, so it can
// open more channels (one per output) at once.
func (n *Network) Fund(ctx context.Context, name string, sats ...int64) error {
	nd := n.Node(name)
	if nd == nil {
		return fmt.Errorf("regtest: no node %q", name)
	}
	if err := n.fund(ctx, map[*Node][]int64{nd: sats}); err != nil {
		return fmt.Errorf("regtest: funding %s: %w", name, err)
	}
	return nil
}

// fund pays each node its amounts in one transaction, mines it and waits
// until the wallets count it as confirmed.
func (n *Network) fund(ctx context.Context, amounts map[*Node][]int64) error {
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	var outs []*wire.TxOut
	want := map[*Node]int64{}
	for nd, sats := range amounts {
		bal, err := nd.Lightning.WalletBalance(ctx, &lnrpc.WalletBalanceRequest{})
		if err != nil {
			return fmt.Errorf("%s walletbalance: %w", nd.Name, err)
		}
		want[nd] = bal.ConfirmedBalance
		for _, s := range sats {
			a, err := nd.Lightning.NewAddress(ctx, &lnrpc.NewAddressRequest{Type: lnrpc.AddressType_WITNESS_PUBKEY_HASH})
			if err != nil {
				return fmt.Errorf("%s newaddress: %w", nd.Name, err)
			}
			addr, err := btcutil.DecodeAddress(a.Address, &chaincfg.RegressionNetParams)
			if err != nil {
				return err
			}
			script, err := txscript.PayToAddrScript(addr)
			if err != nil {
				return err
			}
			outs = append(outs, wire.NewTxOut(s, script))
			want[nd] += s
		}
	}
	if _, err := n.miner.send(ctx, n.Btcd, outs); err != nil {
		return err
	}
	if err := n.Btcd.generate(ctx, 1); err != nil {
		return err
	}
	if err := n.waitAllSynced(ctx); err != nil {
		return err
	}
	for nd, w := range want {
		err := waitFor(ctx, nd.Name+"'s funds to confirm", 50*time.Millisecond, n.running(nd), func(ctx context.Context) (bool, error) {
			bal, err := nd.Lightning.WalletBalance(ctx, &lnrpc.WalletBalanceRequest{})
			if err != nil {
				return false, err
			}
			if bal.ConfirmedBalance < w {
				return false, fmt.Errorf("confirmed balance %d of %d sat", bal.ConfirmedBalance, w)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitAllSynced waits until every running node has processed btcd's tip.
func (n *Network) waitAllSynced(ctx context.Context) error {
	tip, err := n.Btcd.height()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, nd := range n.nodes {
		if p := n.running(nd); p != nil {
			g.Go(func() error { return nd.waitSynced(gctx, tip, p) })
		}
	}
	return g.Wait()
}

// plan lists the channels Start opens, without their points and ids.
func (n *Network) plan() []Channel {
	o := n.opts
	var plan []Channel
	for _, hop := range [][2]string{{"alice", "bob"}, {"bob", "carol"}} {
		for range o.ChannelsPerHop {
			plan = append(plan, Channel{From: hop[0], To: hop[1], CapacitySats: o.ChannelSats, PushSats: o.PushSats})
		}
	}
	return append(plan, Channel{From: "bob", To: "carol", CapacitySats: o.PrivateChannelSats,
		PushSats: o.PrivateChannelSats / 4, Private: true})
}

// fundingFor gives each node one output per channel it opens, so it can
// open them all at once (each funding locks its inputs until confirmed),
// plus two spare outputs of 1 BTC for tests' own use.
func (n *Network) fundingFor(plan []Channel) map[*Node][]int64 {
	const spare = 100_000_000
	// The margin pays the funding fee and the reserve lnd keeps for
	// fee-bumping anchor channels.
	const margin = 1_000_000
	amounts := map[*Node][]int64{}
	for _, nd := range n.nodes {
		amounts[nd] = []int64{spare, spare}
	}
	for _, c := range plan {
		nd := n.Node(c.From)
		amounts[nd] = append(amounts[nd], c.CapacitySats+margin)
	}
	return amounts
}

// openChannels connects the peers and opens the planned channels, each
// opener's one after another and the openers in parallel, filling in
// n.Channels with their channel points.
func (n *Network) openChannels(ctx context.Context, plan []Channel) error {
	for _, pair := range [][2]*Node{{n.Alice, n.Bob}, {n.Bob, n.Carol}} {
		if err := connect(ctx, pair[0], pair[1]); err != nil {
			return err
		}
	}
	n.Channels = plan
	byOpener := map[string][]int{}
	for i, c := range plan {
		byOpener[c.From] = append(byOpener[c.From], i)
	}
	g, gctx := errgroup.WithContext(ctx)
	for from, idx := range byOpener {
		g.Go(func() error {
			for _, i := range idx {
				c := &n.Channels[i]
				point, err := openChannel(gctx, n.Node(from), n.Node(c.To), c)
				if err != nil {
					return err
				}
				c.ChannelPoint = point
			}
			return nil
		})
	}
	return g.Wait()
}

func connect(ctx context.Context, from, to *Node) error {
	_, err := from.Lightning.ConnectPeer(ctx, &lnrpc.ConnectPeerRequest{
		Addr:    &lnrpc.LightningAddress{Pubkey: to.PubKey, Host: to.P2PAddr},
		Timeout: 30,
	})
	if err != nil && !strings.Contains(err.Error(), "already connected") {
		return fmt.Errorf("connecting %s to %s: %w", from.Name, to.Name, err)
	}
	return nil
}

func openChannel(ctx context.Context, from, to *Node, c *Channel) (string, error) {
	pub, err := hex.DecodeString(to.PubKey)
	if err != nil {
		return "", err
	}
	req := &lnrpc.OpenChannelRequest{
		NodePubkey:         pub,
		LocalFundingAmount: c.CapacitySats,
		PushSat:            c.PushSats,
		Private:            c.Private,
		// A fixed rate: btcd's fee estimator has no data on regtest.
		SatPerVbyte: 10,
	}
	var (
		cp      *lnrpc.ChannelPoint
		openErr error
	)
	what := fmt.Sprintf("%s to see %s online", from.Name, to.Name)
	err = waitFor(ctx, what, 200*time.Millisecond, nil, func(context.Context) (bool, error) {
		// Not the 10-second check context: opening must not be cut short.
		cp, openErr = from.Lightning.OpenChannelSync(ctx, req)
		if openErr != nil && strings.Contains(openErr.Error(), "not online") {
			return false, openErr // the connection is still being set up
		}
		return true, nil
	})
	if err == nil {
		err = openErr
	}
	if err != nil {
		return "", fmt.Errorf("opening a channel %s→%s: %w", from.Name, to.Name, err)
	}
	txid, err := chainhash.NewHash(cp.GetFundingTxidBytes())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s:%d", txid, cp.OutputIndex), nil
}

// waitChannelsActive waits until every running node lists each of its
// channels to another running node as active, and records short channel ids.
func (n *Network) waitChannelsActive(ctx context.Context) error {
	for _, nd := range n.nodes {
		p := n.running(nd)
		if p == nil {
			continue
		}
		want := map[string]*Channel{}
		for i := range n.Channels {
			c := &n.Channels[i]
			other := c.To
			if c.To == nd.Name {
				other = c.From
			} else if c.From != nd.Name {
				continue
			}
			if n.running(n.Node(other)) != nil {
				want[c.ChannelPoint] = c
			}
		}
		err := waitFor(ctx, nd.Name+"'s channels to be active", 100*time.Millisecond, p, func(ctx context.Context) (bool, error) {
			resp, err := nd.Lightning.ListChannels(ctx, &lnrpc.ListChannelsRequest{})
			if err != nil {
				return false, err
			}
			active := 0
			for _, ch := range resp.Channels {
				if c := want[ch.ChannelPoint]; c != nil && ch.Active {
					if c.ChanID == 0 { // set once, during Start, so later reads don't race
						c.ChanID = ch.ChanId
					}
					active++
				}
			}
			if active < len(want) {
				return false, fmt.Errorf("%d of %d active", active, len(want))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waitGraph waits until every node is synced to the graph and knows both
// directions of every public channel, carol knows the policies of her
// private channel and knows bob as a public node (both needed for lnd to
// put route hints in her private invoices), and alice and carol can find a
// route to each other.
func (n *Network) waitGraph(ctx context.Context) error {
	for _, nd := range n.nodes {
		p := n.running(nd)
		err := waitFor(ctx, nd.Name+" to learn the channel graph", 100*time.Millisecond, p, func(ctx context.Context) (bool, error) {
			info, err := nd.Lightning.GetInfo(ctx, &lnrpc.GetInfoRequest{})
			if err != nil {
				return false, err
			}
			if !info.SyncedToGraph {
				return false, errors.New("not synced to graph")
			}
			graph, err := nd.Lightning.DescribeGraph(ctx, &lnrpc.ChannelGraphRequest{})
			if err != nil {
				return false, err
			}
			known := map[uint64]bool{}
			for _, e := range graph.Edges {
				known[e.ChannelId] = e.Node1Policy != nil && e.Node2Policy != nil
			}
			for _, c := range n.Channels {
				if !c.Private && !known[c.ChanID] {
					return false, fmt.Errorf("channel %s→%s %d not in the graph with both policies", c.From, c.To, c.ChanID)
				}
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}

	err := waitFor(ctx, "carol to know her private channel's policies", 100*time.Millisecond, n.running(n.Carol), func(ctx context.Context) (bool, error) {
		if _, err := n.Carol.Lightning.GetNodeInfo(ctx, &lnrpc.NodeInfoRequest{PubKey: n.Bob.PubKey}); err != nil {
			return false, fmt.Errorf("bob's node announcement: %w", err)
		}
		for _, c := range n.Channels {
			if !c.Private {
				continue
			}
			e, err := n.Carol.Lightning.GetChanInfo(ctx, &lnrpc.ChanInfoRequest{ChanId: c.ChanID})
			if err != nil {
				return false, err
			}
			if e.Node1Policy == nil || e.Node2Policy == nil {
				return false, fmt.Errorf("private channel %d lacks a policy", c.ChanID)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}

	for _, pair := range [][2]*Node{{n.Alice, n.Carol}, {n.Carol, n.Alice}} {
		from, to := pair[0], pair[1]
		err := waitFor(ctx, fmt.Sprintf("a route %s→%s", from.Name, to.Name), 100*time.Millisecond, n.running(from), func(ctx context.Context) (bool, error) {
			_, err := from.Lightning.QueryRoutes(ctx, &lnrpc.QueryRoutesRequest{PubKey: to.PubKey, Amt: 1000})
			return err == nil, err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

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

// Describe writes how to reach each part of the network by hand: the
// commands a newcomer pastes to poke at the nodes.
func (n *Network) Describe(w io.Writer) {
	fmt.Fprintf(w, "regtest network in %s\n\n", n.Dir)
	fmt.Fprintf(w, "btcd    rpc %s, log %s\n", n.Btcd.RPCAddr, n.Btcd.LogPath)
	fmt.Fprintf(w, "        %s getblockcount\n\n", shellJoin(n.Btcd.BtcctlArgs()))
	for _, nd := range n.nodes {
		fmt.Fprintf(w, "%-7s rpc %s, p2p %s, pubkey %s\n", nd.Name, nd.RPCAddr, nd.P2PAddr, nd.PubKey)
		fmt.Fprintf(w, "        log %s\n", nd.LogPath)
		fmt.Fprintf(w, "        %s getinfo\n\n", shellJoin(nd.LncliArgs()))
	}
	fmt.Fprintln(w, "channels")
	for _, c := range n.Channels {
		kind := "public"
		if c.Private {
			kind = "private"
		}
		fmt.Fprintf(w, "  %-5s → %-5s %-7s %11d sat, %d pushed, %s\n", c.From, c.To, kind, c.CapacitySats, c.PushSats, c.ChannelPoint)
	}
}

// shellJoin quotes the arguments that a POSIX shell would split or expand.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+", r))
		}) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
