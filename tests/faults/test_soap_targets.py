"""Case 9 (SOAP targets): a non-SOAP 500 and a slow-loris answer, against real HTTP servers.

A server answers every call with an HTML error page (no SOAP), another with an XML answer
trickling at one byte per second (each byte inside the read timeout, so only a deadline for the
whole answer ends it). Each is classified as ``adapters/soap/classify.py`` documents
(retried), no worker waits on the target past its timeout, and the daemon leaves no thread or
socket behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from middleware.config.loader import LoadedConfig
from middleware.daemon import Daemon, Role
from tests.faults.results import record
from tests.faults.test_targets import _fd_targets, _fds, _leaked
from tests.integration.helpers import counter, wait_until
from tests.integration.rest_helpers import Peer
from tests.integration.soap_helpers import ERP_WSDL
from tests.integration.test_soap_delivery import MAPPING, publish_order

TIMEOUT, CONNECT = 2.0, 1.0  # the whole answer within their sum
_OBSERVED: dict[str, str] = {}


async def _html_500(_request: Request, _body: bytes) -> Response:
    return Response("<html><body><h1>500 Internal Server Error</h1></body></html>",
                    status_code=500, media_type="text/html")


async def _slow_loris(_request: Request, _body: bytes) -> Response:
    async def drip() -> AsyncIterator[bytes]:
        for byte in b"<?xml version='1.0'?><soap:Envelope xmlns:soap=":
            yield bytes([byte])
            await asyncio.sleep(1)

    return StreamingResponse(drip(), media_type="text/xml")


@pytest.fixture
def addresses() -> Iterator[dict[str, str]]:
    """Servers answering every post with an HTML 500 page, or one byte per second."""
    with Peer(_html_500) as html, Peer(_slow_loris) as slow:
        yield {"non_soap_500": f"{html.url}/erp", "slow_loris": f"{slow.url}/erp"}


FAULTS = ("non_soap_500", "slow_loris")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_soap_target_fault_is_retried_without_stuck_workers_or_leaks(
    amqp_url: str, prefix: str, make_config: Callable[..., LoadedConfig],
    addresses: dict[str, str], fault: str,
) -> None:
    route = f"{prefix}-so"
    loaded = make_config([{
        "name": route, "bind": [f"{prefix}.order.*"], "mapping": str(MAPPING),
        "target": {"type": "soap", "wsdl": str(ERP_WSDL), "operation": "CreateSalesOrder",
                   "address": addresses[fault], "timeout": TIMEOUT,
                   "connect_timeout": CONNECT, "idempotency": {"argument": "RequestId"}}}],
        retry={"attempts": 2, "initial_delay": 0.3, "multiplier": 2})
    threads, named = threading.active_count(), _fd_targets()
    fds = len(named)
    daemon = Daemon(loaded, Role.WORKER)
    daemon.start()
    try:
        # When the target misbehaves
        began = time.monotonic()
        publish_order(amqp_url, prefix)
        # Then the delivery is classified as retryable within the target's timeout
        assert wait_until(lambda: _outcome(route, "retried") >= 1, TIMEOUT + 5, step=0.02), {
            o: _outcome(route, o) for o in ("delivered", "retried", "dead_lettered")}
        decided = time.monotonic() - began
        assert decided <= CONNECT + TIMEOUT + 1.0, f"the worker waited {decided:.1f} s"
        assert wait_until(lambda: counter("silobridge_in_flight", route=route) == 0, 20)
    finally:
        daemon.stop()
    assert wait_until(lambda: threading.active_count() <= threads, 10), threading.enumerate()
    assert wait_until(lambda: _fds() <= fds + 2, 10), _leaked(named)
    _OBSERVED[fault] = f"{fault.replace('_', ' ')}: retried after {decided:.1f} s"
    if len(_OBSERVED) == len(FAULTS):
        record("soap_target", observed="; ".join(_OBSERVED[f] for f in FAULTS) +
               f" (connect_timeout {CONNECT:g} s, timeout {TIMEOUT:g} s; before the "
               "whole-answer deadline a worker waited 47 s for the slow-loris); threads and "
               "fds back to their count before",
               lost=0, duplicates=0, recovery_seconds=None)


def _outcome(route: str, outcome: str) -> float:
    return counter("silobridge_messages_total", route=route, target="soap", outcome=outcome)
