package regtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/lightningnetwork/lnd/lnrpc"
	"golang.org/x/sync/errgroup"
)

// initialBlocks is how far Start mines before anything else: btcd's regtest
// activates segwit (and taproot) only at block 432, and lnd's funding
// transactions are rejected before ("has witness data, but segwit isn't
// active yet"), leaving channels pending for ever.
const initialBlocks = 440

// Channel is one channel the network opened.
type Channel struct {
	From, To     string // opener and peer
	ChannelPoint string // funding txid:output
	ChanID       uint64 // short channel id
	CapacitySats int64
	PushSats     int64
	Private      bool
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
