"""Fuzzing the sans-IO session: nothing raises out of it, only JSON-RPC lines come out."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .rpc_checks import SessionHarness, check_output

METHODS = ["ping", "echo", "pop", "push", "nope", "raise", "shutdown", "state", ""]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)

ids = (
    st.none()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.booleans()
    | st.lists(st.integers(-(2**53), 2**53), max_size=2)
)

params = (
    st.dictionaries(
        st.sampled_from(["item", "timeoutMs", "delayMs", "kind", "x"]),
        json_values | st.integers(0, 50) | st.sampled_from(["ItemNotFound", "bug", "Locked"]),
        max_size=3,
    )
    | json_values
)

calls = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "2.0", "2.0", "1.0"]),
        "method": st.sampled_from(METHODS) | json_values,
    },
    optional={"id": ids, "params": params},
)

messages = calls | st.lists(calls | json_values, max_size=6) | json_values

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_session(chunks: list[bytes]) -> list[Any]:
    h = SessionHarness(max_message_bytes=200, max_batch_members=4)
    out = []
    for chunk in chunks:
        out += h.cycle(chunk)
        h.now += 0.01
    h.session.receive_eof()
    h.session.stop()
    out += h.cycle()
    assert h.session.waiting_count == 0
    return out


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes(chunks: list[bytes]) -> None:
    run_session(chunks)


@FUZZ
@given(st.lists(st.binary(max_size=100).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=8))
def test_random_lines(lines: list[bytes]) -> None:
    out = run_session(lines)
    # every non-blank line that is not a valid notification gets at most one reply line
    assert len(out) <= len(lines)


@FUZZ
@given(st.lists(messages, max_size=8), st.data())
def test_random_json_messages(batch: list[Any], data: st.DataObject) -> None:
    stream = b"".join(orjson.dumps(m) + b"\n" for m in batch)
    cut = data.draw(st.integers(0, len(stream)))
    out = run_session([stream[:cut], stream[cut:]])
    # run_session checked every line; and no message is answered twice
    assert len(out) <= len(batch)


@FUZZ
@given(json_values)
def test_any_json_value_as_params_never_breaks_the_reply(value: Any) -> None:
    h = SessionHarness()
    raw = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"v": value}})
    out = check_output(b"".join(orjson.dumps(m) + b"\n" for m in h.cycle(raw + b"\n")))
    assert out[0]["id"] == 1
    assert out[0]["result"] == {"v": value}
