package regtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"lightning-service/internal/proc"
)

// lndStopGrace is how long an lnd gets to shut down after SIGTERM.
const lndStopGrace = 20 * time.Second

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
