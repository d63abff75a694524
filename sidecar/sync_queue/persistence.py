"""Binds the engine to the storage layer: op records to the journal, state to snapshots.

The engine knows no files and the storage knows no queue (docs/architecture.md, rule 3);
this module is the seam. It encodes each operation record for the journal, gives the store
a ``fold`` that builds a snapshot from the previous snapshot and closed journal segments
(in the store's background thread, through the engine's own apply function, never from live
memory), and recovers a queue on open: newest snapshot, then the journal replayed through
``QueueState.apply``.

A little over 400 lines: the snapshot blob's codec (both layouts: decoded payloads, and the
fold's JSON-bytes payloads) sits beside its only users, recovery and the fold, whose memory
and speed it is written for.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import orjson

from .clock import Clock
from .config import QueueConfig
from .cooperative import (
    background_priority,
    build_heap_yielding,
    bulk_allocation,
    give_back_memory,
    release_yielding,
    yielding,
)
from .engine import Engine
from .errors import InvalidParams, PersistenceError, QueueError
from .ops import Op, decode_op, encode_op
from .state import QueueState
from .storage import Recovery, Store
from .storage.fileio import FileIO

__all__ = [
    "StoreJournal",
    "StorePersistence",
    "decode_state",
    "encode_state",
    "open_engine",
    "open_store",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


ITEMS_PER_LINE = 256
# A replay of more journal records than this on open returns the memory it freed to the OS.
TRIM_AFTER_RECORDS = 10_000


def encode_state(state: QueueState, cooperative: bool = False) -> bytes:
    """A snapshot blob: a header line, then the item records, ``ITEMS_PER_LINE`` a line.

    Small ``orjson`` calls rather than one over the whole state, each line written as it is
    made (no list of every record, no ``join`` at the end): a single C call holds the GIL
    for its whole run, and over a large state that would stall the queue's threads while
    compaction folds in the background. ``BytesIO.getvalue()`` hands over its buffer
    without a copy. (One call per item costs more in call overhead.)
    """
    out = io.BytesIO()
    out.write(orjson.dumps(state.snapshot_header()))
    if not state.indexed:  # payloads held as JSON bytes (the fold's state)
        return _encode_raw_payloads(state, out, cooperative)
    chunk: list[Any] = []
    for item in yielding(state.iter_items(), cooperative, every=ITEMS_PER_LINE):
        chunk.append(item.to_record())
        if len(chunk) == ITEMS_PER_LINE:
            out.write(b"\n" + orjson.dumps(chunk))
            chunk = []
    if chunk:
        out.write(b"\n" + orjson.dumps(chunk))
    return out.getvalue()


def _encode_raw_payloads(state: QueueState, out: io.BytesIO, cooperative: bool) -> bytes:
    """``encode_state``'s lines for a state whose payloads are JSON bytes: each record is
    encoded with a ``null`` payload (the second field, after the id) and the payload's
    bytes are put in its place, so the blob is byte for byte what ``encode_state`` writes
    for the same items holding decoded payloads."""
    dumps = orjson.dumps
    line: list[bytes] = []
    for item in yielding(state.iter_items(), cooperative, every=ITEMS_PER_LINE):
        record = item.to_record()
        payload, record[1] = record[1], None
        body = dumps(record)
        head = 1 + len(dumps(record[0]))  # '[' and the id
        line.append(b"".join((body[:head], b",", payload, body[head + 5 :])))  # 5: ',null'
        if len(line) == ITEMS_PER_LINE:
            out.write(b"\n[" + b",".join(line) + b"]")
            line = []
    if line:
        out.write(b"\n[" + b",".join(line) + b"]")
    return out.getvalue()


def _lines(blob: bytes) -> Iterator[memoryview]:
    """The lines of ``blob`` as views: ``split`` would copy the whole blob in one call."""
    view = memoryview(blob)
    start, size = 0, len(blob)
    while True:
        end = blob.find(b"\n", start)
        if end < 0:
            yield view[start:size]
            return
        yield view[start:end]
        start = end + 1


def decode_state(
    config: QueueConfig,
    blob: bytes | None,
    cooperative: bool = False,
    file: str | None = None,
    indexed: bool = True,
) -> QueueState:
    """The state a snapshot blob holds (``indexed``: see ``QueueState.indexed``)."""
    if blob is None:
        return QueueState(config, indexed)
    try:
        lines = _lines(blob)
        header = orjson.loads(next(lines))
        chunks = map(orjson.loads, yielding(lines, cooperative, every=1))
        state = QueueState.from_snapshot(
            config,
            header,
            itertools.chain.from_iterable(chunks),
            build_heap=build_heap_yielding if cooperative else heapq.heapify,
            indexed=indexed,
        )
        if header.get("count") != len(state.items):
            raise ValueError(
                f"the header says {header.get('count')} items, "
                f"the snapshot holds {len(state.items)}"
            )
        return state
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        what = f"the snapshot {file}" if file else "the snapshot"
        raise PersistenceError(
            f"{what} does not hold a queue state: {exc}; nothing was changed",
            **({"file": file, "offset": 0} if file else {}),
        ) from exc


# Errors a record that passed its checksum but makes no sense can raise while decoded or
# applied. apply() itself is only reached after check(), so these are a last resort.
_BAD_RECORD = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def replay(
    state: QueueState,
    records: Iterator[bytes],
    cooperative: bool = False,
    locate: Callable[[int], tuple[str, int] | None] | None = None,
    first_seq: int | None = None,
) -> int:
    """Apply journal records to ``state``, checking each against it; returns how many.

    Record ``n`` (from 0) has sequence number ``first_seq + n`` (if known); ``locate(seq)``
    names the file and block offset it came from. A record that is not a valid operation, or not
    legal in the state it applies to (``QueueState.check``), raises ``PersistenceError``
    naming them: recovery refuses rather than crash or guess.
    """
    count = 0
    for record in yielding(records, cooperative):
        try:
            op = decode_op(record)
            state.check(op)
        except _BAD_RECORD as exc:
            raise _bad_record(first_seq, count, locate, "is not a valid operation", exc) from exc
        try:
            state.apply(op)
        except _BAD_RECORD as exc:  # pragma: no cover - check() should have refused it
            raise _bad_record(first_seq, count, locate, "cannot be applied", exc) from exc
        count += 1
    return count


def _bad_record(
    first_seq: int | None,
    index: int,
    locate: Callable[[int], tuple[str, int] | None] | None,
    what: str,
    exc: Exception,
) -> PersistenceError:
    detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    if first_seq is None:
        return PersistenceError(f"journal record {index + 1} after the snapshot {what}: {detail}")
    seq = first_seq + index
    where = locate(seq) if locate is not None else None
    if where is None:
        return PersistenceError(f"journal record {seq} {what}: {detail}", seq=seq)
    file, offset = where
    return PersistenceError(
        f"journal segment {file}, block at offset {offset}: record {seq} {what} "
        f"({detail}); nothing was changed",
        file=file,
        offset=offset,
        seq=seq,
    )


def rebuild(
    config: QueueConfig, recovery: Recovery, freeze_gc: bool = False
) -> tuple[QueueState, int]:
    """The state a recovery holds: its snapshot, then its records replayed and checked.

    Raises ``PersistenceError`` naming file, offset and sequence number for the first thing
    that is not a valid queue state or operation. Reads only. ``freeze_gc``: see
    ``cooperative.bulk_allocation``.
    """
    with bulk_allocation(freeze_gc):
        state = decode_state(config, recovery.snapshot, file=recovery.snapshot_file)
        state.defer_heaps()
        count = replay(
            state, recovery.records(), locate=recovery.locate, first_seq=recovery.snapshot_seq + 1
        )
        state.build_heaps()
    if count > TRIM_AFTER_RECORDS:
        # Replay built and freed what the journal's changes went through (a million
        # pushes, then their drops): hand the freed heap back to the OS.
        give_back_memory()
    return state, count


def make_fold(config: QueueConfig) -> Callable[[bytes | None, Iterator[bytes]], bytes]:
    def fold(previous: bytes | None, records: Iterator[bytes]) -> bytes:
        background_priority()
        with bulk_allocation():
            state = decode_state(config, previous, cooperative=True, indexed=False)
            replay(state, records, cooperative=True)
            blob = encode_state(state, cooperative=True)
            release_yielding(state)
        give_back_memory()  # the folded state is freed: do not keep its pages
        return blob

    return fold


def _encode(op: Op) -> bytes:
    try:
        return encode_op(op)
    except TypeError as exc:
        raise InvalidParams(f"payload: cannot be stored as JSON: {exc}", field="payload") from exc


class StoreJournal:
    """The queue's ``Journal`` over a ``Store``: one encoded record per operation."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(self, op: Op) -> int:
        return self.store.append((_encode(op),))

    def append_all(self, ops: Sequence[Op]) -> int:
        return self.store.append([_encode(op) for op in ops])

    def commit(self, ticket: int) -> None:
        self.store.commit(ticket)


