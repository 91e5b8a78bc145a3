package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"lightning-service/internal/wire"
)

// call signs one request, sends it, and prints the verified result that
// answers it: a caller in a few lines, for trying the service by hand.
func call(ctx context.Context, args []string, lookupEnv func(string) (string, bool)) error {
	env := func(k, def string) string {
		if v, ok := lookupEnv(k); ok && v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	brokers := fs.String("brokers", env("LIGHTNING_KAFKA_BROKERS", env("LIGHTNING_EMBEDDED_KAFKA_ADDR", "127.0.0.1:9092")), "Kafka brokers (LIGHTNING_KAFKA_BROKERS)")
	key := fs.String("key", env("LIGHTNING_HMAC_KEY", ""), "HMAC key (LIGHTNING_HMAC_KEY)")
	input := fs.String("input-topic", env("LIGHTNING_INPUT_TOPIC", "lightning-service"), "request topic")
	output := fs.String("output-topic", env("LIGHTNING_OUTPUT_TOPIC", "celery"), "result topic")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		return errors.New("call: no HMAC key: set LIGHTNING_HMAC_KEY or --key")
	}
	value, err := buildRequest([]byte(*key), time.Now(), fs.Args())
	if err != nil {
		return fmt.Errorf("call: %w\n%s", err, usage)
	}
	id := string(value[len(value)-wire.SignatureWidth:])

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	body, err := roundTrip(ctx, strings.Split(*brokers, ","), *input, *output, []byte(*key), value, id)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		body = pretty.Bytes()
	}
	fmt.Println(string(body))
	return nil
}

func buildRequest(key []byte, now time.Time, args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("no task given")
	}
	switch task := args[0]; task {
	case "decode", "pay":
		if len(args) != 2 {
			return nil, fmt.Errorf("%s takes one payment request", task)
		}
		return wire.SignRequest(key, now, task, wire.PayPayload(args[1])), nil
	case "create":
		if len(args) != 4 {
			return nil, errors.New("create takes AMOUNT_SAT MEMO EXPIRY_SEC")
		}
		amount, err1 := strconv.ParseInt(args[1], 10, 64)
		expiry, err2 := strconv.ParseInt(args[3], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, errors.New("create: AMOUNT_SAT and EXPIRY_SEC must be whole numbers")
		}
		payload, err := wire.CreatePayload(amount, args[2], expiry)
		if err != nil {
			return nil, err
		}
		return wire.SignRequest(key, now, task, payload), nil
	default:
		return nil, fmt.Errorf("unknown task %q", task)
	}
}

// roundTrip reads the result topic from its current end, sends the request,
// and returns the JSON of the first verified result carrying its id.
func roundTrip(ctx context.Context, brokers []string, input, output string, key, value []byte, id string) ([]byte, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, output)
	if err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", output, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("reading the end of %s: %w", output, err)
	}
	from := map[string]map[int32]kgo.Offset{output: {}}
	ends.Each(func(o kadm.ListedOffset) { from[output][o.Partition] = kgo.NewOffset().At(o.Offset) })

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(from))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: input, Value: value}).FirstErr(); err != nil {
		return nil, fmt.Errorf("sending the request to %s: %w", input, err)
	}
	fmt.Fprintf(os.Stderr, "sent request %s to %s; waiting for its result on %s\n", id, input, output)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no result for request %s before the timeout (is the service running? see the dead-letter topic)", id)
		}
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			_, body, err := wire.OpenResult(rec.Value, key)
			if err != nil {
				continue // another service's record on the shared topic
			}
			var r struct {
				Data struct {
					RequestID string `json:"request_id"`
				} `json:"data"`
			}
			if json.Unmarshal(body, &r) == nil && strings.EqualFold(r.Data.RequestID, id) {
				return body, nil
			}
		}
	}
}
