"""Two-way sync on a route with enrich steps, on the in-memory broker and a SQLite store: the
sync admission comes before the enrich calls (an echo, a stale or a held event costs no call),
and the ticket goes through the enrich path (fingerprint of what is written, fields the target
owns left out, the subject kept across a failed enrich call and freed when applied)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from middleware.config.enrich import EnrichStep
from middleware.enrich import Enrichment, Prepared, Step
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from middleware.stores.sync_sqlite import SqliteSyncStore
from tests.unit.pipeline_helpers import wait_until
from tests.unit.test_twoway_pipeline import outcome, running, update


class Lookup:
    """An enrich step's call answering ``{"credit": n}`` per subject on a thread of its own (as a
    system answers on its own loop), failing chosen subjects' first call with a 503. Records
    the subject of every call."""

    def __init__(self, fail_once: set[str] | None = None) -> None:
        self.fail_once = set(fail_once or ())
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def prepare(self, envelope: Envelope, payload: Any) -> Prepared:
        return Prepared(key=str(envelope.subject), request=envelope.subject)

    def fetch(self, prepared: Prepared, trace: Mapping[str, str]) -> Future[Any]:
        future: Future[Any] = Future()
        with self.lock:
            self.calls.append(prepared.request)
            failing = prepared.request in self.fail_once
            self.fail_once.discard(prepared.request)

        def answer() -> None:
            if failing:
                future.set_exception(DeliveryError("scripted 503", retryable=True))
            else:
                future.set_result({"credit": 100})

        threading.Thread(target=answer, name="lookup-system").start()
        return future


def _enrichment(route: str, call: Lookup, after_mapping: bool = False) -> Enrichment:
    step = EnrichStep.model_validate({"system": "erp", "get": "/credit/{envelope.subject}",
                                      "into": "credit", "select": "credit",
                                      "after_mapping": after_mapping})
    return Enrichment([Step(step, call, 1, route)])


def _pair(prefix: str, conflict: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    there, back = f"{prefix}-to-erp", f"{prefix}-to-crm"
    return [
        {"name": there, "bind": [f"{prefix}crm.customer.*"],
         "sync": {"echo": {"pair": back, "fields": ["name", "price"]}, "conflict": conflict}},
        {"name": back, "bind": [f"{prefix}erp.customer.*"],
         "sync": {"echo": {"pair": there, "fields": ["name", "price"]}, "conflict": conflict}},
    ]


def _change(prefix: str, system: str, subject: str, second: int, **data: Any) -> Envelope:
    event = update(prefix, subject, second, **data)
    return event.model_copy(update={"type": f"{prefix}{system}.customer.updated"})


def test_an_echo_on_an_enriched_route_is_dropped_without_an_enrich_call(
    tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    there, back = f"{prefix}-to-erp", f"{prefix}-to-crm"
    remembered_on: list[str] = []  # threads that filed a fingerprint
    remember = SqliteSyncStore.remember

    def recorded(self: SqliteSyncStore, *args: Any) -> None:
        remembered_on.append(threading.current_thread().name)
        remember(self, *args)

    monkeypatch.setattr(SqliteSyncStore, "remember", recorded)
    to_erp, to_crm = Lookup(), Lookup()
    enrichment = {there: _enrichment(there, to_erp), back: _enrichment(back, to_crm)}
    with running(tmp_path, _pair(prefix), enrichment) as run:
        # Given: a CRM change, enriched and written into the ERP
        run.send(there, _change(prefix, "crm", "C-1", 1, name="Ada", price=10))
        assert wait_until(lambda: len(run.targets[there].accepted) == 1)
        assert run.targets[there].accepted[0][1]["credit"] == 100  # the enriched payload
        # When: the ERP reports that write back
        run.send(back, _change(prefix, "erp", "C-1", 2, name="Ada", price="10"))
        assert wait_until(lambda: outcome(back, "echo") == 1)
        # Then: it is an echo, and the route back never called its system for it
        assert to_crm.calls == [] and run.targets[back].calls == []
        # And a genuine ERP edit is enriched and written, and its own echo dropped uncalled
        run.send(back, _change(prefix, "erp", "C-1", 3, name="Ada", price=12))
        assert wait_until(lambda: len(run.targets[back].accepted) == 1)
        assert to_crm.calls == ["C-1"]
        run.send(there, _change(prefix, "crm", "C-1", 4, name="Ada", price=12))
        assert wait_until(lambda: outcome(there, "echo") == 1)
        assert to_erp.calls == ["C-1"] and len(run.targets[there].accepted) == 1
        # The fingerprints were filed on store threads, never on the system's own thread
        assert len(remembered_on) == 2 and "lookup-system" not in remembered_on


def test_an_enriched_ordered_route_keeps_order_across_a_failed_enrich_call(
    tmp_path: Path, prefix: str
) -> None:
    # Given: an ordered route whose enrich call for C-1's first update fails once (503)
    route = {"name": prefix, "bind": [f"{prefix}.customer.*"],
             "sync": {"ordering": "subject", "hold_delay": 0.05}}
    lookup = Lookup(fail_once={"C-1"})
    with running(tmp_path, [route], {prefix: _enrichment(prefix, lookup)}) as run:
        target = run.targets[prefix]
        first, second = update(prefix, "C-1", 1, v=1), update(prefix, "C-1", 2, v=2)
        other = update(prefix, "C-2", 1, v=1)
        # When: the second update of C-1 and one of C-2 arrive while the first waits to retry
        run.send(prefix, first, second, other)
        # Then: C-1 reaches the target in order (the failed call kept the subject), C-2 first
        assert wait_until(lambda: len(target.accepted) == 3)
        order = [ident for ident, _ in target.accepted]
        assert order == [other.id, first.id, second.id]
        assert outcome(prefix, "held") >= 1 and outcome(prefix, "retried") == 1
        # And an update older than what was applied is stale before any enrich call
        calls = len(lookup.calls)
        run.send(prefix, update(prefix, "C-1", 0, v=0))
        assert wait_until(lambda: outcome(prefix, "stale") == 1)
        assert len(lookup.calls) == calls


def test_an_enriched_route_leaves_out_the_fields_the_target_owns_after_its_steps(
    tmp_path: Path, prefix: str
) -> None:
    # Given: rule 'fields' with the ERP owning 'credit', which a step adds after the mapping
    there = f"{prefix}-to-erp"
    rule = {"rule": "fields", "owned_by_target": ["credit"]}
    lookup = Lookup()
    enrichment = {there: _enrichment(there, lookup, after_mapping=True)}
    with running(tmp_path, _pair(prefix, rule), enrichment) as run:
        run.send(there, _change(prefix, "crm", "C-1", 1, name="Ada", price=10))
        # Then: the write leaves the owned field out, as on a route without steps
        assert wait_until(lambda: len(run.targets[there].accepted) == 1)
        assert lookup.calls == ["C-1"]
        assert "credit" not in run.targets[there].accepted[0][1]
