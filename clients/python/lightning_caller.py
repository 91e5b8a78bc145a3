#!/usr/bin/env python3
"""A lightning-service caller over Kafka, with confluent-kafka (librdkafka).

It is the foreign client of the interoperability tests, and a tool for
poking a running service by hand.

  send     build, sign and produce requests; prints one JSON line per
           delivered record (topic, partition, offset, key, request_id, value)
  results  consume the output topic, verify each result's signature and print
           one JSON line per result; stops after --count results or --timeout

Examples:
  lightning_caller.py send --secret S --task pay --payment-request lnbcrt1...
  lightning_caller.py send --secret S --task create --amount 100 --message hi --expiry 3600 -n 5
  lightning_caller.py send --secret S --file requests.jsonl
  lightning_caller.py results --secret S --count 5 --timeout 30

A --file line is a JSON object: {"task": "pay", "fields": {...}} with
optional "key", "headers" ({"name": "value"}) and "timestamp_ms".

Exit status: 0 done, 1 a record failed (delivery or a bad signature),
2 usage, 3 results timed out before --count.
"""

import argparse
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

import lightning_client as lc


def where(msg):
    """A record's topic, partition, offset and key, as the commands print them."""
    key = msg.key()
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": key.decode("utf-8", "replace") if key is not None else None,
    }


