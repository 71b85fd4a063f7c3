"""The soak's target faults leave no failed REST request for the cycle collector (case 12).

A request that failed on a hung or refusing target used to stay in a reference cycle
(aiohttp's errors hold frames that hold the request's task) until the daemon's rare full
collection: the soak's RSS rose ~50 MiB during "target never answers" and never came back
(bench/RESULTS.md, soak). Real TCP through the fault proxy, the faults as ``bench.soak``
injects them; the target alone, without a daemon, so only its own garbage is counted. (The
soak's third target fault, an answer cut mid-response, left no such cycle before either.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from starlette.requests import Request
from starlette.responses import Response

from adapters.rest.outbound import RestTarget
from adapters.rest.outbound_config import RestTargetConfig
from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from tests.collector import collector_paused, left_for_the_collector
from tests.faults.proxy import FaultProxy
from tests.integration.rest_helpers import Peer

CONNECTIONS = 4
DELIVERIES = 12  # more than the connections: some fail waiting for one


async def _accept(_request: Request, _body: bytes) -> Response:
    return Response(b'{"id": "ERP-1"}', media_type="application/json")


def _refuse(proxy: FaultProxy) -> None:
    proxy.refuse()
    proxy.reset_all()  # the pooled connections too, as bench.soak does


FAULTS: dict[str, Callable[[FaultProxy], None]] = {
    "never answers": lambda proxy: proxy.blackhole(),
    "refuses connections": _refuse,
}


@pytest.fixture
def target(tmp_path: Path) -> Iterator[tuple[RestTarget, FaultProxy]]:
    with Peer(_accept) as peer, FaultProxy(int(peer.url.rsplit(":", 1)[1])) as proxy:
        target = RestTarget(RestTargetConfig.model_validate({
            "type": "rest", "url": f"http://127.0.0.1:{proxy.port}/erp", "timeout": 0.5,
            "concurrency": CONNECTIONS}))
        target.start(AdapterContext(None, BrokerConfig(), None, tmp_path))  # type: ignore[arg-type]
        try:
            yield target, proxy
        finally:
            proxy.heal()
            target.close()


def _deliver(target: RestTarget, count: int) -> list[str]:
    """``count`` deliveries at once; each one's outcome as text (no reference to a failure)."""
    futures = [target.deliver(Envelope(id=f"E-{n}", source="crm/test", type="crm.order.created",
                                       data={"n": n}), {"n": n}) for n in range(count)]
    return [str(future.exception(10) or "delivered") for future in futures]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_rest_target_failed_requests_leave_no_cycles(
    target: tuple[RestTarget, FaultProxy], fault: str
) -> None:
    rest, proxy = target
    # Given warm connections (as in the soak: the target answered before it broke)
    assert _deliver(rest, CONNECTIONS) == ["delivered"] * CONNECTIONS
    with collector_paused() as garbage:
        # When the target breaks and deliveries fail
        FAULTS[fault](proxy)
        outcomes = _deliver(rest, DELIVERIES)
        # Then no failed request waits for the collector to be freed
        # the target's own objects: the fault proxy, in this process, leaves cycles of its own
        left = left_for_the_collector(garbage, DeliveryError, aiohttp.ClientRequest, Envelope)
    assert all(outcome.startswith("request to ") for outcome in outcomes), outcomes
    assert left == Counter()
