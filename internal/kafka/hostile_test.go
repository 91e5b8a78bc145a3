package kafka_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lightning-service/internal/kafka"
	"lightning-service/internal/service"
)

// bigValue is about as large a value as the broker takes on its defaults
// (message.max.bytes 1048588): its record is accepted, but its dead letter,
// with the headers added, is larger than franz-go's producer accepts
// (ProducerBatchMaxBytes, 1000012 by default).
const bigValue = 999_950

// deadLetterProcessor dead-letters every record, as the service does one it
// cannot read.
type deadLetterProcessor struct{}

func (deadLetterProcessor) Process(_ context.Context, d service.Delivery) (service.Answer, error) {
	return service.DeadLetter{Delivery: d, Reason: "malformed", Detail: "not a request"}, nil
}

func bigRecord(partition int32, key string) *kgo.Record {
	rec := input(partition, key)
	rec.Value = make([]byte, bigValue)
	for i := range rec.Value {
		rec.Value[i] = byte('a' + i%26)
	}
	return rec
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func headerKeys(rec *kgo.Record) []string {
	var ks []string
	for _, h := range rec.Headers {
		ks = append(ks, h.Key)
	}
	return ks
}

func recordSize(rec *kgo.Record) int {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// bySourceOffset indexes dead letters by their source-offset header.
func bySourceOffset(t *testing.T, recs []*kgo.Record) map[int64]*kgo.Record {
	t.Helper()
	out := make(map[int64]*kgo.Record)
	for _, rec := range recs {
		off, err := strconv.ParseInt(header(rec, "source-offset"), 10, 64)
		if err != nil {
			t.Fatalf("dead letter without a source-offset: headers %q", headerKeys(rec))
		}
		if out[off] != nil {
			t.Fatalf("two dead letters for offset %d", off)
		}
		out[off] = rec
	}
	return out
}

// wantSummary checks that got is the bounded summary of src: its value's
// first KiB, its key if at most a KiB, and the headers naming the reason, src's
// coordinates, size and value hash, nothing else.
func wantSummary(t *testing.T, got, src *kgo.Record, reason string) {
	t.Helper()
	if got == nil {
		t.Fatalf("no dead letter for offset %d", src.Offset)
	}
	sum := sha256.Sum256(src.Value)
	want := map[string]string{
		"error":            reason,
		"source-topic":     src.Topic,
		"source-partition": strconv.Itoa(int(src.Partition)),
		"source-offset":    strconv.FormatInt(src.Offset, 10),
		"original-size":    strconv.Itoa(recordSize(src)),
		"value-sha256":     hex.EncodeToString(sum[:]),
	}
	for k, v := range want {
		if h := header(got, k); h != v {
			t.Errorf("summary of offset %d: header %s = %q, want %q", src.Offset, k, h, v)
		}
	}
	if header(got, "detail") == "" {
		t.Errorf("summary of offset %d has no detail", src.Offset)
	}
	wantKeys := []string{"error", "detail", "source-topic", "source-partition", "source-offset", "original-size", "value-sha256"}
	if ks := headerKeys(got); !slices.Equal(ks, wantKeys) {
		t.Errorf("summary of offset %d has headers %q, want %q", src.Offset, ks, wantKeys)
	}
	if prefix := src.Value[:min(len(src.Value), 1024)]; !bytes.Equal(got.Value, prefix) {
		t.Errorf("summary of offset %d has a value of %d bytes, want the first %d of the record's", src.Offset, len(got.Value), len(prefix))
	}
	wantKey := src.Key
	if len(wantKey) > 1024 {
		wantKey = nil
	}
	if !bytes.Equal(got.Key, wantKey) {
		t.Errorf("summary of offset %d has a key of %d bytes, want %d", src.Offset, len(got.Key), len(wantKey))
	}
	if n := recordSize(got); n > 4096 {
		t.Errorf("summary of offset %d is %d bytes, want a bounded summary (at most 4 KiB)", src.Offset, n)
	}
}

// TestOversizedDeadLettersAreSummarized: twice as many records as there are
// slots, each too large to dead-letter whole, then an ordinary one, all on one
// partition: each large one is dead-lettered as a bounded summary, the
// ordinary one whole, and the partition is committed past all of them.
func TestOversizedDeadLettersAreSummarized(t *testing.T) {
	const concurrency = 4
	h := newHarness(t, 1)
	var recs []*kgo.Record
	for i := range 2 * concurrency {
		recs = append(recs, bigRecord(0, fmt.Sprint("big", i)))
	}
	recs = append(recs, input(0, "small"))
	in := h.produce(recs...)

	h.run(kafka.Config{Concurrency: concurrency}, deadLetterProcessor{})
	h.waitCommitted(0, int64(len(in)))

	dead := bySourceOffset(t, h.readTopic(dlqTopic, len(in)))
	for _, rec := range in[:len(in)-1] {
		wantSummary(t, dead[rec.Offset], rec, "too_large")
	}
	small, src := dead[in[len(in)-1].Offset], in[len(in)-1]
	if !bytes.Equal(small.Value, src.Value) || !bytes.Equal(small.Key, src.Key) || header(small, "error") != "malformed" || header(small, "trace") != "trace-small" {
		t.Errorf("ordinary dead letter: key %q value %q headers %q, want the record whole with error malformed", small.Key, small.Value, headerKeys(small))
	}
	if n := h.endOffset(dlqTopic, 0); n != int64(len(in)) {
		t.Errorf("%s holds %d records, want %d: one per record", dlqTopic, n, len(in))
	}
}

// TestOversizedResultIsSummarized: a result that cannot be published (it
// carries its request's key, nearly a megabyte) is dead-lettered as a
// summary, and the record behind it is answered; both are committed.
func TestOversizedResultIsSummarized(t *testing.T) {
	h := newHarness(t, 1)
	big := input(0, "")
	big.Key = bytes.Repeat([]byte("k"), bigValue)
	in := h.produce(big, input(0, "after"))

	h.run(kafka.Config{Concurrency: 4}, newFakeProcessor())
	h.waitCommitted(0, 2)
	wantSummary(t, h.readTopic(dlqTopic, 1)[0], in[0], "too_large")
	h.waitAnswered("after")
	if n := h.endOffset(outTopic, 0); n != 1 {
		t.Errorf("%s holds %d records, want only the answer to the ordinary record", outTopic, n)
	}
}

// TestResultHeadersAreBounded: a result carries at most 64 of its request's
// headers and 16 KiB of their keys and values, each kept in order while it
// fits; how many were left off is in lightning-headers-trimmed. A request
// with a header of nearly a megabyte is so still answered, and one within
// the bounds keeps its headers untouched.
func TestResultHeadersAreBounded(t *testing.T) {
	h := newHarness(t, 1)
	many := input(0, "many")
	many.Headers = nil
	for i := range 70 {
		many.Headers = append(many.Headers, kgo.RecordHeader{Key: fmt.Sprintf("h%02d", i), Value: []byte("v")})
	}
	huge := input(0, "huge")
	huge.Headers = []kgo.RecordHeader{
		{Key: "trace", Value: []byte("trace-huge")},
		{Key: "blob", Value: bytes.Repeat([]byte("b"), bigValue)},
		{Key: "after", Value: []byte("kept")},
	}
	h.produce(many, huge, input(0, "plain"))

	h.run(kafka.Config{Concurrency: 4}, newFakeProcessor())
	h.waitCommitted(0, 3)
	out := map[string]*kgo.Record{}
	for _, rec := range h.readOut(3) {
		out[string(rec.Key)] = rec
	}

	var wantMany []string
	for i := range 64 {
		wantMany = append(wantMany, fmt.Sprintf("h%02d", i))
	}
	wantMany = append(wantMany, "lightning-headers-trimmed")
	if got := out["many"]; got == nil || !slices.Equal(headerKeys(got), wantMany) || header(got, "lightning-headers-trimmed") != "6" {
		t.Errorf("answer to 70 headers: headers %q (trimmed %q), want h00…h63 and lightning-headers-trimmed 6", headerKeys(got), header(got, "lightning-headers-trimmed"))
	}
	if got := out["huge"]; got == nil || !slices.Equal(headerKeys(got), []string{"trace", "after", "lightning-headers-trimmed"}) ||
		header(got, "lightning-headers-trimmed") != "1" || header(got, "after") != "kept" {
		t.Errorf("answer to a huge header: headers %q, want trace, after, lightning-headers-trimmed 1", headerKeys(got))
	}
	if got := out["plain"]; got == nil || !slices.Equal(headerKeys(got), []string{"trace"}) || header(got, "trace") != "trace-plain" {
		t.Errorf("answer to an ordinary request: headers %q, want its own untouched", headerKeys(got))
	}
	if n := h.endOffset(dlqTopic, 0); n != 0 {
		t.Errorf("%s holds %d records, want none", dlqTopic, n)
	}
}

// refuseProduces makes the broker answer produce requests to topic with
// code, the first times of them (all when times < 0), and counts them.
func (h *harness) refuseProduces(topic string, code int16, times int32) *atomic.Int32 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	md, err := h.adm.Metadata(ctx, topic)
	if err != nil {
		h.t.Fatal(err)
	}
	id := md.Topics[topic].ID // newer produce requests name topics by ID
	var n atomic.Int32
	h.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		h.cluster.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				if i := n.Add(1); times < 0 || i <= times {
					return produceError(req, code), nil, true
				}
			}
		}
		return nil, nil, false
	})
	return &n
}

