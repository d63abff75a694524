"""Fail-stop: whether the store still accepts changes, and why not once it does not.

A write or fsync that fails leaves the journal's end unknown to the caller that asked for
it, so the store refuses every later change until it is closed and reopened (the reopen
reads back exactly what is on disk). Closing refuses changes too. The state is guarded by
the group-commit mutex (``GroupCommit.mu``): every method here expects its caller to hold it.
"""

from __future__ import annotations

import logging

from sync_queue.errors import PersistenceError, QueueError

__all__ = ["FailStop"]

log = logging.getLogger("sync_queue.storage")


class FailStop:
    """The store's usability: failed (never cleared) or closed. Caller holds the mutex."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reason: str | None = None  # why the store failed, or None
        self.closed = False

    def fail(self, error: BaseException) -> None:
        """Enter fail-stop. Never cleared: reopening is the way out."""
        if self.reason is None:
            if isinstance(error, OSError):
                reason = f"{error.strerror or error} (errno {error.errno})"
            elif isinstance(error, QueueError):
                reason = error.message
            else:
                reason = f"{type(error).__name__}: {error}"
            self.reason = reason
            log.error("storage failed, refusing all changes until reopened: %s", reason)

    def error(self) -> PersistenceError:
        """What a refused caller gets once the store has failed."""
        return PersistenceError(
            f"the journal in {self.path} failed ({self.reason}); nothing since the last "
            "successful commit is acknowledged, and every change is refused until the store "
            "is reopened",
            reason=self.reason,
        )

    def check_usable(self) -> None:
        """Raise ``PersistenceError`` if the store has failed or is closed."""
        if self.reason is not None:
            raise self.error()
        if self.closed:
            raise PersistenceError(f"the store in {self.path} is closed")
