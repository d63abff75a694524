"""``inspect`` and ``verify``: the commands that read a data directory and change nothing
(under a shared lock, so ``Locked`` while a sidecar owns it). Exit codes: see ``cli``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .cli_config import UsageError
from .config import QueueConfig

if TYPE_CHECKING:  # storage is only imported by the commands that read a directory
    from .state import QueueState
    from .storage.recovery import Plan

__all__ = ["inspect", "verify"]


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


def inspect(config: QueueConfig, args: argparse.Namespace) -> None:
    """Report a data directory's files, counts and items on stdout; change nothing."""
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
        return
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


def verify(config: QueueConfig, args: argparse.Namespace) -> bool:
    """Check every file of a data directory and what it holds; report on stdout. True if
    no error was found (warnings allowed)."""
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
    return report.ok


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
