"""check_params: the by-name params helper for the method table."""

from __future__ import annotations

from typing import Any

import pytest

from sync_queue.errors import InvalidParams
from sync_queue.protocol import ANY, Param, check_params

POP = {
    "timeoutMs": Param(int, minimum=0, maximum=3_155_760_000_000),
    "ratio": Param(float, maximum=0.5),
    "partition": Param(str, nullable=True),
    "priority": Param(str, choices=("high", "low")),
    "payload": Param(ANY),
    "metadata": Param(dict),
    "id": Param(str, required=True),
}


@pytest.mark.parametrize(
    "params",
    [
        {"id": "a"},
        {"id": "a", "timeoutMs": 0, "ratio": 0, "partition": None, "payload": None},
        {"id": "a", "timeoutMs": 3_155_760_000_000, "ratio": 0.5},
        {"id": "a", "ratio": 0.5, "priority": "low", "metadata": {}, "payload": [1, {}]},
    ],
)
def test_check_params_accepts(params: dict[str, Any]) -> None:
    check_params("pop", params, POP)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        (
            {"id": "a", "timeout": 5},
            "timeout",
            'pop: unknown param "timeout"; did you mean "timeoutMs"? (known: id, metadata, '
            "partition, payload, priority, ratio, timeoutMs)",
        ),
        ({}, "id", 'pop: missing required param "id"'),
        ({"id": 1}, "id", 'pop: "id" must be a string, got an integer (1)'),
        ({"id": None}, "id", 'pop: "id" must not be null'),
        (
            {"id": "a", "timeoutMs": True},
            "timeoutMs",
            'pop: "timeoutMs" must be an integer, got a boolean',
        ),
        (
            {"id": "a", "timeoutMs": 1.5},
            "timeoutMs",
            'pop: "timeoutMs" must be an integer, got a number (1.5)',
        ),
        ({"id": "a", "timeoutMs": -1}, "timeoutMs", 'pop: "timeoutMs" must be at least 0, got -1'),
        (
            {"id": "a", "timeoutMs": 2**64 - 1},
            "timeoutMs",
            'pop: "timeoutMs" must be at most 3155760000000, got 18446744073709551615',
        ),
        ({"id": "a", "ratio": 0.75}, "ratio", 'pop: "ratio" must be at most 0.5, got 0.75'),
        ({"id": "a", "ratio": "1"}, "ratio", 'pop: "ratio" must be a number, got a string ("1")'),
        (
            {"id": "a", "metadata": []},
            "metadata",
            'pop: "metadata" must be an object, got an array',
        ),
        (
            {"id": "a", "priority": "urgent"},
            "priority",
            'pop: "priority" must be one of "high", "low", got a string ("urgent")',
        ),
    ],
)
def test_check_params_refuses(params: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidParams) as caught:
        check_params("pop", params, POP)
    assert caught.value.code == -32602
    assert caught.value.data == {"field": field}
    assert caught.value.message == message


def test_check_params_for_a_method_without_params() -> None:
    check_params("ping", {}, {})
    with pytest.raises(InvalidParams, match='ping: takes no params, got "x"'):
        check_params("ping", {"x": 1}, {})


def test_check_params_shortens_long_values() -> None:
    with pytest.raises(InvalidParams) as caught:
        check_params("get", {"id": "x" * 1000}, {"id": Param(int)})
    assert len(caught.value.message) < 100
