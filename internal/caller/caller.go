// Package caller is a minimal Go caller of the service: it signs requests,
// sends them, and waits for their verified results. The call command, the
// sandbox's demo and the end-to-end tests use it.
package caller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/wire"
)

// Result is a verified result.
type Result struct {
	Timestamp time.Time
	Task      string          `json:"task"`
	Data      ResultData      `json:"data"`
	Raw       json.RawMessage `json:"-"` // the signed JSON body
	Record    *kgo.Record     `json:"-"`
}

// ResultData is a result's data.
type ResultData struct {
	Message     json.RawMessage `json:"message"`
	Status      string          `json:"status"`
	RequestID   string          `json:"request_id"`
	PaymentHash string          `json:"payment_hash"`
}

// Error is an error result's message.
type Error struct {
	Error        string `json:"error"`
	PaymentError string `json:"payment_error"`
	Detail       string `json:"detail"`
	PaymentHash  string `json:"payment_hash"`
}

// ErrorMessage decodes the message of an error result.
func (r *Result) ErrorMessage() (Error, error) {
	var e Error
	err := json.Unmarshal(r.Data.Message, &e)
	return e, err
}

// Caller sends requests and collects results. Results for every request sent
// through it are gathered from the moment it is created.
type Caller struct {
	Key   []byte
	Input string
	cl    *kgo.Client

	mu      sync.Mutex
	results map[string][]*Result // by request id
	waiters map[string][]chan struct{}
	done    chan struct{}
}

// New connects to brokers and starts reading output from its current end.
func New(ctx context.Context, brokers []string, input, output string, key []byte) (*Caller, error) {
	cl, err := Tail(ctx, brokers, output)
	if err != nil {
		return nil, err
	}
	c := &Caller{Key: key, Input: input, cl: cl, results: map[string][]*Result{}, waiters: map[string][]chan struct{}{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

// Close stops reading.
func (c *Caller) Close() {
	c.cl.Close()
	<-c.done
}

func (c *Caller) read() {
	defer close(c.done)
	ReadResults(c.cl, c.Key, func(r *Result, _ time.Time) {
		id := strings.ToLower(r.Data.RequestID)
		c.mu.Lock()
		c.results[id] = append(c.results[id], r)
		for _, w := range c.waiters[id] {
			close(w)
		}
		delete(c.waiters, id)
		c.mu.Unlock()
	})
}

// ReadResults polls cl until it is closed and passes each result that
// verifies with key to fn, with the time its fetch arrived. Records that do
// not verify are other services' on the shared topic, and are skipped.
func ReadResults(cl *kgo.Client, key []byte, fn func(r *Result, arrived time.Time)) {
	for {
		fs := cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		arrived := time.Now()
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			ts, body, err := wire.OpenResult(rec.Value, key)
			if err != nil {
				continue
			}
			r := &Result{Timestamp: ts, Raw: body, Record: rec}
			if json.Unmarshal(body, r) != nil {
				continue
			}
			fn(r, arrived)
		}
	}
}

// Send sends a signed request value and returns its request id.
func (c *Caller) Send(ctx context.Context, value []byte, key []byte, headers ...kgo.RecordHeader) (string, error) {
	rec := &kgo.Record{Topic: c.Input, Key: key, Value: value, Headers: headers}
	if err := c.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return "", fmt.Errorf("sending the request to %s: %w", c.Input, err)
	}
	return RequestID(value), nil
}

// Wait returns the first result for request id, waiting until ctx ends.
func (c *Caller) Wait(ctx context.Context, id string) (*Result, error) {
	id = strings.ToLower(id)
	for {
		c.mu.Lock()
		if rs := c.results[id]; len(rs) > 0 {
			c.mu.Unlock()
			return rs[0], nil
		}
		w := make(chan struct{})
		c.waiters[id] = append(c.waiters[id], w)
		c.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, fmt.Errorf("no result for request %s: %w", id, ctx.Err())
		}
	}
}

// Results returns every result seen so far for request id.
func (c *Caller) Results(id string) []*Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Result(nil), c.results[strings.ToLower(id)]...)
}

// Call signs a request for task and payload now, sends it and waits for its
// result.
func (c *Caller) Call(ctx context.Context, task, payload string) (*Result, error) {
	id, err := c.Send(ctx, wire.SignRequest(c.Key, time.Now(), task, payload), nil)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx, id)
}

// Tail returns a client reading topic from its current end on: every
// record written after Tail returns, none before. opts are added to the
// client's.
func Tail(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) (*kgo.Client, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	admin.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", topic, err)
	}
	from := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) { from[topic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(from)}, opts...)...)
}

// RequestID is the id of a signed request value: its signature, lower case.
func RequestID(value []byte) string {
	if len(value) < wire.SignatureWidth {
		return ""
	}
	return strings.ToLower(string(value[len(value)-wire.SignatureWidth:]))
}