// TestRefusedAnswerIsSummarizedNotRetried: the broker refuses every produce
// to the out topic with INVALID_RECORD, which no retry fixes: the answer is
// tried once more on its own (the fault may be another record's in its
// batch), then dead-lettered as a summary with the reason unpublishable, and
// the record is committed.
func TestRefusedAnswerIsSummarizedNotRetried(t *testing.T) {
	h := newHarness(t, 1)
	in := h.produce(input(0, "a"))
	tries := h.refuseProduces(outTopic, kerr.InvalidRecord.Code, -1)

	h.run(kafka.Config{Concurrency: 4}, newFakeProcessor())
	h.waitCommitted(0, 1)
	wantSummary(t, h.readTopic(dlqTopic, 1)[0], in[0], "unpublishable")
	if n := tries.Load(); n != 2 {
		t.Errorf("the answer was tried %d times, want 2: once, then once alone", n)
	}
	if n := h.logs.count("publishing answer failed; retrying"); n != 0 {
		t.Errorf("logged %d retries of an answer no retry can publish", n)
	}
}

// TestAnswerRefusedWithItsBatchIsPublished: the broker refuses the answer's
// first produce with MESSAGE_TOO_LARGE, as franz-go then fails every record
// buffered for the partition of a batch holding an oversized one; the answer,
// small, is published on the out topic, not dead-lettered.
func TestAnswerRefusedWithItsBatchIsPublished(t *testing.T) {
	h := newHarness(t, 1)
	h.produce(input(0, "a"))
	tries := h.refuseProduces(outTopic, kerr.MessageTooLarge.Code, 1)

	h.run(kafka.Config{Concurrency: 4}, newFakeProcessor())
	h.waitCommitted(0, 1)
	h.waitAnswered("a")
	if n := tries.Load(); n != 2 {
		t.Errorf("the answer was tried %d times, want 2", n)
	}
	if n := h.endOffset(dlqTopic, 0); n != 0 {
		t.Errorf("%s holds %d records, want none: the answer was not at fault", dlqTopic, n)
	}
}

