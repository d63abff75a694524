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
import base64
import binascii
import contextlib
import gc
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from . import __version__
from .clock import clock_from_env
from .config import KEY_BYTES, QueueConfig
from .durations import MAX_DURATION_MS
from .errors import (
    CompressionError,
    DataDirUnusable,
    EncryptionError,
    InvalidParams,
    Locked,
    PersistenceError,
)

if TYPE_CHECKING:  # storage is only imported by the commands that read a directory
    from .state import QueueState
    from .storage.recovery import Plan

__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_DATA_DIR",
    "EXIT_FAILED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_BAD_DATA = 4
EXIT_DATA_DIR = 5

APP_NAME = "sync-queue"
KEY_ENV = "SYNC_QUEUE_KEY"
DATA_DIR_ENV = "SYNC_QUEUE_DATA_DIR"
LOCK_TIMEOUT_ENV = "SYNC_QUEUE_LOCK_TIMEOUT_MS"
DEFAULT_LOCK_TIMEOUT_MS = 2000

log = logging.getLogger("sync_queue")


class UsageError(Exception):
    """A bad flag, config file or key: exit 2 with the message."""


def default_data_dir() -> Path:
    """``SYNC_QUEUE_DATA_DIR``, else the platform's per-user app data directory."""
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes. A subcommand's copy has no defaults (SUPPRESS), so
    an option given before the subcommand (``--memory inspect``) is not reset by it."""
    common = argparse.ArgumentParser(
        add_help=False, argument_default=None if defaults else argparse.SUPPRESS
    )
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"the data directory (default: ${DATA_DIR_ENV}, else the "
        "platform's per-user app data directory)",
    )
    where.add_argument(
        "--memory", action="store_true", help="keep the queue in memory only (tests, benchmarks)"
    )
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of QueueConfig options (durations in seconds; never the key)",
    )
    common.add_argument(
        "--key-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the 32-byte encryption key, raw or base64 (or set ${KEY_ENV}, base64)",
    )
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="stderr log level (default: info)",
        default="info" if defaults else argparse.SUPPRESS,
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common, sub_common = _common_options(defaults=True), _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="sync-queue-sidecar",
        description="A persistent work queue speaking JSON-RPC 2.0 over stdin/stdout "
        "(newline-delimited). Commands: serve (default), inspect, verify.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"sync-queue {__version__}")
    _lock_timeout_option(parser, defaults=True)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser(
        "serve", parents=[sub_common], help="serve the protocol on stdio (default)"
    )
    _lock_timeout_option(serve, defaults=False)
    inspect = sub.add_parser(
        "inspect",
        parents=[sub_common],
        help="counts, sizes and a listing of a data directory's items",
    )
    inspect.add_argument(
        "--status",
        choices=["pending", "processing", "completed", "failed", "cancelled"],
        help="list only these items",
    )
    inspect.add_argument("--limit", type=int, default=50, help="items to list (default 50)")
    inspect.add_argument("--json", action="store_true", help="one JSON object on stdout")
    verify = sub.add_parser(
        "verify", parents=[sub_common], help="check every file of a data directory; changes nothing"
    )
    verify.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def _lock_timeout_option(parser: argparse.ArgumentParser, defaults: bool) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=_lock_timeout_ms,
        metavar="MS",
        default=None if defaults else argparse.SUPPRESS,
        help="serve: how long to wait for another process to release the data directory "
        f"before exiting 3 (default: ${LOCK_TIMEOUT_ENV}, else lock_timeout in --config, "
        f"else {DEFAULT_LOCK_TIMEOUT_MS})",
    )


def _lock_timeout_ms(text: str) -> int:
    try:
        ms = int(text)
    except ValueError:
        ms = -1
    if not 0 <= ms <= MAX_DURATION_MS:
        raise argparse.ArgumentTypeError(
            f"expected whole milliseconds from 0 to {MAX_DURATION_MS}, got {text!r}"
        )
    return ms


def read_key(key_file: Path | None) -> bytes | None:
    """The key from ``--key-file`` or ``$SYNC_QUEUE_KEY``; never echoed in any message."""
    if key_file is not None:
        try:
            raw = key_file.read_bytes()
        except OSError as exc:
            raise UsageError(f"--key-file: cannot read {key_file}: {exc.strerror}") from None
        if len(raw) == KEY_BYTES:
            return raw
        return _decode_key(raw.strip(), f"--key-file {key_file}")
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return _decode_key(from_env.strip().encode(), f"${KEY_ENV}")
    return None


def _decode_key(text: bytes, source: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError(f"{source}: not a base64 key (nor {KEY_BYTES} raw bytes)") from None
    if len(key) != KEY_BYTES:
        raise UsageError(f"{source}: the key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


def build_config(args: argparse.Namespace) -> QueueConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            values = orjson.loads(args.config.read_bytes())
        except OSError as exc:
            raise UsageError(f"--config: cannot read {args.config}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"--config: {args.config} is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise UsageError(f"--config: {args.config} must hold a JSON object")
    try:
        config = QueueConfig.from_mapping(values)
        key = read_key(args.key_file)
        if key is not None:
            config = config.replace(enable_encryption=True, encryption_key=key)
        lock_ms = getattr(args, "lock_timeout", None)
        if lock_ms is None and LOCK_TIMEOUT_ENV in os.environ and "lock_timeout" not in values:
            lock_ms = _lock_timeout_from_env(os.environ[LOCK_TIMEOUT_ENV])
        if lock_ms is not None:
            config = config.replace(lock_timeout=lock_ms / 1000)
        if args.memory:
            config = config.replace(persistence_path=None)
        elif args.data_dir is not None or config.persistence_path is None:
            config = config.replace(persistence_path=args.data_dir or default_data_dir())
        return config
    except InvalidParams as exc:
        source = f" ({args.config})" if args.config is not None else ""
        raise UsageError(f"config{source}: {exc.message}") from None


def _lock_timeout_from_env(text: str) -> int:
    try:
        return _lock_timeout_ms(text.strip())
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"${LOCK_TIMEOUT_ENV}: {exc}") from None


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
            return inspect(config, args)
        if args.command == "verify":
            return verify(config, args)
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
    engine = open_engine(config, clock=clock)
    # The recovered items live as long as the process: keep the cyclic GC from walking them
    # again and again (it found nothing to free in them, they hold no cycles).
    gc.freeze()
    recovered: dict[str, Any] = dict(engine.metrics(engine.now()).by_status)
    if engine.quarantined:  # only then: the usual ``recovered`` stays counts by status
        recovered["quarantined"] = list(engine.quarantined)
    data_dir = None if config.persistence_path is None else str(config.persistence_path)
    dispatcher = QueueDispatcher(engine, data_dir=data_dir, recovered=recovered)
    try:
        status = StdioServer(dispatcher, in_fd=in_fd, out_fd=out_fd, owns_process=True).run()
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


def _require_dir(config: QueueConfig) -> Path:
    if config.persistence_path is None:
        raise UsageError("--memory has no data directory to look at")
    if not config.persistence_path.is_dir():
        raise UsageError(f"{config.persistence_path} is not a data directory")
    return config.persistence_path


def _read_back(config: QueueConfig, path: Path, key: bytes | None) -> tuple[Plan, QueueState]:
    """What an open would recover (the recovery plan and the state replayed through the
    same checks), read under a shared lock (``Locked`` while a sidecar owns the directory);
    changes nothing."""
    from .persistence import rebuild
    from .storage.codec import Compression, EncryptionService
    from .storage.fileio import FileIO
    from .storage.lock import DirLock
    from .storage.recovery import load_directory

    lock = DirLock.acquire(str(path), shared=True)
    try:
        plan = load_directory(
            FileIO(),
            str(path),
            compression=Compression(0),
            enc=EncryptionService(key) if key is not None else None,
        )
        state, _ = rebuild(config, plan.recovery)
        return plan, state
    finally:
        if lock is not None:
            lock.release()


def inspect(config: QueueConfig, args: argparse.Namespace) -> int:
    """Read a data directory without changing it."""
    path = _require_dir(config)
    key = config.encryption_key if config.enable_encryption else None
    plan, state = _read_back(config, path, key)
    # The files recovery read (verify also lists leftovers; reading them all again here
    # would double the work on a large directory).
    files = [(s.name, "journal", s.size) for s in plan.segments]
    if plan.snapshot is not None:
        files.insert(0, (plan.snapshot.name, "snapshot", plan.snapshot.size))
    items = [i for i in state.iter_items() if args.status is None or i.status.value == args.status]
    report: dict[str, Any] = {
        "dataDir": str(path),
        "counts": {s.value: n for s, n in state.status_counts.items()},
        "paused": state.paused,
        "breaker": state.breaker.state,
        "files": [{"name": name, "kind": kind, "bytes": size} for name, kind, size in files],
        "bytesOnDisk": sum(size for _, _, size in files),
        "items": [i.to_dict() for i in items[: max(0, args.limit)]],
    }
    out = sys.stdout
    if args.json:
        out.write(orjson.dumps(report).decode() + "\n")
        return EXIT_OK
    out.write(f"data directory {path}: {report['bytesOnDisk']:,} bytes in {len(files)} files\n")
    for name, kind, size in files:
        out.write(f"  {name:<42} {kind:<9} {size:>12,} B\n")
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    out.write(f"items: {counts}; paused: {state.paused}; breaker: {state.breaker.state}\n")
    for item in items[: max(0, args.limit)]:
        payload = orjson.dumps(item.payload).decode()
        out.write(
            f"  {item.id}  {item.status.value:<10} {item.priority.wire:<10} "
            f"attempts {item.attempts}  {payload[:60]}\n"
        )
    if len(items) > args.limit:
        out.write(f"  ... {len(items) - args.limit} more (--limit)\n")
    return EXIT_OK


def verify(config: QueueConfig, args: argparse.Namespace) -> int:
    from .storage import verify as verify_files

    path = _require_dir(config)
    key = config.encryption_key if config.enable_encryption else None
    report = verify_files(path, key)
    if report.last_seq is not None:  # the files read back: check what they hold too
        _verify_state(config, path, key, report)
    if args.json:
        sys.stdout.write(
            orjson.dumps(report, option=orjson.OPT_PASSTHROUGH_DATACLASS, default=_as_dict).decode()
            + "\n"
        )
    else:
        for f in report.files:
            seqs = "" if f.last_seq is None else f" seq {f.first_seq or ''}..{f.last_seq}"
            sys.stdout.write(f"{f.name:<42} {f.kind:<9} {f.size:>12,} B  {f.status}{seqs}\n")
        for p in report.problems:
            where = f" at offset {p.offset}" if p.offset is not None else ""
            sys.stdout.write(f"{p.severity}: {p.file}{where}: {p.message}\n")
        sys.stdout.write("ok\n" if report.ok else "errors found\n")
    return EXIT_OK if report.ok else EXIT_FAILED


def _verify_state(config: QueueConfig, path: Path, key: bytes | None, report: Any) -> None:
    """Replay what recovery would, through the same checks; a refusal is an error."""
    from .errors import QueueError
    from .storage import Problem

    try:
        _read_back(config, path, key)
    except QueueError as exc:
        offset = exc.data.get("offset")
        report.problems.append(
            Problem(
                str(exc.data.get("file", path)),
                offset if isinstance(offset, int) else None,
                exc.message,
                "error",
            )
        )


def _as_dict(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {**dataclasses.asdict(obj), **({"ok": obj.ok} if hasattr(obj, "ok") else {})}
    raise TypeError