class StorePersistence:
    """An engine's ``Storage``: what it does with its store besides journaling.

    - ``checkpoint``: called by ``Engine.run_maintenance`` every ``persistence_interval``: in
      ``"snapshot"`` mode it writes a snapshot of the live state (the seed's behaviour); in
      the journal modes it asks the store for a background compaction if the journal grew.
    - ``flush_async``: a future for everything so far durable and compacted (the fold runs
      in the store's background thread).
    - ``close``: a last snapshot (``"snapshot"`` mode) or commit, then release the directory.
    """

    def __init__(self, store: Store, config: QueueConfig) -> None:
        self.store = store
        self.config = config
        self.journal: StoreJournal | None = (
            None if config.durability == "snapshot" else StoreJournal(store)
        )
        self.interval_ms = config.timings().persistence_interval_ms
        self._compacted_through = store.stats().last_seq
        self._lock = threading.Lock()

    def checkpoint(self, encode_live: Callable[[], bytes]) -> None:
        if self.journal is None:
            self.store.write_snapshot(encode_live())
            return
        last_seq = self.store.stats().last_seq
        if last_seq > self._compacted_through:
            self._compacted_through = last_seq
            self.store.compact(wait=False)

    def encode(self, state: QueueState) -> bytes:
        return encode_state(state)

    @property
    def quarantined(self) -> Sequence[dict[str, Any]]:
        return [q.to_dict() for q in self.store.quarantined]

    def flush_async(self, encode_live: Callable[[], bytes]) -> Future[None]:
        """A future that completes when everything appended so far is in a snapshot.

        In ``"snapshot"`` mode the snapshot of the live state is written before this
        returns (it needs the queue's lock throughout); in the journal modes the store's
        background thread folds the journal, so the caller's thread is free meanwhile.
        """
        if self.journal is None:
            done: Future[None] = Future()
            try:
                with self._lock:
                    self.store.write_snapshot(encode_live())
            except QueueError as e:
                done.set_exception(e)
            else:
                done.set_result(None)
            return done
        through = self.store.stats().last_seq
        future = self.store.compact_soon()

        def compacted(f: Future[None]) -> None:
            if f.exception() is None:
                with self._lock:
                    self._compacted_through = max(self._compacted_through, through)

        future.add_done_callback(compacted)
        return future

    def close(self, encode_live: Callable[[], bytes]) -> None:
        try:
            if self.journal is None and self.store.failure is None:
                self.store.write_snapshot(encode_live())
        finally:
            self.store.close()

    def durable_state(self) -> QueueState:
        """After a fail-stop: the state a reopen will recover, rebuilt from the directory
        (newest snapshot, then the journal through the last group written before the
        failure); the queue swaps it in so no refused change stays visible."""
        state, _ = rebuild(self.config, self.store.read_durable())
        return state

    def stats(self) -> dict[str, Any]:
        s = self.store.stats()
        return {
            "bytesOnDisk": s.bytes_on_disk,
            "journalBytes": s.journal_bytes,
            "lastSnapshotAt": s.last_snapshot_at,
        }

    @property
    def failure(self) -> str | None:
        return self.store.failure