def usage(msg):
    print(f"lightning_caller.py: error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def now_ms():
    return time.time_ns() // 1_000_000


def parse_headers(pairs):
    headers = []
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            usage(f"--header {pair!r}: want name=value")
        headers.append((name, value.encode("utf-8")))
    return headers


def requests_from_args(args):
    """Yield (task, fields, key, headers, timestamp_ms) for every request."""
    if args.file:
        with open(args.file, encoding="utf-8") if args.file != "-" else sys.stdin as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    task, fields = r["task"], r.get("fields", {})
                except (ValueError, KeyError) as e:
                    usage(f"{args.file}:{n}: want {{\"task\": ..., \"fields\": {{...}}}}: {e}")
                headers = [(k, str(v).encode("utf-8")) for k, v in r.get("headers", {}).items()]
                yield task, fields, r.get("key", args.key), headers or parse_headers(args.header), r.get("timestamp_ms")
        return
    if not args.task:
        usage("send: give --task (with its fields) or --file")
    if args.payload is not None:
        fields = {"payload": args.payload}
    elif args.task in lc.PAYMENT_REQUEST_TASKS:
        if args.payment_request is None:
            usage(f"send --task {args.task} needs --payment-request")
        fields = {"payment_request": args.payment_request}
    elif args.task == "create":
        if None in (args.amount, args.expiry):
            usage("send --task create needs --amount and --expiry (--message defaults to empty)")
        fields = {"amount": args.amount, "message": args.message, "expiry": args.expiry}
    else:
        usage(f"send: task {args.task!r} needs --payload")
    for _ in range(args.count):
        yield args.task, fields, args.key, parse_headers(args.header), args.timestamp_ms


def cmd_send(args):
    # Sign everything first, so a bad line in a file sends nothing at all.
    records = []
    last_ts = 0
    for task, fields, key, headers, ts in requests_from_args(args):
        if ts is None:
            # Strictly increasing, so N identical requests made within one
            # millisecond still differ and get distinct request ids.
            ts = last_ts = max(now_ms(), last_ts + 1)
        try:
            value = lc.sign_request(args.secret, task, ts, **fields)
        except (TypeError, ValueError) as e:
            usage(f"send: {e}")
        records.append((value, key, headers))

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    failures = 0

    def delivered(err, msg, value):
        nonlocal failures
        rid = lc.request_id(value)
        if err is not None:
            failures += 1
            print(json.dumps({"error": str(err), "request_id": rid}), file=sys.stderr, flush=True)
            return
        print(json.dumps({
            **where(msg),
            "request_id": rid,
            "value": value,
        }, ensure_ascii=False), flush=True)

    for value, key, headers in records:
        while True:
            try:
                producer.produce(
                    args.topic, value=value.encode("utf-8"),
                    key=key.encode("utf-8") if key is not None else None,
                    headers=headers,
                    on_delivery=lambda err, msg, v=value: delivered(err, msg, v),
                )
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
        producer.poll(0)
    remaining = producer.flush(args.timeout)
    if remaining:
        print(json.dumps({"error": f"{remaining} records undelivered after {args.timeout}s"}), file=sys.stderr)
        return 1
    return 1 if failures else 0


def cmd_results(args):
    keys = args.secret_list
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group or f"lightning-caller-{uuid.uuid4()}",
        "auto.offset.reset": "latest" if args.latest else "earliest",
        "enable.auto.commit": True,
    })
    consumer.subscribe([args.topic])
    got = bad = 0
    deadline = time.monotonic() + args.timeout
    try:
        while args.count is None or got < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            value = msg.value() or b""
            try:
                result = lc.open_result(value, keys)
            except lc.ResultError as e:
                # The output topic is shared: only a record claiming to be
                # ours and failing verification is an error.
                if b'"task":"lightning-' in value[:200]:
                    bad += 1
                    print(json.dumps({"error": str(e), "partition": msg.partition(), "offset": msg.offset()}),
                          file=sys.stderr, flush=True)
                continue
            if not str(result.get("task", "")).startswith("lightning-"):
                continue
            if args.request_id and result.get("data", {}).get("request_id") not in args.request_id:
                continue
            print(json.dumps({
                **where(msg),
                "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
                "timestamp_ms": lc.split_result(value)[0],
                "result": result,
            }, ensure_ascii=False, separators=(",", ":")), flush=True)
            got += 1
    finally:
        consumer.close()
    if bad:
        return 1
    if args.count is not None and got < args.count:
        print(json.dumps({"error": f"timed out after {args.timeout}s with {got} of {args.count} results"}),
              file=sys.stderr)
        return 3
    return 0


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap", default=os.environ.get("LIGHTNING_KAFKA_BROKERS", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers (env LIGHTNING_KAFKA_BROKERS)")
    common.add_argument("--secret", action="append",
                        help="shared HMAC secret (env LIGHTNING_HMAC_KEY); results: repeat for rotated keys, current first")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("send", parents=[common], help="build, sign and produce requests")
    s.add_argument("--topic", default="lightning-service")
    s.add_argument("--task", help="decode, pay, create, or anything with --payload")
    s.add_argument("--payment-request")
    s.add_argument("--amount")
    s.add_argument("--message", default="")
    s.add_argument("--expiry")
    s.add_argument("--payload", help="raw payload text, for error-path tests")
    s.add_argument("-n", "--count", type=int, default=1, help="send the request this many times")
    s.add_argument("--file", help="JSON lines of requests ('-' for stdin)")
    s.add_argument("--key", help="record key")
    s.add_argument("--header", action="append", help="record header name=value (repeatable)")
    s.add_argument("--timestamp-ms", type=int, help="sign with this time instead of now")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery")

    r = sub.add_parser("results", parents=[common], help="consume and verify results")
    r.add_argument("--topic", default="celery")
    r.add_argument("--group", help="consumer group (default: a new one, reading from the start)")
    r.add_argument("--latest", action="store_true", help="a new group starts at the end, not the beginning")
    r.add_argument("-n", "--count", type=int, help="stop after this many results")
    r.add_argument("--timeout", type=float, default=30.0, help="stop after this many seconds")
    r.add_argument("--request-id", action="append", help="print only results for these request ids")

    args = p.parse_args(argv)
    secrets = args.secret or ([os.environ["LIGHTNING_HMAC_KEY"]] if os.environ.get("LIGHTNING_HMAC_KEY") else [])
    if not secrets:
        p.error("give --secret or set LIGHTNING_HMAC_KEY")
    args.secret, args.secret_list = secrets[0], secrets
    return cmd_send(args) if args.command == "send" else cmd_results(args)


if __name__ == "__main__":
    sys.exit(main())
