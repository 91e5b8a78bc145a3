// Package kafka runs the service on Kafka with franz-go: poll records, process
// them concurrently, publish each answer and wait for the broker's ack, then
// commit offsets in order per partition, never past a record still at work.
// It alone knows records: it hands the service each record as a
// service.Delivery, turns the service.Answer it gets back into the record to
// publish, and names the output and dead-letter topics.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lightning-service/internal/service"
)

// Processor answers a record's delivery. An error means the work was
// abandoned: nothing is published and the offset stays uncommitted, so the
// record is redelivered. A service.Deferred answer publishes nothing and
// lets the offset be committed.
type Processor interface {
	Process(ctx context.Context, d service.Delivery) (service.Answer, error)
}

// Config configures a Consumer.
type Config struct {
	Brokers     []string
	Group       string
	Topic       string        // input
	OutputTopic string        // results
	DLQTopic    string        // dead letters
	Concurrency int           // records at work at once
	RevokeGrace time.Duration // how long revoked work may finish before it is stopped
	DrainGrace  time.Duration // how long in-flight work may finish at shutdown
	// CommitInterval is the least time between two commits: what finishes
	// meanwhile goes into the next one, so a busy service sends the broker
	// a commit per interval rather than one per answer. A record answered
	// but not yet committed when the service stops hard is delivered again
	// and gets its stored result. 0: DefaultCommitInterval.
	CommitInterval time.Duration
	// SessionTimeout is how long the group waits for a silent member (one
	// killed) before its partitions move on; 0: franz-go's default, 45s.
	SessionTimeout time.Duration
	Log            *slog.Logger
	InFlight       func(delta int) // optional gauge hook
	ClientOpts     []kgo.Opt       // extra client options (tests)
}

// DefaultCommitInterval is Config.CommitInterval's default.
const DefaultCommitInterval = 100 * time.Millisecond

// Consumer consumes the input topic of one consumer group.
type Consumer struct {
	cfg     Config
	topics  Topics
	cl      *kgo.Client
	workers []Processor

	jobs      chan job
	slots     chan struct{} // one token per record at work
	commitNow chan struct{}

	mu    sync.Mutex
	parts map[topicPartition]*partition

	// The client of produceAlone, made on first need; the slot is held
	// by whoever uses or closes it.
	aloneSlot   chan struct{}
	alone       *kgo.Client
	aloneClosed bool
}

type topicPartition struct {
	topic     string
	partition int32
}

type job struct {
	rec *kgo.Record
	p   *partition
	e   *entry
}

// partition is this member's work on one assigned partition.
type partition struct {
	ctx    context.Context // canceled when the partition is revoked or lost
	cancel context.CancelFunc
	work   sync.WaitGroup

	// Guarded by Consumer.mu.
	pending  []*entry         // dispatched, not yet committable, in offset order
	commit   *kgo.EpochOffset // committable and not yet committed
	inflight int
}

type entry struct {
	offset int64
	epoch  int32
	done   bool
}

// New returns a Consumer whose client also produces the answers: acks from
// all in-sync replicas, idempotent, no linger. newWorker is called once per
// concurrent slot, so each worker may keep state of its own.
func New(cfg Config, newWorker func() Processor) (*Consumer, error) {
	if cfg.OutputTopic == "" || cfg.DLQTopic == "" {
		return nil, errors.New("kafka: the output and dead-letter topics must be named")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = DefaultCommitInterval
	}
	if cfg.InFlight == nil {
		cfg.InFlight = func(int) {}
	}
	c := &Consumer{
		cfg:       cfg,
		topics:    Topics{Output: cfg.OutputTopic, DLQ: cfg.DLQTopic},
		jobs:      make(chan job, cfg.Concurrency),
		slots:     make(chan struct{}, cfg.Concurrency),
		commitNow: make(chan struct{}, 1),
		parts:     make(map[topicPartition]*partition),
		aloneSlot: make(chan struct{}, 1),
	}
	for range cfg.Concurrency {
		c.workers = append(c.workers, newWorker())
	}
	opts := append([]kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // a new group misses no request
		kgo.DisableAutoCommit(),
		// Rebalances wait while a poll's records are handed out, so every
		// polled record reaches the partition state it was fetched for.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
	}, c.producerOpts()...)
	if cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	return c, nil
}

// producerOpts are the options of every client here: the brokers, how
// answers are produced, and the extra options of Config.
func (c *Consumer) producerOpts() []kgo.Opt {
	return append([]kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}, c.cfg.ClientOpts...)
}

// Client is the underlying franz-go client (readiness checks use it).
func (c *Consumer) Client() *kgo.Client { return c.cl }

