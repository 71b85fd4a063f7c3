"""The audit log: who did what, when, to what, with the state before and after.

Every mutating API call and every ``silobridge users`` change writes one record through
``record``; before/after are JSON documents (None where a thing did not exist). Records are read
newest first by the console and exported as NDJSON by ``GET /api/v1/audit?format=ndjson``.
"""

from __future__ import annotations

from typing import Any

import orjson

from middleware.console.store import AuditRecord, ConsoleStore

__all__ = ["as_json", "record"]


def record(store: ConsoleStore, actor: str, action: str, target: str, before: Any,
           after: Any) -> None:
    store.audit(actor, action, target, _dump(before), _dump(after))


def as_json(entry: AuditRecord) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action,
            "target": entry.target,
            "before": None if entry.before is None else orjson.loads(entry.before),
            "after": None if entry.after is None else orjson.loads(entry.after)}


def _dump(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()
