package kafka_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
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

// A result carries at most 64 of its request's headers and at most 16 KiB of
// their keys and values: each header is kept, in order, if it still fits,
// and left off otherwise; lightning-headers-trimmed then follows with how
// many were left off. The same headers always give the same record.
func TestResultHeadersBounded(t *testing.T) {
	hs := func(sizes ...int) []service.Header {
		var out []service.Header
		for i, n := range sizes {
			out = append(out, service.Header{Key: fmt.Sprint("h", i), Value: bytes.Repeat([]byte("v"), n-len(fmt.Sprint("h", i)))})
		}
		return out
	}
	keys := func(rec *kgo.Record) (ks []string) {
		for _, h := range rec.Headers {
			ks = append(ks, h.Key+"="+strconv.Itoa(len(h.Value)))
		}
		return ks
	}
	sixtyFour := make([]int, 64)
	for i := range sixtyFour {
		sixtyFour[i] = 16 << 10 / 64
	}
	cases := []struct {
		name    string
		headers []service.Header
		kept    []int // indexes of the request headers kept
		trimmed string
	}{
		{"none", nil, nil, ""},
		{"exactly the bounds", hs(sixtyFour...), seq(64), ""},
		{"65 headers", hs(append(sixtyFour[:64:64], 5)...), seq(64), "1"},
		{"one over the bytes", hs(16<<10-10, 11), []int{0}, "1"},
		{"a large one among small ones", hs(100, 17<<10, 100), []int{0, 2}, "1"},
		{"one of a megabyte", hs(1 << 20), nil, "1"},
	}
	for _, c := range cases {
		r := service.Result{Value: []byte("sealed"), Key: []byte("k"), Headers: c.headers}
		rec := topics.Record(r)
		var want []kgo.RecordHeader
		for _, i := range c.kept {
			want = append(want, kgo.RecordHeader{Key: c.headers[i].Key, Value: c.headers[i].Value})
		}
		if c.trimmed != "" {
			want = append(want, kgo.RecordHeader{Key: "lightning-headers-trimmed", Value: []byte(c.trimmed)})
		}
		if !slices.EqualFunc(rec.Headers, want, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("%s: headers %q, want %q", c.name, keys(rec), keys(&kgo.Record{Headers: want}))
		}
		if again := topics.Record(r); !slices.EqualFunc(again.Headers, rec.Headers, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("%s: the same result gave headers %q, then %q", c.name, keys(rec), keys(again))
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
