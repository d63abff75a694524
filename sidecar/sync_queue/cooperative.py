"""Helpers for building or freeing a whole queue state in a background thread (compaction)
without stalling the threads that serve requests: they hand the GIL over often."""

from __future__ import annotations

import contextlib
import gc
import heapq
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .state import QueueState

__all__ = [
    "background_priority",
    "build_heap_yielding",
    "bulk_allocation",
    "give_back_memory",
    "release_yielding",
    "yielding",
]

T = TypeVar("T")


def yielding(items: Iterable[T], cooperative: bool, every: int = 256) -> Iterator[T]:
    """Iterate, letting other threads run every ``every`` items.

    Compaction folds a whole state in a background thread. A thread that wants the GIL back
    after a system call (every commit does a write) otherwise waits for the interpreter's
    switch interval each time: a convoy that stalls the queue for tens of milliseconds.
    ``sleep(0)`` hands the GIL over at once. Recovery on open runs alone and does not yield
    (under load ``sleep(0)`` also gives up the CPU).
    """
    if not cooperative:
        yield from items
        return
    for n, item in enumerate(items, 1):
        if not n % every:
            time.sleep(0)
        yield item


@contextlib.contextmanager
def bulk_allocation() -> Iterator[None]:
    """No cyclic GC while a whole state is built or encoded.

    Building hundreds of thousands of items makes the collector run again and again over
    everything already built (measured: 60 % of the time of loading a snapshot). Items hold
    no reference cycles, so nothing is lost by pausing it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_heap_yielding(heap: list[Any]) -> None:
    """``heapify`` in small steps: pushed one by one (O(1) each for entries that arrive
    nearly in order, as a snapshot's do), letting other threads run in between."""
    entries = heap.copy()
    heap.clear()
    for entry in yielding(entries, True, every=4096):
        heapq.heappush(heap, entry)


def release_yielding(state: QueueState) -> None:
    """Free a whole state a slice at a time, letting other threads run in between.

    Dropping the last reference to a large state frees every item in one go, which holds
    the GIL for as long as it takes (a third of a second for a million items). The indexes
    go first, then the items themselves.
    """
    containers: list[Any] = []
    for value in vars(state).values():
        if isinstance(value, list) and value and isinstance(value[0], list):
            containers += value  # the ready heaps, one per partition
        if isinstance(value, (list, dict, deque)):
            containers.append(value)
    containers.sort(key=lambda container: container is state.items)
    for container in containers:
        while container:
            if isinstance(container, list):
                del container[-1024:]
            else:
                pop = container.popitem if isinstance(container, dict) else container.pop
                for _ in range(min(len(container), 1024)):
                    pop()
            time.sleep(0)


def give_back_memory() -> None:
    """Return freed heap memory to the OS (glibc only: ``malloc_trim``).

    Freeing a whole state (the fold's, or what a long replay built and dropped) leaves its
    pages with the C allocator, which keeps the top of its heap and any page it cannot see
    is free: RSS stays at the peak. ``malloc_trim(0)`` releases every free page. Elsewhere
    (macOS, Windows, musl) the allocator's own policy applies and this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # only here: it costs start-up time that most runs do not need

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # the C library is loaded already


def background_priority() -> None:
    """Lower the OS scheduling priority of the calling (compaction) thread.

    On a busy machine the kernel then runs the threads that serve requests first, so a
    compaction competes less with them for the CPU (Linux applies ``nice`` per thread).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), 10))