// Publish produces r on the output topic and waits for the broker's
// acknowledgement: for answers given outside the consume loop (recovery),
// which commit nothing. An error no retry fixes wraps
// service.ErrUnpublishable; the request's own delivery then dead-letters a
// summary in the consume loop, where its coordinates are known.
func (c *Consumer) Publish(ctx context.Context, r service.Result) error {
	rec := c.topics.Record(r)
	err := c.cl.ProduceSync(ctx, rec).FirstErr()
	if err != nil && permanent(err) {
		err = c.produceAlone(ctx, rec)
	}
	if err != nil && permanent(err) {
		return fmt.Errorf("%w: %w", service.ErrUnpublishable, err)
	}
	return err
}

var _ service.Publisher = (*Consumer)(nil)

// Run consumes until ctx is canceled, then drains: work still running after
// DrainGrace is stopped and left uncommitted for redelivery; everything
// answered is committed; the client leaves the group and closes.
func (c *Consumer) Run(ctx context.Context) error {
	commitCtx, stopCommits := context.WithCancel(context.Background())
	committerDone := make(chan struct{})
	go func() { defer close(committerDone); c.committer(commitCtx) }()

	var workers sync.WaitGroup
	for _, w := range c.workers {
		workers.Add(1)
		go func() { defer workers.Done(); c.work(w) }()
	}

	err := c.poll(ctx)

	c.drain()
	close(c.jobs)
	workers.Wait()
	stopCommits()
	<-committerDone
	c.commitPending(context.Background())
	c.cl.Close() // leaves the group; revoked() then finds nothing left to do
	c.aloneSlot <- struct{}{}
	if c.alone != nil {
		c.alone.Close()
	}
	c.aloneClosed = true
	<-c.aloneSlot
	return err
}

func (c *Consumer) poll(ctx context.Context) error {
	for {
		// Take a slot before polling, so in-flight work never exceeds
		// Concurrency and a full service stops fetching.
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1 + cap(c.slots) - len(c.slots)
		fs := c.cl.PollRecords(ctx, free)
		if fs.IsClientClosed() {
			<-c.slots
			return errors.New("kafka client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.cfg.Log.Error("fetch error", "topic", topic, "partition", p, "error", err)
			}
		})
		first := true
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			if !first {
				c.slots <- struct{}{} // cannot block: at most `free` records
			}
			first = false
			c.dispatch(rec)
		}
		if first {
			<-c.slots // nothing polled
		}
		c.cl.AllowRebalance()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// dispatch records rec as pending on its partition and queues it.
func (c *Consumer) dispatch(rec *kgo.Record) {
	c.mu.Lock()
	p := c.parts[topicPartition{rec.Topic, rec.Partition}]
	if p == nil { // cannot happen while rebalances wait on the poll
		c.mu.Unlock()
		<-c.slots
		c.cfg.Log.Error("record for an unassigned partition", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset)
		return
	}
	e := &entry{offset: rec.Offset, epoch: rec.LeaderEpoch}
	p.pending = append(p.pending, e)
	p.inflight++
	p.work.Add(1)
	c.mu.Unlock()
	c.cfg.InFlight(1)
	c.jobs <- job{rec: rec, p: p, e: e} // cannot block: capacity is Concurrency
}

func (c *Consumer) work(w Processor) {
	for j := range c.jobs {
		c.handle(w, j)
		c.mu.Lock()
		j.p.inflight--
		c.mu.Unlock()
		j.p.work.Done()
		c.cfg.InFlight(-1)
		<-c.slots
	}
}

// handle processes one record and publishes its answer; the offset becomes
// committable only once the broker has acknowledged that answer.
func (c *Consumer) handle(w Processor, j job) {
	ctx := j.p.ctx
	if ctx.Err() != nil {
		return // revoked before it started
	}
	a, err := w.Process(ctx, DeliveryOf(j.rec))
	if err != nil {
		c.cfg.Log.Info("record abandoned; it will be redelivered", "topic", j.rec.Topic, "partition", j.rec.Partition, "offset", j.rec.Offset, "reason", err)
		return
	}
	if _, ok := a.(service.Deferred); ok {
		// Its owner in the ledger answers it later.
		c.markDone(j.p, j.e)
		return
	}
	out := c.topics.Record(a)
	if out == nil {
		c.cfg.Log.Error("no record to publish for an answer; the record stays uncommitted", "answer", fmt.Sprintf("%T", a),
			"topic", j.rec.Topic, "partition", j.rec.Partition, "offset", j.rec.Offset)
		return
	}
	err = c.publish(ctx, out, j.rec)
	if err != nil && !errors.Is(err, errReleased) {
		err = c.publishSummary(ctx, a, j.rec, err)
	}
	if err != nil {
		c.cfg.Log.Info("answer not published before the partition was released; the record will be redelivered", "topic", j.rec.Topic, "partition", j.rec.Partition, "offset", j.rec.Offset)
		return
	}
	c.markDone(j.p, j.e)
}

