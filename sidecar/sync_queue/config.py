"""``QueueConfig``: every option of the seed's table, with its defaults, and what we added.

Durations are given as seconds or ``datetime.timedelta`` and stored in seconds (``float``),
the seed's unit; the engine reads them once, as whole milliseconds (:meth:`QueueConfig.timings`).
Construction validates every field and names the field in the error, so a typo in a config
file fails at start-up instead of surprising later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .durations import to_ms, to_seconds
from .errors import InvalidParams

__all__ = ["DURABILITY_MODES", "Durability", "QueueConfig", "Timings"]

Durability = Literal["always", "periodic", "snapshot"]
DURABILITY_MODES: tuple[Durability, ...] = ("always", "periodic", "snapshot")
KEY_BYTES = 32

_DURATIONS = (
    "persistence_interval",
    "sync_interval",
    "retention_period",
    "base_retry_delay",
    "max_retry_delay",
    "cleanup_interval",
    "lease_timeout",
    "breaker_cooldown",
    "throughput_window",
    "lock_timeout",
)
# (field, smallest allowed value)
_COUNTS = (
    ("max_capacity", 1),
    ("batch_size", 1),
    ("heap_cleanup_threshold", 0),
    ("partition_count", 1),
    ("max_retries", 0),
    ("breaker_failure_threshold", 1),
)
_FLAGS = ("enable_deduplication", "enable_compression", "enable_encryption", "enable_partitioning")


@dataclass(frozen=True)
class Timings:
    """``QueueConfig``'s durations in whole milliseconds (``QueueConfig.timings()``)."""

    persistence_interval_ms: int
    sync_interval_ms: int
    retention_period_ms: int
    base_retry_delay_ms: int
    max_retry_delay_ms: int
    cleanup_interval_ms: int
    lease_timeout_ms: int
    breaker_cooldown_ms: int
    throughput_window_ms: int
    lock_timeout_ms: int


