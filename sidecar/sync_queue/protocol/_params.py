"""Checking a method's params by name: the helper the method table uses for ``-32602``.

Usage::

    POP = {"timeoutMs": Param(int, minimum=0), "leaseMs": Param(int, minimum=1)}

    def pop(params):
        check_params("pop", params, POP)

Every message names the method and the field, and ``data.field`` carries the field name,
so a typo such as ``timeout`` for ``timeoutMs`` is caught and explained.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import InvalidParams

__all__ = ["ANY", "Param", "check_params"]


class _AnyJson:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyJson()
"""Param type: any JSON value (``null`` included)."""

# How a type is named in messages, by what a person calls the JSON value.
_JSON_NAMES: Final[dict[type, str]] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Param:
    """What one param may hold.

    ``kind``: ``int`` (not a bool), ``float`` (any number), ``str``, ``bool``, ``dict``,
    ``list`` or :data:`ANY`. ``nullable`` allows ``null``; ``minimum`` and ``maximum`` bound
    a number; ``choices`` lists the allowed values.
    """

    kind: type | _AnyJson
    required: bool = False
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: Collection[Any] | None = None


def check_params(method: str, params: Mapping[str, Any], spec: Mapping[str, Param]) -> None:
    """Raise :class:`InvalidParams` unless ``params`` fits ``spec`` exactly."""
    for name, value in params.items():
        param = spec.get(name)
        if param is None:
            raise _unknown(method, name, spec)
        _check_value(method, name, value, param)
    if len(params) < len(spec):
        for name, param in spec.items():
            if param.required and name not in params:
                raise InvalidParams(f'{method}: missing required param "{name}"', field=name)


def _unknown(method: str, name: str, spec: Mapping[str, Param]) -> InvalidParams:
    if not spec:
        return InvalidParams(f'{method}: takes no params, got "{name}"', field=name)
    hint = difflib.get_close_matches(name, list(spec), n=1)
    did_you_mean = f'; did you mean "{hint[0]}"?' if hint else ""
    known = ", ".join(sorted(spec))
    return InvalidParams(
        f'{method}: unknown param "{name}"{did_you_mean} (known: {known})', field=name
    )


def _check_value(method: str, name: str, value: Any, param: Param) -> None:
    if value is None:
        if param.nullable or param.kind is ANY:
            return
        raise InvalidParams(f'{method}: "{name}" must not be null', field=name)
    kind = param.kind
    if kind is not ANY and not _is_kind(value, kind):
        expected = _JSON_NAMES.get(kind, str(kind)) if isinstance(kind, type) else str(kind)
        raise InvalidParams(
            f'{method}: "{name}" must be {expected}, got {_describe(value)}', field=name
        )
    if param.minimum is not None and type(value) in (int, float) and value < param.minimum:
        raise InvalidParams(
            f'{method}: "{name}" must be at least {param.minimum:g}, got {value}', field=name
        )
    if param.maximum is not None and type(value) in (int, float) and value > param.maximum:
        raise InvalidParams(
            f'{method}: "{name}" must be at most {_number(param.maximum)}, got {value}',
            field=name,
        )
    if param.choices is not None and value not in param.choices:
        allowed = ", ".join(f'"{c}"' if isinstance(c, str) else str(c) for c in param.choices)
        raise InvalidParams(
            f'{method}: "{name}" must be one of {allowed}, got {_describe(value)}', field=name
        )


def _number(bound: float) -> str:
    """A bound as people write it: ``3155760000000``, not ``3.15576e+12``."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _is_kind(value: Any, kind: Any) -> bool:
    actual = type(value)
    if kind is float:
        return actual is int or actual is float
    return actual is kind


def _describe(value: Any) -> str:
    name = _JSON_NAMES.get(type(value), type(value).__name__)
    if type(value) in (str, int, float):
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return f"{name} ({shown})"
    return name
