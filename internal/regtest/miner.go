package regtest

import (
	"bytes"
	"context"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

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
