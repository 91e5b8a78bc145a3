package lightning

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// PayReq is a decoded BOLT11 payment request. Its JSON encoding has exactly
// the fields of LND's lnrpc.PayReq under their proto names, with the values
// LND's DecodePayReq returns, so that the decode result stays what callers
// got from LND; only the integers are JSON numbers rather than protojson's
// strings. Every field is always present: lists and maps are never null.
type PayReq struct {
	Destination     string               `json:"destination"` // hex, compressed
	PaymentHash     Hash                 `json:"payment_hash"`
	NumSatoshis     int64                `json:"num_satoshis"` // rounded down
	Timestamp       int64                `json:"timestamp"`    // Unix seconds
	Expiry          int64                `json:"expiry"`       // seconds after Timestamp
	Description     string               `json:"description"`
	DescriptionHash string               `json:"description_hash"` // hex; "" when absent
	FallbackAddr    string               `json:"fallback_addr"`
	CltvExpiry      int64                `json:"cltv_expiry"`
	RouteHints      []RouteHint          `json:"route_hints"`
	PaymentAddr     HexBytes             `json:"payment_addr"` // 32 zero bytes when absent, as LND
	NumMsat         int64                `json:"num_msat"`     // 0 when the invoice has no amount
	Features        map[uint32]Feature   `json:"features"`     // by bit number
	BlindedPaths    []BlindedPaymentPath `json:"blinded_paths"`
}

// RouteHint is a private route to the destination.
type RouteHint struct {
	HopHints []HopHint `json:"hop_hints"`
}

// HopHint is one channel of a route hint.
type HopHint struct {
	NodeID                    string `json:"node_id"` // hex, compressed
	ChanID                    uint64 `json:"chan_id"`
	FeeBaseMsat               uint32 `json:"fee_base_msat"`
	FeeProportionalMillionths uint32 `json:"fee_proportional_millionths"`
	CltvExpiryDelta           uint32 `json:"cltv_expiry_delta"`
}

// Feature is one feature bit the invoice sets.
type Feature struct {
	Name       string `json:"name"`
	IsRequired bool   `json:"is_required"`
	IsKnown    bool   `json:"is_known"`
}

// BlindedPaymentPath is a blinded route to the destination with its
// aggregate relay parameters.
type BlindedPaymentPath struct {
	BlindedPath         BlindedPath  `json:"blinded_path"`
	BaseFeeMsat         uint64       `json:"base_fee_msat"`
	ProportionalFeeRate uint32       `json:"proportional_fee_rate"`
	TotalCltvDelta      uint32       `json:"total_cltv_delta"`
	HtlcMinMsat         uint64       `json:"htlc_min_msat"`
	HtlcMaxMsat         uint64       `json:"htlc_max_msat"`
	Features            []FeatureBit `json:"features"` // ascending
}

// BlindedPath is the hops of a blinded route.
type BlindedPath struct {
	IntroductionNode HexBytes     `json:"introduction_node"`
	BlindingPoint    HexBytes     `json:"blinding_point"`
	BlindedHops      []BlindedHop `json:"blinded_hops"`
}

// BlindedHop is one hop of a blinded route.
type BlindedHop struct {
	BlindedNode   HexBytes `json:"blinded_node"`
	EncryptedData HexBytes `json:"encrypted_data"`
}

// HasAmount reports whether the invoice fixes the amount to pay. An explicit
// zero amount counts as none: there is nothing to pay without one.
func (p PayReq) HasAmount() bool { return p.NumMsat > 0 }

// ExpiresAt is when the invoice stops being payable.
func (p PayReq) ExpiresAt() time.Time {
	return time.Unix(p.Timestamp, 0).Add(time.Duration(p.Expiry) * time.Second)
}

// Expired reports whether the invoice has expired at now, by the rule LND
// applies before paying (routerrpc.ValidatePayReqExpiry): expired strictly
// after ExpiresAt.
func (p PayReq) Expired(now time.Time) bool { return now.After(p.ExpiresAt()) }

// The MarshalJSON methods below write nil lists and maps as [] and {}: the
// decode result promises every field, and callers index into them.

