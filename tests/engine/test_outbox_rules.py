"""The engine's side of issue 12, one rule per test, on ``QueueCore`` (given ``now``):
destinations and destination pops, ``fail``'s ``dead``/``retryAfterMs``/``charge``, the
breaker ignoring destination items, held items (``release``/``reject``), unique work
(keep/replace/append), per-destination stats. Each test also checks that a replay of the
journal and a snapshot give the same state (``assert_replays``)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import orjson
import pytest

from sync_queue import (
    DuplicateItem,
    InvalidParams,
    InvalidState,
    ItemStatus,
    PersistenceError,
    QueueConfig,
    QueueError,
    SyncItem,
)
from sync_queue.core import QueueCore
from sync_queue.ops import Op, decode_op
from sync_queue.state import ItemFailed, QueueState

from .conftest import RecordingJournal

T = 1_700_000_000_000
A = "http://127.0.0.1:8080"
B = "https://api.example.test"
NONE: frozenset[str] = frozenset()


def make(**config: object) -> tuple[QueueCore, RecordingJournal]:
    journal = RecordingJournal()
    settings: dict[str, object] = {"base_retry_delay": 1, "max_retry_delay": 1, "max_retries": 3}
    settings.update(config)
    core = QueueCore(QueueConfig(**settings), journal=journal, rng=random.Random(3))  # type: ignore[arg-type]
    return core, journal


def push(core: QueueCore, item_id: str, **kw: object) -> str:
    it = SyncItem.new({"n": item_id}).with_id(item_id)
    if "destination" in kw:
        it.with_destination(kw.pop("destination"))  # type: ignore[arg-type]
    if kw.pop("hold", False):
        it.with_hold()
    if "key" in kw:
        it.with_partition_key(kw.pop("key"))  # type: ignore[arg-type]
    if "unique" in kw:
        it.with_unique(*kw.pop("unique"))  # type: ignore[misc]
    if "ttl" in kw:
        it.with_ttl(kw.pop("ttl"))  # type: ignore[arg-type]
    assert not kw
    return core.push(T, it)


def ids(items: list[object]) -> list[str]:
    return [i.id for i in items]  # type: ignore[attr-defined]


def status(core: QueueCore, item_id: str) -> ItemStatus:
    return core.item(item_id).status


def assert_replays(core: QueueCore, journal: RecordingJournal) -> None:
    live = core.state.fingerprint()
    replayed = QueueState(core.config)
    for record in journal.records:
        op = decode_op(record)
        replayed.check(op)
        replayed.apply(op)
    assert replayed.fingerprint() == live
    snapshot = orjson.loads(orjson.dumps(core.state.to_snapshot()))
    assert QueueState.from_snapshot(core.config, snapshot).fingerprint() == live


# ---------------------------------------------------------------- destinations


def test_destination_items_go_only_to_destination_pops() -> None:
    core, journal = make()
    push(core, "plain")
    push(core, "a1", destination=A)
    push(core, "b1", destination=B)
    assert ids(core.pop(T, 10)) == ["plain"]  # a plain pop never sees destination items
    assert core.pop(T, 10) == []
    assert ids(core.pop(T, 10, except_destinations=frozenset({A}))) == ["b1"]
    assert ids(core.pop(T, 10, except_destinations=NONE)) == ["a1"]
    assert core.item("a1").destination == A
    assert core.item("a1").to_dict()["destination"] == A
    assert_replays(core, journal)


def test_destination_pops_take_priority_then_push_order_across_origins() -> None:
    core, journal = make()
    core.push(T, SyncItem.new(1, "low").with_id("a-low").with_destination(A))
    core.push(T, SyncItem.new(2, "high").with_id("b-high").with_destination(B))
    core.push(T, SyncItem.new(3, "low").with_id("b-low").with_destination(B))
    core.push(T, SyncItem.new(4, "high").with_id("a-high").with_destination(A))
    got = ids(core.pop(T, 10, except_destinations=NONE))
    assert got == ["b-high", "a-high", "a-low", "b-low"]
    assert_replays(core, journal)


def test_plain_ready_count_ignores_destination_items() -> None:
    core, _ = make()
    push(core, "a1", destination=A)
    assert core.ready_count(T) == 0
    assert core.destination_ready_count(T) == 1
    core.set_paused(T, True)
    assert core.destination_ready_count(T) == 0
    assert core.pop(T, 1, except_destinations=NONE) == []  # pause stops every pop


def test_bad_destination_params_change_nothing() -> None:
    core, journal = make()
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_destination("x" * 256)
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_destination("")
    push(core, "a1", destination=A)
    with pytest.raises(InvalidParams):
        core.pop(T, 1, partition=0, except_destinations=NONE)
    with pytest.raises(InvalidParams):
        core.pop(T, 1, except_destinations=A)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams):
        core.pop(T, 1, except_destinations=frozenset({1}))  # type: ignore[arg-type]
    assert status(core, "a1") is ItemStatus.PENDING
    assert len(journal.records) == 1


# --------------------------------------------------------------- fail options


def test_fail_dead_goes_to_dead_letters_whatever_retries_are_left() -> None:
    core, journal = make(max_retries=5)
    push(core, "a", destination=A)
    [item] = core.pop(T, 1, except_destinations=NONE)
    result = core.fail(T + 5, "a", "HTTP 404: not found", item.lease_id, dead=True)
    assert not result.retry and result.available_at is None
    got = core.item("a")
    assert (got.status, got.attempts, got.last_error) == (
        ItemStatus.FAILED,
        1,
        "HTTP 404: not found",
    )
    assert core.take_events() == [ItemFailed("a", 1, "HTTP 404: not found")]
    assert_replays(core, journal)


def test_fail_retry_after_sets_the_next_attempt_instead_of_the_backoff() -> None:
    core, journal = make()
    push(core, "a", destination=A)
    core.pop(T, 1, except_destinations=NONE)
    result = core.fail(T + 10, "a", "HTTP 429", retry_after_ms=30_000)
    assert result.retry and result.available_at == T + 30_010
    assert core.pop(T + 30_009, 1, except_destinations=NONE) == []
    assert ids(core.pop(T + 30_010, 1, except_destinations=NONE)) == ["a"]
    assert_replays(core, journal)


def test_uncharged_failure_gives_the_attempt_back() -> None:
    core, journal = make(max_retries=0)
    push(core, "a", destination=A)
    for n in range(3):  # max_retries 0: a charged failure would make it dead at once
        [item] = core.pop(T + n, 1, except_destinations=NONE)
        assert item.attempts == 1
        result = core.fail(T + n, "a", "offline", charge=False)
        assert result.retry and result.available_at == T + n
        assert core.item("a").attempts == 0
        assert status(core, "a") is ItemStatus.PENDING
    metrics = core.metrics(T + 5)
    assert metrics.total_retries == 0 and metrics.total_failed == 0
    core.pop(T + 5, 1, except_destinations=NONE)
    core.fail(T + 5, "a", "offline", charge=False, retry_after_ms=500)
    assert core.item("a").available_at == T + 505
    assert_replays(core, journal)


def test_fail_option_conflicts_and_bad_values_change_nothing() -> None:
    core, journal = make()
    push(core, "a")
    core.pop(T, 1)
    before = len(journal.records)
    with pytest.raises(InvalidParams):
        core.fail(T, "a", dead=True, charge=False)
    with pytest.raises(InvalidParams):
        core.fail(T, "a", retry_after_ms=-1)
    with pytest.raises(InvalidParams):
        core.fail(T, "a", dead="yes")  # type: ignore[arg-type]
    assert status(core, "a") is ItemStatus.PROCESSING
    assert len(journal.records) == before


def test_destination_failures_never_feed_the_breaker() -> None:
    core, journal = make(breaker_failure_threshold=2, max_retries=10)
    push(core, "a", destination=A)
    push(core, "plain")
    for n in range(5):
        core.pop(T + n, 1, except_destinations=NONE)
        core.fail(T + n, "a", "HTTP 503", retry_after_ms=0)
    assert core.state.breaker.state == "closed"
    assert ids(core.pop(T + 10, 1)) == ["plain"]
    core.fail(T + 10, "plain", "x", charge=False)  # not charged: not a breaker failure
    core.pop(T + 10, 1)
    core.fail(T + 10, "plain", "x", retry_after_ms=0)
    assert core.state.breaker.state == "closed"
    core.pop(T + 10, 1)
    core.fail(T + 10, "plain", "x", retry_after_ms=0)
    assert core.state.breaker.state == "open"
    # The open breaker stops the app's pops, not the outbox's.
    assert ids(core.pop(T + 11, 1, except_destinations=NONE)) == ["a"]
    core.complete(T + 11, "a")  # nor does a destination success close it
    assert core.state.breaker.state == "open"
    assert_replays(core, journal)


def test_uncharged_failure_of_the_half_open_probe_lets_another_probe_go() -> None:
    # The probe gave no answer about the app's service: the breaker must not wait for it
    # forever (no pop would ever hand anything out again: a silent stall).
    core, journal = make(breaker_failure_threshold=1, breaker_cooldown=0.01, max_retries=10)
    push(core, "plain")
    core.pop(T, 1)
    core.fail(T, "plain", "x", retry_after_ms=0)
    assert core.state.breaker.state == "open"
    core.advance(T + 100)  # the cool-down ended
    assert ids(core.pop(T + 100, 1)) == ["plain"]  # the half-open probe
    assert core.state.breaker.state == "halfOpen"
    core.fail(T + 100, "plain", "went offline", charge=False)
    assert ids(core.pop(T + 101, 1)) == ["plain"]  # probed again
    core.complete(T + 101, "plain")
    assert core.state.breaker.state == "closed"
    assert_replays(core, journal)


# --------------------------------------------------------------------- stats


def test_destination_stats_count_by_status_and_keep_the_last_error() -> None:
    core, journal = make(max_retries=0)
    push(core, "a1", destination=A)
    push(core, "a2", destination=A)
    push(core, "a3", destination=A, hold=True)
    push(core, "b1", destination=B)
    push(core, "plain")
    core.pop(T, 2, except_destinations=frozenset({B}))
    core.complete(T + 1, "a1")
    core.fail(T + 2, "a2", "HTTP 400: bad", dead=True)
    stats = core.state.destinations.to_wire()
    assert stats[A] == {
        "pending": 0,
        "processing": 0,
        "held": 1,
        "failed": 1,
        "completed": 1,
        "cancelled": 0,
        "lastError": "HTTP 400: bad",
        "lastErrorAt": T + 2,
    }
    assert stats[B]["pending"] == 1 and stats[B]["lastError"] is None
    assert list(stats) == [A, B]
    assert_replays(core, journal)
    core.purge(T + 3, "completed")
    core.purge(T + 3, "failed")
    core.reject(T + 3, "a3")
    core.purge(T + 3, "cancelled")
    stats = core.state.destinations.to_wire()
    assert stats[A]["failed"] == 0 and stats[A]["lastError"] == "HTTP 400: bad"
    assert_replays(core, journal)


# ------------------------------------------------------------------ held items


def test_held_item_waits_for_release_and_keeps_its_place() -> None:
    core, journal = make()
    push(core, "h", hold=True)
    push(core, "p")
    assert status(core, "h") is ItemStatus.HELD
    assert core.metrics(T).current_size == 2  # held items count toward capacity
    assert ids(core.pop(T, 1)) == ["p"]
    core.complete(T, "p")
    assert core.pop(T, 1) == []
    push(core, "later")
    core.release(T + 1, "h")
    assert status(core, "h") is ItemStatus.PENDING
    assert ids(core.pop(T + 1, 2)) == ["h", "later"]  # its place: push order
    assert_replays(core, journal)


def test_held_item_blocks_only_its_own_partition_key() -> None:
    core, journal = make()
    push(core, "k1", key="k", hold=True)
    push(core, "k2", key="k")
    push(core, "o1", key="other")
    assert ids(core.pop(T, 10)) == ["o1"]
    core.release(T, "k1")
    assert ids(core.pop(T, 10)) == ["k1"]
    assert core.pop(T, 10) == []  # k2 still waits behind k1 (processing)
    core.complete(T, "k1")
    assert ids(core.pop(T, 10)) == ["k2"]
    assert_replays(core, journal)


def test_a_held_item_behind_others_stays_held_when_they_finish() -> None:
    core, journal = make()
    push(core, "k1", key="k")
    push(core, "k2", key="k", hold=True)
    push(core, "k3", key="k")
    core.pop(T, 1)
    core.complete(T, "k1")
    assert core.pop(T, 10) == []
    assert status(core, "k2") is ItemStatus.HELD
    core.reject(T, "k2", "user said no")
    assert core.item("k2").last_error == "user said no"
    assert ids(core.pop(T, 10)) == ["k3"]
    assert_replays(core, journal)


def test_reject_cancels_a_held_item() -> None:
    core, journal = make()
    push(core, "h", hold=True, destination=A)
    core.reject(T, "h")
    got = core.item("h")
    assert (got.status, got.last_error) == (ItemStatus.CANCELLED, "rejected")
    assert_replays(core, journal)


def test_release_and_reject_only_take_held_items() -> None:
    core, journal = make()
    push(core, "p")
    with pytest.raises(InvalidState):
        core.release(T, "p")
    with pytest.raises(InvalidState):
        core.reject(T, "p")
    with pytest.raises(InvalidParams):
        core.reject(T, "p", 5)  # type: ignore[arg-type]
    assert len(journal.records) == 1
    push(core, "h", hold=True)
    core.cancel(T, "h")  # cancel takes held items too
    with pytest.raises(InvalidState):
        core.release(T, "h")


def test_held_item_expires_at_its_ttl() -> None:
    core, journal = make()
    push(core, "h", hold=True, ttl=1)
    core.advance(T + 999)
    assert status(core, "h") is ItemStatus.HELD
    core.advance(T + 1000)
    got = core.item("h")
    assert (got.status, got.last_error) == (ItemStatus.CANCELLED, "expired")
    assert_replays(core, journal)


def test_requeued_held_item_comes_back_pending() -> None:
    core, journal = make()
    push(core, "h", hold=True)
    core.reject(T, "h")
    core.requeue(T, "h")
    assert status(core, "h") is ItemStatus.PENDING
    assert ids(core.pop(T, 1)) == ["h"]
    assert_replays(core, journal)


# ----------------------------------------------------------------- unique work


def push_unique(core: QueueCore, item_id: str, key: str, policy: str, **kw: object) -> object:
    it = SyncItem.new(item_id).with_id(item_id).with_unique(key, policy)
    if kw.pop("hold", False):
        it.with_hold()
    if "destination" in kw:
        it.with_destination(kw.pop("destination"))  # type: ignore[arg-type]
    assert not kw
    return core.push_one(T, it)


def test_unique_without_a_live_item_just_adds() -> None:
    core, journal = make()
    for policy in ("keep", "replace", "append"):
        result = push_unique(core, policy, policy, policy)
        assert (result.id, result.unique, result.replaced) == (policy, "added", None)  # type: ignore[attr-defined]
    push_unique(core, "x1", "x", "keep")
    core.pop(T, 10)
    core.complete(T, "x1")
    assert push_unique(core, "x2", "x", "keep").unique == "added"  # type: ignore[attr-defined]
    assert core.item("x2").unique_key == "x"
    assert_replays(core, journal)


def test_unique_keep_adds_nothing_and_names_the_live_item() -> None:
    core, journal = make()
    push_unique(core, "a", "k", "keep", hold=True)
    before = len(journal.records)
    result = push_unique(core, "b", "k", "keep")
    assert (result.id, result.unique) == ("a", "kept")  # type: ignore[attr-defined]
    assert len(journal.records) == before  # nothing changed: nothing recorded
    with pytest.raises(Exception):  # noqa: B017
        core.item("b")
    assert_replays(core, journal)


def test_unique_replace_cancels_a_waiting_item() -> None:
    core, journal = make()
    push_unique(core, "a", "k", "replace", hold=True)
    result = push_unique(core, "b", "k", "replace")
    assert (result.id, result.unique, result.replaced) == ("b", "replaced", "a")  # type: ignore[attr-defined]
    got = core.item("a")
    assert (got.status, got.last_error) == (ItemStatus.CANCELLED, "replaced")
    assert ids(core.pop(T, 10)) == ["b"]
    assert_replays(core, journal)


def test_unique_replace_of_a_processing_item_appends() -> None:
    core, journal = make()
    push_unique(core, "a", "k", "replace")
    core.pop(T, 1)
    result = push_unique(core, "b", "k", "replace")
    assert (result.unique, result.replaced) == ("appended", None)  # type: ignore[attr-defined]
    assert status(core, "a") is ItemStatus.PROCESSING
    assert core.pop(T, 10) == []  # b waits until a is finished
    core.complete(T, "a")
    assert ids(core.pop(T, 10)) == ["b"]
    assert_replays(core, journal)


def test_unique_append_waits_for_every_earlier_live_item() -> None:
    core, journal = make()
    push_unique(core, "a", "k", "append", hold=True)
    assert push_unique(core, "b", "k", "append").unique == "appended"  # type: ignore[attr-defined]
    assert push_unique(core, "c", "k", "append").unique == "appended"  # type: ignore[attr-defined]
    push(core, "free")
    assert ids(core.pop(T, 10)) == ["free"]
    core.release(T, "a")
    assert ids(core.pop(T, 10)) == ["a"]
    core.fail(T, "a", "x")  # retried: still ahead of b
    assert ids(core.pop(T + 2000, 10)) == ["a"]
    core.complete(T + 2000, "a")
    assert ids(core.pop(T + 2000, 10)) == ["b"]
    core.cancel(T + 2000, "b")
    assert ids(core.pop(T + 2000, 10)) == ["c"]
    assert_replays(core, journal)


def test_unique_append_chain_survives_expiry_of_the_item_ahead() -> None:
    core, journal = make()
    core.push(T, SyncItem.new(1).with_id("a").with_unique("k", "append").with_ttl(1))
    core.push(T, SyncItem.new(2).with_id("b").with_unique("k", "append").with_hold().with_ttl(1))
    core.push(T, SyncItem.new(3).with_id("c").with_unique("k", "append"))
    core.advance(T + 1000)  # a and b expire (b held: its ttl counts too)
    assert status(core, "a") is ItemStatus.CANCELLED
    assert ids(core.pop(T + 1000, 10)) == ["c"]
    assert_replays(core, journal)


def test_unique_and_partition_key_both_order() -> None:
    core, journal = make()
    push(core, "k1", key="doc")
    core.push(T, SyncItem.new(2).with_id("u1").with_unique("sync", "append"))
    core.push(
        T, SyncItem.new(3).with_id("both").with_partition_key("doc").with_unique("sync", "append")
    )
    assert ids(core.pop(T, 10)) == ["k1", "u1"]
    core.complete(T, "k1")
    assert core.pop(T, 10) == []  # still behind u1 in its unique line
    core.complete(T, "u1")
    assert ids(core.pop(T, 10)) == ["both"]
    assert_replays(core, journal)


def test_unique_in_a_batch_sees_earlier_members() -> None:
    core, journal = make()
    push_unique(core, "old", "k", "append", hold=True)
    result = core.push_batch(
        T,
        [
            SyncItem.new(1).with_id("m1").with_unique("k", "replace"),
            SyncItem.new(2).with_id("m2").with_unique("k", "keep"),
            SyncItem.new(3).with_id("m3").with_unique("k", "replace"),
            SyncItem.new(4).with_id("plain"),
            SyncItem.new(5).with_id("m4").with_unique("k", "append"),
        ],
    )
    assert result.ids == ["m1", "m3", "plain", "m4"]
    assert [(r.id, r.unique, r.replaced) for r in result.unique] == [
        ("m1", "replaced", "old"),
        ("m1", "kept", None),
        ("m3", "replaced", "m1"),
        ("m4", "appended", None),
    ]
    assert core.item("m1").last_error == "replaced"
    assert ids(core.pop(T, 10)) == ["m3", "plain"]
    assert_replays(core, journal)


def test_unique_capacity_counts_what_replace_frees() -> None:
    core, _ = make(max_capacity=1)
    push_unique(core, "a", "k", "replace")
    assert push_unique(core, "b", "k", "replace").unique == "replaced"  # type: ignore[attr-defined]
    with pytest.raises(DuplicateItem):
        push_unique(core, "b", "k", "replace")


def test_bad_unique_params() -> None:
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_unique("k", "upsert")
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_unique("", "keep")
    with pytest.raises(InvalidParams):
        SyncItem.new(1).with_hold("yes")  # type: ignore[arg-type]


def test_complete_batch_completes_each_on_its_own() -> None:
    core, journal = make()
    for x in "abc":
        push(core, x)
    handed = {i.id: i for i in core.pop(T, 3)}
    errors = core.complete_batch(T, [("a", handed["a"].lease_id), ("b", "stale"), ("c", None)])
    assert [type(e).__name__ if e else None for e in errors] == [None, "InvalidState", None]
    assert [status(core, x) for x in "abc"] == [
        ItemStatus.COMPLETED,
        ItemStatus.PROCESSING,
        ItemStatus.COMPLETED,
    ]
    assert_replays(core, journal)


@pytest.mark.parametrize("repeat", [False, True])
def test_complete_batch_equals_one_complete_after_another(repeat: bool) -> None:
    """The batch journals its records in one append (distinct ids) or one at a time (an id
    named twice): either way the same errors, records and state as single completes."""
    cores = [make(), make()]
    for core, _ in cores:
        for x in "abcde":
            push(core, x, destination=A, key="k" if x in "de" else None)
        for x in "f":
            push(core, x)
        core.pop(T, 3, except_destinations=NONE)
        core.pop(T, 1)
    leases = {x: cores[0][0].item(x).lease_id for x in "abcf"}
    refs = [("a", leases["a"]), ("b", "stale"), ("zz", None), ("d", None), ("f", leases["f"])]
    refs += [("c", None), ("a", leases["a"])] if repeat else [("c", leases["c"])]
    (batched, batched_journal), (single, single_journal) = cores
    errors = batched.complete_batch(T + 5, refs)
    expected = [single._try_complete(T + 5, x, lease) for x, lease in refs]

    def shown(outcomes: list[QueueError | None]) -> list[tuple[str, str] | None]:
        return [(type(e).__name__, e.message) if e else None for e in outcomes]

    assert shown(errors) == shown(expected)
    assert errors[1] is not None and errors[2] is not None and errors[3] is not None
    assert (errors[-1] is not None) == repeat  # "a" again: already completed
    assert batched_journal.records == single_journal.records
    assert batched.state.fingerprint() == single.state.fingerprint()
    assert status(batched, "e") is ItemStatus.PENDING  # "d" never left its line's front
    assert_replays(batched, batched_journal)


class RefusingJournal(RecordingJournal):
    """A journal that fails (as a fail-stopped store does) once ``refusing`` is set."""

    refusing = False

    def append(self, op: Op) -> int:
        if self.refusing:
            raise PersistenceError("the journal failed")
        return super().append(op)

    def append_all(self, ops: Sequence[Op]) -> int:
        if self.refusing:
            raise PersistenceError("the journal failed")
        return super().append_all(ops)


@pytest.mark.parametrize("repeat", [False, True])
def test_complete_batch_whose_journal_fails_changes_nothing(repeat: bool) -> None:
    """Fail-stop: the journal's error reaches the caller and no member is applied, whether
    the batch journals in one append (distinct ids) or one member at a time (an id twice)."""
    journal = RefusingJournal()
    core = QueueCore(QueueConfig(max_retries=3), journal=journal, rng=random.Random(3))
    for x in "ab":
        push(core, x, destination=A)
    core.pop(T, 2, except_destinations=NONE)
    refs = [(x, core.item(x).lease_id) for x in "ab"] + ([("a", None)] if repeat else [])
    before, records = core.state.fingerprint(), list(journal.records)
    journal.refusing = True
    with pytest.raises(PersistenceError, match="the journal failed"):
        core.complete_batch(T + 5, refs)
    assert core.state.fingerprint() == before
    assert journal.records == records
    assert [status(core, x) for x in "ab"] == [ItemStatus.PROCESSING] * 2
