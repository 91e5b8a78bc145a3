"""lightning_client against the protocol's reference vectors.

The vectors are ../shared/protocol/vectors.json beside the repository, or
the file named by LIGHTNING_VECTORS.
"""

import json
import os
import pathlib

import pytest

import lightning_client as lc

REPO = pathlib.Path(__file__).resolve().parents[2]


def _load():
    path = os.environ.get("LIGHTNING_VECTORS") or REPO.parent / "shared" / "protocol" / "vectors.json"
    # Fail rather than skip: a test that silently lost its vectors proves nothing.
    with open(path, encoding="utf-8") as f:
        return json.load(f)


V = _load()
KEYS = [V["key"], *V["previous_keys"]]


def _as_sent(vector):
    """The vector's fields as the caller wrote them.

    Numbers may be sent zero-padded (create-leading-zeros); the vector's
    fields hold their values, so take the text from the value when the
    number in it is zero-padded, and check it still means the same number.
    """
    fields = dict(vector["fields"])
    if vector["task"] != "create":
        return fields
    payload = vector["value"][lc.TIMESTAMP_WIDTH + lc.TASK_WIDTH: -lc.SIGNATURE_WIDTH]
    for i, name in enumerate(lc.CREATE_FIELDS):
        text = payload[i * lc.CREATE_FIELD_WIDTH:(i + 1) * lc.CREATE_FIELD_WIDTH].strip()
        if name != "message" and text != str(fields[name]):
            assert int(text) == fields[name], (name, text)
            fields[name] = text
    return fields


@pytest.mark.parametrize("vector", V["valid_requests"], ids=lambda v: v["name"])
def test_valid_requests_reproduce(vector):
    fields = _as_sent(vector)
    made = {key: lc.sign_request(key, vector["task"], vector["timestamp_ms"], **fields) for key in KEYS}
    signers = [key for key, value in made.items() if value == vector["value"]]
    assert len(signers) == 1, (vector["name"], made)
    if "previous" in vector["name"]:
        assert signers == V["previous_keys"][:1]
    assert lc.request_id(vector["value"]) == vector["value"][-64:].lower()


def _resign(value):
    """The keys whose sign_request reproduces value, re-signing its text."""
    ts, task = value[:lc.TIMESTAMP_WIDTH], value[lc.TIMESTAMP_WIDTH:lc.TIMESTAMP_WIDTH + lc.TASK_WIDTH]
    payload = value[lc.TIMESTAMP_WIDTH + lc.TASK_WIDTH:-lc.SIGNATURE_WIDTH]
    signers = []
    for key in KEYS:
        try:
            made = lc.sign_request(key, task.strip(), int(ts), payload=payload)
        except ValueError:
            continue
        if made == value:
            signers.append(key)
    return signers


@pytest.mark.parametrize("vector", V["invalid_requests"], ids=lambda v: v["name"])
def test_invalid_requests_are_authentic(vector):
    # Signed correctly, wrong only in the payload: the service answers them.
    assert _resign(vector["value"]) == [V["key"]]


@pytest.mark.parametrize("vector", V["rejected_requests"], ids=lambda v: v["name"])
def test_rejected_requests(vector):
    signers = _resign(vector["value"])
    if vector["reason"] == "stale_timestamp":
        # Authentic but outside the clock skew.
        assert signers
        assert abs(int(vector["value"][:13]) - V["now_ms"]) > V["max_skew_ms"]
    else:
        assert signers == []


def test_widths_count_characters():
    v = lc.sign_request("k", "create", 1763900000000, amount=1, message="Préstame", expiry=60)
    assert len(v) == 13 + 16 + 3 * 37 + 64
    assert len(v.encode("utf-8")) == len(v) + 1


def test_long_payment_request_is_unpadded():
    pr = "lnbcrt" + "x" * 1199
    v = lc.sign_request("k", "pay", 1763900000000, payment_request=pr)
    assert v[29:-64] == pr


@pytest.mark.parametrize("kwargs", [
    {"task": "pay", "now_ms": 1763900000000},
    {"task": "create", "now_ms": 1763900000000, "amount": 1, "message": "x" * 38, "expiry": 1},
    {"task": "create", "now_ms": 176390000000, "amount": 1, "message": "", "expiry": 1},
    {"task": "refund", "now_ms": 1763900000000, "payment_request": "lnbc"},
])
def test_sign_request_refuses(kwargs):
    with pytest.raises((TypeError, ValueError)):
        lc.sign_request("k", **kwargs)


@pytest.mark.parametrize("vector", V["results"], ids=lambda v: v["name"])
def test_results_verify_and_reproduce(vector):
    value = vector["value"].encode("utf-8")
    assert lc.open_result(value, KEYS) == json.loads(vector["json"])
    assert lc.open_result(value, [V["key"]]) == json.loads(vector["json"])
    assert lc.seal_result(V["key"], vector["timestamp_ms"], vector["json"]) == value
    ts, body, _ = lc.split_result(value)
    assert (ts, body.decode("utf-8")) == (vector["timestamp_ms"], vector["json"])


@pytest.mark.parametrize("vector", V["results"], ids=lambda v: v["name"])
def test_results_refused(vector):
    value = vector["value"].encode("utf-8")
    with pytest.raises(lc.ResultError):
        lc.open_result(value, V["previous_keys"])
    tampered = value.replace(b'"status":"', b'"status":"x', 1)
    with pytest.raises(lc.ResultError):
        lc.open_result(tampered, KEYS)
    with pytest.raises(lc.ResultError):
        lc.open_result(value[:-1] + b"g", KEYS)
    with pytest.raises(lc.ResultError):
        lc.open_result(value[:20], KEYS)
    # The signature compares case-insensitively.
    upper = value[:-64] + value[-64:].upper()
    assert lc.open_result(upper, KEYS) == json.loads(vector["json"])
