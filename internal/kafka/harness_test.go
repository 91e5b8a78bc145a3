package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lightning-service/internal/kafka"
	"lightning-service/internal/service"
)

// fakeProcessor answers each record on the out topic with its key and
// headers. A held key waits for release or for ctx; every step is reported on
// a channel so a test can follow and steer each record.
type fakeProcessor struct {
	mu    sync.Mutex
	gates map[string]chan struct{}
	all   chan struct{} // gate for keys without their own, if not nil

	started  chan service.Delivery
	finished chan service.Delivery // answered
	canceled chan service.Delivery // abandoned because ctx was canceled

	active, maxActive atomic.Int32
}

func newFakeProcessor() *fakeProcessor {
	return &fakeProcessor{
		gates:    make(map[string]chan struct{}),
		started:  make(chan service.Delivery, 256),
		finished: make(chan service.Delivery, 256),
		canceled: make(chan service.Delivery, 256),
	}
}

var _ kafka.Processor = (*fakeProcessor)(nil)

func (p *fakeProcessor) Process(ctx context.Context, rec service.Delivery) (service.Answer, error) {
	raiseMax(&p.maxActive, p.active.Add(1))
	defer p.active.Add(-1)
	p.started <- rec
	if gate := p.gate(string(rec.Key)); gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			p.canceled <- rec
			return nil, ctx.Err()
		}
	}
	p.finished <- rec
	return answer(rec), nil
}

func (p *fakeProcessor) hold(keys ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		p.gates[k] = make(chan struct{})
	}
}

func (p *fakeProcessor) release(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.gates[key])
}

func (p *fakeProcessor) holdAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.all = make(chan struct{})
}

func (p *fakeProcessor) releaseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.all)
}

func (p *fakeProcessor) gate(key string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g, ok := p.gates[key]; ok {
		return g
	}
	return p.all
}

func answer(d service.Delivery) service.Result {
	return service.Result{
		Key:     d.Key,
		Headers: d.Headers,
		Value:   append([]byte("answer to "), d.Value...),
	}
}

func input(partition int32, key string) *kgo.Record {
	return &kgo.Record{
		Topic:     inTopic,
		Partition: partition,
		Key:       []byte(key),
		Value:     []byte("request " + key),
		Headers:   []kgo.RecordHeader{{Key: "trace", Value: []byte("trace-" + key)}},
	}
}

// harness is one kfake cluster with an "in" topic of some partitions and a
// one-partition "out" topic, and a plain client to feed and inspect it.
type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	cl      *kgo.Client
	adm     *kadm.Client
	logs    *logBuffer
}

func newHarness(t *testing.T, partitions int32) *harness {
	t.Helper()
	logs := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer log:\n%s", logs.String())
		}
	})
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(partitions, inTopic),
		kfake.SeedTopics(1, outTopic),
		kfake.SeedTopics(1, dlqTopic),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		// As large as the broker takes by default (message.max.bytes,
		// 1048588), above franz-go's own default of 1000012: inputs may
		// be as large as anyone may write.
		kgo.ProducerBatchMaxBytes(1<<20),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &harness{t: t, cluster: cluster, cl: cl, adm: kadm.NewClient(cl), logs: logs}
}

// produce writes recs to the in topic and returns them with their offsets.
func (h *harness) produce(recs ...*kgo.Record) []*kgo.Record {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := h.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		h.t.Fatalf("producing input: %v", err)
	}
	return recs
}

// running is a Consumer's Run in progress.
type running struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// run starts a consumer of the in topic for the group, stopped at cleanup.
func (h *harness) run(cfg kafka.Config, p kafka.Processor) *running {
	h.t.Helper()
	return h.start(h.consumer(cfg, p))
}

