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

	"lightning-service/internal/caller"
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
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := caller.New(ctx, strings.Split(*brokers, ","), *input, *output, []byte(*key))
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	defer c.Close()
	id, err := c.Send(ctx, value, nil)
	if err != nil {
		return fmt.Errorf("call: %w", err)
	}
	fmt.Fprintf(os.Stderr, "sent request %s to %s; waiting for its result on %s\n", id, *input, *output)
	r, err := c.Wait(ctx, id)
	if err != nil {
		return fmt.Errorf("call: %w (is the service running? look at the dead-letter topic)", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, r.Raw, "", "  "); err != nil {
		return err
	}
	fmt.Println(pretty.String())
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