// errReleased: the record's partition was released (revoked, lost, or the
// consumer stopping) before its answer was acknowledged.
var errReleased = errors.New("the partition was released first")

// publish produces rec, the answer to src, and waits for the broker's
// acknowledgement, retrying what a retry may fix until ctx ends. It returns
// nil once rec is acknowledged, errReleased if ctx ended first, or an error
// no retry fixes, confirmed on rec alone.
func (c *Consumer) publish(ctx context.Context, rec, src *kgo.Record) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.cl.ProduceSync(ctx, rec).FirstErr()
		if err != nil && permanent(err) {
			err = c.produceAlone(ctx, rec)
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return errReleased
		case permanent(err):
			return err
		}
		c.cfg.Log.Error("publishing answer failed; retrying", "topic", rec.Topic, "source_partition", src.Partition, "source_offset", src.Offset, "error", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return errReleased
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// publishSummary dead-letters a bounded Summary of src in place of its answer
// a, which no retry publishes (refused), so that the partition moves on. If
// the summary cannot be published either, the record is skipped with an error
// logged, since holding its offset would stop the partition for good; a
// result so skipped stays in the ledger, and a copy of its request gets it.
// It returns nil, or errReleased if ctx ended first.
func (c *Consumer) publishSummary(ctx context.Context, a service.Answer, src *kgo.Record, refused error) error {
	reason := ReasonUnpublishable
	if errors.Is(refused, kerr.MessageTooLarge) || errors.Is(refused, kerr.RecordListTooLarge) {
		reason = ReasonTooLarge
	}
	what := "result"
	if dl, ok := a.(service.DeadLetter); ok {
		what = fmt.Sprintf("dead letter (%s: %s)", dl.Reason, dl.Detail)
	}
	c.cfg.Log.Warn("answer cannot be published; dead-lettering a summary of the record", "topic", src.Topic, "partition", src.Partition,
		"offset", src.Offset, "reason", reason, "answer", what, "error", refused)
	detail := fmt.Sprintf("the %s of this record could not be published: %v", what, refused)
	err := c.publish(ctx, c.topics.Summary(DeliveryOf(src), reason, detail), src)
	if err != nil && !errors.Is(err, errReleased) {
		c.cfg.Log.Error("neither the answer nor a summary of the record can be published; the record is skipped", "topic", src.Topic,
			"partition", src.Partition, "offset", src.Offset, "error", refused, "summary_error", err)
		return nil
	}
	return err
}

// produceAlone produces rec once more on a client of its own, one record at
// a time so that no other record shares its batch, and returns that verdict.
// When the broker refuses a batch, franz-go fails every record it had
// buffered for that partition with the same error (recBuf.failAllRecords):
// an answer batched with an oversized one gets MESSAGE_TOO_LARGE too. Only
// rec alone tells whether the fault is its own.
func (c *Consumer) produceAlone(ctx context.Context, rec *kgo.Record) error {
	select {
	case c.aloneSlot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.aloneSlot }()
	if c.aloneClosed {
		return kgo.ErrClientClosed
	}
	if c.alone == nil {
		cl, err := kgo.NewClient(c.producerOpts()...)
		if err != nil {
			return err
		}
		c.alone = cl
	}
	fresh := &kgo.Record{Topic: rec.Topic, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}
	return c.alone.ProduceSync(ctx, fresh).FirstErr()
}

// permanent reports whether err, from producing a record, is one no retry
// fixes: Kafka's or franz-go's verdict on the record itself. franz-go fails
// a record larger than ProducerBatchMaxBytes before sending it, with
// kerr.MessageTooLarge wrapped; the broker refuses for good with
// MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_RECORD,
// TOPIC_AUTHORIZATION_FAILED and the other codes kerr marks not retriable.
// The retriable ones (not the leader, not enough replicas, an unknown topic,
// a dropped connection) franz-go retries itself until RecordDeliveryTimeout;
// what it then gives up on for now (kgo.ErrRecordTimeout, ErrRecordRetries,
// ErrMaxBuffered, ErrAborting, ErrClientClosed, which may wrap the last
// broker error), a canceled context, and anything else are not permanent.
func permanent(err error) bool {
	for _, notYet := range []error{kgo.ErrRecordTimeout, kgo.ErrRecordRetries, kgo.ErrMaxBuffered, kgo.ErrAborting, kgo.ErrClientClosed,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, notYet) {
			return false
		}
	}
	ke, ok := errors.AsType[*kerr.Error](err)
	return ok && !ke.Retriable
}

