"""The command line's parsing: options (before or after the subcommand), the key from a
file or the environment, and the ``QueueConfig`` they and a ``--config`` file make.
Everything wrong here is a ``UsageError`` (exit 2); see ``cli`` for the commands."""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from pathlib import Path
from typing import Any

import orjson

from . import __version__
from .config import KEY_BYTES, QueueConfig
from .durations import MAX_DURATION_MS
from .errors import InvalidParams
from .item import ItemStatus

__all__ = ["UsageError", "build_config", "build_parser", "read_key"]

APP_NAME = "sync-queue"
KEY_ENV = "SYNC_QUEUE_KEY"
DATA_DIR_ENV = "SYNC_QUEUE_DATA_DIR"
LOCK_TIMEOUT_ENV = "SYNC_QUEUE_LOCK_TIMEOUT_MS"
DEFAULT_LOCK_TIMEOUT_MS = 2000


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


def build_parser(epilog: str | None) -> argparse.ArgumentParser:
    """The parser of every command; ``epilog`` ends ``--help`` (the exit codes)."""
    common, sub_common = _common_options(defaults=True), _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="sync-queue-sidecar",
        description="A persistent work queue speaking JSON-RPC 2.0 over stdin/stdout "
        "(newline-delimited). Commands: serve (default), inspect, verify.",
        epilog=epilog,
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
        choices=[status.value for status in ItemStatus],
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
