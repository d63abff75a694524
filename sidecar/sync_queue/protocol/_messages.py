"""What the reader makes of a line: plain, immutable values.

A line becomes exactly one of :class:`Request`, :class:`Notification`, :class:`Batch` or
:class:`Rejected`. A batch holds the same kinds (never a nested batch).

Treat them as immutable. They are not ``frozen=True`` on purpose: a frozen dataclass costs
four times as much to create (``object.__setattr__`` per field), and one is made per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import QueueError

__all__ = ["Batch", "Call", "Id", "Message", "Notification", "Rejected", "Request"]

# A JSON-RPC id: the value exactly as parsed (an int stays an int, a float a float).
Id: TypeAlias = str | int | float | None


@dataclass(slots=True)
class Request:
    """A call that wants a reply."""

    id: Id
    method: str
    params: dict[str, Any]


@dataclass(slots=True)
class Notification:
    """A call without an id: it is applied, but never answered, not even with an error."""

    method: str
    params: dict[str, Any]


@dataclass(slots=True)
class Rejected:
    """Input refused before it reached a method; ``reply`` is False for a notification,
    which gets no answer even when it is wrong."""

    id: Id
    error: QueueError
    reply: bool = True


Call: TypeAlias = Request | Notification | Rejected


@dataclass(slots=True)
class Batch:
    """A JSON array of calls; its replies go out together, as one array, in member order."""

    members: tuple[Call, ...]


Message: TypeAlias = Request | Notification | Rejected | Batch