def open_store(
    config: QueueConfig, io: FileIO | None = None, freeze_gc: bool = False
) -> tuple[QueueState, StorePersistence]:
    """Open (or create) the data directory, recover the state, and return both.

    Raises ``Locked`` if another process still owns the directory after
    ``config.lock_timeout``, ``DataDirUnusable`` if it cannot be used at all, and
    ``PersistenceError``,
    ``EncryptionError`` or ``CompressionError`` (naming file and offset) if what is on disk
    cannot be read; in every such case nothing on disk is changed.
    """
    assert config.persistence_path is not None
    key = config.encryption_key if config.enable_encryption else None
    rebuilt: list[tuple[QueueState, int]] = []
    store = Store.open(
        config.persistence_path,
        durability=config.durability,
        compression_level=config.compression_level if config.enable_compression else 0,
        key=key,
        fsync_interval=config.sync_interval,
        fold=make_fold(config),
        io=io,
        lock_timeout=config.lock_timeout,
        # Replayed before the store changes anything on disk (a torn tail, leftovers): an
        # impossible record refuses the open with every file as it was.
        check=lambda recovery: rebuilt.append(rebuild(config, recovery, freeze_gc)),
    )
    try:
        recovery = store.take_recovery()
        state, count = rebuilt.pop()
        if count > TRIM_AFTER_RECORDS and count > 2 * len(state.items):
            state = _repack(config, state, freeze_gc)
        log.info(
            "recovered %d items from %s (snapshot through record %d, %d journal records replayed)",
            len(state.items),
            config.persistence_path,
            recovery.snapshot_seq,
            count,
        )
        return state, StorePersistence(store, config)
    except BaseException:
        with contextlib.suppress(QueueError):
            store.close()
        raise


def _repack(config: QueueConfig, state: QueueState, freeze_gc: bool = False) -> QueueState:
    """The same state in freshly allocated memory, after a replay that churned.

    A replay of many more records than the items it leaves (a million pushed, popped,
    completed and dropped) leaves the survivors scattered over the memory the churn used:
    the allocator can return none of it, so RSS stays at the replay's peak. Encoded, freed
    and decoded again, the state occupies only what it needs (the cost is one snapshot
    load of the small state that remains)."""
    blob = encode_state(state)
    del state
    give_back_memory()
    with bulk_allocation(freeze_gc):
        return decode_state(config, blob)


def open_engine(
    config: QueueConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    file_io: FileIO | None = None,
    freeze_gc: bool = False,
) -> Engine:
    """Open the data directory (if ``config`` names one) and an engine on what it holds,
    started (its time anchored, interrupted items released): the one place a store and a
    core are put together.

    ``file_io`` is the storage's I/O seam, for tests that inject failing writes;
    ``freeze_gc`` freezes the recovered objects (``cooperative.bulk_allocation``). Raises what
    :func:`open_store` raises, and ``DataDirUnusable`` if the first records cannot be written.
    """
    if config.persistence_path is None:
        engine = Engine(config, clock=clock, rng=rng)
    else:
        state, persistence = open_store(config, file_io, freeze_gc)
        engine = Engine(config, state, clock=clock, rng=rng, storage=persistence)
    engine.start()
    return engine
