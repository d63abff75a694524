"""The I-JSON nesting guard: refuse messages nested deeper than the contract allows.

orjson parses up to 1024 levels and refuses deeper input as a *parse* error, but the
contract wants more than 512 levels to be an *invalid request* (-32600), and we want to
refuse it before parsing. Strategy, cheapest test first:

1. A line shorter than ``2 * (limit + 1)`` bytes cannot open ``limit + 1`` brackets and
   close them: nothing to check (every ordinary request takes this path).
2. Fewer than ``limit + 1`` opening brackets anywhere: cannot be too deep either.
3. Otherwise measure the real depth: drop string literals (brackets in strings do not
   nest), keep only bracket bytes, and take the running maximum of +1/-1. Every step is a
   C-level loop (``re.sub``, ``bytes.translate``, ``itertools.accumulate``), so even a
   16 MiB ``pushBatch`` costs milliseconds.
"""

from __future__ import annotations

import itertools
import re
from typing import Final

__all__ = ["MAX_NESTING", "nesting_exceeds", "shortest_too_deep"]

MAX_NESTING: Final = 512

# A JSON string literal, escapes included ("unrolled loop" form: no backtracking blow-up).
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
# +1 for an opening bracket, -1 for a closing one, indexed by byte value.
_STEP: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def shortest_too_deep(limit: int) -> int:
    """The length of the shortest JSON text nested deeper than ``limit``: ``[[...]]``."""
    return 2 * (limit + 1)


def nesting_exceeds(line: bytes, limit: int = MAX_NESTING) -> bool:
    """True if the JSON text in ``line`` nests arrays/objects more than ``limit`` deep.

    Exact for valid JSON; for malformed JSON it is a best effort (the parser reports those).
    """
    if len(line) < shortest_too_deep(limit):
        return False
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", line).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:
        return False
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets))) > limit
