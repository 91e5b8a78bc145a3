"""Build signed lightning-service requests and open signed results.

The format is ../shared/protocol/wire.md (version 1). Widths count characters,
as str.ljust pads them, and the HMAC-SHA256 covers the UTF-8 bytes. This module
uses only the standard library, so it can be copied into a caller as is.
"""

import hashlib
import hmac
import json

TIMESTAMP_WIDTH = 13
TASK_WIDTH = 16
PAYMENT_REQUEST_WIDTH = 400
CREATE_FIELD_WIDTH = 37
SIGNATURE_WIDTH = 64

CREATE_FIELDS = ("amount", "message", "expiry")
PAYMENT_REQUEST_TASKS = ("decode", "pay")


class ResultError(ValueError):
    """A result record that is malformed or whose signature matches no key."""


def _key_bytes(key):
    return key if isinstance(key, bytes) else key.encode("utf-8")


def _hex_hmac(key, data):
    return hmac.new(_key_bytes(key), data, hashlib.sha256).hexdigest()


def _timestamp(now_ms):
    ts = str(int(now_ms))
    if len(ts) != TIMESTAMP_WIDTH or not ts.isdigit():
        raise ValueError(f"now_ms {now_ms!r} is not a 13-digit millisecond timestamp")
    return ts


def sign_request(key: str, task: str, now_ms: int, **fields) -> str:
    """Return the signed request text for task at now_ms (Unix milliseconds).

    decode, pay: payment_request, padded to 400 characters; a longer one is
    sent unpadded. create: amount, message and expiry, each padded to 37
    characters; pass strings to choose their text (e.g. zero-padded numbers).
    payload= sends raw payload text for any task, to exercise the service's
    error paths.
    """
    if len(task) > TASK_WIDTH:
        raise ValueError(f"task {task!r} is longer than {TASK_WIDTH} characters")
    if "payload" in fields:
        if len(fields) != 1:
            raise TypeError("payload= excludes every other field")
        payload = str(fields["payload"])
    elif task in PAYMENT_REQUEST_TASKS:
        if set(fields) != {"payment_request"}:
            raise TypeError(f"{task} takes payment_request only, got {sorted(fields)}")
        payload = str(fields["payment_request"]).ljust(PAYMENT_REQUEST_WIDTH)
    elif task == "create":
        if set(fields) != set(CREATE_FIELDS):
            raise TypeError(f"create takes amount, message and expiry, got {sorted(fields)}")
        parts = []
        for name in CREATE_FIELDS:
            text = str(fields[name])
            # A longer field would shift the next one and be misread.
            if len(text) > CREATE_FIELD_WIDTH:
                raise ValueError(f"create {name} {text!r} is longer than {CREATE_FIELD_WIDTH} characters")
            parts.append(text.ljust(CREATE_FIELD_WIDTH))
        payload = "".join(parts)
    else:
        raise ValueError(f"unknown task {task!r}: use decode, pay or create, or pass payload=")
    signed = _timestamp(now_ms) + task.ljust(TASK_WIDTH) + payload
    return signed + _hex_hmac(key, signed.encode("utf-8"))


def request_id(request) -> str:
    """The request_id a result carries for request: its signature, lowercase."""
    if isinstance(request, bytes):
        request = request.decode("utf-8")
    return request[-SIGNATURE_WIDTH:].lower()


def seal_result(key: str, now_ms: int, body) -> bytes:
    """Sign a result as the service does: timestamp + JSON + hex HMAC.

    body is the exact JSON text (str or bytes), or an object dumped compactly.
    """
    if isinstance(body, (dict, list)):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if isinstance(body, str):
        body = body.encode("utf-8")
    signed = _timestamp(now_ms).encode("ascii") + body
    return signed + _hex_hmac(key, signed).encode("ascii")


def split_result(value: bytes) -> tuple[int, bytes, bytes]:
    """Return (timestamp_ms, json bytes, signature bytes) of a result record."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if len(value) < TIMESTAMP_WIDTH + 2 + SIGNATURE_WIDTH:
        raise ResultError(f"result of {len(value)} bytes is too short")
    ts, body, sig = value[:TIMESTAMP_WIDTH], value[TIMESTAMP_WIDTH:-SIGNATURE_WIDTH], value[-SIGNATURE_WIDTH:]
    if not ts.isdigit():
        raise ResultError(f"result timestamp {ts!r} is not 13 digits")
    try:
        bytes.fromhex(sig.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ResultError(f"result signature {sig!r} is not hex") from None
    return int(ts), body, sig


def open_result(value: bytes, keys: list[str]) -> dict:
    """Verify a result record's signature against keys and return its JSON.

    keys: the shared secrets, current first. Raises ResultError if the
    record is malformed or no key signed it.
    """
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    _, body, sig = split_result(value)
    signed = value[: -SIGNATURE_WIDTH] if isinstance(value, bytes) else value.encode("utf-8")[:-SIGNATURE_WIDTH]
    sig = sig.lower()
    # Check every key, not just until one matches, so timing says nothing
    # about which key did.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(_hex_hmac(key, signed).encode("ascii"), sig)
    if not ok:
        raise ResultError("result signature matches no configured key")
    try:
        return json.loads(body)
    except ValueError as e:
        raise ResultError(f"result JSON does not parse: {e}") from None
