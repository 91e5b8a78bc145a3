package lightning

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"

	"lightning-service/internal/core"
)

// NetworkParams returns the chain parameters of a network by the names LND
// and bitcoind use for it.
func NetworkParams(name string) (*chaincfg.Params, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "mainnet", "bitcoin":
		return &chaincfg.MainNetParams, nil
	case "testnet", "testnet3":
		return &chaincfg.TestNet3Params, nil
	case "testnet4":
		return &chaincfg.TestNet4Params, nil
	case "signet":
		return &chaincfg.SigNetParams, nil
	case "regtest":
		return &chaincfg.RegressionNetParams, nil
	case "simnet":
		return &chaincfg.SimNetParams, nil
	}
	return nil, fmt.Errorf("unknown bitcoin network %q: want mainnet, testnet, testnet4, signet, regtest or simnet", name)
}

// invoiceNetworks names the network of each invoice prefix. zpay32 uses "tbs"
// for signet, unlike addresses; testnet3 and testnet4 share "tb".
var invoiceNetworks = map[string]string{
	"bc":   "mainnet",
	"tb":   "testnet or testnet4",
	"tbs":  "signet",
	"bcrt": "regtest",
	"sb":   "simnet",
}

// lightningURI is the URI scheme wallets put before a payment request.
const lightningURI = "lightning:"

// Decode decodes a BOLT11 payment request for the network net, locally and
// exactly as LND's DecodePayReq RPC does. It accepts the request in either
// letter case and with a "lightning:" prefix. Errors are *core.Error with
// code CodeInvalidPaymentRequest.
func Decode(payReq string, net *chaincfg.Params) (req PayReq, err error) {
	s := strings.TrimSpace(payReq)
	if len(s) >= len(lightningURI) && strings.EqualFold(s[:len(lightningURI)], lightningURI) {
		s = strings.TrimSpace(s[len(lightningURI):])
	}
	if s == "" {
		return PayReq{}, core.Errorf(core.CodeInvalidPaymentRequest, "payment request is empty")
	}

	// zpay32 parses text chosen by whoever sent the request; a panic there
	// would crash the service again on every redelivery of the same record.
	defer func() {
		if r := recover(); r != nil {
			req, err = PayReq{}, core.Wrap(core.CodeInvalidPaymentRequest,
				fmt.Errorf("zpay32 panicked: %v", r), "not a BOLT11 payment request")
		}
	}()

	inv, err := zpay32.Decode(s, net)
	if err != nil {
		// zpay32 only says a request is not for our network, and for
		// "lnbcrt…" on mainnet not even that, since "bc" prefixes "bcrt".
		prefix := invoicePrefix(s)
		if theirs, ok := invoiceNetworks[prefix]; ok && prefix != nodePrefix(net) {
			return PayReq{}, core.Errorf(core.CodeInvalidPaymentRequest,
				"payment request is for network %s, the node is on %s", theirs, networkName(net))
		}
		return PayReq{}, core.Errorf(core.CodeInvalidPaymentRequest,
			"not a BOLT11 payment request: %s", sanitize(err.Error()))
	}
	req, err = fromInvoice(inv)
	if err != nil {
		return PayReq{}, core.Errorf(core.CodeInvalidPaymentRequest,
			"unsupported payment request: %s", err)
	}
	return req, nil
}

