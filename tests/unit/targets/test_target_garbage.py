"""A failed REST delivery is freed when it fails, not left for the cycle collector.

The daemon runs the collector rarely (``middleware.cli.run``: frozen start-up objects, high
thresholds), which is right only while messages create no reference cycles. aiohttp's timeout
did: a timed-out request's task, ClientRequest, envelope and error stayed in a cycle through the
error's traceback, ~75 objects each, and during the soak's "target never answers" fault they
piled up by the thousand and raised the daemon's RSS by ~50 MiB for good (bench/RESULTS.md,
soak). The TCP faults (refused, cut mid-answer) are in ``tests/faults/test_target_garbage.py``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp

from adapters.rest.outbound import RestTarget
from adapters.rest.outbound_config import RestTargetConfig
from middleware.adapter import AdapterContext
from middleware.config.models import BrokerConfig
from middleware.envelope import Envelope
from middleware.errors import DeliveryError
from tests.collector import collector_paused, left_for_the_collector
from tests.unit.targets.peer import UnixPeer

DELIVERIES = 20  # more than the target's connections: most time out waiting for one


def fail_deliveries(target: RestTarget) -> list[str]:
    """Deliver to a peer that never answers; the errors' messages, and no reference to them."""
    futures = [target.deliver(Envelope(id=f"E-{n}", source="crm/test", type="crm.order.created",
                                       data={"n": n}), {"n": n})
               for n in range(DELIVERIES)]
    return [str(future.exception(10)) for future in futures]


def test_rest_target_timed_out_requests_are_freed_without_the_collector(
    tmp_path: Path,
) -> None:
    peer = UnixPeer().start()
    peer.answer = "stall"
    target = RestTarget(RestTargetConfig.model_validate({
        "type": "rest", "url": "http://erp.test/rest/orders", "timeout": 0.3,
        "concurrency": 4}), connector=lambda: aiohttp.UnixConnector(path=str(peer.socket)))
    target.start(AdapterContext(None, BrokerConfig(), None, tmp_path))  # type: ignore[arg-type]
    try:
        with collector_paused() as garbage:
            messages = fail_deliveries(target)
            left = left_for_the_collector(garbage, DeliveryError, aiohttp.ClientRequest,
                                          Envelope)
    finally:
        target.close()
        peer.stop()
    assert all("timed out" in message for message in messages), messages
    assert left == Counter()
