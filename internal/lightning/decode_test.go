package lightning_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	sphinx "github.com/lightningnetwork/lightning-onion"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"

	"lightning-service/internal/core"
	"lightning-service/internal/lightning"
)

var (
	testTime    = time.Unix(1_700_000_000, 0)
	testHash    = sha256.Sum256([]byte("preimage"))
	testAddr    = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}
	nodeKey     = privKey(1)
	hopKey1     = privKey(2).PubKey()
	hopKey2     = privKey(3).PubKey()
	longMemo    = strings.Repeat("a 600-character memo, ", 30)[:600]
	unicodeMemo = "café ☕ — 日本語 🚀"
)

func privKey(seed byte) *btcec.PrivateKey {
	k, _ := btcec.PrivKeyFromBytes(bytes32(seed))
	return k
}

func bytes32(b byte) []byte {
	s := make([]byte, 32)
	s[31] = b
	return s
}

// encode signs and encodes an invoice with nodeKey, as LND's AddInvoice does.
func encode(t testing.TB, net *chaincfg.Params, opts ...func(*zpay32.Invoice)) string {
	t.Helper()
	inv, err := zpay32.NewInvoice(net, testHash, testTime, opts...)
	if err != nil {
		t.Fatalf("NewInvoice: %v", err)
	}
	s, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		return ecdsa.SignCompact(nodeKey, chainhash.HashB(msg), true), nil
	}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return s
}

// lndDecodePayReq is rpcserver.DecodePayReq of LND v0.20.1-beta, copied
// line for line: the reference Decode must agree with.
func lndDecodePayReq(payReqString string, net *chaincfg.Params) (*lnrpc.PayReq, error) {
	payReq, err := zpay32.Decode(payReqString, net)
	if err != nil {
		return nil, err
	}
	desc := ""
	if payReq.Description != nil {
		desc = *payReq.Description
	}
	descHash := []byte("")
	if payReq.DescriptionHash != nil {
		descHash = payReq.DescriptionHash[:]
	}
	fallbackAddr := ""
	if payReq.FallbackAddr != nil {
		fallbackAddr = payReq.FallbackAddr.String()
	}
	expiry := int64(payReq.Expiry().Seconds())
	routeHints := invoicesrpc.CreateRPCRouteHints(payReq.RouteHints)
	blindedPaymentPaths, err := invoicesrpc.CreateRPCBlindedPayments(
		payReq.BlindedPaymentPaths,
	)
	if err != nil {
		return nil, err
	}
	var amtSat, amtMsat int64
	if payReq.MilliSat != nil {
		amtSat = int64(payReq.MilliSat.ToSatoshis())
		amtMsat = int64(*payReq.MilliSat)
	}
	paymentAddr := payReq.PaymentAddr.UnwrapOr([32]byte{})
	dest := payReq.Destination.SerializeCompressed()
	return &lnrpc.PayReq{
		Destination:     hex.EncodeToString(dest),
		PaymentHash:     hex.EncodeToString(payReq.PaymentHash[:]),
		NumSatoshis:     amtSat,
		NumMsat:         amtMsat,
		Timestamp:       payReq.Timestamp.Unix(),
		Description:     desc,
		DescriptionHash: hex.EncodeToString(descHash[:]),
		FallbackAddr:    fallbackAddr,
		Expiry:          expiry,
		CltvExpiry:      int64(payReq.MinFinalCLTVExpiry()),
		RouteHints:      routeHints,
		BlindedPaths:    blindedPaymentPaths,
		PaymentAddr:     paymentAddr[:],
		Features:        invoicesrpc.CreateRPCFeatures(payReq.Features),
	}, nil
}

// requireSameAsLND checks that got encodes to the JSON lncli prints for LND's
// own decoding of s (protojson, proto names, hex bytes), with the one
// intended difference that 64-bit integers are numbers, not strings.
func requireSameAsLND(t testing.TB, s string, net *chaincfg.Params, got lightning.PayReq) {
	t.Helper()
	ref, err := lndDecodePayReq(s, net)
	if err != nil {
		t.Fatalf("LND's decoding failed where ours succeeded: %v", err)
	}
	refJSON, err := lnrpc.ProtoJSONMarshalOpts.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want, have := decodeJSON(t, refJSON), decodeJSON(t, gotJSON)
	if diff := jsonDiff("", have, want); diff != "" {
		t.Fatalf("differs from LND's DecodePayReq at %s\nours: %s\nLND:  %s", diff, gotJSON, refJSON)
	}
}

