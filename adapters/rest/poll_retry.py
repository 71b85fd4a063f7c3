"""Fetching one page of a poll run, tried again within the run when the API is briefly unwell.

Before, any failed GET failed the whole run: a single 503 from an API restarting, or one cut
connection, postponed the records until the next scheduled tick (a day, for a nightly poll).
Now a page whose GET timed out, lost its connection (a cut in the middle of the answer
included) or was answered with a status ``adapters/_http.py`` classifies as retryable (408,
425, 429, 5xx) is fetched again, after a doubling wait or the answer's Retry-After when that
is longer, up to ``retry.attempts`` times. The pages before it stay published, and the run
goes on from that page, so nothing is skipped and nothing fetched twice. Once the retries are
spent, or an API asks to wait past ``retry.max_delay``, the run fails as before: its watermark
is kept, and the next run starts from it and skips the records already published.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import structlog

from adapters._http import Outcome, classify_status, parse_retry_after
from adapters.rest.poll_config import PageRetry
from middleware.errors import SilobridgeError

__all__ = ["PollFailed", "fetch_page"]

log = structlog.get_logger(__name__)


class PollFailed(SilobridgeError):
    """A run stopped early; its watermark was not advanced, so the next run repeats it."""


def fetch_page(
    get: Callable[[], httpx.Response], retry: PageRetry, stop: threading.Event, poller: str,
    describe: Callable[[httpx.HTTPError], str],
) -> httpx.Response:
    """A successful answer of ``get``, retrying as the module says; PollFailed when it gives
    up. ``describe`` names a transport error (a TLS failure says what to set)."""
    delay = retry.initial_delay
    for attempt in range(retry.attempts + 1):
        last = attempt == retry.attempts
        try:
            response = get()
        except httpx.HTTPError as exc:
            why = f"GET failed ({describe(exc)})"
            if last or isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
                raise PollFailed(f"poller {poller!r}: {why}{_spent(attempt)}") from exc
            wait = delay
        else:
            if response.is_success:
                return response
            status = response.status_code
            why = f"GET answered HTTP {status}"
            if classify_status(status) is not Outcome.RETRYABLE or last:
                raise PollFailed(f"poller {poller!r}: {why}{_spent(attempt)}; the run will "
                                 f"be repeated")
            asked = parse_retry_after(response.headers.get("retry-after"))
            if asked is not None and asked > retry.max_delay:
                raise PollFailed(f"poller {poller!r}: {why} asking to wait {asked:g}s "
                                 f"(Retry-After), longer than retry.max_delay "
                                 f"({retry.max_delay:g}s); the next run repeats it")
            wait = max(delay, asked or 0.0)
        log.warning("poll page retried", poller=poller, error=why, attempt=attempt + 1,
                    wait=round(wait, 2))
        if stop.wait(wait):
            raise PollFailed(f"poller {poller!r}: stopped while waiting to retry ({why})")
        delay = min(delay * 2, retry.max_delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _spent(attempt: int) -> str:
    return f" (after {attempt + 1} tries)" if attempt else ""
