"""The one exception hierarchy of sync-queue.

Every error the queue raises on purpose is a :class:`QueueError`. Each class carries the
JSON-RPC code of the wire contract (``docs/protocol.md`` §5) and its ``kind`` (the
class name), so the protocol layer turns any of them into a wire error in one place.
Messages are written for a person who has to act on them.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CapacityExceeded",
    "CompressionError",
    "DataDirUnusable",
    "DuplicateItem",
    "EncryptionError",
    "InvalidParams",
    "InvalidState",
    "ItemNotFound",
    "Locked",
    "PersistenceError",
    "QueueError",
    "ShuttingDown",
]


class QueueError(Exception):
    """Base of every error the queue raises on purpose.

    ``code`` is the JSON-RPC error code; ``kind`` the name the wire carries in ``data.kind``;
    ``data`` optional extra fields for the wire error's ``data`` object.
    """

    code: ClassVar[int] = -32603

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, Any] = data

    @property
    def kind(self) -> str:
        return type(self).__name__


class InvalidParams(QueueError, ValueError):
    """A caller passed a value the queue cannot accept (JSON-RPC ``-32602``)."""

    code = -32602


class CapacityExceeded(QueueError):
    code = -32001


class ItemNotFound(QueueError):
    code = -32002


class ShuttingDown(QueueError):
    code = -32003


class Locked(QueueError):
    code = -32004


class DuplicateItem(QueueError):
    code = -32005


class PersistenceError(QueueError):
    code = -32006


class DataDirUnusable(PersistenceError):
    """The data directory cannot be used at all: it cannot be created, opened, listed, read
    or written (permissions, a read-only file system, an I/O error), or it is unsafe (a
    ``LOCK`` symlink, a mode that cannot be restricted to its owner). Nothing in it was
    found corrupt, and nothing was changed. The sidecar exits 5 on it, not 4."""


class EncryptionError(QueueError):
    code = -32007


class CompressionError(QueueError):
    code = -32008


class InvalidState(QueueError):
    code = -32009
