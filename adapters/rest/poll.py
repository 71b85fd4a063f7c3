"""Scheduled polling: pull records page by page and publish one envelope per record.

A run reads the watermark from the state store, asks for records changed since then (inclusive,
so records sharing the boundary time are never skipped), publishes each page with confirms, and
stores the newest record watermark only after the whole run was confirmed. A run that fails
half-way leaves the watermark where it was; the next run fetches the same records again and skips
those already published (record ids are remembered in the idempotency store), so an interrupted
batch resumes without gaps and without duplicates. Record ids are stable: the derived id, or the
subject plus a digest of the record's content.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import httpx
import orjson
import structlog
from croniter import croniter

from adapters._derive import DerivationError, compile_derive, parse_time, resolve_path
from adapters.rest.client import OAuth2ClientCredentials, build_auth
from adapters.rest.poll_config import PollConfig
from middleware import metrics
from middleware.adapter import AdapterContext
from middleware.envelope import Envelope
from middleware.errors import SilobridgeError
from middleware.ingest import publish_envelopes

__all__ = ["PollFailed", "PollResult", "Poller"]

log = structlog.get_logger(__name__)


class PollFailed(SilobridgeError):
    """A run stopped early; its watermark was not advanced, so the next run repeats it."""


@dataclass(frozen=True)
class PollResult:
    fetched: int
    published: int
    skipped: int
    watermark_before: str | None
    watermark_after: str | None


def _later(a: str, b: str) -> bool:
    """Whether watermark a is after b: as times when both parse, else as text."""
    try:
        return parse_time(a) > parse_time(b)
    except (ValueError, OverflowError, OSError):
        return a > b


class Poller:
    """One configured poller: a schedule thread in the daemon, or one run from the CLI."""

    def __init__(self, config: PollConfig) -> None:
        self.name = config.name
        self._config = config
        self._deriver = compile_derive(config.derive)
        self._state_key = f"poll:{config.name}:watermark"
        self._namespace = f"poll:{config.name}"
        self._context: AdapterContext | None = None
        self._client: httpx.Client | None = None
        self._stop = threading.Event()
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None
        self._received = metrics.RECEIVED.labels(config.name, "poll")

    def open(self, context: AdapterContext) -> None:
        """Prepare the HTTP client (secrets are read now) without scheduling anything."""
        config = self._config
        auth = build_auth(config.auth, f"inbound.{config.name}.auth", config.timeout, True)
        self._client = httpx.Client(timeout=config.timeout, auth=auth, headers=config.headers)
        self._context = context

    def start(self, context: AdapterContext) -> None:
        self.open(context)
        self._thread = threading.Thread(target=self._loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._config.timeout + 5)
        if self._client is not None:
            auth = self._client.auth
            self._client.close()
            if isinstance(auth, OAuth2ClientCredentials):
                auth.close()

    def _loop(self) -> None:
        config = self._config
        zone = ZoneInfo(config.timezone)
        if config.run_on_start:
            self._run_logged()
        while not self._stop.is_set():
            now = datetime.now(zone)
            due = croniter(config.schedule, now).get_next(datetime)
            if self._stop.wait(max(0.0, (due - now).total_seconds())):
                return
            self._run_logged()

    def _run_logged(self) -> None:
        try:
            self.run_once()
        except Exception as exc:  # the schedule must survive one bad run; the next repeats it
            log.error("poll run failed; watermark kept", poller=self.name, error=str(exc))

    def run_once(self) -> PollResult:
        """One complete run; raise PollFailed (watermark unchanged) if any page fails."""
        with self._running:
            return self._run()

    def _run(self) -> PollResult:
        assert self._context is not None, "open() or start() must run first"
        context = self._context
        state, seen = context.stores.state, context.stores.idempotency
        mark = self._config.watermark
        before = state.get(self._state_key) or (mark.initial if mark else None)
        newest, fetched, published, skipped = before, 0, 0, 0
        for page in self._pages(before):
            fresh = []
            for record in page:
                fetched += 1
                envelope, version = self._envelope(record)
                if version is not None and (newest is None or _later(version, newest)):
                    newest = version
                if seen.seen(self._namespace, envelope.id):
                    skipped += 1
                else:
                    fresh.append(envelope)
            if fresh:
                publish_envelopes(context.publisher, fresh, context.broker.publish_timeout)
                seen.record_many([(self._namespace, envelope.id) for envelope in fresh])
                published += len(fresh)
                self._received.inc(len(fresh))
        if mark is not None and newest is not None and newest != before:
            state.put(self._state_key, newest)
        log.info("poll run done", poller=self.name, fetched=fetched, published=published,
                 skipped=skipped, watermark=newest)
        return PollResult(fetched, published, skipped, before, newest)

    def _envelope(self, record: Any) -> tuple[Envelope, str | None]:
        config = self._config
        mark = config.watermark
        version = resolve_path(record, mark.path) if mark else None
        version = None if version is None else str(version)
        try:
            derived = self._deriver.derive(record, {})
        except DerivationError as exc:
            raise PollFailed(f"poller {self.name!r}: {exc}; fix its 'derive' rules") from None
        digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
        ident = derived.id or f"{config.name}:{derived.subject or ''}:{digest[:20]}"
        when = derived.time
        if when is None and version is not None:
            try:
                when = parse_time(version)
            except (ValueError, OverflowError, OSError):
                when = None
        envelope = Envelope.new(source=config.envelope_source,
                                type=f"{config.system}.{derived.entity}.{derived.action}",
                                data=record, subject=derived.subject, id=ident, time=when)
        return envelope, version

    def _pages(self, watermark: str | None) -> Iterator[list[Any]]:
        """Record lists page by page, following the configured pagination style."""
        config, paging = self._config, self._config.pagination
        query: dict[str, Any] = dict(config.params)
        if config.watermark is not None and watermark is not None:
            query[config.watermark.param] = watermark
        if paging.style != "none" and paging.size_param:
            query[paging.size_param] = paging.size
        url, page, offset = config.url, paging.first_page, 0
        for _ in range(paging.max_pages):
            if paging.style == "page":
                query[paging.query_param] = page
            elif paging.style == "offset":
                query[paging.query_param] = offset
            body, response = self._get(url, query)
            records = resolve_path(body, config.records) if config.records else body
            if not isinstance(records, list):
                raise PollFailed(f"poller {self.name!r}: no record list at "
                                 f"{config.records or '<body>'!r}; set 'records' to its path")
            yield records
            if paging.style == "none" or not records:
                return
            if paging.style in ("page", "offset"):
                if paging.size_param and len(records) < paging.size:
                    return
                page, offset = page + 1, offset + len(records)
            elif paging.style == "cursor":
                cursor = resolve_path(body, paging.cursor_path or "")
                if cursor in (None, ""):
                    return
                query[paging.query_param] = cursor
            else:  # next_link: the link carries the whole query
                link = (resolve_path(body, paging.next_link_path) if paging.next_link_path
                        else response.links.get("next", {}).get("url"))
                if not link:
                    return
                url, query = urljoin(str(response.url), str(link)), {}
        raise PollFailed(f"poller {self.name!r} stopped after max_pages={paging.max_pages}")

    def _get(self, url: str, query: dict[str, Any]) -> tuple[Any, httpx.Response]:
        assert self._client is not None, "open() or start() must run first"
        try:
            response = self._client.get(url, params=query or None)
        except httpx.HTTPError as exc:
            raise PollFailed(f"poller {self.name!r}: GET failed ({type(exc).__name__})") from exc
        if not response.is_success:
            raise PollFailed(f"poller {self.name!r}: GET answered HTTP "
                             f"{response.status_code}; the run will be repeated")
        try:
            return response.json(), response
        except ValueError:
            raise PollFailed(f"poller {self.name!r}: the answer is not JSON") from None
