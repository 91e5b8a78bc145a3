package kafka_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/kafka"
	"lightning-service/internal/service"
)

var topics = kafka.Topics{Output: "celery", DLQ: "lightning-service-dlq"}

func TestDeliveryOfRecord(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	rec := &kgo.Record{
		Topic: "lightning-service", Partition: 3, Offset: 42, Timestamp: at,
		Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-01")}, {Key: "caller", Value: []byte("c")}},
	}
	d := kafka.DeliveryOf(rec)
	if d.Topic != rec.Topic || d.Partition != 3 || d.Offset != 42 || !d.AppendTime.Equal(at) ||
		string(d.Key) != "k" || string(d.Value) != "v" || !slices.EqualFunc(rec.Headers, d.Headers, headerEqual) {
		t.Fatalf("delivery %+v of record %+v", d, rec)
	}
}

func TestResultRecord(t *testing.T) {
	r := service.Result{Value: []byte("sealed"), Key: []byte("k"), Headers: []service.Header{{Key: "caller", Value: []byte("c")}}}
	rec := topics.Record(r)
	if rec.Topic != "celery" || string(rec.Key) != "k" || string(rec.Value) != "sealed" || !slices.EqualFunc(rec.Headers, r.Headers, headerEqual) {
		t.Fatalf("result record %+v", rec)
	}
}

// A dead letter is the delivery's value, key and headers, untouched, on the
// dead-letter topic, followed by the headers error, detail, source-topic,
// source-partition and source-offset, in that order.
func TestDeadLetterRecord(t *testing.T) {
	d := service.Delivery{
		Topic: "lightning-service", Partition: 3, Offset: 1234567890123,
		Key: []byte("key-1"), Value: []byte("1700000000000pay     not signed"),
		Headers: []service.Header{{Key: "traceparent", Value: []byte("00-4bf9-01")}, {Key: "caller", Value: []byte("backend")}},
	}
	rec := topics.Record(service.DeadLetter{Delivery: d, Reason: "bad_signature", Detail: "signature matches no configured key"})
	if rec.Topic != "lightning-service-dlq" || !bytes.Equal(rec.Key, d.Key) || !bytes.Equal(rec.Value, d.Value) {
		t.Fatalf("dead letter on %s key %q value %q, want %s with the delivery's", rec.Topic, rec.Key, rec.Value, topics.DLQ)
	}
	want := []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-4bf9-01")},
		{Key: "caller", Value: []byte("backend")},
		{Key: "error", Value: []byte("bad_signature")},
		{Key: "detail", Value: []byte("signature matches no configured key")},
		{Key: "source-topic", Value: []byte("lightning-service")},
		{Key: "source-partition", Value: []byte("3")},
		{Key: "source-offset", Value: []byte("1234567890123")},
	}
	if !slices.EqualFunc(rec.Headers, want, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
		t.Fatalf("dead letter headers\n got %q\nwant %q", rec.Headers, want)
	}
}

func TestDeferredHasNoRecord(t *testing.T) {
	if rec := topics.Record(service.Deferred{}); rec != nil {
		t.Fatalf("record %+v for a deferred answer", rec)
	}
}
