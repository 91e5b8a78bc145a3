package regtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/macaroon.v2"

	"lightning-service/internal/proc"
)

// Node is one lnd of the network. Its gRPC connection survives StopNode and
// StartNode: calls fail while the node is down and work again once it is up.
type Node struct {
	Name         string // alice, bob or carol
	RPCAddr      string // gRPC host:port
	P2PAddr      string // Lightning peer host:port
	Dir          string // --lnddir
	TLSCertPath  string
	TLSKeyPath   string // tls.cert's key, for a proxy that stands in for the node
	MacaroonPath string // admin macaroon
	LogPath      string
	PubKey       string // identity key, hex

	Conn      *grpc.ClientConn
	Lightning lnrpc.LightningClient
	Router    routerrpc.RouterClient
	Invoices  invoicesrpc.InvoicesClient
	state     lnrpc.StateClient

	bins      Binaries
	btcd      *Btcd
	extraArgs []string
	process   *proc.Process // nil while stopped; guarded by Network.mu
}

// LncliArgs is the lncli command-line prefix that talks to this node,
// e.g. append "getinfo".
func (nd *Node) LncliArgs() []string {
	return []string{
		nd.bins.Lncli,
		"--rpcserver=" + nd.RPCAddr,
		"--tlscertpath=" + nd.TLSCertPath,
		"--macaroonpath=" + nd.MacaroonPath,
		"--network=regtest",
	}
}

func newNode(name, dir string, bins Binaries, btcd *Btcd, extraArgs []string) *Node {
	return &Node{
		Name:         name,
		Dir:          dir,
		TLSCertPath:  filepath.Join(dir, "tls.cert"),
		TLSKeyPath:   filepath.Join(dir, "tls.key"),
		MacaroonPath: filepath.Join(dir, "data", "chain", "bitcoin", "regtest", "admin.macaroon"),
		LogPath:      filepath.Join(dir, "lnd.log"),
		bins:         bins,
		btcd:         btcd,
		extraArgs:    extraArgs,
	}
}

// args are lnd's flags. Most follow lnd's own integration tests
// (lntest/node/config.go): they shorten the delays that exist to protect
// mainnet nodes and make a test wait.
func (nd *Node) args(maxPending int) []string {
	return append([]string{
		"--lnddir=" + nd.Dir,
		"--alias=" + nd.Name,
		"--noseedbackup", // wallet created and unlocked without a seed or password
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost=" + nd.btcd.RPCAddr,
		"--btcd.rpcuser=" + nd.btcd.User,
		"--btcd.rpcpass=" + nd.btcd.Pass,
		"--btcd.rpccert=" + nd.btcd.CertPath,
		"--rpclisten=" + nd.RPCAddr,
		"--listen=" + nd.P2PAddr,
		// Announced so peers can reconnect after this node restarts.
		"--externalip=" + nd.P2PAddr,
		"--norest",
		"--nobootstrap",
		"--debuglevel=info",
		// Output goes to LogPath via stdout; a second copy is waste.
		"--logging.file.disable",
		"--trickledelay=50",
		"--gossip.sub-batch-delay=5ms",
		"--caches.rpc-graph-cache-duration=100ms",
		"--db.batch-commit-interval=10ms",
		"--bitcoin.defaultchanconfs=1",
		"--bitcoin.defaultremotedelay=4",
		// Several channels may be opened to one peer at once.
		"--maxpendingchannels=" + strconv.Itoa(maxPending),
		// Channels above 16.7M sat, for benchmarks.
		"--protocol.wumbo-channels",
		// Reconnect to a restarted peer within seconds, not after an
		// exponential backoff of up to an hour.
		"--maxbackoff=2s",
	}, nd.extraArgs...)
}

// waitReady waits until lnd serves RPCs and its wallet is synced to btcd,
// dialling the first time.
func (nd *Node) waitReady(ctx context.Context, p *proc.Process) error {
	// lnd creates the file before it writes it: wait for a whole macaroon.
	err := waitFor(ctx, nd.Name+"'s macaroon", 50*time.Millisecond, p, func(context.Context) (bool, error) {
		b, err := os.ReadFile(nd.MacaroonPath)
		if err != nil {
			return false, err
		}
		if err := new(macaroon.Macaroon).UnmarshalBinary(b); err != nil {
			return false, fmt.Errorf("%d bytes, not yet a macaroon: %w", len(b), err)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if nd.Conn == nil {
		if err := nd.dial(); err != nil {
			return err
		}
	} else {
		// grpc backs off exponentially while the node was down.
		nd.Conn.ResetConnectBackoff()
	}
	err = waitFor(ctx, nd.Name+" to become active", 100*time.Millisecond, p, func(ctx context.Context) (bool, error) {
		st, err := nd.state.GetState(ctx, &lnrpc.GetStateRequest{})
		if err != nil {
			return false, err
		}
		if st.State != lnrpc.WalletState_SERVER_ACTIVE {
			return false, fmt.Errorf("state %s", st.State)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return waitFor(ctx, nd.Name+" to sync to the chain", 100*time.Millisecond, p, func(ctx context.Context) (bool, error) {
		info, err := nd.Lightning.GetInfo(ctx, &lnrpc.GetInfoRequest{})
		if err != nil {
			return false, err
		}
		if nd.PubKey == "" { // set once, on the first start, so later reads don't race
			nd.PubKey = info.IdentityPubkey
		}
		if !info.SyncedToChain {
			return false, errors.New("not synced to chain")
		}
		return true, nil
	})
}

func (nd *Node) dial() error {
	creds, err := credentials.NewClientTLSFromFile(nd.TLSCertPath, "")
	if err != nil {
		return fmt.Errorf("reading %s's TLS certificate: %w", nd.Name, err)
	}
	mac, err := os.ReadFile(nd.MacaroonPath)
	if err != nil {
		return fmt.Errorf("reading %s's macaroon: %w", nd.Name, err)
	}
	conn, err := grpc.Dial(nd.RPCAddr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(macaroonCred(hex.EncodeToString(mac))),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("dialling %s at %s: %w", nd.Name, nd.RPCAddr, err)
	}
	nd.Conn = conn
	nd.Lightning = lnrpc.NewLightningClient(conn)
	nd.Router = routerrpc.NewRouterClient(conn)
	nd.Invoices = invoicesrpc.NewInvoicesClient(conn)
	nd.state = lnrpc.NewStateClient(conn)
	return nil
}

// macaroonCred sends the admin macaroon, hex-encoded, with every call: the
// form lnd expects. Sending the file's bytes as they are needs no parsing.
type macaroonCred string

func (m macaroonCred) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"macaroon": string(m)}, nil
}

func (macaroonCred) RequireTransportSecurity() bool { return true }

// waitSynced waits until the node has processed every block up to height.
func (nd *Node) waitSynced(ctx context.Context, height int64, p *proc.Process) error {
	return waitFor(ctx, fmt.Sprintf("%s to reach block %d", nd.Name, height), 50*time.Millisecond, p,
		func(ctx context.Context) (bool, error) {
			info, err := nd.Lightning.GetInfo(ctx, &lnrpc.GetInfoRequest{})
			if err != nil {
				return false, err
			}
			if int64(info.BlockHeight) < height || !info.SyncedToChain {
				return false, fmt.Errorf("at block %d, synced %v", info.BlockHeight, info.SyncedToChain)
			}
			return true, nil
		})
}
