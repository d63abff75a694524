"""The command line's parsing: options before or after the subcommand, keys, config files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sync_queue.cli import UsageError, _parser, build_config, read_key


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "/x", "verify"],
        ["verify", "--data-dir", "/x"],
        ["--log-level", "debug", "inspect", "--data-dir", "/x"],
    ],
)
def test_options_before_or_after_the_subcommand_count(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    assert args.data_dir == Path("/x")
    assert args.log_level == ("debug" if "debug" in argv else "info")


def test_memory_before_the_subcommand_is_kept() -> None:
    args = _parser().parse_args(["--memory", "inspect"])
    assert args.memory and args.command == "inspect"
    assert build_config(args).persistence_path is None


def test_key_from_file_raw_or_base64_and_never_in_messages(tmp_path: Path) -> None:
    key = bytes(range(32))
    raw, b64 = tmp_path / "raw", tmp_path / "b64"
    raw.write_bytes(key)
    b64.write_text(base64.b64encode(key).decode() + "\n")
    assert read_key(raw) == key == read_key(b64)
    bad = tmp_path / "bad"
    bad.write_bytes(base64.b64encode(key[:16]))
    with pytest.raises(UsageError, match="32 bytes") as info:
        read_key(bad)
    assert base64.b64encode(key[:16]).decode() not in str(info.value)


def test_config_file_errors_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"max_capacity": 0}')
    with pytest.raises(UsageError, match="max_capacity"):
        build_config(_parser().parse_args(["--config", str(config), "--memory"]))
    config.write_text('{"encryption_key": "AAAA"}')
    with pytest.raises(UsageError, match="may not be in a config file"):
        build_config(_parser().parse_args(["--config", str(config), "--memory"]))
    config.write_text('{"max_capacty": 5}')
    with pytest.raises(UsageError, match="max_capacty"):
        build_config(_parser().parse_args(["--config", str(config), "--memory"]))