func (p PayReq) MarshalJSON() ([]byte, error) {
	type plain PayReq
	if p.RouteHints == nil {
		p.RouteHints = []RouteHint{}
	}
	if p.Features == nil {
		p.Features = map[uint32]Feature{}
	}
	if p.BlindedPaths == nil {
		p.BlindedPaths = []BlindedPaymentPath{}
	}
	return json.Marshal(plain(p))
}

func (r RouteHint) MarshalJSON() ([]byte, error) {
	type plain RouteHint
	if r.HopHints == nil {
		r.HopHints = []HopHint{}
	}
	return json.Marshal(plain(r))
}

func (b BlindedPaymentPath) MarshalJSON() ([]byte, error) {
	type plain BlindedPaymentPath
	if b.Features == nil {
		b.Features = []FeatureBit{}
	}
	return json.Marshal(plain(b))
}

func (b BlindedPath) MarshalJSON() ([]byte, error) {
	type plain BlindedPath
	if b.BlindedHops == nil {
		b.BlindedHops = []BlindedHop{}
	}
	return json.Marshal(plain(b))
}

// HexBytes is a byte string written as lowercase hex in JSON, as LND writes
// proto bytes fields (lnrpc sets UseHexForBytes).
type HexBytes []byte

func (b HexBytes) String() string { return hex.EncodeToString(b) }

func (b HexBytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

func (b *HexBytes) UnmarshalText(text []byte) error {
	decoded, err := hex.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("hex bytes: %w", err)
	}
	*b = decoded
	return nil
}

// FeatureBit is a feature bit of a blinded path. In JSON it is the name of
// lnrpc's FeatureBit enum value, or the number for bits the enum lacks, as
// protojson writes enums.
type FeatureBit uint32

// featureBitNames is lnrpc.FeatureBit_name, copied so that this package does
// not import protobufs; a test keeps the two equal.
var featureBitNames = map[FeatureBit]string{
	0:  "DATALOSS_PROTECT_REQ",
	1:  "DATALOSS_PROTECT_OPT",
	3:  "INITIAL_ROUING_SYNC",
	4:  "UPFRONT_SHUTDOWN_SCRIPT_REQ",
	5:  "UPFRONT_SHUTDOWN_SCRIPT_OPT",
	6:  "GOSSIP_QUERIES_REQ",
	7:  "GOSSIP_QUERIES_OPT",
	8:  "TLV_ONION_REQ",
	9:  "TLV_ONION_OPT",
	10: "EXT_GOSSIP_QUERIES_REQ",
	11: "EXT_GOSSIP_QUERIES_OPT",
	12: "STATIC_REMOTE_KEY_REQ",
	13: "STATIC_REMOTE_KEY_OPT",
	14: "PAYMENT_ADDR_REQ",
	15: "PAYMENT_ADDR_OPT",
	16: "MPP_REQ",
	17: "MPP_OPT",
	18: "WUMBO_CHANNELS_REQ",
	19: "WUMBO_CHANNELS_OPT",
	20: "ANCHORS_REQ",
	21: "ANCHORS_OPT",
	22: "ANCHORS_ZERO_FEE_HTLC_REQ",
	23: "ANCHORS_ZERO_FEE_HTLC_OPT",
	24: "ROUTE_BLINDING_REQUIRED",
	25: "ROUTE_BLINDING_OPTIONAL",
	30: "AMP_REQ",
	31: "AMP_OPT",
}

func (f FeatureBit) MarshalJSON() ([]byte, error) {
	if name, ok := featureBitNames[f]; ok {
		return json.Marshal(name)
	}
	return []byte(strconv.FormatUint(uint64(f), 10)), nil
}

func (f *FeatureBit) UnmarshalJSON(data []byte) error {
	var name string
	if err := json.Unmarshal(data, &name); err != nil {
		n, err := strconv.ParseUint(string(data), 10, 32)
		if err != nil {
			return fmt.Errorf("feature bit %s: want an enum name or a number", data)
		}
		*f = FeatureBit(n)
		return nil
	}
	for bit, known := range featureBitNames {
		if known == name {
			*f = bit
			return nil
		}
	}
	return fmt.Errorf("feature bit %q: unknown name", name)
}
