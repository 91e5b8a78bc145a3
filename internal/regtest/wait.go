package regtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"golang.org/x/sync/errgroup"

	"lightning-service/internal/proc"
)

// waitFor polls check every interval until it reports done, ctx ends, or
// exited closes. The error names what was awaited and the last reason check
// gave for not being done, which is usually the useful part.
func waitFor(ctx context.Context, what string, interval time.Duration, p *proc.Process,
	check func(ctx context.Context) (done bool, why error)) error {
	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
	}
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		done, why := check(cctx)
		cancel()
		if done {
			return nil
		}
		if why != nil {
			last = why
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
			if last != nil {
				err = fmt.Errorf("%w (last: %v)", err, last)
			}
			if p != nil {
				err = fmt.Errorf("%w\nend of %s:\n%s", err, p.LogPath(), p.Tail(25))
			}
			return err
		case <-exited:
			return fmt.Errorf("waiting for %s: %w", what, p.ExitError())
		case <-time.After(interval):
		}
	}
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
