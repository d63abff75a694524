"""The I-JSON nesting guard."""

from __future__ import annotations

import orjson
import pytest

from sync_queue.protocol import MAX_NESTING, nesting_exceeds


def arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        (arrays(1), False),
        (arrays(MAX_NESTING), False),
        (arrays(MAX_NESTING + 1), True),
        (arrays(5000), True),
        (objects(MAX_NESTING), False),
        (objects(MAX_NESTING + 1), True),
        # brackets inside strings do not nest
        (b'["' + b"[" * 2000 + b'"]', False),
        (b'{"k":"' + b"{" * 2000 + b'"}', False),
        # escaped quotes do not end a string
        (b'["\\"' + b"[" * 2000 + b'"]', False),
        (b'["\\\\"' + b"," + arrays(MAX_NESTING) + b"]", True),
        # many brackets side by side are wide, not deep
        (b"[" + b",".join([b"[]"] * 5000) + b"]", False),
        (b"[" + b",".join([arrays(MAX_NESTING - 1)] * 3) + b"]", False),
        (b"[" + b",".join([arrays(MAX_NESTING)] * 3) + b"]", True),
    ],
)
def test_nesting_exceeds(text: bytes, too_deep: bool) -> None:
    assert nesting_exceeds(text) is too_deep
    if not too_deep:
        orjson.loads(text)  # the cases are valid JSON, which is where the guard is exact


def test_nesting_exceeds_with_a_custom_limit() -> None:
    assert not nesting_exceeds(arrays(3), limit=3)
    assert nesting_exceeds(arrays(4), limit=3)
