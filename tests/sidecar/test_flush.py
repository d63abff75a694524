"""``flush`` compacts in the background: the sidecar keeps answering meanwhile (issue 9 §4).

Its reply still means what it always meant: everything acknowledged before the ``flush`` is
durable and folded into a snapshot. Nothing here is timed: the order of the replies on the
wire shows whether other requests were served while the journal was being folded (a fold of
30 000 items takes a good part of a second, a ping a fraction of a millisecond).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from sync_queue import QueueConfig, SyncQueue

from .conftest import INPROCESS, Spawn
from .harness import Sidecar, request

ITEMS = 30_000
SLOW = 60.0  # seconds a reply may take on a loaded machine (a fold, a recovery)


def start(spawn: Spawn, tmp_path: Path, sidecar_kind: str) -> tuple[Sidecar, Path]:
    """A sidecar on ``tmp_path / "data"`` with room for the items (and its directory).

    In process, waits are real: the compaction runs on the store's thread meanwhile."""
    config = tmp_path / "config.json"
    config.write_text('{"max_capacity": 1000000}')
    data = tmp_path / "data"
    real_time = {"skip_time": False} if sidecar_kind == INPROCESS else {}
    return spawn("--data-dir", data, "--config", config, **real_time), data


def fill(sidecar: Sidecar, count: int = ITEMS) -> list[str]:
    """``count`` pending items ``i0``, ``i1``, ...; their ids."""
    ids = [f"i{n}" for n in range(count)]
    for start in range(0, count, 1000):
        batch = [{"id": i, "payload": {"pad": "x" * 100}} for i in ids[start : start + 1000]]
        assert len(sidecar.result("pushBatch", items=batch)["ids"]) == len(batch)
    return ids


def result(response: dict[str, Any]) -> Any:
    assert "result" in response, response
    return response["result"]


def seq_of(name: str) -> int:
    return int(name.split("-")[1].split(".")[0])


def snapshot_only_copy(data: Path, target: Path) -> Path:
    """A directory holding nothing but ``data``'s snapshot (no journal at all)."""
    target.mkdir(mode=0o700)
    snapshots = [n for n in os.listdir(data) if n.startswith("snapshot-") and n.endswith(".snap")]
    assert len(snapshots) == 1, sorted(os.listdir(data))
    shutil.copy(data / snapshots[0], target / snapshots[0])
    return target


def open_ids(directory: Path) -> dict[str, str]:
    """id -> status of every item in ``directory``, through the Python API."""
    q = SyncQueue(
        QueueConfig(persistence_path=directory, max_capacity=1_000_000), maintenance_thread=False
    )
    try:
        return {item.id: item.status.value for item in q._engine.core.state.iter_items()}
    finally:
        q.shutdown()


@pytest.mark.blackbox
def test_requests_are_answered_while_flush_compacts(
    spawn: Spawn, tmp_path: Path, sidecar_kind: str
) -> None:
    sidecar, data = start(spawn, tmp_path, sidecar_kind)
    ids = fill(sidecar)
    sidecar.send(
        request("flush", "flush"),
        request("ping", "ping"),
        request("push", "push", {"id": "after", "payload": 1}),
        request("get", "get", {"id": "i0"}),
    )
    assert result(sidecar.reply("flush", SLOW)) == {}
    assert result(sidecar.reply("ping")) == {"pong": True}
    assert result(sidecar.reply("push")) == {"id": "after"}
    assert result(sidecar.reply("get"))["id"] == "i0"
    order = sidecar.order
    assert order.index("flush") > max(order.index(i) for i in ("ping", "push", "get")), (
        f"the flush was answered before requests sent after it: {order[-4:]}"
    )

    # The reply means: folded. The journal before the snapshot is gone, and the snapshot
    # alone holds every item acknowledged before the flush.
    names = os.listdir(data)
    snapshot = seq_of(next(n for n in names if n.endswith(".snap")))
    assert all(seq_of(n) > snapshot for n in names if n.startswith("journal-")), sorted(names)
    recovered = open_ids(snapshot_only_copy(data, tmp_path / "snapshot-only"))
    assert set(ids) <= set(recovered)


@pytest.mark.process
def test_flush_keeps_every_change_made_while_it_compacts(
    spawn: Spawn, tmp_path: Path, sidecar_kind: str
) -> None:
    sidecar, data = start(spawn, tmp_path, sidecar_kind)
    ids = fill(sidecar)
    during = [request("flush", "flush")]
    during += [request("push", f"p{n}", {"id": f"c{n}", "payload": n}) for n in range(200)]
    during += [request("cancel", "cancel", {"id": "i1"})]
    during += [request("complete", "complete", {"id": "i2"})]  # pending: refused, no change
    sidecar.send(*during)
    assert result(sidecar.reply("flush", SLOW)) == {}
    acknowledged = [f"c{n}" for n in range(200) if result(sidecar.reply(f"p{n}"))]
    assert result(sidecar.reply("cancel")) == {}
    assert "error" in sidecar.reply("complete")
    sidecar.send(*[request("push", f"q{n}", {"id": f"d{n}", "payload": n}) for n in range(100)])
    acknowledged += [f"d{n}" for n in range(100) if result(sidecar.reply(f"q{n}"))]
    assert sidecar.kill9() != 0

    recovered = open_ids(data)
    assert set(recovered) == set(ids) | set(acknowledged)
    assert recovered["i1"] == "cancelled" and recovered["i2"] == "pending"
    assert sum(status == "pending" for status in recovered.values()) == len(recovered) - 1


def test_flush_cut_short_by_shutdown_says_so(
    spawn: Spawn, tmp_path: Path, sidecar_kind: str
) -> None:
    sidecar, data = start(spawn, tmp_path, sidecar_kind)
    ids = fill(sidecar)
    sidecar.send(request("flush", "flush"), request("shutdown", "bye"))
    assert result(sidecar.reply("bye", SLOW)) == {}
    error = sidecar.reply("flush", SLOW)["error"]
    assert error["data"]["kind"] == "ShuttingDown", error
    assert "durable" in error["message"]
    assert sidecar.wait_exit(SLOW) == 0
    assert set(open_ids(data)) == set(ids)


def test_flush_in_a_batch_and_as_a_notification(
    spawn: Spawn, tmp_path: Path, sidecar_kind: str
) -> None:
    sidecar, data = start(spawn, tmp_path, sidecar_kind)
    fill(sidecar, 1000)
    # A batch's replies leave together, so there the flush is done before the reply.
    replies = sidecar.batch([request("flush", "b1"), request("ping", "b2")], SLOW)
    assert [r.get("result") for r in replies] == [{}, {"pong": True}]
    assert any(n.endswith(".snap") for n in os.listdir(data))
    sidecar.result("push", id="late", payload=1)
    sidecar.notify("flush")  # nobody gets a reply, but it compacts all the same
    sidecar.sync()
    assert "late" in open_ids(snapshot_only_copy_when_folded(data, tmp_path / "copy", sidecar))


def snapshot_only_copy_when_folded(data: Path, target: Path, sidecar: Sidecar) -> Path:
    """Wait until a ``flush`` answered after the notification (so the notification's
    compaction, asked for earlier, is done), then copy the snapshot alone."""
    assert result(sidecar.call("flush")) == {}
    return snapshot_only_copy(data, target)
