package kafka

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/service"
)

// Topics names the topics answers are published on.
type Topics struct {
	Output string // results
	DLQ    string // dead letters
}

// DeliveryOf is rec as the service takes it.
func DeliveryOf(rec *kgo.Record) service.Delivery {
	var hs []service.Header
	if len(rec.Headers) > 0 {
		hs = make([]service.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			hs[i] = service.Header{Key: h.Key, Value: h.Value}
		}
	}
	return service.Delivery{
		Value:      rec.Value,
		Key:        rec.Key,
		Headers:    hs,
		Topic:      rec.Topic,
		Partition:  rec.Partition,
		Offset:     rec.Offset,
		AppendTime: rec.Timestamp,
	}
}

// The bounds on the request headers a result carries: at most
// MaxResultHeaders of them, their keys and values together at most
// MaxResultHeaderBytes. Each header is kept, in order, while it fits, and
// left off otherwise; when any is left off, HeadersTrimmed follows them, its
// value how many (decimal).
//
// Trimmed rather than dead-lettered: the request was authenticated and has
// run (a payment may have been made), so its caller must get the result,
// and the headers are the caller's routing data, outside what is signed.
// The trimming depends on the headers alone, so every copy of a result (the
// first, a redelivered request's, recovery's from the ledger) is the same
// record, byte for byte.
const (
	MaxResultHeaders     = 64
	MaxResultHeaderBytes = 16 << 10
	HeadersTrimmed       = "lightning-headers-trimmed"
)

// Record is the record to publish for a, or nil when there is none
// (service.Deferred, or an answer of no known kind).
//
// A result goes to the output topic with its key and its headers, within
// the bounds above. A dead letter goes to the dead-letter topic with the
// delivery's value and key, its headers followed by error (the reason),
// detail, source-topic, source-partition and source-offset.
func (t Topics) Record(a service.Answer) *kgo.Record {
	switch a := a.(type) {
	case service.Result:
		return &kgo.Record{Topic: t.Output, Key: a.Key, Headers: resultHeaders(a.Headers), Value: a.Value}
	case service.DeadLetter:
		d := a.Delivery
		headers := recordHeaders(d.Headers, 5)
		headers = append(headers,
			kgo.RecordHeader{Key: "error", Value: []byte(a.Reason)},
			kgo.RecordHeader{Key: "detail", Value: []byte(a.Detail)},
			kgo.RecordHeader{Key: "source-topic", Value: []byte(d.Topic)},
			kgo.RecordHeader{Key: "source-partition", Value: strconv.AppendInt(nil, int64(d.Partition), 10)},
			kgo.RecordHeader{Key: "source-offset", Value: strconv.AppendInt(nil, d.Offset, 10)},
		)
		return &kgo.Record{Topic: t.DLQ, Key: d.Key, Headers: headers, Value: d.Value}
	}
	return nil
}

// The reasons this package dead-letters a record with, beside the service's
// (malformed, bad_signature, stale_timestamp): its answer could not be
// published, and a Summary takes the answer's place.
const (
	// ReasonTooLarge: the answer (the record's dead letter, or its result)
	// is larger than the producer or the broker takes.
	ReasonTooLarge = "too_large"
	// ReasonUnpublishable: the broker refuses the answer for good for
	// another reason (an invalid record, no authorization on the topic).
	ReasonUnpublishable = "unpublishable"
)

// The bounds of a Summary.
const (
	SummaryValueBytes  = 1024 // how much of the record's value a summary keeps
	SummaryKeyBytes    = 1024 // the longest key a summary keeps; a longer one is left off
	summaryDetailBytes = 1024
)

// Summary is the dead letter that takes the place of src's answer when no
// retry can publish that answer, bounded whatever src's size: on the
// dead-letter topic, the first SummaryValueBytes of src's value, src's key if
// it is at most SummaryKeyBytes, and the headers error (the reason), detail,
// source-topic, source-partition, source-offset, original-size (the bytes of
// src's key, value, and headers' keys and values) and value-sha256 (the hex
// SHA-256 of src's whole value). None of src's own headers is kept.
func (t Topics) Summary(src service.Delivery, reason, detail string) *kgo.Record {
	size := len(src.Key) + len(src.Value)
	for _, h := range src.Headers {
		size += len(h.Key) + len(h.Value)
	}
	sum := sha256.Sum256(src.Value)
	var key []byte
	if len(src.Key) <= SummaryKeyBytes {
		key = src.Key
	}
	if len(detail) > summaryDetailBytes {
		detail = strings.ToValidUTF8(detail[:summaryDetailBytes], "")
	}
	return &kgo.Record{
		Topic: t.DLQ,
		Key:   key,
		Value: src.Value[:min(len(src.Value), SummaryValueBytes)],
		Headers: []kgo.RecordHeader{
			{Key: "error", Value: []byte(reason)},
			{Key: "detail", Value: []byte(detail)},
			{Key: "source-topic", Value: []byte(src.Topic)},
			{Key: "source-partition", Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
			{Key: "source-offset", Value: strconv.AppendInt(nil, src.Offset, 10)},
			{Key: "original-size", Value: strconv.AppendInt(nil, int64(size), 10)},
			{Key: "value-sha256", Value: hex.AppendEncode(nil, sum[:])},
		},
	}
}

// resultHeaders converts hs within MaxResultHeaders and
// MaxResultHeaderBytes.
func resultHeaders(hs []service.Header) []kgo.RecordHeader {
	if len(hs) == 0 {
		return nil
	}
	out := make([]kgo.RecordHeader, 0, min(len(hs), MaxResultHeaders)+1)
	size, left := 0, 0
	for _, h := range hs {
		n := len(h.Key) + len(h.Value)
		if len(out) == MaxResultHeaders || size+n > MaxResultHeaderBytes {
			left++
			continue
		}
		size += n
		out = append(out, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	if left > 0 {
		out = append(out, kgo.RecordHeader{Key: HeadersTrimmed, Value: strconv.AppendInt(nil, int64(left), 10)})
	}
	return out
}

// recordHeaders converts hs, leaving room for extra more.
func recordHeaders(hs []service.Header, extra int) []kgo.RecordHeader {
	if len(hs)+extra == 0 {
		return nil
	}
	out := make([]kgo.RecordHeader, len(hs), len(hs)+extra)
	for i, h := range hs {
		out[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return out
}
