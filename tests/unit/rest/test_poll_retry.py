"""A poll page's retries within a run: which answers are tried again, and how long it waits."""

from __future__ import annotations

import threading

import httpx
import pytest

from adapters.rest.poll_config import PageRetry
from adapters.rest.poll_retry import PollFailed, fetch_page


def _answers(*items: httpx.Response | Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def get() -> httpx.Response:
        calls.append(1)
        item = items[len(calls) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    return calls, get


def _fetch(get: object, retry: PageRetry, stop: threading.Event | None = None) -> httpx.Response:
    return fetch_page(get, retry, stop or threading.Event(), "p",  # type: ignore[arg-type]
                      lambda exc: type(exc).__name__)


def test_a_retryable_answer_is_tried_again_and_a_refusal_is_not() -> None:
    fast = PageRetry(attempts=3, initial_delay=0.01, max_delay=0.05)
    calls, get = _answers(httpx.Response(503), httpx.ReadTimeout("slow"), httpx.Response(200))
    assert _fetch(get, fast).status_code == 200
    assert len(calls) == 3
    calls, get = _answers(httpx.Response(404))
    with pytest.raises(PollFailed, match="HTTP 404"):
        _fetch(get, fast)
    assert len(calls) == 1


def test_a_retry_after_beyond_max_delay_fails_the_run_at_once_saying_so() -> None:
    calls, get = _answers(httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(PollFailed, match=r"wait 120s \(Retry-After\), longer than "
                                         r"retry.max_delay \(30s\)"):
        _fetch(get, PageRetry())
    assert len(calls) == 1


def test_retries_spent_or_a_stop_end_the_wait_with_the_reason() -> None:
    _, get = _answers(httpx.ConnectError("refused"), httpx.ConnectError("refused"))
    with pytest.raises(PollFailed, match=r"ConnectError\) \(after 2 tries\)"):
        _fetch(get, PageRetry(attempts=1, initial_delay=0.01))
    stop = threading.Event()
    stop.set()
    _, get = _answers(httpx.Response(503))
    with pytest.raises(PollFailed, match="stopped while waiting"):
        _fetch(get, PageRetry(initial_delay=60), stop)
