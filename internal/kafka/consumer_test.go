package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"lightning-service/internal/kafka"
	"lightning-service/internal/service"
)

const (
	inTopic  = "in"
	outTopic = "out"
	dlqTopic = "dlq"
	group    = "workers"

	// patience bounds every wait for something that must happen.
	patience = 10 * time.Second
	// window is how long a test watches for something that must not
	// happen; a broken consumer does it within milliseconds.
	window = 300 * time.Millisecond
)

// TestCommitWaitsForAnswerAck: while the broker holds the answer's produce,
// the request's offset stays uncommitted; once the produce is acknowledged the
// offset is committed and the answer is on the out topic as produced.
func TestCommitWaitsForAnswerAck(t *testing.T) {
	h := newHarness(t, 1)
	in := h.produce(input(0, "a"))
	commits := h.watchCommits()

	produceSeen := make(chan struct{})
	releaseProduce := make(chan struct{})
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(releaseProduce) }) }
	h.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		close(produceSeen)
		h.cluster.SleepControl(func() { <-releaseProduce })
		h.cluster.DropControl()
		commits.ack()
		return nil, nil, false // now let the broker take it
	})

	p := newFakeProcessor()
	h.run(kafka.Config{Concurrency: 4}, p)
	t.Cleanup(release) // before the consumer stops: it waits for the produce

	recv(t, p.finished, "Process to answer")
	recv(t, produceSeen, "the answer's produce to reach the broker")
	h.expectUncommittedFor(window, 0)

	release()
	h.waitCommitted(0, 1)
	if early := commits.sentEarly(0); len(early) != 0 {
		t.Fatalf("offset commits %v sent before the answer was acknowledged", early)
	}

	out := h.readOut(1)
	want := answer(kafka.DeliveryOf(in[0]))
	if got := out[0]; !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) || !slices.EqualFunc(got.Headers, want.Headers, headerEqual) {
		t.Fatalf("answer on %s = key %q value %q headers %v, want key %q value %q headers %v",
			outTopic, got.Key, got.Value, got.Headers, want.Key, want.Value, want.Headers)
	}
	if n := h.endOffset(outTopic, 0); n != 1 {
		t.Fatalf("%s holds %d records, want exactly the 1 answer", outTopic, n)
	}
}

// TestFailedAnswerIsRetriedNotCommitted: the broker rejects the answer's
// produce three times with NOT_ENOUGH_REPLICAS, which a retry may fix (the
// client, told to retry nothing itself, hands each failure over); meanwhile
// nothing is committed, then the answer is published once and committed,
// without running the request again.
func TestFailedAnswerIsRetriedNotCommitted(t *testing.T) {
	const failures = 3
	h := newHarness(t, 1)
	h.produce(input(0, "a"))
	commits := h.watchCommits()

	var produces atomic.Int32
	allFailed := make(chan struct{})
	h.cluster.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		n := produces.Add(1)
		if n > failures {
			h.cluster.DropControl()
			commits.ack()
			return nil, nil, false // let the broker take it
		}
		h.cluster.KeepControl()
		if n == failures {
			close(allFailed)
		}
		return produceError(kreq.(*kmsg.ProduceRequest), kerr.NotEnoughReplicas.Code), nil, true
	})

	p := newFakeProcessor()
	h.run(kafka.Config{Concurrency: 4, ClientOpts: []kgo.Opt{kgo.RecordRetries(0)}}, p)

	select {
	case <-allFailed:
	case <-time.After(patience):
		t.Fatalf("the answer's produce was tried %d times, want %d failures then a retry; commits sent meanwhile: %v",
			produces.Load(), failures, commits.sentEarly(0))
	}
	h.waitCommitted(0, 1)
	if early := commits.sentEarly(0); len(early) != 0 {
		t.Fatalf("offset commits %v sent before the answer was published", early)
	}
	if out := h.readOut(1); string(out[0].Key) != "a" {
		t.Fatalf("answer on %s has key %q, want a", outTopic, out[0].Key)
	}
	if n := h.endOffset(outTopic, 0); n != 1 {
		t.Fatalf("%s holds %d records, want exactly the 1 answer", outTopic, n)
	}
	if n := h.logs.count("publishing answer failed; retrying"); n != failures {
		t.Fatalf("logged %d produce retries, want %d", n, failures)
	}
	if n := len(p.started); n != 1 {
		t.Fatalf("Process ran %d times, want once: only the produce is retried", n)
	}
}

