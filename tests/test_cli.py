"""The command line's parsing: options before or after the subcommand, keys, config files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sync_queue import cli
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


def test_lock_timeout_from_flag_config_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--lock-timeout`` (ms) wins over ``lock_timeout`` in --config (seconds, like every
    config duration), which wins over ``$SYNC_QUEUE_LOCK_TIMEOUT_MS``; default 2000 ms."""
    monkeypatch.delenv("SYNC_QUEUE_LOCK_TIMEOUT_MS", raising=False)

    def timeout(*argv: str) -> float:
        return build_config(_parser().parse_args(["--memory", *argv])).lock_timeout

    assert timeout() == 2.0
    assert timeout("--lock-timeout", "0") == 0.0
    assert timeout("serve", "--lock-timeout", "1500") == 1.5
    config = tmp_path / "c.json"
    config.write_text('{"lock_timeout": 0.25}')
    assert timeout("--config", str(config)) == 0.25
    monkeypatch.setenv("SYNC_QUEUE_LOCK_TIMEOUT_MS", "700")
    assert timeout() == 0.7
    assert timeout("--config", str(config)) == 0.25
    assert timeout("--config", str(config), "--lock-timeout", "10") == 0.01
    monkeypatch.setenv("SYNC_QUEUE_LOCK_TIMEOUT_MS", "soon")
    with pytest.raises(UsageError, match="SYNC_QUEUE_LOCK_TIMEOUT_MS"):
        timeout()
    for bad in ("-1", "1.5", "x"):
        with pytest.raises(SystemExit) as info:
            _parser().parse_args(["--lock-timeout", bad])
        assert info.value.code == 2


def test_exit_codes_are_distinct_and_documented() -> None:
    from sync_queue import cli

    codes = {
        cli.EXIT_OK: "clean stop",
        cli.EXIT_FAILED: "could not be persisted",
        cli.EXIT_USAGE: "bad command line",
        cli.EXIT_LOCKED: "owned by another process",
        cli.EXIT_BAD_DATA: "cannot be read",
        cli.EXIT_DATA_DIR: "cannot be used",
    }
    assert sorted(codes) == [0, 1, 2, 3, 4, 5]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert cli.__doc__ is not None
    for code, meaning in codes.items():
        assert f"\n    {code}   " in cli.__doc__ and meaning in cli.__doc__, code
        row = next(line for line in readme.splitlines() if line.startswith(f"| {code} |"))
        assert meaning in row, row


def test_tune_cyclic_gc_raises_only_the_young_threshold() -> None:
    import gc

    before = gc.get_threshold()
    try:
        cli.tune_cyclic_gc()
        assert gc.get_threshold() == (cli.GC_YOUNG_THRESHOLD, before[1], before[2])
        assert before[0] < cli.GC_YOUNG_THRESHOLD
    finally:
        gc.set_threshold(*before)
