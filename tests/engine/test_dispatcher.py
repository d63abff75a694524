"""The stdio server's dispatcher driving the engine in process (no subprocess, no pipes)."""

from __future__ import annotations

from typing import Any

from sync_queue import ManualClock, QueueConfig
from sync_queue.methods import QueueDispatcher
from sync_queue.persistence import open_engine
from sync_queue.protocol import PLAIN_CALL


class Link:
    """A ``ServerLink`` that keeps the notifications."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, Any]] = []

    def notify(self, method: str, params: Any) -> None:
        self.notes.append((method, params))

    def wake(self) -> None:
        pass

    def sent(self, method: str) -> list[Any]:
        return [params for name, params in self.notes if name == method]


def test_every_event_becomes_a_notification_not_only_the_first_cycles() -> None:
    clock = ManualClock()
    config = QueueConfig(breaker_failure_threshold=1, breaker_cooldown=0.3, base_retry_delay=60)
    d = QueueDispatcher(open_engine(config, clock=clock), data_dir=None, recovered={})
    link = Link()
    d.attach(link)
    try:
        d.handle(
            "pushBatch", {"items": [{"payload": n, "id": str(n)} for n in range(2)]}, PLAIN_CALL
        )
        item = d.handle("pop", {}, PLAIN_CALL)
        d.handle("fail", {"id": item["id"]}, PLAIN_CALL)
        d.commit()
        assert [n["state"] for n in link.sent("breakerChanged")] == ["open"]
        clock.advance(300)  # the cool-down ends: a read catches up and half-opens it
        assert d.handle("health", {}, PLAIN_CALL)["breaker"] == "halfOpen"
        assert [n["state"] for n in link.sent("breakerChanged")] == ["open", "halfOpen"]
    finally:
        d.close()
