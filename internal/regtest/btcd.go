package regtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/rpcclient"

	"lightning-service/internal/proc"
)

// Btcd is the network's chain backend.
type Btcd struct {
	RPCAddr  string // host:port of the JSON-RPC server (TLS)
	P2PAddr  string
	User     string
	Pass     string
	CertPath string // the RPC server's TLS certificate
	Dir      string
	LogPath  string

	// RPC is a client of btcd's JSON-RPC server (getblockcount, generate, …).
	RPC *rpcclient.Client

	btcctl  string
	process *proc.Process
}

// BtcctlArgs is the btcctl command-line prefix that talks to this btcd,
// e.g. append "getblockcount".
func (b *Btcd) BtcctlArgs() []string {
	return []string{
		b.btcctl, "--regtest",
		// An explicit, empty config file keeps ~/.btcctl/btcctl.conf out.
		"--configfile=" + filepath.Join(b.Dir, "btcctl.conf"),
		"--rpcserver=" + b.RPCAddr, "--rpcuser=" + b.User, "--rpcpass=" + b.Pass,
		"--rpccert=" + b.CertPath,
	}
}

// startBtcd starts btcd in dir, mining to miningAddr, and waits until its
// RPC server answers. It retries with new ports if one was taken.
func startBtcd(ctx context.Context, bins Binaries, dir string, miningAddr btcutil.Address) (*Btcd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Explicit config files, even empty, keep the user's ~/.btcd and
	// ~/.btcctl out, and stop btcd writing a default config there.
	for _, f := range []string{"btcd.conf", "btcctl.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			return nil, err
		}
	}
	b := &Btcd{
		User:     "regtest",
		Pass:     hex.EncodeToString(randomBytes(12)),
		CertPath: filepath.Join(dir, "rpc.cert"),
		Dir:      dir,
		LogPath:  filepath.Join(dir, "btcd.log"),
		btcctl:   bins.Btcctl,
	}
	var lastErr error
	for range 3 {
		if b.RPC != nil {
			b.RPC.Shutdown()
			b.RPC = nil
		}
		ports, err := proc.FreePorts(2)
		if err != nil {
			return nil, err
		}
		b.RPCAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
		b.P2PAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		args := []string{
			"--regtest",
			"--configfile=" + filepath.Join(dir, "btcd.conf"),
			"--datadir=" + filepath.Join(dir, "data"),
			"--logdir=" + filepath.Join(dir, "logs"),
			"--rpcuser=" + b.User, "--rpcpass=" + b.Pass,
			"--rpclisten=" + b.RPCAddr,
			"--listen=" + b.P2PAddr,
			"--rpccert=" + b.CertPath,
			"--rpckey=" + filepath.Join(dir, "rpc.key"),
			"--txindex", // lnd's btcd backend needs it
			"--miningaddr=" + miningAddr.EncodeAddress(),
			"--nodnsseed",
			"--nobanning",
			"--debuglevel=info",
			// lnd opens several websocket clients per node.
			"--rpcmaxwebsockets=100",
		}
		b.process, err = proc.Start(proc.Command{Name: "btcd", Path: bins.Btcd, Args: args, LogPath: b.LogPath})
		if err != nil {
			return nil, err
		}
		lastErr = b.waitRPC(ctx)
		if lastErr == nil {
			return b, nil
		}
		b.process.Stop(context.Background(), 5*time.Second)
		if !b.process.AddrInUse() {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

func (b *Btcd) waitRPC(ctx context.Context) error {
	return waitFor(ctx, "btcd's RPC server", 50*time.Millisecond, b.process, func(context.Context) (bool, error) {
		cert, err := os.ReadFile(b.CertPath)
		if err != nil {
			return false, err
		}
		if b.RPC == nil {
			b.RPC, err = rpcclient.New(&rpcclient.ConnConfig{
				Host: b.RPCAddr, User: b.User, Pass: b.Pass,
				Certificates: cert, HTTPPostMode: true,
			}, nil)
			if err != nil {
				return false, err
			}
		}
		_, err = b.RPC.GetBlockCount()
		return err == nil, err
	})
}

func (b *Btcd) stop() error {
	if b.RPC != nil {
		b.RPC.Shutdown()
	}
	if b.process == nil {
		return nil
	}
	return b.process.Stop(context.Background(), 10*time.Second)
}

// generate mines blocks, in batches so that ctx can interrupt a long run
// (the RPC client takes no context).
func (b *Btcd) generate(ctx context.Context, blocks int) error {
	for blocks > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := min(blocks, 50)
		if _, err := b.RPC.Generate(uint32(batch)); err != nil {
			return fmt.Errorf("btcd generate %d: %w", batch, err)
		}
		blocks -= batch
	}
	return nil
}

func (b *Btcd) height() (int64, error) {
	h, err := b.RPC.GetBlockCount()
	if err != nil {
		return 0, fmt.Errorf("btcd getblockcount: %w", err)
	}
	return h, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
