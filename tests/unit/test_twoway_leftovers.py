"""Echo fingerprints left over swallowed genuine edits (found by the two-way demo).

Under rule ``fields`` a route fingerprints only the fields it owns, so the other system's
genuine edit of its own fields carries the same fingerprinted values as silobridge's last write.
A fingerprint nobody used up then made that edit an ``echo``: it never reached the first system.
Two ways one was left over: a write that failed, and an echo recognised by its origin marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from middleware.config.models import Config, StoreConfig
from middleware.envelope import Envelope
from middleware.stores import Stores, open_stores
from middleware.twoway.gate import Admission, SyncGate

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_stores(StoreConfig(path=str(tmp_path / "store.db")))
    yield opened
    opened.close()


def _gates(stores: Stores, origin: dict[str, Any] | None = None) -> tuple[SyncGate, SyncGate]:
    """to-erp writes the CRM-owned Name; to-crm writes the ERP-owned credit and knows the
    ERP's reports of silobridge's writes by ``origin`` when given."""
    config = Config.model_validate({"routes": [
        {"name": "to-erp", "bind": ["crm.customer.*"], "target": {"type": "scripted"},
         "sync": {"echo": {"pair": "to-crm", "fields": ["Name"]},
                  "conflict": {"rule": "fields", "owned_by_target": ["Credit"]}}},
        {"name": "to-crm", "bind": ["erp.customer.*"], "target": {"type": "scripted"},
         "sync": {"echo": {"pair": "to-erp", "fields": ["credit"], "origin": origin},
                  "conflict": {"rule": "fields", "owned_by_target": ["name"]}}}]})

    def call(_store: str, _operation: str, work: Any) -> Any:
        return work()

    there, back = config.routes
    return (SyncGate(there, stores.sync, call, back), SyncGate(back, stores.sync, call, there))


def _event(system: str, second: int, **data: Any) -> Envelope:
    return Envelope.new(source=system, type=f"{system}.customer.updated", subject="C-1",
                        time=T0 + timedelta(seconds=second), data=data)


def test_a_failed_write_takes_its_fingerprint_back(stores: Stores) -> None:
    to_erp, to_crm = _gates(stores)
    # Given: a CRM change whose write into the ERP fails (its fingerprint filed just before)
    change = _event("crm", 1, Name="Anna")
    admission, ticket = to_erp.admit(change)
    assert admission is Admission.GO and ticket is not None
    to_erp.writing(change, ticket, {"Name": "Anna"})
    to_erp.failed(change, ticket, None)
    # When: an ERP clerk changes the credit limit of that customer (the ERP's Name is Anna)
    edit = _event("erp", 2, Name="Anna", Credit="5000", credit="5000")
    # Then: it is a genuine change, not an echo of the write that never happened
    assert to_crm.admit(edit)[0] is Admission.GO


def test_a_retried_write_files_its_fingerprint_again_and_its_echo_is_recognised(
    stores: Stores
) -> None:
    to_erp, to_crm = _gates(stores)
    change = _event("crm", 1, Name="Anna")
    _admission, ticket = to_erp.admit(change)
    assert ticket is not None
    to_erp.writing(change, ticket, {"Name": "Anna"})
    to_erp.failed(change, ticket, 0.5)  # a retry tier
    _admission, ticket = to_erp.admit(change, takeover=True)
    assert ticket is not None
    to_erp.writing(change, ticket, {"Name": "Anna"})
    to_erp.delivered(change, ticket)
    assert to_crm.admit(_event("erp", 2, Name="Anna", credit="100"))[0] is Admission.ECHO


def test_an_echo_known_by_its_marker_uses_up_its_fingerprint(stores: Stores) -> None:
    marker = {"field": "changeSource", "values": ["INTEGRATION"]}
    to_erp, to_crm = _gates(stores, origin=marker)
    # Given: a write into the ERP that the ERP reports back with its integration marker
    change = _event("crm", 1, Name="Anna")
    _admission, ticket = to_erp.admit(change)
    assert ticket is not None
    to_erp.writing(change, ticket, {"Name": "Anna"})
    to_erp.delivered(change, ticket)
    report = _event("erp", 2, Name="Anna", credit="100", changeSource="INTEGRATION")
    assert to_crm.admit(report)[0] is Admission.ECHO
    # When: a clerk then changes the credit limit in the ERP's own screens
    edit = _event("erp", 3, Name="Anna", credit="5000", changeSource="ERP_UI")
    # Then: it flows to the CRM
    assert to_crm.admit(edit)[0] is Admission.GO