// TestPublishTellsRefusedFromRetriable: Publish, for answers given outside
// the consume loop, reports a result no retry can publish as
// service.ErrUnpublishable and a failure a retry may fix as something else;
// it bounds a result's headers exactly as the loop does, so every copy of a
// result is the same record.
func TestPublishTellsRefusedFromRetriable(t *testing.T) {
	h := newHarness(t, 1)
	c := h.consumer(kafka.Config{Concurrency: 4, ClientOpts: []kgo.Opt{kgo.RecordRetries(0)}}, newFakeProcessor())
	h.start(c)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()

	err := c.Publish(ctx, service.Result{Key: bytes.Repeat([]byte("k"), bigValue), Value: []byte("sealed")})
	if !errors.Is(err, service.ErrUnpublishable) {
		t.Errorf("Publish of a result too large for any broker: %v, want service.ErrUnpublishable", err)
	}

	h.refuseProduces(outTopic, kerr.NotEnoughReplicas.Code, 1)
	err = c.Publish(ctx, service.Result{Key: []byte("k"), Value: []byte("sealed")})
	if err == nil || errors.Is(err, service.ErrUnpublishable) {
		t.Errorf("Publish while the broker lacks replicas: %v, want an error a retry may fix", err)
	}

	r := service.Result{Key: []byte("k"), Value: []byte("sealed")}
	for i := range 70 {
		r.Headers = append(r.Headers, service.Header{Key: fmt.Sprint("h", i), Value: []byte("v")})
	}
	for range 2 {
		if err := c.Publish(ctx, r); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	want := kafka.Topics{Output: outTopic, DLQ: dlqTopic}.Record(r)
	for _, got := range h.readOut(2) {
		if !slices.EqualFunc(got.Headers, want.Headers, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("published headers %q, want %q as the consume loop publishes them", headerKeys(got), headerKeys(want))
		}
	}
}

// Errors no retry fixes are told apart from those a retry may fix, by
// Kafka's classification (kerr) and franz-go's own client errors, wrapped or
// not.
func TestPermanentProduceErrors(t *testing.T) {
	clientTooLarge := fmt.Errorf("%w (uncompressed_bytes=1000047)", kerr.MessageTooLarge) // as franz-go fails it before sending
	for err, want := range map[error]bool{
		kerr.MessageTooLarge:          true,
		clientTooLarge:                true,
		kerr.RecordListTooLarge:       true,
		kerr.InvalidRecord:            true,
		kerr.TopicAuthorizationFailed: true,
		kerr.InvalidTopicException:    true,
		kerr.PolicyViolation:          true,
		kerr.InvalidTimestamp:         true,

		kerr.NotLeaderForPartition:   false,
		kerr.NotEnoughReplicas:       false,
		kerr.RequestTimedOut:         false,
		kerr.UnknownTopicOrPartition: false,
		kgo.ErrRecordTimeout:         false,
		fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.NotLeaderForPartition): false,
		kgo.ErrRecordRetries: false,
		kgo.ErrMaxBuffered:   false,
		kgo.ErrAborting:      false,
		kgo.ErrClientClosed:  false,
		context.Canceled:     false,
		io.ErrUnexpectedEOF:  false,
		&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}: false,
		errors.New("something else"):                        false,
	} {
		if got := kafka.Permanent(err); got != want {
			t.Errorf("permanent(%v) = %v, want %v", err, got, want)
		}
	}
}