@dataclass
class QueueConfig:
    # -- the seed's options, same names and defaults --
    max_capacity: int = 10_000
    batch_size: int = 100
    persistence_path: Path | None = None
    persistence_interval: float = 30.0  # snapshot / compaction cadence
    enable_deduplication: bool = True
    enable_compression: bool = True
    compression_level: int = 6
    enable_encryption: bool = False
    encryption_key: bytes | None = field(default=None, repr=False)  # never in a log line
    retention_period: float = 7 * 24 * 3600.0
    base_retry_delay: float = 1.0
    max_retry_delay: float = 3600.0
    cleanup_interval: float = 300.0
    heap_cleanup_threshold: int = 1000
    enable_partitioning: bool = False
    partition_count: int = 4
    # -- added by sync-queue --
    max_retries: int = 3  # default for items that do not set their own
    lease_timeout: float = 30.0
    breaker_failure_threshold: int = 5  # consecutive `fail` calls that open the breaker
    breaker_cooldown: float = 30.0
    durability: Durability = "always"
    throughput_window: float = 60.0  # the sliding window of `throughput()`
    # How often durability="periodic" fsyncs what was written (the bound on what a power
    # loss can take); persistence_interval is the snapshot / compaction cadence.
    sync_interval: float = 1.0
    # How long opening waits for another process to release the data directory before it
    # gives up with `Locked` (a restart right after the previous owner died or while it is
    # still stopping then succeeds).
    lock_timeout: float = 2.0
    # At most this many finished (completed, failed, cancelled) items are retained, besides
    # `retention_period` (BullMQ's `removeOnComplete: n`): a desktop app's memory and start-up
    # must not grow with its history. The oldest go first, journaled like any drop. None: no
    # count bound (only `retention_period`).
    max_finished: int | None = 10_000

    def __post_init__(self) -> None:
        for name in _DURATIONS:
            setattr(self, name, to_seconds(getattr(self, name), name))
        for name, low in _COUNTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidParams(
                    f"{name}: expected an integer >= {low}, got {value!r}", field=name
                )
        bound = self.max_finished
        if bound is not None and (type(bound) is not int or bound < 0):
            raise InvalidParams(
                f"max_finished: expected an integer >= 0 or null, got {bound!r}",
                field="max_finished",
            )
        for name in _FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidParams(f"{name}: expected true or false", field=name)
        level = self.compression_level
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
            raise InvalidParams(
                f"compression_level: expected an integer 0-9, got {level!r}",
                field="compression_level",
            )
        if self.durability not in DURABILITY_MODES:
            raise InvalidParams(
                f"durability: expected one of {', '.join(DURABILITY_MODES)}, "
                f"got {self.durability!r}",
                field="durability",
            )
        if self.persistence_path is not None:
            if not isinstance(self.persistence_path, str | Path):
                raise InvalidParams("persistence_path: expected a path", field="persistence_path")
            self.persistence_path = Path(self.persistence_path)
        if self.base_retry_delay > self.max_retry_delay:
            raise InvalidParams(
                "base_retry_delay: must not exceed max_retry_delay", field="base_retry_delay"
            )
        if self.lease_timeout <= 0:
            raise InvalidParams("lease_timeout: must be positive", field="lease_timeout")
        if self.throughput_window <= 0:
            raise InvalidParams("throughput_window: must be positive", field="throughput_window")
        if self.encryption_key is not None and (
            not isinstance(self.encryption_key, bytes) or len(self.encryption_key) != KEY_BYTES
        ):
            # The message never shows the key, only its length.
            size = len(self.encryption_key) if isinstance(self.encryption_key, bytes) else None
            raise InvalidParams(
                f"encryption_key: expected {KEY_BYTES} bytes, got "
                f"{'a non-bytes value' if size is None else f'{size} bytes'}",
                field="encryption_key",
            )
        if self.enable_encryption and self.encryption_key is None:
            raise InvalidParams(
                "encryption_key: enable_encryption needs a 32-byte key "
                "(EncryptionService.generate_key() makes one)",
                field="encryption_key",
            )

    def timings(self) -> Timings:
        """The duration options in whole milliseconds, as the engine uses them."""
        return Timings(**{f"{name}_ms": to_ms(getattr(self, name), name) for name in _DURATIONS})

    @property
    def partitions(self) -> int:
        """How many partitions pops are served from (1 unless partitioning is on)."""
        return self.partition_count if self.enable_partitioning else 1

    @classmethod
    def high_performance(cls, **overrides: Any) -> QueueConfig:
        """Throughput first: bigger batches and capacity, no compression, fsync once a second.

        ``"periodic"`` durability can lose the last second of acknowledged changes on power
        loss (not on a crash of the process alone); see the README's durability section.
        """
        values: dict[str, Any] = {
            "max_capacity": 1_000_000,
            "batch_size": 1000,
            "enable_compression": False,
            "durability": "periodic",
            "sync_interval": 1.0,
            "persistence_interval": 1.0,
            "heap_cleanup_threshold": 10_000,
        }
        return cls(**(values | overrides))

    @classmethod
    def high_security(cls, encryption_key: bytes | None = None, **overrides: Any) -> QueueConfig:
        """Encrypted at rest, every change fsync'd before it is acknowledged. Needs a key."""
        values: dict[str, Any] = {
            "enable_encryption": True,
            "encryption_key": encryption_key,
            "enable_compression": True,
            "durability": "always",
            "retention_period": 24 * 3600.0,
        }
        return cls(**(values | overrides))

    def replace(self, **changes: Any) -> QueueConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> QueueConfig:
        """Build from a JSON object (a config file): keys are field names, durations seconds.

        Unknown keys are refused by name. The key may not come from here (docs/protocol.md §2).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in known:
                raise InvalidParams(f"{name}: not a QueueConfig option", field=name)
        if "encryption_key" in values:
            raise InvalidParams(
                "encryption_key: the key may not be in a config file; use "
                "--key-file or SYNC_QUEUE_KEY",
                field="encryption_key",
            )
        return cls(**values)
