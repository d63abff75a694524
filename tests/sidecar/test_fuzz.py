"""Fuzzing one long-lived sidecar: random bytes, random JSON values and random
request-shaped messages never kill it, and every line it writes is valid JSON-RPC.

Fast size by default; ``SYNC_QUEUE_LONG_TESTS=1`` runs the long size.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import LONG
from .harness import Sidecar

EXAMPLES = 3000 if LONG else 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not LONG,  # the CI run is reproducible; the long run explores
    database=None,
)

# Everything except "shutdown", which would (correctly) stop the sidecar under test.
METHODS = [
    "ping",
    "push",
    "pushBatch",
    "pop",
    "popBatch",
    "complete",
    "completeBatch",
    "fail",
    "cancel",
    "release",
    "reject",
    "requeue",
    "extendLease",
    "get",
    "list",
    "purge",
    "stats",
    "health",
    "pause",
    "resume",
    "flush",
]
PARAM_NAMES = [
    "id",
    "payload",
    "priority",
    "maxRetries",
    "correlationId",
    "metadata",
    "partitionKey",
    "delayMs",
    "ttlMs",
    "items",
    "timeoutMs",
    "leaseMs",
    "partition",
    "max",
    "leaseId",
    "error",
    "status",
    "limit",
    "after",
    "timeout",
    "destination",
    "hold",
    "unique",
    "destinations",
    "dead",
    "retryAfterMs",
    "charge",
    "reason",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["pending", "completed", "high", "x", "", "0"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
small_ints = st.integers(min_value=-5, max_value=300)
param_values = json_values | small_ints | st.sampled_from(["a", "b", "c"])
ids = st.none() | st.integers() | st.text(max_size=10) | st.floats(allow_nan=False) | json_values


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = "2.0"
    else:
        message["jsonrpc"] = draw(json_values)
    if draw(st.booleans()):
        message["id"] = draw(ids)
    message["method"] = draw(st.sampled_from(METHODS) | st.text(max_size=12))
    if draw(st.integers(0, 5)):
        params = draw(st.dictionaries(st.sampled_from(PARAM_NAMES), param_values, max_size=4))
        if message["method"] == "pushBatch" and draw(st.booleans()):
            params["items"] = draw(
                st.lists(
                    st.dictionaries(st.sampled_from(PARAM_NAMES), param_values, max_size=3)
                    | st.fixed_dictionaries({"payload": json_values}),
                    max_size=4,
                )
            )
        # Long polls are fine (they must not block anything) but keep them short.
        if "timeoutMs" in params and isinstance(params["timeoutMs"], int):
            params["timeoutMs"] = min(abs(params["timeoutMs"]), 50)
        message["params"] = params
    elif draw(st.booleans()):
        message["params"] = draw(json_values)
    return message


def encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value) + b"\n"
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits
        return orjson.dumps(repr(value)) + b"\n"


def check_alive(sidecar: Sidecar) -> None:
    sidecar.sync(timeout=20)
    assert sidecar.running, sidecar.stderr
    sidecar.assert_clean_output()


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(shared: Sidecar, data: bytes) -> None:
    # Always end the junk with a newline so the sentinel ping starts a fresh line.
    shared.send_raw(data + b"\n")
    check_alive(shared)


@FUZZ
@given(value=json_values)
def test_random_json_values(shared: Sidecar, value: Any) -> None:
    shared.send_raw(encode(value))
    check_alive(shared)


@FUZZ
@given(batch=st.lists(requests(), min_size=1, max_size=6), as_batch=st.booleans())
def test_random_requests(shared: Sidecar, batch: list[dict[str, Any]], as_batch: bool) -> None:
    if as_batch:
        shared.send_raw(encode(batch))
    else:
        shared.send_raw(b"".join(encode(m) for m in batch))
    check_alive(shared)


@FUZZ
@given(
    pieces=st.lists(
        st.sampled_from(
            [
                b"{",
                b"}",
                b"[",
                b"]",
                b'"jsonrpc":"2.0"',
                b'"id":1',
                b'"method":"ping"',
                b'"params":{}',
                b",",
                b":",
                b'"',
                b"\\",
                b"\r",
                b"\n",
                b"\xff",
                b"\xc3",
                b"null",
                b"1e999",
                b" ",
            ]
        ),
        max_size=40,
    )
)
def test_random_json_shaped_bytes(shared: Sidecar, pieces: list[bytes]) -> None:
    shared.send_raw(b"".join(pieces) + b"\n")
    check_alive(shared)
