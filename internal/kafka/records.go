package kafka

import (
	"strconv"

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

// Record is the record to publish for a, or nil when there is none
// (service.Deferred, or an answer of no known kind).
//
// A result goes to the output topic with its key and headers. A dead letter
// goes to the dead-letter topic with the delivery's value and key, its
// headers followed by error (the reason), detail, source-topic,
// source-partition and source-offset.
func (t Topics) Record(a service.Answer) *kgo.Record {
	switch a := a.(type) {
	case service.Result:
		return &kgo.Record{Topic: t.Output, Key: a.Key, Headers: recordHeaders(a.Headers, 0), Value: a.Value}
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
