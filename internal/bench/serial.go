package bench

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/kafka"
	"lightning-service/internal/service"
)

// serialConsumer is the design the service replaces, kept minimal as the
// baseline: poll one record, process it, publish its answer, commit, next.
// It processes with the service's own Worker, so the difference measured is
// the consume loop alone.
type serialConsumer struct {
	cl     *kgo.Client
	topics kafka.Topics
	worker kafka.Processor
}

func newSerialConsumer(brokers []string, group, topic string, topics kafka.Topics, worker kafka.Processor) (*serialConsumer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return nil, err
	}
	return &serialConsumer{cl: cl, topics: topics, worker: worker}, nil
}

// Publish publishes a result outside the loop (a payment's owner answering
// a request the loop moved on from) and returns once the broker has it.
func (s *serialConsumer) Publish(ctx context.Context, r service.Result) error {
	return s.cl.ProduceSync(ctx, s.topics.Record(r)).FirstErr()
}

var _ service.Publisher = (*serialConsumer)(nil)

// run consumes until ctx ends. A Deferred answer publishes nothing now: the
// request's payment owner publishes it through Publish when the payment
// ends, and the record is committed meanwhile.
func (s *serialConsumer) run(ctx context.Context) error {
	defer s.cl.Close()
	for {
		fs := s.cl.PollRecords(ctx, 1)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		// Fetch errors are retried by the client, as in the service.
		for _, rec := range fs.Records() {
			a, err := s.worker.Process(ctx, kafka.DeliveryOf(rec))
			if err != nil {
				return nil // abandoned: only on shutdown
			}
			if out := s.topics.Record(a); out != nil {
				if err := s.cl.ProduceSync(ctx, out).FirstErr(); err != nil {
					return fmt.Errorf("one-at-a-time consumer: publishing: %w", err)
				}
			} else if _, deferred := a.(service.Deferred); !deferred {
				return fmt.Errorf("one-at-a-time consumer: no record to publish for %T", a)
			}
			if err := s.cl.CommitRecords(ctx, rec); err != nil {
				return fmt.Errorf("one-at-a-time consumer: committing: %w", err)
			}
		}
	}
}