// fromInvoice mirrors rpcserver.DecodePayReq and the invoicesrpc.CreateRPC*
// helpers it calls, field by field.
func fromInvoice(inv *zpay32.Invoice) (PayReq, error) {
	req := PayReq{
		Destination:  hex.EncodeToString(inv.Destination.SerializeCompressed()),
		PaymentHash:  *inv.PaymentHash,
		Timestamp:    inv.Timestamp.Unix(),
		Expiry:       int64(inv.Expiry().Seconds()), // an absent x field means 3600
		CltvExpiry:   int64(inv.MinFinalCLTVExpiry()),
		RouteHints:   []RouteHint{},
		Features:     map[uint32]Feature{},
		BlindedPaths: []BlindedPaymentPath{},
	}
	if inv.Description != nil {
		req.Description = *inv.Description
	}
	if inv.DescriptionHash != nil {
		req.DescriptionHash = hex.EncodeToString(inv.DescriptionHash[:])
	}
	if inv.FallbackAddr != nil {
		req.FallbackAddr = inv.FallbackAddr.String()
	}
	if inv.MilliSat != nil {
		req.NumSatoshis = int64(inv.MilliSat.ToSatoshis())
		req.NumMsat = int64(*inv.MilliSat)
	}
	addr := inv.PaymentAddr.UnwrapOr([32]byte{})
	req.PaymentAddr = addr[:]

	for _, route := range inv.RouteHints {
		hint := RouteHint{HopHints: make([]HopHint, 0, len(route))}
		for _, hop := range route {
			hint.HopHints = append(hint.HopHints, HopHint{
				NodeID:                    hex.EncodeToString(hop.NodeID.SerializeCompressed()),
				ChanID:                    hop.ChannelID,
				FeeBaseMsat:               hop.FeeBaseMSat,
				FeeProportionalMillionths: hop.FeeProportionalMillionths,
				CltvExpiryDelta:           uint32(hop.CLTVExpiryDelta),
			})
		}
		req.RouteHints = append(req.RouteHints, hint)
	}

	for bit := range inv.Features.Features() {
		req.Features[uint32(bit)] = Feature{
			Name:       inv.Features.Name(bit),
			IsRequired: bit.IsRequired(),
			IsKnown:    inv.Features.IsKnown(bit),
		}
	}

	for _, path := range inv.BlindedPaymentPaths {
		// LND's DecodePayReq fails on such a path too.
		if len(path.Hops) == 0 {
			return PayReq{}, errors.New("a blinded path has no hops")
		}
		hops := make([]BlindedHop, 0, len(path.Hops))
		for _, hop := range path.Hops {
			hops = append(hops, BlindedHop{
				BlindedNode:   hop.BlindedNodePub.SerializeCompressed(),
				EncryptedData: hop.CipherText,
			})
		}
		// LND lists the bits in map order, which varies from call to call.
		bits := make([]FeatureBit, 0, len(path.Features.Features()))
		for bit := range path.Features.Features() {
			bits = append(bits, FeatureBit(bit))
		}
		slices.SortFunc(bits, cmp.Compare)
		req.BlindedPaths = append(req.BlindedPaths, BlindedPaymentPath{
			BlindedPath: BlindedPath{
				IntroductionNode: path.Hops[0].BlindedNodePub.SerializeCompressed(),
				BlindingPoint:    path.FirstEphemeralBlindingPoint.SerializeCompressed(),
				BlindedHops:      hops,
			},
			BaseFeeMsat:         uint64(path.FeeBaseMsat),
			ProportionalFeeRate: path.FeeRate,
			TotalCltvDelta:      uint32(path.CltvExpiryDelta),
			HtlcMinMsat:         path.HTLCMinMsat,
			HtlcMaxMsat:         path.HTLCMaxMsat,
			Features:            bits,
		})
	}
	return req, nil
}

// invoicePrefix returns the network part of a payment request's
// human-readable part ("bc" in "lnbc10u1…"), or "" when it has none. The
// amount, if any, starts with a digit; no network prefix has one.
func invoicePrefix(s string) string {
	s = strings.ToLower(s)
	sep := strings.LastIndexByte(s, '1')
	if sep < 2 || !strings.HasPrefix(s, "ln") {
		return ""
	}
	hrp := s[2:sep]
	if i := strings.IndexFunc(hrp, unicode.IsDigit); i >= 0 {
		hrp = hrp[:i]
	}
	return hrp
}

// nodePrefix is the invoice prefix zpay32 expects for net.
func nodePrefix(net *chaincfg.Params) string {
	if net.Name == chaincfg.SigNetParams.Name {
		return "tbs"
	}
	return net.Bech32HRPSegwit
}

// networkName names net as LND's GetInfo does (lncfg.NormalizeNetwork).
func networkName(net *chaincfg.Params) string {
	if net.Name == chaincfg.TestNet3Params.Name {
		return "testnet"
	}
	return net.Name
}

// sanitize keeps a zpay32 error publishable: it can quote a byte of the
// input, which need not be printable or valid UTF-8.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}