// TestStoppedConsumerLeavesRecordForRedelivery: a consumer stopped while its
// processor is at work abandons the record after DrainGrace without committing
// it, and the next consumer of the group gets the same record again.
func TestStoppedConsumerLeavesRecordForRedelivery(t *testing.T) {
	h := newHarness(t, 1)
	in := h.produce(input(0, "a"))

	first := newFakeProcessor()
	first.hold("a")
	r := h.run(kafka.Config{Concurrency: 4, DrainGrace: 10 * time.Millisecond}, first)
	recv(t, first.started, "the first consumer to start the record")
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recv(t, first.canceled, "the stopped consumer to cancel its work")
	if got := h.committed(0); got != -1 {
		t.Fatalf("stopped consumer committed offset %d for work it abandoned", got)
	}
	if n := h.endOffset(outTopic, 0); n != 0 {
		t.Fatalf("stopped consumer published %d answers for work it abandoned", n)
	}

	second := newFakeProcessor()
	h.run(kafka.Config{Concurrency: 4}, second)
	got := recv(t, second.finished, "the next consumer to get the record")
	if got.Partition != in[0].Partition || got.Offset != in[0].Offset || string(got.Key) != "a" {
		t.Fatalf("next consumer got partition %d offset %d key %q, want the abandoned record (partition %d offset %d key a)",
			got.Partition, got.Offset, got.Key, in[0].Partition, in[0].Offset)
	}
	h.waitCommitted(0, 1)
	h.readOut(1)
}

// TestCommitNeverPassesUnfinishedRecord: records 1 and 2 are answered while
// record 0 is still at work; nothing is committed until record 0 is answered,
// then offset 3 is.
func TestCommitNeverPassesUnfinishedRecord(t *testing.T) {
	h := newHarness(t, 1)
	h.produce(input(0, "k0"), input(0, "k1"), input(0, "k2"))
	commits := h.watchCommits()

	p := newFakeProcessor()
	p.hold("k0")
	h.run(kafka.Config{Concurrency: 4}, p)

	h.waitAnswered("k1", "k2") // answered and acknowledged
	h.expectUncommittedFor(window, 0)

	p.release("k0")
	h.waitCommitted(0, 3)
	h.waitAnswered("k0", "k1", "k2")
	// Nothing but 3 was ever committed: an earlier 2 or 3 passed record 0
	// while it was at work, and a 1 after it would go backwards.
	for _, off := range commits.sent(0) {
		if off != 3 {
			t.Fatalf("offset commits %v, want only 3: committed past a record still at work", commits.sent(0))
		}
	}
}

// TestSlowRecordDoesNotHoldUpOthers: while the first record of partition 0 is
// at work, the records behind it and those of partition 1 are answered, and
// partition 1 is committed.
func TestSlowRecordDoesNotHoldUpOthers(t *testing.T) {
	h := newHarness(t, 2)
	h.produce(input(0, "k0"), input(0, "k1"), input(0, "k2"), input(1, "m0"), input(1, "m1"))

	p := newFakeProcessor()
	p.hold("k0")
	h.run(kafka.Config{Concurrency: 4}, p)

	h.waitAnswered("k1", "k2", "m0", "m1")
	h.waitCommitted(1, 2)
	if got := h.committed(0); got != -1 {
		t.Fatalf("partition 0 committed at %d while its record 0 is at work", got)
	}

	p.release("k0")
	h.waitCommitted(0, 3)
}

