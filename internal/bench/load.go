package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/caller"
	"lightning-service/internal/wire"
)

// loader is the benchmark's caller: it signs and sends requests and notes
// when each one's verified result arrives. Unlike a real caller it does not
// linger before producing, so what it measures is the service.
type loader struct {
	key    []byte
	output string
	cl     *kgo.Client

	mu      sync.Mutex
	waiting map[string][]chan arrival // by request id; identical requests wait in line
	done    chan struct{}
}

type arrival struct {
	at     time.Time
	status string
	body   []byte
}

func newLoader(ctx context.Context, brokers []string, output string, key []byte) (*loader, error) {
	cl, err := caller.Tail(ctx, brokers, output, kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	l := &loader{key: key, output: output, cl: cl, waiting: map[string][]chan arrival{}, done: make(chan struct{})}
	go l.read()
	return l, nil
}

func (l *loader) close() {
	l.cl.Close()
	<-l.done
}

func (l *loader) read() {
	defer close(l.done)
	caller.ReadResults(l.cl, l.key, func(r *caller.Result, at time.Time) {
		id := strings.ToLower(r.Data.RequestID)
		l.mu.Lock()
		var ch chan arrival
		if w := l.waiting[id]; len(w) > 0 {
			ch = w[0]
			l.waiting[id] = w[1:]
		}
		l.mu.Unlock()
		if ch != nil {
			ch <- arrival{at: at, status: r.Data.Status, body: r.Raw}
		}
	})
}

// call signs a request now, sends it to topic and waits for its result; it
// returns the time from just before producing to the result's arrival.
func (l *loader) call(ctx context.Context, topic, task, payload string) (time.Duration, error) {
	start := time.Now()
	value := wire.SignRequest(l.key, start, task, payload)
	id := strings.ToLower(string(value[len(value)-wire.SignatureWidth:]))
	ch := make(chan arrival, 1)
	l.mu.Lock()
	l.waiting[id] = append(l.waiting[id], ch)
	l.mu.Unlock()
	if err := l.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
		l.forget(id, ch)
		return 0, fmt.Errorf("sending to %s: %w", topic, err)
	}
	select {
	case a := <-ch:
		if a.status != string(wire.StatusSuccess) {
			return 0, fmt.Errorf("%s answered %s: %s", task, a.status, a.body)
		}
		return a.at.Sub(start), nil
	case <-ctx.Done():
		l.forget(id, ch)
		return 0, fmt.Errorf("no result for %s request %s: %w", task, id, ctx.Err())
	}
}

func (l *loader) forget(id string, ch chan arrival) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.waiting[id]
	for i, c := range w {
		if c == ch {
			w = append(w[:i:i], w[i+1:]...)
			break
		}
	}
	if len(w) == 0 {
		delete(l.waiting, id)
	} else {
		l.waiting[id] = w
	}
}
