package task

import (
	"encoding/hex"

	"lightning-service/internal/lightning"
)

// PaymentMessage is the message of a successful pay: LND's Payment fields
// that callers read, bytes as hex.
type PaymentMessage struct {
	PaymentHash     string       `json:"payment_hash"`
	PaymentPreimage string       `json:"payment_preimage"`
	ValueSat        int64        `json:"value_sat"`
	ValueMsat       int64        `json:"value_msat"`
	FeeSat          int64        `json:"fee_sat"`
	FeeMsat         int64        `json:"fee_msat"`
	Status          string       `json:"status"`
	PaymentRoute    RouteMessage `json:"payment_route"`
}

// RouteMessage is the route a payment took.
type RouteMessage struct {
	TotalTimeLock uint32       `json:"total_time_lock"`
	TotalFees     int64        `json:"total_fees"`
	TotalAmt      int64        `json:"total_amt"`
	TotalFeesMsat int64        `json:"total_fees_msat"`
	TotalAmtMsat  int64        `json:"total_amt_msat"`
	Hops          []HopMessage `json:"hops"`
}

// HopMessage is one hop of a route.
type HopMessage struct {
	ChanID           uint64            `json:"chan_id"`
	ChanCapacity     int64             `json:"chan_capacity"`
	AmtToForward     int64             `json:"amt_to_forward"`
	Fee              int64             `json:"fee"`
	Expiry           uint32            `json:"expiry"`
	AmtToForwardMsat int64             `json:"amt_to_forward_msat"`
	FeeMsat          int64             `json:"fee_msat"`
	PubKey           string            `json:"pub_key"`
	TLVPayload       bool              `json:"tlv_payload"`
	MPPRecord        *MPPRecordMessage `json:"mpp_record,omitempty"`
}

// MPPRecordMessage is a final hop's multi-path record.
type MPPRecordMessage struct {
	PaymentAddr  string `json:"payment_addr"`
	TotalAmtMsat int64  `json:"total_amt_msat"`
}

func newPaymentMessage(p lightning.Payment) PaymentMessage {
	m := PaymentMessage{
		PaymentHash:     hex.EncodeToString(p.Hash[:]),
		PaymentPreimage: hex.EncodeToString(p.Preimage[:]),
		ValueSat:        p.ValueMsat / 1000,
		ValueMsat:       p.ValueMsat,
		FeeSat:          p.FeeMsat / 1000,
		FeeMsat:         p.FeeMsat,
		Status:          p.Status.String(),
		PaymentRoute:    RouteMessage{Hops: []HopMessage{}},
	}
	if r := p.Route; r != nil {
		m.PaymentRoute = RouteMessage{
			TotalTimeLock: r.TotalTimeLock,
			TotalFees:     r.TotalFeesMsat / 1000,
			TotalAmt:      r.TotalAmtMsat / 1000,
			TotalFeesMsat: r.TotalFeesMsat,
			TotalAmtMsat:  r.TotalAmtMsat,
			Hops:          make([]HopMessage, 0, len(r.Hops)),
		}
		for _, h := range r.Hops {
			hm := HopMessage{
				ChanID:           h.ChanID,
				ChanCapacity:     h.ChanCapacity,
				AmtToForward:     h.AmtToForwardMsat / 1000,
				Fee:              h.FeeMsat / 1000,
				Expiry:           h.Expiry,
				AmtToForwardMsat: h.AmtToForwardMsat,
				FeeMsat:          h.FeeMsat,
				PubKey:           h.PubKey,
				TLVPayload:       h.TLVPayload,
			}
			if h.MPP != nil {
				hm.MPPRecord = &MPPRecordMessage{PaymentAddr: hex.EncodeToString(h.MPP.PaymentAddr[:]), TotalAmtMsat: h.MPP.TotalAmtMsat}
			}
			m.PaymentRoute.Hops = append(m.PaymentRoute.Hops, hm)
		}
	}
	return m
}