// TestInFlightIsBounded: with Concurrency 2 and five records that each wait
// to be released, at most two are at work at any time.
func TestInFlightIsBounded(t *testing.T) {
	const concurrency, records = 2, 5
	h := newHarness(t, 1)
	var keys []string
	var recs []*kgo.Record
	for i := range records {
		keys = append(keys, fmt.Sprintf("r%d", i))
		recs = append(recs, input(0, keys[i]))
	}
	h.produce(recs...)

	var gauge, gaugeMax atomic.Int32
	p := newFakeProcessor()
	p.hold(keys...)
	h.run(kafka.Config{
		Concurrency: concurrency,
		InFlight:    func(d int) { raiseMax(&gaugeMax, gauge.Add(int32(d))) },
	}, p)

	var atWork []string
	for range concurrency {
		atWork = append(atWork, string(recv(t, p.started, "records to start").Key))
	}
	for done := 0; done < records; done++ {
		select { // the slots are full: nothing else may start
		case rec := <-p.started:
			t.Fatalf("record %s started while %v were at work with Concurrency %d", rec.Key, atWork, concurrency)
		case <-time.After(window / 3):
		}
		p.release(atWork[0])
		atWork = atWork[1:]
		if done+concurrency < records {
			atWork = append(atWork, string(recv(t, p.started, "the next record to start").Key))
		}
	}
	h.waitCommitted(0, records)
	if got := p.maxActive.Load(); got > concurrency {
		t.Fatalf("%d records in Process at once, want at most %d", got, concurrency)
	}
	if got := gaugeMax.Load(); got > concurrency {
		t.Fatalf("InFlight gauge reached %d, want at most %d", got, concurrency)
	}
	if got := gauge.Load(); got != 0 {
		t.Fatalf("InFlight gauge ends at %d, want 0", got)
	}
}

// TestRevokedPartitionsStopAndMove: a second member joins while the first
// has every record at work; the first member's revoked work is canceled after
// RevokeGrace and left uncommitted, the second member processes those records
// from the start, and in the end every record is answered and committed.
func TestRevokedPartitionsStopAndMove(t *testing.T) {
	const partitions, perPartition = 4, 2
	const revokeGrace = 400 * time.Millisecond
	h := newHarness(t, partitions)
	var keys []string
	var recs []*kgo.Record
	for part := range int32(partitions) {
		for i := range perPartition {
			keys = append(keys, fmt.Sprintf("p%d-%d", part, i))
			recs = append(recs, input(part, keys[len(keys)-1]))
		}
	}
	h.produce(recs...)

	cfg := kafka.Config{Concurrency: partitions * perPartition, RevokeGrace: revokeGrace}
	first := newFakeProcessor()
	first.holdAll()
	h.run(cfg, first)
	for range partitions * perPartition {
		recv(t, first.started, "the first member to start every record")
	}

	second := newFakeProcessor()
	joined := time.Now()
	h.run(cfg, second)

	rec := recv(t, first.canceled, "the first member's revoked work to be canceled")
	if d := time.Since(joined); d < revokeGrace {
		t.Fatalf("revoked work canceled %v after the second member started, before RevokeGrace %v", d, revokeGrace)
	}
	canceled := map[recordID]bool{idOf(rec): true}

	// The first member's revoke finishes before the second is assigned the
	// partitions, so every cancellation precedes the second's first answer.
	secondDone := map[recordID]bool{}
	rec = recv(t, second.finished, "the second member to answer a revoked record")
	secondDone[idOf(rec)] = true
	for drained := false; !drained; {
		select {
		case rec := <-first.canceled:
			canceled[idOf(rec)] = true
		default:
			drained = true
		}
	}
	if len(canceled) == partitions*perPartition {
		t.Fatal("the first member lost all its work; want some partitions kept")
	}
	for !containsAll(secondDone, canceled) {
		rec := recv(t, second.finished, "the second member to answer every revoked record")
		secondDone[idOf(rec)] = true
	}
	for id := range secondDone {
		if !canceled[id] {
			t.Fatalf("second member processed %v, which the first member never gave up", id)
		}
	}

	first.releaseAll()
	for part := range int32(partitions) {
		h.waitCommitted(part, perPartition)
	}
	h.waitAnswered(keys...)
}

