"""Case 9 (sources): a poller's API that answers 503 with Retry-After, times out, or cuts the
connection in the middle of page 3 of 5, against a real HTTP server and the real broker.

Each fault hits page 3 once: the page is fetched again within the run (after the Retry-After
the API asked for, or a doubling wait), and the run completes. When the page keeps failing past
the retries the run fails with its watermark kept, and the next run resumes from it. Every
record is published exactly once, and the poller leaves no thread or socket behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from middleware.config.loader import LoadedConfig
from tests.faults.results import record
from tests.faults.test_targets import _fd_targets, _fds, _leaked
from tests.integration.rest_helpers import Peer, catch_all_route, json_response
from tests.integration.test_rest_poll import PAGE, ProductApi, _poll_once, _poller, _published

RECORDS = 5 * PAGE  # five pages
TIMEOUT = 1.0
_OBSERVED: dict[str, str] = {}


class FaultyApi:
    """The product API, whose page 3 (cursor 20) fails ``times`` times with ``fault``."""

    def __init__(self, fault: str, times: int) -> None:
        self.api = ProductApi(RECORDS)
        self.fault, self.left = fault, times
        self.page3: list[float] = []  # when page 3 was asked for

    async def __call__(self, request: Request, body: bytes) -> Response:
        if request.query_params.get("cursor") == str(2 * PAGE):
            self.page3.append(time.monotonic())
            if self.left > 0:
                self.left -= 1
                return await self._fail(request, body)
        return await self.api(request, body)

    async def _fail(self, request: Request, body: bytes) -> Response:
        if self.fault == "503_retry_after":
            return json_response({"error": "maintenance"}, 503, **{"Retry-After": "2"})
        if self.fault == "timeout":
            await asyncio.sleep(TIMEOUT * 3)
            return await self.api(request, body)
        answer = await self.api(request, body)  # "cut": half of the page, then the connection

        async def half() -> AsyncIterator[bytes]:
            yield bytes(answer.body)[: len(answer.body) // 2]
            raise ConnectionAbortedError("cut in the middle of page 3 (test)")

        return StreamingResponse(half(), media_type="application/json")


FAULTS: dict[str, tuple[int, float]] = {
    # name: (page 3 fails this often, least wait before its retry)
    "503_retry_after": (1, 2.0),
    "timeout": (1, 0.2),
    "cut": (1, 0.2),
    "cut_past_the_retries": (3, 0.2),  # attempts 2: the run fails, the next one resumes
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_poller_source_fault_is_retried_within_the_run_or_resumed_from_the_watermark(
    prefix: str, amqp_url: str, make_config: Callable[..., LoadedConfig],
    capsys: pytest.CaptureFixture[str], fault: str,
) -> None:
    times, least_wait = FAULTS[fault]
    api = FaultyApi(fault.removesuffix("_past_the_retries"), times)
    threads, named = threading.active_count(), _fd_targets()
    fds = len(named)
    with Peer(api) as server:
        poller: dict[str, Any] = _poller(prefix, f"{server.url}/products/cursor",
                                         {"style": "cursor", "cursor_path": "next_cursor",
                                          "size": PAGE})
        poller.update(timeout=TIMEOUT, retry={"attempts": 2, "initial_delay": 0.2,
                                              "max_delay": 5})
        loaded = make_config([catch_all_route(prefix)], inbound=[poller])
        # When a run meets the fault on page 3 of 5
        code = _poll_once(loaded, prefix)
        first = _published(amqp_url, prefix)
        runs = 1
        if times > 2:  # Then past the retries the run fails, its first pages published
            assert code == 1
            assert "after 3 tries" in capsys.readouterr().err
            assert len(first) == 2 * PAGE
            # and the next run resumes from the kept watermark
            assert _poll_once(loaded, prefix) == 0
            assert f"published {3 * PAGE}, skipped {2 * PAGE}" in capsys.readouterr().out
            runs = 2
        else:  # Then page 3 is fetched again within the run, which completes
            assert code == 0
        later = _published(amqp_url, prefix)
    # And every record is published exactly once, no gap, no duplicate
    subjects = Counter(e["subject"] for e in first + later)
    assert sorted(subjects) == [p["sku"] for p in api.api.products]
    assert set(subjects.values()) == {1}
    waits = [b - a for a, b in zip(api.page3, api.page3[1:], strict=False)]
    assert waits and min(waits[:2]) >= least_wait, waits  # Retry-After or backoff honoured
    # And no thread or socket is left behind
    assert threading.active_count() <= threads, threading.enumerate()
    assert _fds() <= fds + 2, _leaked(named)
    _OBSERVED[fault] = (f"{fault.replace('_', ' ')}: page 3 asked {len(api.page3)} times, "
                        f"waits {', '.join(f'{w:.1f}' for w in waits)} s, {runs} run(s)")
    if len(_OBSERVED) == len(FAULTS):
        record("poller_source", observed=f"{RECORDS} records in 5 pages, page timeout "
               f"{TIMEOUT:g} s, retry attempts 2 from 0.2 s; " +
               "; ".join(_OBSERVED[f] for f in FAULTS) +
               "; every record published once; threads and fds back to their count",
               lost=0, duplicates=0, recovery_seconds=None)
