"""NDJSON framing: a byte stream in, complete lines out, with a hard cap on line length.

Rule: a line is never held in memory longer than ``max_line_bytes``. As soon as the bytes
of a line (everything before its ``\\n``, a trailing ``\\r`` included) exceed the cap, the
framer reports :data:`OVERSIZED` once and then drops the rest of that line as it streams
in, so a 100 MB line costs no more memory than one read chunk.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["OVERSIZED", "LineFramer", "Oversized"]


class Oversized(enum.Enum):
    """Marker in the framer's output: a line crossed the size cap and is being dropped."""

    OVERSIZED = "OVERSIZED"


OVERSIZED: Final = Oversized.OVERSIZED


class LineFramer:
    """Split a stream of chunks into lines.

    :meth:`feed` returns the complete, non-empty lines found so far, without their
    ``\\n``, and :data:`OVERSIZED` where a line was too long. A trailing ``\\r`` and
    whitespace-only lines are left to the reader: to JSON they are just whitespace.
    """

    __slots__ = ("_buffer", "_discarding", "_max")

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._max = max_line_bytes
        # The start of the current line, kept only while it is within the cap.
        self._buffer = bytearray()
        # True while skipping the rest of an oversized line up to its newline.
        self._discarding = False

    @property
    def buffered(self) -> int:
        """How many bytes of an unfinished line are held (for tests and metrics)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return out
            self._discarding = False
            data = data[newline + 1 :]
        if self._buffer:
            # Finish the line already started before splitting the rest in one C call.
            newline = data.find(b"\n")
            if newline < 0:
                self._extend_partial(data, out)
                return out
            if len(self._buffer) + newline > self._max:
                out.append(OVERSIZED)
            else:
                self._buffer += memoryview(data)[:newline]
                out.append(bytes(self._buffer))
            self._buffer.clear()
            data = data[newline + 1 :]
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(data) <= self._max:
            # Fast path: no line can be too long. Empty lines are dropped here; a trailing
            # "\r" and whitespace-only lines are JSON whitespace, which the reader ignores.
            out += filter(None, lines)
        else:
            for line in lines:
                if len(line) > self._max:
                    out.append(OVERSIZED)
                elif line:
                    out.append(line)
        if tail:
            self._extend_partial(tail, out)
        return out

    def feed_eof(self) -> list[bytes | Oversized]:
        """The stream ended: a last line without its ``\\n`` still counts."""
        out: list[bytes | Oversized] = []
        if self._buffer and not self._discarding:
            out.append(bytes(self._buffer))
        self._buffer.clear()
        self._discarding = False
        return out

    def _extend_partial(self, data: bytes, out: list[bytes | Oversized]) -> None:
        if len(self._buffer) + len(data) > self._max:
            # Report now, not at the newline: the client hears at once, and we stop buffering.
            self._buffer.clear()
            self._discarding = True
            out.append(OVERSIZED)
        else:
            self._buffer += data
