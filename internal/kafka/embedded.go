package kafka

import (
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake) for
// local use: any Kafka client can talk to it, but it keeps records in
// memory only and is no substitute for a real cluster.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the embedded broker on addr with topics created,
// each with partitions partitions.
func StartEmbedded(addr string, partitions int32, topics ...string) (*Embedded, error) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, addr) }),
		kfake.SeedTopics(partitions, topics...),
		kfake.AllowAutoTopicCreation(),
	)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded Kafka broker on %s: %w", addr, err)
	}
	return &Embedded{cluster: c}, nil
}

// Addrs are the broker's addresses.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Close stops the broker.
func (e *Embedded) Close() { e.cluster.Close() }
