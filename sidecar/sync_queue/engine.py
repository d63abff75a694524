"""``Engine``: what both drivers of a ``QueueCore`` share, written once.

The threaded ``SyncQueue`` (``queue.py``: a lock around each call) and the stdio server's
dispatcher (``methods.py``: one thread, one commit per read batch) both drive the core
through an engine, which adds to it:

- the queue's time (``queue_time.QueueTime``): monotonic time elapsed from an anchor,
  re-based onto the wall clock when the two part (a journaled ``Rebase`` keeps every
  deadline's remaining time), so a wall clock that jumps cannot stretch or cut a lease;
- the commit, and the fail-stop: after a failed commit every later change is refused and the
  state is rebuilt from what is durable, once, so no refused change stays visible;
- the maintenance cadence (``run_maintenance``): housekeeping every ``cleanup_interval`` and the
  store's snapshot or compaction every ``persistence_interval``;
- events handed to one listener.

The store is reached only through the ``Storage`` protocol below: ``persistence.open_engine``
opens a store and an engine together, so nothing here imports the storage layer.

Not thread-safe by itself. The threaded driver passes its lock as ``guard``: the engine takes
it only where it runs on its own (``run_maintenance``, the rollback, encoding the live state); every
other method expects the caller to hold it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from .breaker import BreakerState
from .clock import Clock, SystemClock
from .config import QueueConfig
from .core import Journal, QueueCore
from .errors import DataDirUnusable, PersistenceError, QueueError, ShuttingDown
from .metrics import Metrics
from .queue_time import QueueTime
from .state import Event, QueueState

__all__ = ["Engine", "Health", "Storage"]

log = logging.getLogger(__name__)


class Storage(Protocol):
    """What an engine needs from its store (``persistence.StorePersistence``)."""

    @property
    def journal(self) -> Journal | None: ...

    @property
    def interval_ms(self) -> int:
        """Between snapshots or compactions (``persistence_interval``)."""
        ...

    @property
    def failure(self) -> str | None: ...

    @property
    def quarantined(self) -> Sequence[dict[str, Any]]: ...

    def encode(self, state: QueueState) -> bytes: ...

    def checkpoint(self, encode_live: Callable[[], bytes]) -> None: ...

    def flush_async(self, encode_live: Callable[[], bytes]) -> Future[None]: ...

    def close(self, encode_live: Callable[[], bytes]) -> None: ...

    def durable_state(self) -> QueueState: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Health:
    healthy: bool
    breaker: BreakerState
    paused: bool
    reason: str | None


class Engine:
    """A core with its time, its commit and fail-stop, its store's cadence; see above."""

    def __init__(
        self,
        config: QueueConfig,
        state: QueueState | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        journal: Journal | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        if storage is not None and journal is None:
            journal = storage.journal
        self.core = QueueCore(config, state, journal=journal, rng=rng)
        self.time = QueueTime(clock or SystemClock())
        self.guard: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        self.on_event: Callable[[Event], None] | None = None
        self.on_change: Callable[[], None] = _nothing  # under the guard: wake waiting pops
        self.closed = False
        self._fail_stop: PersistenceError | None = None
        # After a fail-stop the state is rebuilt once from what is durable (roll_back).
        self._rollback_lock = threading.Lock()
        self.rolled_back = False
        self.state_lost: str | None = None  # why that rebuild failed: reads refused
        self._cleanup_ms = config.timings().cleanup_interval_ms
        self._next_cleanup = self._next_persist = self.time.clock.monotonic_ms()

    def start(self) -> None:
        """Anchor the queue's time and release items a crash left processing; committed.
        ``DataDirUnusable`` if that cannot be written (the store is then released)."""
        try:
            try:
                self.time.start(self.core)
                if self.storage is not None:
                    self.core.release_interrupted(self.time.now(self.core.state.last_t))
                self.commit(self.core.ticket)
            except PersistenceError as exc:
                # What was on disk was read; writing the first records failed (a full disk,
                # an I/O error): the directory cannot be used, its data is not corrupt.
                raise DataDirUnusable(
                    f"cannot write to the data directory after opening it: {exc.message}"
                ) from exc
        except BaseException:
            if self.storage is not None:  # release the directory: nothing was served
                with contextlib.suppress(QueueError):
                    self.storage.close(self.encode_live)
            raise

    # ---------------------------------------------------------------- time

    def now(self) -> int:
        """The queue's time (no re-base): for reads that only look."""
        return self.time.now(self.core.state.last_t)

    def begin_change(self) -> int:
        """Checks and catch-up shared by every change; returns the time of the change."""
        if self.closed:
            raise ShuttingDown("the queue is shutting down")
        failure = self.failure()
        if failure is not None:
            raise PersistenceError(
                "storage failed earlier and the queue refuses changes until it is reopened: "
                f"{failure}"
            )
        now = self.time.for_change(self.core)
        self.core.advance(now)
        return now

    def before_read(self) -> None:
        """Outside the guard, before a read: if storage failed and the live state may still
        hold the refused group, do (or wait for) the rollback first. A caller refused up
        front (``begin_change``) must not read the refused changes of callers still waiting
        for that rollback."""
        if not self.rolled_back and self.failure() is not None:
            self.roll_back()

    def begin_read(self) -> int:
        """Under the guard: catch up with time (a lease ran out, an item expired: records
        that are committed like any change) and return the queue's time."""
        if self.state_lost is not None:
            raise PersistenceError(self.state_lost)
        if not self.closed and self.failure() is None:
            now = self.time.for_change(self.core)
            self.core.advance(now)
            return now
        return self.now()

    # --------------------------------------------------------- durability

    def failure(self) -> str | None:
        """Why storage failed (every change is refused until reopened), or None."""
        if self._fail_stop is not None:
            return self._fail_stop.message
        if self.storage is not None:
            return self.storage.failure
        return None

    def commit(self, ticket: int) -> None:
        """Make everything up to ``ticket`` durable. ``PersistenceError`` if that fails:
        then nothing since the last good commit may be acknowledged, and the state has been
        rolled back to what is durable before this returns."""
        journal = self.core.journal
        if journal is None or not ticket:
            return
        try:
            journal.commit(ticket)
        except PersistenceError as exc:
            self._fail_stop = exc
            self.roll_back()  # before the error reaches anyone: no later read sees the group
            raise

    def roll_back(self) -> None:
        """The journal failed: every record after its last good write is refused (its
        callers get ``PersistenceError``), yet those changes were applied in memory. Replace
        the state with the one rebuilt from the directory (what a reopen recovers), once;
        callers of the failed group wait here, so no read after their error shows it."""
        storage = self.storage
        if storage is None or storage.journal is None:
            return
        with self._rollback_lock:
            if self.rolled_back:
                return
            try:
                state: QueueState | None = storage.durable_state()
            except Exception as exc:
                # Serving the refused changes would be a lie: refuse reads as well.
                reason = exc.message if isinstance(exc, QueueError) else repr(exc)
                log.error("cannot rebuild the durable state after a storage failure: %s", reason)
                state = None
                lost = (
                    "storage failed and the durable state could not be read back "
                    f"({reason}); reopen the queue"
                )
            with self.guard:
                if state is None:
                    self.state_lost = lost
                else:
                    self.core.replace_state(state)
                    self.time.reanchor(state.last_t)
                self.rolled_back = True
                self.on_change()  # waiting pops look at the rebuilt state

    def deliver_events(self) -> None:
        """Hand the events raised so far to ``on_event`` (outside the guard, so a listener
        may call the queue); a listener's exception is logged, never raised."""
        events = self.core.take_events()
        listener = self.on_event
        if listener is None:
            return
        for event in events:
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the queue
                log.exception("on_event listener failed")

    # ---------------------------------------------------------- cadence

    def run_maintenance(self, force: bool = False) -> int:
        """Run the housekeeping and storage work that is due; ms until more is.

        Housekeeping (every ``cleanup_interval``, or now if ``force``): catch up with time,
        record the queue's time when idle (so a crash loses at most this much of it), tidy
        the indexes. Storage (every ``persistence_interval``): a snapshot, or a compaction if
        the journal grew.
        """
        mono = self.time.clock.monotonic_ms()  # the injected clock: tests skip time
        if force or mono >= self._next_cleanup:
            self._next_cleanup = mono + self._cleanup_ms
            with contextlib.suppress(QueueError):  # fail-stop or shutdown: seen by callers
                self._housekeep()
        next_due = self._next_cleanup
        storage = self.storage
        if storage is not None:
            if not self.rolled_back and storage.failure is not None:
                # Failed with no commit of ours to see it (the periodic fsync): records
                # applied since the last write are not durable and never will be.
                self.roll_back()
            if mono >= self._next_persist:
                self._next_persist = mono + storage.interval_ms
                with contextlib.suppress(QueueError):
                    storage.checkpoint(self.encode_live)
            next_due = min(next_due, self._next_persist)
        return max(0, next_due - self.time.clock.monotonic_ms())

    def _housekeep(self) -> None:
        with self.guard:
            if self.closed or self.failure() is not None:
                return
            now = self.time.for_change(self.core)
            self.core.advance(now)
            self.core.record_time(now, idle_only=True)
            self.core.state.compact_indexes()
            ticket = self.core.ticket
            self.on_change()
        self.commit(ticket)
        self.deliver_events()

    # ------------------------------------------------------------ reads

    def metrics(self, now: int) -> Metrics:
        metrics = self.core.metrics(now)
        if self.storage is not None:
            metrics.storage.update(self.storage.stats())
        return metrics

    def health(self) -> Health:
        """Under the guard, after ``begin_read`` unless ``state_lost``."""
        state = self.core.state
        breaker, paused = state.breaker.state, state.paused
        if self.state_lost is not None:  # reads are refused, but health says why
            return Health(False, breaker, paused, f"storage failed: {self.state_lost}")
        failure = self.failure()
        if failure is not None:
            return Health(False, breaker, paused, f"storage failed: {failure}")
        if breaker != "closed":
            return Health(False, breaker, paused, f"circuit breaker is {breaker}")
        return Health(True, breaker, paused, None)

    @property
    def quarantined(self) -> Sequence[dict[str, Any]]:
        """What opening set aside: damaged journal blocks moved to quarantine files
        (``file``, ``offset``, ``bytes``, ``quarantine``, ``reason``); empty if none."""
        return [] if self.storage is None else self.storage.quarantined

    # -------------------------------------------------------- lifecycle

    def encode_live(self) -> bytes:
        assert self.storage is not None
        with self.guard:
            return self.storage.encode(self.core.state)

    def flush_async(self) -> Future[None]:
        """A future that completes when everything committed so far is durable and
        compacted into a snapshot (or fails with the error)."""
        if self.storage is not None:
            try:
                return self.storage.flush_async(self.encode_live)
            except QueueError as exc:  # failed or closed store: the future says so
                failed: Future[None] = Future()
                failed.set_exception(exc)
                return failed
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def close(self) -> None:
        """Under the guard: refuse changes from now on, after recording the queue's time:
        the next open measures the wall clock against the time the queue closed, not
        against its last change, so idle time before the close is neither lost for
        retention nor given back to a deadline when the wall clock turns out to be behind."""
        if self.closed:
            return
        if self.failure() is None:
            with contextlib.suppress(QueueError):  # storage failing: nothing more to save
                self.core.record_time(self.now())
        self.closed = True

    def shutdown(self) -> None:
        """``close`` and ``release``, for a single-threaded driver."""
        with self.guard:
            self.close()
        self.release()

    def release(self) -> None:
        """Outside the guard, after ``close``: persist everything, release the directory."""
        if self.storage is not None:
            self.storage.close(self.encode_live)


def _nothing() -> None:
    pass