func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// jsonDiff returns the path of the first difference between ours and LND's
// JSON, or "". Our numbers match LND's decimal strings; enum lists are
// compared as sets, since LND builds them from a map.
func jsonDiff(path string, have, want any) string {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok || len(h) != len(w) {
			return path + fmt.Sprintf(" (keys: ours %v, LND %v)", keys(have), keys(want))
		}
		for k := range w {
			if _, ok := h[k]; !ok {
				return path + "." + k + " (missing)"
			}
			if d := jsonDiff(path+"."+k, h[k], w[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return path + " (length)"
		}
		if strings.HasSuffix(path, ".features") {
			h, w = sortedStrings(h), sortedStrings(w)
		}
		for i := range w {
			if d := jsonDiff(fmt.Sprintf("%s[%d]", path, i), h[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	case string:
		switch h := have.(type) {
		case string:
			if h == w {
				return ""
			}
		case json.Number:
			if h.String() == w {
				return ""
			}
		}
		return fmt.Sprintf("%s (ours %v, LND %q)", path, have, w)
	case json.Number:
		if h, ok := have.(json.Number); ok && h == w {
			return ""
		}
		return fmt.Sprintf("%s (ours %v, LND %v)", path, have, w)
	default:
		if have != want {
			return fmt.Sprintf("%s (ours %v, LND %v)", path, have, want)
		}
		return ""
	}
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortedStrings(l []any) []any {
	out := slices.Clone(l)
	slices.SortFunc(out, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return out
}

func mustDecode(t testing.TB, s string, net *chaincfg.Params) lightning.PayReq {
	t.Helper()
	got, err := lightning.Decode(s, net)
	if err != nil {
		t.Fatalf("Decode(%.60q…): %v", s, err)
	}
	return got
}

func TestDecodeMatchesLND(t *testing.T) {
	fallback, err := btcutil.NewAddressWitnessPubKeyHash(bytes32(7)[:20], &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	p2pkh, err := btcutil.NewAddressPubKeyHash(bytes32(8)[:20], &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	features := lnwire.NewFeatureVector(lnwire.NewRawFeatureVector(
		lnwire.TLVOnionPayloadRequired, lnwire.PaymentAddrRequired,
		lnwire.MPPOptional, 101, // 101: a bit LND does not know
	), lnwire.Features)
	hints := []zpay32.HopHint{
		{NodeID: hopKey1, ChannelID: 0x0102030405060708, FeeBaseMSat: 1000, FeeProportionalMillionths: 1, CLTVExpiryDelta: 40},
		{NodeID: hopKey2, ChannelID: 1<<63 | 5, FeeBaseMSat: 0, FeeProportionalMillionths: 4_000_000_000, CLTVExpiryDelta: 65535},
	}

	tests := []struct {
		name  string
		net   *chaincfg.Params
		opts  []func(*zpay32.Invoice)
		check func(t *testing.T, s string, p lightning.PayReq)
	}{
		{
			name: "amount", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){
				zpay32.Amount(2_500_000), zpay32.Description("coffee"), zpay32.PaymentAddr(testAddr),
				zpay32.Expiry(10 * time.Minute), zpay32.CLTVExpiry(80),
			},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				want := lightning.PayReq{
					Destination: hex.EncodeToString(nodeKey.PubKey().SerializeCompressed()),
					PaymentHash: testHash, NumSatoshis: 2500, NumMsat: 2_500_000,
					Timestamp: testTime.Unix(), Expiry: 600, CltvExpiry: 80,
					Description: "coffee", PaymentAddr: testAddr[:],
				}
				if p.Destination != want.Destination || p.PaymentHash != want.PaymentHash ||
					p.NumSatoshis != want.NumSatoshis || p.NumMsat != want.NumMsat ||
					p.Timestamp != want.Timestamp || p.Expiry != want.Expiry ||
					p.CltvExpiry != want.CltvExpiry || p.Description != want.Description ||
					p.PaymentAddr.String() != want.PaymentAddr.String() || p.DescriptionHash != "" {
					t.Errorf("got %+v\nwant %+v", p, want)
				}
				if !p.HasAmount() {
					t.Error("HasAmount: false for a 2500 sat invoice")
				}
			},
		},
		{
			name: "no amount and defaults", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Description("")},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.HasAmount() || p.NumMsat != 0 || p.NumSatoshis != 0 {
					t.Errorf("amount: %d msat, HasAmount %v", p.NumMsat, p.HasAmount())
				}
				// LND's defaults for absent fields.
				if p.Expiry != 3600 || p.CltvExpiry != 18 {
					t.Errorf("expiry %d, cltv_expiry %d; want 3600, 18", p.Expiry, p.CltvExpiry)
				}
				if p.PaymentAddr.String() != strings.Repeat("00", 32) {
					t.Errorf("payment_addr %s; want 32 zero bytes", p.PaymentAddr)
				}
			},
		},
		{
			name: "sub-satoshi amount", net: &chaincfg.RegressionNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Amount(1999), zpay32.Description("x")},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.NumMsat != 1999 || p.NumSatoshis != 1 {
					t.Errorf("got %d msat, %d sat; want 1999, 1", p.NumMsat, p.NumSatoshis)
				}
			},
		},
		{
			name: "non-ASCII memo", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Amount(1000), zpay32.Description(unicodeMemo)},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.Description != unicodeMemo {
					t.Errorf("description %q", p.Description)
				}
			},
		},
		{
			name: "600-character memo", net: &chaincfg.RegressionNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Amount(1000), zpay32.Description(longMemo), zpay32.PaymentAddr(testAddr)},
			check: func(t *testing.T, s string, p lightning.PayReq) {
				if len(s) <= 400 || p.Description != longMemo {
					t.Errorf("request %d chars, description %d chars", len(s), len(p.Description))
				}
			},
		},
		{
			name: "description hash", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){zpay32.DescriptionHash(sha256.Sum256([]byte(longMemo)))},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				want := sha256.Sum256([]byte(longMemo))
				if p.DescriptionHash != hex.EncodeToString(want[:]) || p.Description != "" {
					t.Errorf("description_hash %q, description %q", p.DescriptionHash, p.Description)
				}
			},
		},
		{
			name: "segwit fallback address", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Description("f"), zpay32.FallbackAddr(fallback)},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.FallbackAddr != fallback.String() || !strings.HasPrefix(p.FallbackAddr, "bc1") {
					t.Errorf("fallback_addr %q; want %q", p.FallbackAddr, fallback)
				}
			},
		},
		{
			name: "p2pkh fallback address", net: &chaincfg.RegressionNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Description("f"), zpay32.FallbackAddr(p2pkh)},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.FallbackAddr != p2pkh.String() {
					t.Errorf("fallback_addr %q; want %q", p.FallbackAddr, p2pkh)
				}
			},
		},
		{
			name: "route hints", net: &chaincfg.MainNetParams,
			opts: []func(*zpay32.Invoice){
				zpay32.Amount(5000), zpay32.Description("hints"),
				zpay32.RouteHint(hints), zpay32.RouteHint(hints[1:]),
			},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if len(p.RouteHints) != 2 || len(p.RouteHints[0].HopHints) != 2 || len(p.RouteHints[1].HopHints) != 1 {
					t.Fatalf("route_hints %+v", p.RouteHints)
				}
				got := p.RouteHints[0].HopHints[1]
				want := lightning.HopHint{
					NodeID: hex.EncodeToString(hopKey2.SerializeCompressed()), ChanID: 1<<63 | 5,
					FeeBaseMsat: 0, FeeProportionalMillionths: 4_000_000_000, CltvExpiryDelta: 65535,
				}
				if got != want {
					t.Errorf("hop hint %+v; want %+v", got, want)
				}
			},
		},
		{
			name: "features", net: &chaincfg.SigNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Description("feat"), zpay32.Features(features), zpay32.PaymentAddr(testAddr)},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				want := map[uint32]lightning.Feature{
					8:   {Name: "tlv-onion", IsRequired: true, IsKnown: true},
					14:  {Name: "payment-addr", IsRequired: true, IsKnown: true},
					17:  {Name: "multi-path-payments", IsRequired: false, IsKnown: true},
					101: {Name: "unknown", IsRequired: false, IsKnown: false},
				}
				if len(p.Features) != len(want) {
					t.Fatalf("features %+v", p.Features)
				}
				for bit, f := range want {
					if p.Features[bit] != f {
						t.Errorf("feature %d: %+v; want %+v", bit, p.Features[bit], f)
					}
				}
			},
		},
		{
			name: "metadata is not part of PayReq", net: &chaincfg.TestNet3Params,
			opts: []func(*zpay32.Invoice){zpay32.Description("m"), zpay32.Metadata([]byte{1, 2, 3})},
		},
		{
			name: "explicit destination field", net: &chaincfg.SimNetParams,
			opts: []func(*zpay32.Invoice){zpay32.Description("n"), zpay32.Destination(nodeKey.PubKey())},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if p.Destination != hex.EncodeToString(nodeKey.PubKey().SerializeCompressed()) {
					t.Errorf("destination %s", p.Destination)
				}
			},
		},
		{
			name: "blinded paths", net: &chaincfg.RegressionNetParams,
			opts: []func(*zpay32.Invoice){
				zpay32.Amount(10_000), zpay32.Description("blinded"),
				zpay32.WithBlindedPaymentPath(&zpay32.BlindedPaymentPath{
					FeeBaseMsat: 1000, FeeRate: 10, CltvExpiryDelta: 144,
					HTLCMinMsat: 1, HTLCMaxMsat: 1 << 40,
					Features: lnwire.NewFeatureVector(lnwire.NewRawFeatureVector(
						lnwire.AMPOptional, lnwire.TLVOnionPayloadRequired, 101,
					), lnwire.Features),
					FirstEphemeralBlindingPoint: hopKey1,
					Hops: []*sphinx.BlindedHopInfo{
						{BlindedNodePub: hopKey2, CipherText: []byte{0xde, 0xad}},
						{BlindedNodePub: hopKey1, CipherText: []byte{0xbe, 0xef}},
					},
				}),
				zpay32.WithBlindedPaymentPath(&zpay32.BlindedPaymentPath{
					Features:                    lnwire.EmptyFeatureVector(),
					FirstEphemeralBlindingPoint: hopKey2,
					Hops:                        []*sphinx.BlindedHopInfo{{BlindedNodePub: hopKey1, CipherText: []byte{1}}},
				}),
			},
			check: func(t *testing.T, _ string, p lightning.PayReq) {
				if len(p.BlindedPaths) != 2 {
					t.Fatalf("blinded_paths %+v", p.BlindedPaths)
				}
				b := p.BlindedPaths[0]
				if b.BlindedPath.IntroductionNode.String() != hex.EncodeToString(hopKey2.SerializeCompressed()) ||
					b.BlindedPath.BlindingPoint.String() != hex.EncodeToString(hopKey1.SerializeCompressed()) ||
					len(b.BlindedPath.BlindedHops) != 2 || b.BlindedPath.BlindedHops[0].EncryptedData.String() != "dead" ||
					b.TotalCltvDelta != 144 || b.HtlcMaxMsat != 1<<40 ||
					!slices.Equal(b.Features, []lightning.FeatureBit{8, 31, 101}) {
					t.Errorf("blinded path %+v", b)
				}
				j, _ := json.Marshal(b.Features)
				if string(j) != `["TLV_ONION_REQ","AMP_OPT",101]` {
					t.Errorf("features JSON %s", j)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := encode(t, tt.net, tt.opts...)
			got := mustDecode(t, s, tt.net)
			requireSameAsLND(t, s, tt.net, got)
			requireCompleteJSON(t, got)
			if tt.check != nil {
				tt.check(t, s, got)
			}
		})
	}
}

