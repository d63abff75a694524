"""Unique work (docs/protocol.md §3): what a push with ``unique: {key, policy}`` does with the
live items under its key, decided before the push record is made (``core.push_one`` and
``push_batch``). The state's ``unique_lines`` hold, per key, the live (held, pending,
processing) items in push order; the plan counts the members of a batch before each one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .item import SyncItem
from .legality import RECALLABLE
from .results import PushResult

if TYPE_CHECKING:
    from .state import QueueState

__all__ = ["UniquePlan"]


class UniquePlan:
    """Unique work for one push or batch (docs/protocol.md §3): what each member does with
    the live items under its key, counting the members before it. ``replaced`` collects the
    push record's ``(index, id)`` pairs."""

    def __init__(self, state: QueueState) -> None:
        self._state = state
        self._live: dict[str, list[tuple[str, bool]]] = {}  # key -> (id, recallable)
        self.replaced: list[tuple[int, str]] = []

    def _live_under(self, key: str) -> list[tuple[str, bool]]:
        live = self._live.get(key)
        if live is None:
            line = self._state.unique_lines.get(key, ())
            live = self._live[key] = [(e.id, e.status in RECALLABLE) for e in line]
        return live

    def admit(self, item: SyncItem, index: int) -> PushResult:
        """What pushing ``item`` as member ``index`` of the record does."""
        if item.unique is None:
            return PushResult(item.id)
        key, policy = item.unique
        live = self._live_under(key)
        outcome = "added"
        replaced: str | None = None
        if live and policy == "keep":
            return PushResult(live[0][0], "kept")
        if live and policy == "replace":
            for live_id, recallable in live:
                if recallable:
                    self.replaced.append((index, live_id))
                    replaced = replaced or live_id
            live[:] = [entry for entry in live if not entry[1]]
            outcome = "appended" if live else "replaced"
        elif live:
            outcome = "appended"
        live.append((item.id, True))
        return PushResult(item.id, outcome, replaced)
