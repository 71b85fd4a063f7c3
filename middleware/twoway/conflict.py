"""Conflict rules between a pair of routes: which change wins when a record was changed in both
systems at about the same time.

Each route files the source time of every change it admits under its own name (per record, in
the sync store's versioned rows), so each can ask when the other system last changed the record:

- ``latest-wins``: a change older than the other system's last change is dropped.
- ``system-wins``: a change of the losing system within ``window`` of the winner's is dropped.
- ``fields``: the target's own fields are never written by this route (the rest is).

A change that wins while the losing one was already admitted by the other route has been, or is
being, written over the winner in the winner's own system. To repair that, the winner's write is
fingerprinted as a *re-assertion*: when the other system reports it back, the paired route does
not suppress it as an echo but writes it (past the rule) into the winner's system, and both
systems hold the winning values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from middleware import metrics
from middleware.config.models import RouteConfig
from middleware.config.sync import ConflictConfig, SyncConfig
from middleware.envelope import Envelope
from middleware.stores.base import SyncStore
from middleware.twoway.keys import version_of

__all__ = ["Judgement", "Rules", "reassert_namespace"]

Call = Callable[[str, str, Callable[[], Any]], Any]


def reassert_namespace(route: str) -> str:
    """Where a route files fingerprints of writes the paired route must pass on, not drop."""
    return f"{route}!reassert"


@dataclass(frozen=True)
class Judgement:
    drop: bool
    """The other system's change wins: do not write this one."""
    reassert: bool
    """This change wins over one already written into its own system: repair that."""


class Rules:
    """One route's side of its pair's conflict rule."""

    def __init__(self, route: RouteConfig, store: SyncStore, call: Call) -> None:
        assert route.sync is not None and route.sync.conflict is not None
        assert route.sync.echo is not None  # the config requires it
        self.config: ConflictConfig = route.sync.conflict
        pair = "|".join(sorted((route.name, route.sync.echo.pair)))
        self._own = f"changes:{pair}:{route.name}"
        self._other = f"changes:{pair}:{route.sync.echo.pair}"
        self._route = route.name
        self._store = store
        self._call = call
        self._resolved = metrics.CONFLICTS.labels(route.name, self.config.rule)

    def judge(self, envelope: Envelope, subject: str) -> Judgement:
        """Decide for a change (not an echo); files its source time for the other route."""
        when = version_of(envelope, SyncConfig(), self._route)  # the source time, in µs
        window = int(self.config.window * 1_000_000)
        # Filed before asking, so of two changes judged at once at least the second to ask
        # sees the first (asking first let both pass unseen, and the systems swapped values);
        # the other's time is read once (two reads let a change filed in between make both
        # sides winners).
        self._call("sync", "applied", lambda: self._store.applied(
            self._own, subject, when, ""))
        other = self._call("sync", "version", lambda: self._store.version(self._other, subject))
        conflicting = other is not None and other > when - window
        other_later = other is not None and other > when
        if not conflicting:
            return Judgement(drop=False, reassert=False)
        self._resolved.inc()
        if self.config.rule == "latest-wins":
            return Judgement(drop=other_later, reassert=not other_later)
        if self.config.rule == "system-wins":
            wins = envelope.system == self.config.wins
            return Judgement(drop=not wins, reassert=wins)
        return Judgement(drop=False, reassert=False)  # fields: writes leave owned fields out

    def strip(self, payload: Any) -> Any:
        """The payload without the fields the target owns (rule ``fields``)."""
        if self.config.rule != "fields" or not isinstance(payload, dict):
            return payload
        result = dict(payload)
        for path in self.config.owned_by_target:
            node = result
            *parents, last = path.split(".")
            for part in parents:
                child = node.get(part)
                if not isinstance(child, dict):
                    break
                node[part] = child = dict(child)
                node = child
            else:
                node.pop(last, None)
        return result
