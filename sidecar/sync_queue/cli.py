"""The command line: ``sync-queue-sidecar [serve] ...``, ``inspect`` and ``verify``.

Exit codes (also in ``--help`` and the README):

    0   clean stop (stdin EOF, SIGTERM, SIGINT, ``shutdown``); verify found no error
    1   the queue could not be persisted on the way out, or verify found an error
    2   bad command line, config file or key
    3   the data directory is owned by another process (``Locked``)
    4   the data on disk cannot be read (corrupt, wrong or missing key); nothing was changed
    5   the data directory cannot be used (cannot be created, read or written: permissions,
        read-only file system, I/O error; or unsafe: a LOCK symlink); nothing was changed
    128 + n   stopped at once by a second signal n (the journal is still consistent)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
from typing import Any, NoReturn

from .cli_config import UsageError, build_config, build_parser, read_key
from .cli_inspect import inspect, verify
from .clock import clock_from_env
from .config import QueueConfig
from .errors import (
    CompressionError,
    DataDirUnusable,
    EncryptionError,
    Locked,
    PersistenceError,
)

__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_DATA_DIR",
    "EXIT_FAILED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_config",
    "main",
    "read_key",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_BAD_DATA = 4
EXIT_DATA_DIR = 5

log = logging.getLogger("sync_queue")


def _parser() -> argparse.ArgumentParser:
    """The command line's parser (``cli_config``), its ``--help`` ending with the exit codes."""
    return build_parser(__doc__.split("\n\n", 1)[1] if __doc__ else None)


def open_std_streams() -> None:
    """Give a closed fd 0, 1 or 2 (``2>&-``) /dev/null, before anything else is opened.

    Otherwise the next file opened (the lock, a journal segment) would get that number,
    and whatever writes to "stderr" would write into it. Python leaves ``sys.stderr`` (or
    ``sys.stdout``) ``None`` for a closed descriptor; it gets a stream on /dev/null, so
    logging and the last flush work and the exit status stays what the table says.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    # These streams live as long as the process (and leave the descriptors open).
    if sys.stdout is None:
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(  # noqa: SIM115
            2, "w", buffering=1, errors="backslashreplace", closefd=False
        )


def main(argv: list[str] | None = None) -> int:
    open_std_streams()
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = build_config(args)
        if args.command == "inspect":
            inspect(config, args)
            return EXIT_OK
        if args.command == "verify":
            return EXIT_OK if verify(config, args) else EXIT_FAILED
        return serve(config)
    except UsageError as exc:
        return _fail(EXIT_USAGE, str(exc))
    except Locked as exc:
        return _fail(EXIT_LOCKED, f"Locked: {exc.message}")
    except DataDirUnusable as exc:
        return _fail(EXIT_DATA_DIR, f"{exc.kind}: {exc.message}")
    except (PersistenceError, EncryptionError, CompressionError) as exc:
        return _fail(EXIT_BAD_DATA, f"{exc.kind}: {exc.message}")
    except KeyboardInterrupt:
        return 128 + 2


def _fail(status: int, message: str) -> int:
    # A stderr nobody reads any more (a broken pipe) must not turn the status into 1.
    with contextlib.suppress(OSError, ValueError):
        print(f"sync-queue-sidecar: {message}", file=sys.stderr, flush=True)
    return status


# Allocations between two young-generation collections of the cyclic GC (CPython's default
# is 700). The sidecar's objects (items, entries, requests, replies) hold no reference cycles:
# reference counting frees them the moment they are dropped, and every collection finds
# nothing in them. At 700, a pipelined stream of pushes and pops ran a young collection every
# ~50 requests, and the older generations (which walk every retained item) followed: 25-37 %
# of the time. At 50,000 the cyclic garbage that can wait (a caught exception's traceback,
# say) is bounded to that many objects, and collections take a few % of the time.
GC_YOUNG_THRESHOLD = 50_000


def tune_cyclic_gc() -> None:
    """For a process whose live objects are the queue's: fewer cyclic-GC passes (see above).
    The older generations keep their ratios, so they also run 70x less often."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve(config: QueueConfig) -> NoReturn:
    from .methods import QueueDispatcher
    from .persistence import open_engine
    from .server import StdioServer, claim_stdio

    # Protect the protocol stream before anything can print (recovery may log or warn).
    in_fd, out_fd = claim_stdio()
    try:
        clock = clock_from_env(os.environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # The recovered items live as long as the process: keep the cyclic GC from walking them
    # again and again (it found nothing to free in them, they hold no cycles). Frozen as
    # soon as they are built (freeze_gc), before the first collection would walk them all.
    engine = open_engine(config, clock=clock, freeze_gc=True)
    gc.freeze()
    tune_cyclic_gc()
    recovered: dict[str, Any] = dict(engine.metrics(engine.now()).by_status)
    if engine.quarantined:  # only then: the usual ``recovered`` stays counts by status
        recovered["quarantined"] = list(engine.quarantined)
    data_dir = None if config.persistence_path is None else str(config.persistence_path)
    dispatcher = QueueDispatcher(engine, data_dir=data_dir, recovered=recovered)
    try:
        status = StdioServer(dispatcher, in_fd=in_fd, out_fd=out_fd).run()
    finally:
        if not engine.closed:
            engine.shutdown()
    # Everything is persisted and every reply written. Leave now: the interpreter's own
    # teardown (freeing a large queue) takes a while, and during it Python has already put
    # the default signal handlers back, so a second SIGTERM would kill the process by the
    # signal instead of exiting with 128 + n at once.
    logging.shutdown()
    with contextlib.suppress(OSError, ValueError):  # a stderr nobody reads: same status
        sys.stderr.flush()
    os._exit(status)
