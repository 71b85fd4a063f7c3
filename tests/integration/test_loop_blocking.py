"""Issue 14.4: no callback on the broker I/O loop or a REST target's event loop blocks.

A realistic flow on the real RabbitMQ with a slow store (every call 30 ms): a mapping with an
xref lookup and a capture of the id the ERP answers, delivered over HTTP to a real loopback
server, and replayed messages that are looked up in the store before delivery. Every callback
the broker loop runs is timed (``guard.recording_blocks``), and that loop, where the REST
target's aiohttp requests run too, runs in asyncio debug mode, which reports each callback
slower than ``slow_callback_duration`` (pika's frame handlers and the target's alike). A
store call on either loop costs 50 ms; the loops' own work takes well under a millisecond.

Wall-clock timing on a shared machine also sees callbacks that were merely preempted: on the
2-core test machine at a load average of 10, runs showed one to three callbacks of 25-180 ms
that do no I/O at all (aiohttp writing a request, mostly). A store call on a loop would instead
block every one of the 200+ messages that need the store, so the test tolerates ``NOISE``
outliers over 20 ms, and checks exactly, besides, which threads made every store call. The GIL
switch interval is lowered to 1 ms and garbage collection paused, so a callback that waited for
another thread's turn with the GIL, or for a collection, is not mistaken for one that blocked.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from middleware import headers
from middleware.adapter import OutboundAdapter
from middleware.broker.guard import recording_blocks
from middleware.broker.topology import dlq_name
from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from middleware.envelope import Envelope
from tests.integration.helpers import queue_count, wait_until
from tests.integration.rest_helpers import Peer, json_response
from tests.integration.store_helpers import SlowStore, publish_steadily, slow_stores

pytestmark = pytest.mark.integration

BLOCKED_AFTER = 0.020
STORE_DELAY = 0.050
NOISE = 3  # callbacks over the threshold that a store call cannot explain (see above)

MAPPING = """\
mapping: loop-blocking
fields:
  customer_no: {from: customer_no}
  account_id:
    from: customer_no
    lookup: {xref: crm.customer -> erp.account, on_missing: passthrough}
capture: [{xref: crm.customer -> erp.account, source: customer_no, response: account_id}]
"""


@pytest.fixture
def fine_gil() -> Iterator[None]:
    """GIL hand-overs every 1 ms, and no cyclic garbage collection pauses meanwhile."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    sys.setswitchinterval(before)


class SlowLoopCallbacks(logging.Handler):
    """Collects asyncio's debug-mode reports of callbacks slower than slow_callback_duration."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.reports.append(message)


def _debug_loop(target: OutboundAdapter) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = target._client._loop  # type: ignore[attr-defined]
    loop.call_soon_threadsafe(loop.set_debug, True)
    loop.slow_callback_duration = BLOCKED_AFTER
    return loop


def test_no_callback_blocks_the_broker_loop_or_the_rest_target_loop(
    amqp_url: str, prefix: str, tmp_path: Path, fine_gil: None,
    make_config: Callable[..., LoadedConfig],
) -> None:
    # Given an ERP on loopback that answers each account with the id it created
    async def create(request: Request, body: bytes) -> Response:
        payload = orjson.loads(body)
        return json_response({"account_id": f"A-{payload['customer_no']}"}, 201)

    (tmp_path / "m.yaml").write_text(MAPPING)
    route = f"{prefix}-r"
    events = [Envelope.new(source="crm/test", type=f"{prefix}.customer.updated",
                           subject=f"C-{n % 40}", data={"customer_no": f"C-{n % 40}"})
              for n in range(320)]
    warm_up, fresh, replayed = events[:20], events[20:220], events[220:]
    with Peer(create) as erp:
        loaded = make_config([{
            "name": route, "bind": [f"{prefix}.customer.*"], "mapping": str(tmp_path / "m.yaml"),
            "target": {"type": "rest", "url": f"{erp.url}/accounts", "concurrency": 16},
        }])
        # and a daemon whose idempotency and xref stores take 50 ms a call
        daemon = Daemon(loaded, Role.WORKER)
        daemon.stores = slow_stores(daemon.stores, STORE_DELAY)
        asyncio_log = logging.getLogger("asyncio")
        slow_reports = SlowLoopCallbacks()
        try:
            daemon.start()
            assert wait_until(lambda: all(daemon.readiness().values()), 10)
            _debug_loop(daemon.targets[0])
            # (the first requests open connections and warm lazy imports: not measured)
            publish_steadily(amqp_url, warm_up, rate=200)
            assert wait_until(lambda: _ids(erp) >= {e.id for e in warm_up}, 30)
            asyncio_log.addHandler(slow_reports)
            with recording_blocks(BLOCKED_AFTER) as blocked:
                # When 300 events flow at 200/s: 40 customers, so lookups find the links that
                # captures stored, and a third of them replayed from a DLQ (looked up first)
                sent = publish_steadily(amqp_url, fresh, rate=200)
                sent += publish_steadily(amqp_url, replayed, rate=200,
                                         headers={headers.REPLAYS: 1})
                assert wait_until(lambda: _ids(erp) >= {e.id for e in events}, 90)
                assert wait_until(lambda: daemon.workers[0].wait_idle(0), 30)
        finally:
            asyncio_log.removeHandler(slow_reports)
            daemon.stop()
    # Then every event reached the ERP, through the store (lookups, captures, replay checks)
    assert len(sent) == 300
    idempotency, xref = daemon.stores.idempotency, daemon.stores.xref
    assert isinstance(idempotency, SlowStore) and isinstance(xref, SlowStore)
    calls = [(name, thread) for name, thread in idempotency.calls + xref.calls
             if name in ("seen", "record_many", "lookup", "link")]  # not the monitor's prune
    assert {name for name, _ in calls} == {"seen", "record_many", "lookup", "link"}
    # on the route's store threads only, never on the broker loop or the target's loop
    assert {thread for _, thread in calls} <= {f"store-{route}-{n}" for n in range(4)}
    assert queue_count(amqp_url, dlq_name(route)) == 0
    # and no callback on either loop blocked it: a store call there would show 200+ times
    assert len(blocked) <= NOISE, blocked[:10]
    assert len(slow_reports.reports) <= NOISE, slow_reports.reports[:10]


def _ids(peer: Peer) -> set[str]:
    return {r[2].get("idempotency-key", "") for r in peer.calls("/accounts")}
