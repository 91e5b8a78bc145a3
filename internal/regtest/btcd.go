package regtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

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

// coinbaseMaturity is how many blocks deep a coinbase output must be before
// it can be spent (consensus rule, 100 on every network).
const coinbaseMaturity = 100

// miner owns the key btcd mines to. btcd has no wallet and mines only to
// --miningaddr, fixed at startup; mining to a key of our own means nodes
// never need to exist before btcd does, Mine leaves the lnd wallets
// untouched, and funding any node is one transaction signed here.
type miner struct {
	key      *btcec.PrivateKey
	addr     btcutil.Address
	pkScript []byte
	next     int64 // lowest block height whose coinbase is still unspent
}

func newMiner() (*miner, error) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	// P2PKH: the simplest output to sign for, valid before segwit activates.
	addr, err := btcutil.NewAddressPubKeyHash(
		btcutil.Hash160(key.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, err
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, err
	}
	return &miner{key: key, addr: addr, pkScript: script, next: 1}, nil
}

// send pays outs from mature coinbase outputs and returns the transaction
// id. The caller mines it.
func (m *miner) send(ctx context.Context, b *Btcd, outs []*wire.TxOut) (string, error) {
	const feeRate = 10 // sat/vbyte; btcd relays from 1
	tx := wire.NewMsgTx(2)
	var need int64
	for _, o := range outs {
		tx.AddTxOut(o)
		need += o.Value
	}
	tip, err := b.height()
	if err != nil {
		return "", err
	}
	next, have := m.next, int64(0)
	for {
		// 148 vbytes per P2PKH input, 43 per output (P2TR, the largest) plus change.
		fee := int64(11+148*len(tx.TxIn)+43*(len(tx.TxOut)+1)) * feeRate
		if have >= need+fee {
			if change := have - need - fee; change > 10_000 {
				tx.AddTxOut(wire.NewTxOut(change, m.pkScript))
			}
			break
		}
		if next > tip-coinbaseMaturity {
			// Out of mature coinbases: mine until the next one matures.
			if err := b.generate(ctx, int(next+coinbaseMaturity-tip)); err != nil {
				return "", err
			}
			if tip, err = b.height(); err != nil {
				return "", err
			}
		}
		hash, err := b.RPC.GetBlockHash(next)
		if err != nil {
			return "", fmt.Errorf("btcd getblockhash %d: %w", next, err)
		}
		block, err := b.RPC.GetBlock(hash)
		if err != nil {
			return "", fmt.Errorf("btcd getblock %s: %w", hash, err)
		}
		next++
		cb := block.Transactions[0]
		if !bytes.Equal(cb.TxOut[0].PkScript, m.pkScript) {
			continue // not ours (mined before a restart with another key)
		}
		cbHash := cb.TxHash()
		tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&cbHash, 0), nil, nil))
		have += cb.TxOut[0].Value
	}
	for i := range tx.TxIn {
		sig, err := txscript.SignatureScript(tx, i, m.pkScript, txscript.SigHashAll, m.key, true)
		if err != nil {
			return "", err
		}
		tx.TxIn[i].SignatureScript = sig
	}
	txid, err := b.RPC.SendRawTransaction(tx, true)
	if err != nil {
		return "", fmt.Errorf("btcd sendrawtransaction: %w", err)
	}
	m.next = next
	return txid.String(), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