// TestDrainCommitsWorkFinishedWithinGrace: work that finishes within
// DrainGrace after Run's context is canceled is answered and committed by the
// time Run returns, and Run does not wait out the rest of the grace.
func TestDrainCommitsWorkFinishedWithinGrace(t *testing.T) {
	const drainGrace = 5 * time.Second
	h := newHarness(t, 1)
	h.produce(input(0, "k0"), input(0, "k1"))

	p := newFakeProcessor()
	p.hold("k1")
	r := h.run(kafka.Config{Concurrency: 4, DrainGrace: drainGrace}, p)
	h.waitCommitted(0, 1)
	for {
		if rec := recv(t, p.started, "k1 to start"); string(rec.Key) == "k1" {
			break
		}
	}

	start := time.Now()
	r.cancel()
	select {
	case rec := <-p.canceled:
		t.Fatalf("%s canceled at once, want DrainGrace %v to finish it", rec.Key, drainGrace)
	case <-time.After(window / 3):
	}
	p.release("k1")
	if err := r.wait(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d >= drainGrace {
		t.Fatalf("Run returned after %v, want soon after the work finished", d)
	}
	if got := h.committed(0); got != 2 {
		t.Fatalf("committed offset %d when Run returned, want 2", got)
	}
	h.waitAnswered("k0", "k1")
}

// slowProcessor answers every record after a fixed delay.
type slowProcessor struct{ delay time.Duration }

func (p slowProcessor) Process(ctx context.Context, rec service.Delivery) (service.Answer, error) {
	select {
	case <-time.After(p.delay):
		return answer(rec), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A stream of answers is committed once per CommitInterval, not once per
// answer, and everything answered is committed in the end.
func TestCommitsGatheredPerInterval(t *testing.T) {
	const n, interval = 60, 250 * time.Millisecond
	h := newHarness(t, 1)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, input(0, fmt.Sprint("r", i)))
	}
	h.produce(recs...)
	commits := h.watchCommits()
	commits.ack() // every commit here follows its answers; counting only

	// One at a time, 20 ms each: answers keep coming for about 1.2 s.
	start := time.Now()
	h.run(kafka.Config{Concurrency: 1, CommitInterval: interval}, slowProcessor{delay: 20 * time.Millisecond})
	h.waitCommitted(0, n)
	took := time.Since(start)

	sent := commits.sent(0)
	if limit := int(took/interval) + 2; len(sent) > limit {
		t.Errorf("%d commits in %s with a %s interval; want at most %d: %v", len(sent), took.Round(time.Millisecond), interval, limit, sent)
	}
	if len(sent) < 2 {
		t.Errorf("%d commits in %s: the stream was committed only at the end", len(sent), took.Round(time.Millisecond))
	}
	t.Logf("%d answers over %s, %d commits: %v", n, took.Round(time.Millisecond), len(sent), sent)
}

// deferProcessor answers every record with service.Deferred: its owner in
// the ledger answers it later.
type deferProcessor struct{ done chan service.Delivery }

func (p deferProcessor) Process(_ context.Context, d service.Delivery) (service.Answer, error) {
	p.done <- d
	return service.Deferred{}, nil
}

// TestDeferredIsCommittedWithoutPublishing: a record answered Deferred has
// its offset committed and nothing produced for it.
func TestDeferredIsCommittedWithoutPublishing(t *testing.T) {
	h := newHarness(t, 1)
	h.produce(input(0, "a"), input(0, "b"))

	var produces atomic.Int32
	h.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		h.cluster.KeepControl()
		produces.Add(1)
		return nil, nil, false
	})

	p := deferProcessor{done: make(chan service.Delivery, 2)}
	h.run(kafka.Config{Concurrency: 4}, p)
	recv(t, p.done, "Process to defer the first record")
	recv(t, p.done, "Process to defer the second record")
	h.waitCommitted(0, 2)
	if n := produces.Load(); n != 0 {
		t.Fatalf("%d produce requests for deferred records, want none", n)
	}
	if n, m := h.endOffset(outTopic, 0), h.endOffset(dlqTopic, 0); n != 0 || m != 0 {
		t.Fatalf("%s holds %d records and %s %d, want none", outTopic, n, dlqTopic, m)
	}
}
