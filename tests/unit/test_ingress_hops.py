"""Thread hops per request on the shared ingress path: CPU work and store calls go to worker
threads, publishing and confirm waits stay on the event loop, and no more hops than needed.

Each hop wakes a worker thread and the loop again, and under load those GIL hand-offs cost more
than the request (bench/ingress.py); before the shared layer a SOAP request hopped three times.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from adapters.rest.inbound import RestInbound
from adapters.rest.inbound_config import RestEndpointConfig
from adapters.soap.config import SalesforceConfig
from adapters.soap.salesforce import OUTBOUND_NS, SalesforceInbound
from tests.unit.soap.helpers import TEXT_XML, MemoryPublisher, endpoint_client, soap11

ORG = "00D000000000001AAA"


class ThreadedPublisher(MemoryPublisher):
    """Records the thread of every publish call."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        return super().publish(*args, **kwargs)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """(function name, worker thread) of every hop to a worker thread."""
    seen: list[tuple[str, int]] = []
    real = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            seen.append((func.__name__, threading.get_ident()))
            return func(*args)
        return await real(run, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield seen


def _notifications(*ids: str) -> bytes:
    items = "".join(f'<Notification><Id>{ident}</Id><sObject xmlns:xsi="http://www.w3.org/2001/'
                    f'XMLSchema-instance" xmlns:sf="urn:sobject.enterprise.soap.sforce.com" '
                    f'xsi:type="sf:Account"><sf:Id>001</sf:Id></sObject></Notification>'
                    for ident in ids)
    return soap11(f'<notifications xmlns="{OUTBOUND_NS}"><OrganizationId>{ORG}</OrganizationId>'
                  f"{items}</notifications>")


def test_ingress_soap_request_parses_and_claims_in_one_hop_and_publishes_on_the_loop(
    tmp_path: Path, hops: list[tuple[str, int]],
) -> None:
    publisher = ThreadedPublisher()
    client, stores = endpoint_client(SalesforceInbound(SalesforceConfig.model_validate({
        "type": "salesforce-om", "name": "sf", "path": "/soap/sf", "organization_id": ORG})),
        tmp_path, publisher)
    response = client.post("/soap/sf", content=_notifications("04l1", "04l2"), headers=TEXT_XML)
    assert response.status_code == 200, response.text
    # parse + WS-Security + derive + claim in one hop, confirm in a second: two, not three
    assert [name for name, _ in hops] == ["_read", "_settle_now"]
    workers = {thread for _, thread in hops}
    assert publisher.threads and not workers.intersection(publisher.threads)
    assert len(set(publisher.threads)) == 1  # the event loop's thread
    assert stores.idempotency.claim("ingress:sf", ["04l1", "04l2"], 60).done == ["04l1", "04l2"]


def test_ingress_rest_request_without_delivery_ids_never_leaves_the_loop(
    tmp_path: Path, hops: list[tuple[str, int]],
) -> None:
    publisher = ThreadedPublisher()
    client, _stores = endpoint_client(RestInbound(RestEndpointConfig.model_validate({
        "type": "rest", "name": "hook", "path": "/hook", "system": "crm",
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"}}})),
        tmp_path, publisher)
    response = client.post("/hook", json={"customer_no": "C-1"})
    assert response.status_code == 202, response.text
    assert hops == []
    assert len(publisher.ids) == 1


def test_ingress_rest_request_with_a_delivery_id_hops_to_claim_and_to_confirm(
    tmp_path: Path, hops: list[tuple[str, int]],
) -> None:
    publisher = ThreadedPublisher()
    client, _stores = endpoint_client(RestInbound(RestEndpointConfig.model_validate({
        "type": "rest", "name": "hook", "path": "/hook", "system": "crm",
        "derive": {"entity": {"value": "customer"}, "action": {"value": "updated"},
                   "id": {"path": "event_id"}}})), tmp_path, publisher)
    response = client.post("/hook", json={"event_id": "E-1"})
    assert response.status_code == 202, response.text
    assert [name for name, _ in hops] == ["claim", "_settle_now"]
    assert not {thread for _, thread in hops}.intersection(publisher.threads)
    assert client.post("/hook", json={"event_id": "E-1"}).status_code == 200
    assert publisher.ids == ["E-1"]