// start runs c, stopped at cleanup.
func (h *harness) start(c *kafka.Consumer) *running {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: h.t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	h.t.Cleanup(func() {
		if err := r.stop(); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
	return r
}

// consumer is a consumer of the in topic for the group, not yet running.
func (h *harness) consumer(cfg kafka.Config, p kafka.Processor) *kafka.Consumer {
	h.t.Helper()
	cfg.Brokers = h.cluster.ListenAddrs()
	cfg.Group = group
	cfg.Topic = inTopic
	cfg.OutputTopic = outTopic
	cfg.DLQTopic = dlqTopic
	cfg.Log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.ClientOpts = append(cfg.ClientOpts,
		kgo.FetchMaxWait(50*time.Millisecond),
		kgo.HeartbeatInterval(50*time.Millisecond),
	)
	c, err := kafka.New(cfg, func() kafka.Processor { return p })
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// stop cancels Run and waits for it to return.
func (r *running) stop() error {
	r.cancel()
	return r.wait()
}

// wait waits for Run to return, after cancel.
func (r *running) wait() error {
	r.t.Helper()
	r.once.Do(func() {
		select {
		case r.err = <-r.done:
		case <-time.After(patience):
			r.err = errors.New("Run did not return")
		}
	})
	return r.err
}

// committed is the group's committed offset on partition of the in topic,
// -1 if none.
func (h *harness) committed(partition int32) int64 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	offsets, err := h.adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1
	}
	if err != nil {
		h.t.Fatalf("fetching committed offsets: %v", err)
	}
	o, ok := offsets.Lookup(inTopic, partition)
	if !ok {
		return -1
	}
	if o.Err != nil {
		h.t.Fatalf("fetching committed offset of partition %d: %v", partition, o.Err)
	}
	return o.At
}

func (h *harness) waitCommitted(partition int32, want int64) {
	h.t.Helper()
	deadline := time.Now().Add(patience)
	for {
		got := h.committed(partition)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("committed offset of partition %d is %d, want %d", partition, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectUncommittedFor fails if partition gets a committed offset within d.
func (h *harness) expectUncommittedFor(d time.Duration, partition int32) {
	h.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := h.committed(partition); got != -1 {
			h.t.Fatalf("partition %d committed at %d, want nothing committed yet", partition, got)
		}
	}
}

func (h *harness) endOffset(topic string, partition int32) int64 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	ends, err := h.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		h.t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok || o.Err != nil {
		h.t.Fatalf("end offset of %s/%d: %v", topic, partition, o.Err)
	}
	return o.Offset
}

// readOut reads the out topic from the start until it has n records.
func (h *harness) readOut(n int) []*kgo.Record {
	h.t.Helper()
	var got []*kgo.Record
	h.consumeOut(func(rec *kgo.Record) bool {
		got = append(got, rec)
		return len(got) >= n
	}, fmt.Sprintf("%d answers", n))
	return got
}

// waitAnswered reads the out topic from the start until every key has an
// answer; duplicates are allowed.
func (h *harness) waitAnswered(keys ...string) {
	h.t.Helper()
	missing := make(map[string]bool)
	for _, k := range keys {
		missing[k] = true
	}
	h.consumeOut(func(rec *kgo.Record) bool {
		delete(missing, string(rec.Key))
		return len(missing) == 0
	}, fmt.Sprintf("answers to %v", keys))
}

func (h *harness) consumeOut(enough func(*kgo.Record) bool, what string) {
	h.t.Helper()
	h.consume(outTopic, enough, what)
}

// readTopic reads topic from the start until it has n records.
func (h *harness) readTopic(topic string, n int) []*kgo.Record {
	h.t.Helper()
	var got []*kgo.Record
	h.consume(topic, func(rec *kgo.Record) bool {
		got = append(got, rec)
		return len(got) >= n
	}, fmt.Sprintf("%d records", n))
	return got
}

func (h *harness) consume(topic string, enough func(*kgo.Record) bool, what string) {
	h.t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(h.cluster.ListenAddrs()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("timed out reading %s from %s", what, topic)
		}
		if err := fs.Err0(); err != nil {
			h.t.Fatalf("reading %s: %v", topic, err)
		}
		for it := fs.RecordIter(); !it.Done(); {
			if enough(it.Next()) {
				return
			}
		}
	}
}

// commitLog records the offsets the broker is asked to commit, per
// partition, and which of them came before ack was called. The group commits
// only the in topic.
type commitLog struct {
	mu      sync.Mutex
	acked   bool
	offsets map[int32][]int64
	early   map[int32][]int64
}

func (h *harness) watchCommits() *commitLog {
	l := &commitLog{offsets: make(map[int32][]int64), early: make(map[int32][]int64)}
	h.cluster.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.OffsetCommitRequest)
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				l.offsets[p.Partition] = append(l.offsets[p.Partition], p.Offset)
				if !l.acked {
					l.early[p.Partition] = append(l.early[p.Partition], p.Offset)
				}
			}
		}
		return nil, nil, false // observe only; kept because not handled
	})
	return l
}

// ack marks the moment the broker acknowledges the answer: commits before it
// are early. The broker runs control functions one at a time, so a commit
// and an ack called from the produce's control function are ordered.
func (l *commitLog) ack() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = true
}

func (l *commitLog) sent(partition int32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.offsets[partition])
}

func (l *commitLog) sentEarly(partition int32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.early[partition])
}

func produceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

type recordID struct {
	partition int32
	offset    int64
}

func idOf(d service.Delivery) recordID { return recordID{d.Partition, d.Offset} }

func containsAll(have, want map[recordID]bool) bool {
	for id := range want {
		if !have[id] {
			return false
		}
	}
	return true
}

func headerEqual(a kgo.RecordHeader, b service.Header) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
}

// raiseMax raises peak to n if n is higher.
func raiseMax(peak *atomic.Int32, n int32) {
	for {
		m := peak.Load()
		if n <= m || peak.CompareAndSwap(m, n) {
			return
		}
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// logBuffer collects the consumers' log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) count(msg string) int {
	return strings.Count(b.String(), "msg=\""+msg+"\"")
}
