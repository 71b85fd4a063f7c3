"""A failed HTTP delivery is freed when it fails, not left for the cycle collector.

The daemon runs the collector rarely (``middleware.cli.run``: frozen start-up objects, high
thresholds), which is right only while messages create no reference cycles. Client errors did:
a REST request that timed out stayed in a cycle through aiohttp's error traceback with its
task, ClientRequest and envelope, ~75 objects each, and during the soak's "target never
answers" fault they piled up by the thousand and raised the daemon's RSS by ~50 MiB for good
(bench/RESULTS.md, soak); a SOAP call that timed out left urllib3's error chain in a cycle.
``adapters._http.without_frames`` is the cure. The REST target's TCP faults (refused) are in
``tests/faults/test_target_garbage.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import requests_unixsocket

from adapters.rest.outbound import RestTarget
from adapters.rest.outbound_config import RestTargetConfig
from adapters.soap.config import SoapTargetConfig
from adapters.soap.outbound import SoapTarget
from middleware.adapter import AdapterContext, OutboundAdapter
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from tests.collector import collector_paused, left_for_the_collector
from tests.unit.targets.peer import UnixPeer

DELIVERIES = 20  # more than the targets' connections or threads: most wait for one
TIMEOUT = 0.3
_WSDL = Path(__file__).resolve().parents[3] / "mappings/examples/soap-erp/demo-erp.wsdl"
ORDER = {"OrderNo": "CRM-O-1", "AccountNo": "A-77", "Currency": "EUR"}


def rest(peer: UnixPeer) -> OutboundAdapter:
    return RestTarget(RestTargetConfig.model_validate({
        "type": "rest", "url": "http://erp.test/rest/orders", "timeout": TIMEOUT,
        "concurrency": 4}), connector=lambda: aiohttp.UnixConnector(path=str(peer.socket)))


def soap(peer: UnixPeer) -> OutboundAdapter:
    return SoapTarget(SoapTargetConfig.model_validate({
        "type": "soap", "wsdl": str(_WSDL), "operation": "CreateSalesOrder",
        "address": f"{peer.base_url}/soap", "timeout": TIMEOUT,
        "idempotency": {"argument": "RequestId"}}),
        transports={"http+unix://": requests_unixsocket.UnixAdapter()})


def fail_deliveries(target: OutboundAdapter) -> list[str]:
    """Deliver to a peer that never answers; the errors' messages, and no reference to them."""
    futures = [target.deliver(Envelope(id=f"E-{n}", source="crm/test", type="crm.order.created",
                                       data=ORDER), dict(ORDER))
               for n in range(DELIVERIES)]
    return [str(future.exception(10)) for future in futures]


@pytest.mark.parametrize("make", [rest, soap])
def test_target_timed_out_calls_are_freed_without_the_collector(
    make: Callable[[UnixPeer], OutboundAdapter], tmp_path: Path,
) -> None:
    peer = UnixPeer().start()
    peer.answer = "stall"
    target = make(peer)
    target.start(AdapterContext(None, BrokerConfig(), None, tmp_path))  # type: ignore[arg-type]
    try:
        with collector_paused() as garbage:
            messages = fail_deliveries(target)
            left = left_for_the_collector(garbage, BaseException, aiohttp.ClientRequest,
                                          Envelope)
    finally:
        target.close()
        peer.stop()
    assert all("timed out" in message for message in messages), messages
    assert left == Counter()