func TestDecodeAcceptsCaseURIAndPadding(t *testing.T) {
	s := encode(t, &chaincfg.MainNetParams, zpay32.Amount(1000), zpay32.Description(unicodeMemo), zpay32.PaymentAddr(testAddr))
	want := mustDecode(t, s, &chaincfg.MainNetParams)
	for _, in := range []string{
		strings.ToUpper(s),
		"lightning:" + s,
		"LIGHTNING:" + strings.ToUpper(s),
		"Lightning:" + s,
		"lightning: " + s,
		"  " + s + strings.Repeat(" ", 400-len(s)%400),
		"\t" + s + "\r\n",
	} {
		got, err := lightning.Decode(in, &chaincfg.MainNetParams)
		if err != nil {
			t.Errorf("Decode(%.30q…): %v", in, err)
			continue
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Errorf("Decode(%.30q…) = %s; want %s", in, a, b)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	mainnet := encode(t, &chaincfg.MainNetParams, zpay32.Amount(1000), zpay32.Description("x"))
	regtest := encode(t, &chaincfg.RegressionNetParams, zpay32.Description("x"))
	regtestAmt := encode(t, &chaincfg.RegressionNetParams, zpay32.Amount(50_000_000), zpay32.Description("x"))
	signet := encode(t, &chaincfg.SigNetParams, zpay32.Description("x"))
	testnet := encode(t, &chaincfg.TestNet3Params, zpay32.Description("x"))
	corrupt := mainnet[:len(mainnet)-10] + flip(mainnet[len(mainnet)-10]) + mainnet[len(mainnet)-9:]

	tests := []struct {
		name, in string
		net      *chaincfg.Params
		detail   string
	}{
		{"mainnet on regtest", mainnet, &chaincfg.RegressionNetParams, "payment request is for network mainnet, the node is on regtest"},
		{"regtest on mainnet", regtest, &chaincfg.MainNetParams, "payment request is for network regtest, the node is on mainnet"},
		{"regtest with amount on mainnet", regtestAmt, &chaincfg.MainNetParams, "payment request is for network regtest, the node is on mainnet"},
		{"signet on testnet", signet, &chaincfg.TestNet3Params, "payment request is for network signet, the node is on testnet"},
		{"testnet on signet", testnet, &chaincfg.SigNetParams, "payment request is for network testnet or testnet4, the node is on signet"},
		{"upper-case mainnet on testnet4", strings.ToUpper(mainnet), &chaincfg.TestNet4Params, "payment request is for network mainnet, the node is on testnet4"},
		{"empty", "", &chaincfg.MainNetParams, "payment request is empty"},
		{"only the URI", " lightning: ", &chaincfg.MainNetParams, "payment request is empty"},
		{"word", "hello", &chaincfg.MainNetParams, "not a BOLT11 payment request: invalid bech32 string length 5"},
		{"bitcoin address", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", &chaincfg.MainNetParams, "not a BOLT11 payment request: hrp too short"},
		{"mixed case", mainnet[:20] + strings.ToUpper(mainnet[20:]), &chaincfg.MainNetParams, "not a BOLT11 payment request: string not all lowercase or all uppercase"},
		{"corrupted", corrupt, &chaincfg.MainNetParams, "not a BOLT11 payment request: checksum failed."},
		{"truncated", mainnet[:len(mainnet)-1], &chaincfg.MainNetParams, "not a BOLT11 payment request: checksum failed."},
		{"non-ASCII", "lnbc1ü" + mainnet[6:], &chaincfg.MainNetParams, "not a BOLT11 payment request: invalid character in string"},
		{"unknown prefix", "lnxy1" + mainnet[5:], &chaincfg.MainNetParams, "not a BOLT11 payment request:"},
		{"too long", "lnbc1" + strings.Repeat("q", 8000), &chaincfg.MainNetParams, "not a BOLT11 payment request: invoice is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lightning.Decode(tt.in, tt.net)
			var e *core.Error
			if !errors.As(err, &e) || e.Code != core.CodeInvalidPaymentRequest {
				t.Fatalf("err = %v; want a *core.Error with %s", err, core.CodeInvalidPaymentRequest)
			}
			if !strings.HasPrefix(e.Detail, tt.detail) {
				t.Errorf("detail %q; want it to start with %q", e.Detail, tt.detail)
			}
		})
	}
}

func flip(c byte) string {
	if c == 'q' {
		return "p"
	}
	return "q"
}

func TestExpired(t *testing.T) {
	p := mustDecode(t, encode(t, &chaincfg.MainNetParams, zpay32.Description("e"), zpay32.Expiry(time.Minute)), &chaincfg.MainNetParams)
	end := testTime.Add(time.Minute)
	if !p.ExpiresAt().Equal(end) {
		t.Errorf("ExpiresAt %v; want %v", p.ExpiresAt(), end)
	}
	// LND pays up to and including the expiry instant.
	for _, c := range []struct {
		now  time.Time
		want bool
	}{{testTime, false}, {end, false}, {end.Add(time.Nanosecond), true}} {
		if got := p.Expired(c.now); got != c.want {
			t.Errorf("Expired(%v) = %v; want %v", c.now, got, c.want)
		}
	}
}

// requireCompleteJSON checks the promises of the decode result: every field
// present, no nulls, integers as numbers.
func requireCompleteJSON(t testing.TB, p lightning.PayReq) {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "null") {
		t.Fatalf("JSON has null: %s", b)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fields := []string{
		"destination", "payment_hash", "num_satoshis", "timestamp", "expiry", "description",
		"description_hash", "fallback_addr", "cltv_expiry", "route_hints", "payment_addr",
		"num_msat", "features", "blinded_paths",
	}
	if len(m) != len(fields) {
		t.Fatalf("JSON has %d fields; want %d: %s", len(m), len(fields), b)
	}
	for _, f := range fields {
		v, ok := m[f]
		if !ok {
			t.Fatalf("JSON lacks %s: %s", f, b)
		}
		switch f {
		case "num_satoshis", "timestamp", "expiry", "cltv_expiry", "num_msat":
			if v[0] == '"' {
				t.Errorf("%s is a string: %s", f, v)
			}
		}
	}
}

func TestZeroPayReqJSON(t *testing.T) {
	b, err := json.Marshal(lightning.PayReq{
		RouteHints:   []lightning.RouteHint{{}},
		BlindedPaths: []lightning.BlindedPaymentPath{{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"destination":"","payment_hash":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"num_satoshis":0,"timestamp":0,"expiry":0,"description":"","description_hash":"","fallback_addr":"",` +
		`"cltv_expiry":0,"route_hints":[{"hop_hints":[]}],"payment_addr":"","num_msat":0,"features":{},` +
		`"blinded_paths":[{"blinded_path":{"introduction_node":"","blinding_point":"","blinded_hops":[]},` +
		`"base_fee_msat":0,"proportional_fee_rate":0,"total_cltv_delta":0,"htlc_min_msat":0,"htlc_max_msat":0,"features":[]}]}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

func TestPayReqJSONRoundTrip(t *testing.T) {
	s := encode(t, &chaincfg.MainNetParams, zpay32.Amount(1), zpay32.Description("r"),
		zpay32.RouteHint([]zpay32.HopHint{{NodeID: hopKey1, ChannelID: 1 << 62}}))
	p := mustDecode(t, s, &chaincfg.MainNetParams)
	b, _ := json.Marshal(p)
	var back lightning.PayReq
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(back)
	if string(b) != string(b2) {
		t.Errorf("round trip changed the JSON:\n%s\n%s", b, b2)
	}
}

func TestFeatureBitJSONMatchesLNRPC(t *testing.T) {
	for bit := lightning.FeatureBit(0); bit < 300; bit++ {
		want := fmt.Sprint(uint32(bit))
		if name, ok := lnrpc.FeatureBit_name[int32(bit)]; ok {
			want = `"` + name + `"`
		}
		got, err := json.Marshal(bit)
		if err != nil || string(got) != want {
			t.Errorf("bit %d: %s, %v; want %s", bit, got, err, want)
		}
		var back lightning.FeatureBit
		if err := json.Unmarshal(got, &back); err != nil || back != bit {
			t.Errorf("bit %d: unmarshal %s gave %d, %v", bit, got, back, err)
		}
	}
}

func TestNetworkParams(t *testing.T) {
	for name, want := range map[string]*chaincfg.Params{
		"mainnet": &chaincfg.MainNetParams, "bitcoin": &chaincfg.MainNetParams,
		"testnet": &chaincfg.TestNet3Params, "testnet3": &chaincfg.TestNet3Params,
		"testnet4": &chaincfg.TestNet4Params, "signet": &chaincfg.SigNetParams,
		"regtest": &chaincfg.RegressionNetParams, "simnet": &chaincfg.SimNetParams,
		"Regtest": &chaincfg.RegressionNetParams,
	} {
		got, err := lightning.NetworkParams(name)
		if err != nil || got != want {
			t.Errorf("NetworkParams(%q) = %v, %v; want %s", name, got, err, want.Name)
		}
	}
	_, err := lightning.NetworkParams("litecoin")
	if err == nil || !strings.Contains(err.Error(), `"litecoin"`) {
		t.Errorf("NetworkParams(litecoin) error %v; want it to name the value", err)
	}
}

func TestHash(t *testing.T) {
	h := lightning.Hash(testHash)
	b, _ := json.Marshal(h)
	if string(b) != `"`+hex.EncodeToString(testHash[:])+`"` {
		t.Errorf("JSON %s", b)
	}
	var back lightning.Hash
	if err := json.Unmarshal(b, &back); err != nil || back != h {
		t.Errorf("unmarshal: %v, %v", back, err)
	}
	for _, bad := range []string{"", "00", strings.Repeat("zz", 32), strings.Repeat("0", 66)} {
		if _, err := lightning.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}
}

// withChecksum replaces the last six characters of a bech32 string by a
// valid checksum, so that the fuzzer's changes reach the parser behind the
// checksum check.
func withChecksum(s string) (string, bool) {
	s = strings.ToLower(s)
	sep := strings.LastIndexByte(s, '1')
	if sep < 1 || len(s)-sep-1 < 6 {
		return "", false
	}
	var data []byte
	for _, c := range s[sep+1 : len(s)-6] {
		i := strings.IndexRune("qpzry9x8gf2tvdw0s3jn54khce6mua7l", c)
		if i < 0 {
			return "", false
		}
		data = append(data, byte(i))
	}
	out, err := bech32.Encode(s[:sep], data)
	return out, err == nil
}

// bare is in as LND's DecodePayReq would need it: trimmed, without the URI.
func bare(in string) string {
	s := strings.TrimSpace(in)
	if len(s) >= 10 && strings.EqualFold(s[:10], "lightning:") {
		s = strings.TrimSpace(s[10:])
	}
	return s
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		"", "lightning:", "lnbc1", "LNBC1QQQQQQ", "lnbc1" + strings.Repeat("q", 120),
		encode(f, &chaincfg.MainNetParams, zpay32.Amount(2_500_000), zpay32.Description(unicodeMemo), zpay32.PaymentAddr(testAddr)),
		encode(f, &chaincfg.MainNetParams, zpay32.DescriptionHash(testHash), zpay32.Expiry(time.Hour*24*365*100)),
		encode(f, &chaincfg.MainNetParams, zpay32.Description("h"), zpay32.RouteHint([]zpay32.HopHint{{NodeID: hopKey1}, {NodeID: hopKey2}})),
		encode(f, &chaincfg.RegressionNetParams, zpay32.Description("b"), zpay32.WithBlindedPaymentPath(&zpay32.BlindedPaymentPath{
			Features: lnwire.EmptyFeatureVector(), FirstEphemeralBlindingPoint: hopKey1,
			Hops: []*sphinx.BlindedHopInfo{{BlindedNodePub: hopKey2, CipherText: []byte{1, 2}}},
		})),
	}
	for _, s := range seeds {
		f.Add(s, byte(0))
	}
	nets := []*chaincfg.Params{
		&chaincfg.MainNetParams, &chaincfg.RegressionNetParams, &chaincfg.TestNet3Params,
		&chaincfg.SigNetParams, &chaincfg.SimNetParams, &chaincfg.TestNet4Params,
	}
	f.Fuzz(func(t *testing.T, s string, n byte) {
		net := nets[int(n)%len(nets)]
		inputs := []string{s}
		if fixed, ok := withChecksum(s); ok {
			inputs = append(inputs, fixed)
		}
		for _, in := range inputs {
			got, err := lightning.Decode(in, net)
			if err != nil {
				var e *core.Error
				if !errors.As(err, &e) || e.Code != core.CodeInvalidPaymentRequest || e.Detail == "" {
					t.Fatalf("Decode(%q): error %v is not an invalid_payment_request", in, err)
				}
				continue
			}
			requireCompleteJSON(t, got)
			requireSameAsLND(t, bare(in), net, got)
		}
	})
}

// BenchmarkDecode is the CPU a decode costs the service: mostly the
// signature check and the recovery of the payee's key.
func BenchmarkDecode(b *testing.B) {
	pr := encode(b, &chaincfg.RegressionNetParams, zpay32.Amount(123456), zpay32.Description("bench"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := lightning.Decode(pr, &chaincfg.RegressionNetParams); err != nil {
			b.Fatal(err)
		}
	}
}