// markDone makes every contiguous finished offset at the head of the
// partition committable.
func (c *Consumer) markDone(p *partition, e *entry) {
	c.mu.Lock()
	e.done = true
	n := 0
	for n < len(p.pending) && p.pending[n].done {
		n++
	}
	if n > 0 {
		last := p.pending[n-1]
		p.commit = &kgo.EpochOffset{Epoch: last.epoch, Offset: last.offset + 1}
		p.pending = p.pending[n:]
	}
	c.mu.Unlock()
	if n > 0 {
		select {
		case c.commitNow <- struct{}{}:
		default:
		}
	}
}

// committer commits whatever became committable, one commit at a time and
// at most one per CommitInterval; work finished meanwhile is gathered into
// the next one.
func (c *Consumer) committer(ctx context.Context) {
	for {
		select {
		case <-c.commitNow:
		case <-ctx.Done():
			return
		}
		c.commitPending(ctx)
		select {
		case <-time.After(c.cfg.CommitInterval):
		case <-ctx.Done():
			return
		}
	}
}

func (c *Consumer) commitPending(ctx context.Context) {
	c.mu.Lock()
	offsets := c.takeCommits(c.parts)
	c.mu.Unlock()
	c.commit(ctx, offsets)
}

// takeCommits collects the committable offsets of parts. Caller holds mu.
func (c *Consumer) takeCommits(parts map[topicPartition]*partition) map[string]map[int32]kgo.EpochOffset {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for tp, p := range parts {
		if p.commit == nil {
			continue
		}
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[tp.topic][tp.partition] = *p.commit
		p.commit = nil
	}
	return offsets
}

func (c *Consumer) commit(ctx context.Context, offsets map[string]map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitResponseError(resp)
		}
		if err != nil {
			// Left uncommitted, these records are redelivered after a
			// restart or rebalance; the next commit covers them otherwise.
			c.cfg.Log.Warn("commit failed", "error", err)
			c.requeue(offsets)
		}
	})
}

// requeue puts back offsets whose commit failed, unless a later commit for
// the same partition is already waiting.
func (c *Consumer) requeue(offsets map[string]map[int32]kgo.EpochOffset) {
	c.mu.Lock()
	for topic, ps := range offsets {
		for part, eo := range ps {
			if p := c.parts[topicPartition{topic, part}]; p != nil && p.commit == nil {
				p.commit = &eo
			}
		}
	}
	c.mu.Unlock()
	// Try again shortly even if no other answer comes to prompt it.
	time.AfterFunc(time.Second, func() {
		select {
		case c.commitNow <- struct{}{}:
		default:
		}
	})
}

func (c *Consumer) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, part := range ps {
			ctx, cancel := context.WithCancel(context.Background())
			c.parts[topicPartition{topic, part}] = &partition{ctx: ctx, cancel: cancel}
		}
	}
	c.cfg.Log.Info("partitions assigned", "partitions", assigned)
}

// revoked lets the revoked partitions' work finish for a short grace, stops
// the rest, and commits what was answered before the partitions move on.
func (c *Consumer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	parts := c.release(revoked, c.cfg.RevokeGrace)
	c.mu.Lock()
	offsets := c.takeCommits(parts)
	c.mu.Unlock()
	c.commit(ctx, offsets)
	if len(parts) > 0 {
		c.cfg.Log.Info("partitions revoked", "partitions", revoked)
	}
}

// lost stops the lost partitions' work at once; their offsets can no longer
// be committed by this member.
func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.release(lost, 0)
	c.cfg.Log.Warn("partitions lost", "partitions", lost)
}

// release removes partitions from this member, waits up to grace for their
// work, then stops what remains and waits for it to return.
func (c *Consumer) release(which map[string][]int32, grace time.Duration) map[topicPartition]*partition {
	parts := make(map[topicPartition]*partition)
	c.mu.Lock()
	for topic, ps := range which {
		for _, part := range ps {
			tp := topicPartition{topic, part}
			if p := c.parts[tp]; p != nil {
				parts[tp] = p
				delete(c.parts, tp)
			}
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !waitTimeout(&p.work, grace) {
				p.cancel()
				p.work.Wait()
			}
			p.cancel()
		}()
	}
	wg.Wait()
	return parts
}

// drain gives all in-flight work DrainGrace to finish, then stops it.
func (c *Consumer) drain() {
	c.mu.Lock()
	parts := make(map[string][]int32)
	for tp := range c.parts {
		parts[tp.topic] = append(parts[tp.topic], tp.partition)
	}
	c.mu.Unlock()
	released := c.release(parts, c.cfg.DrainGrace)
	// Keep them reachable for the final commit.
	c.mu.Lock()
	for tp, p := range released {
		c.parts[tp] = p
	}
	c.mu.Unlock()
}

// waitTimeout waits for wg for at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// commitResponseError is the first partition error of a commit response.
func commitResponseError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return err
			}
		}
	}
	return nil
}
