"""Scheduled polling: pull records page by page and publish one envelope per record.

A run reads the watermark from the state store, asks for records changed since then (inclusive,
so records sharing the boundary time are never skipped), publishes each page with confirms, and
stores the newest record watermark only after the whole run was confirmed. A run that fails
half-way leaves the watermark where it was; the next run fetches the same records again and skips
those already published (record ids are remembered in the idempotency store), so an interrupted
batch resumes without gaps and without duplicates. Record ids are stable: the derived id, or the
subject plus a digest of the record's content.

With ``emit: page`` a whole page becomes one envelope (for mappings that turn a price-list page
into one bulk upsert); its id is a digest of the page, so a resumed run re-sends only pages whose
content differs from what was sent (the target's upsert absorbs records seen twice then).

``tls`` (a private CA, a client certificate) is loaded when the poller opens; a failed
handshake fails the run with what to set, and the next run tries again.
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
from middleware.broker.ingest import publish_envelopes
from middleware.envelope import Envelope
from middleware.errors import FieldTooLong, SilobridgeError
from middleware.tls import describe_tls_failure, target_context

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


def _sort_key(version: str) -> tuple[int, Any]:
    """Order watermarks as times when they parse as times, else as text."""
    try:
        return (1, parse_time(version))
    except (ValueError, OverflowError, OSError):
        return (0, version)


def _later(a: str, b: str) -> bool:
    """Whether watermark a is after b."""
    key_a, key_b = _sort_key(a), _sort_key(b)
    return key_a > key_b if key_a[0] == key_b[0] else a > b


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
        verify = (target_context(config.tls, f"inbound.{config.name}") if config.tls is not None
                  else True)
        self._client = httpx.Client(timeout=config.timeout, auth=auth, headers=config.headers,
                                    verify=verify)
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
        for body, page in self._pages(before):
            versions = [self._version(record) for record in page]
            for version in versions:
                if version is not None and (newest is None or _later(version, newest)):
                    newest = version
            fetched += len(page)
            if self._config.emit == "page":
                latest = max((v for v in versions if v is not None), default=None, key=_sort_key)
                built = [self._envelope(body, latest)] if page else []
            else:
                built = [self._envelope(r, v) for r, v in zip(page, versions, strict=True)]
            envelopes = [envelope for envelope in built if envelope is not None]
            fresh = [e for e in envelopes if not seen.seen(self._namespace, e.id)]
            skipped += len(envelopes) - len(fresh)
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

    def _version(self, record: Any) -> str | None:
        mark = self._config.watermark
        version = resolve_path(record, mark.path) if mark else None
        return None if version is None else str(version)

    def _envelope(self, data: Any, version: str | None) -> Envelope | None:
        """The envelope of one record (or page); its id is stable for the same content.

        None for a record whose id or type is too long for AMQP: it is logged, counted and
        skipped, since repeating the run cannot fix it and must not hold up the others.
        """
        config = self._config
        try:
            derived = self._deriver.derive(data, {})
        except DerivationError as exc:
            raise PollFailed(f"poller {self.name!r}: {exc}; fix its 'derive' rules") from None
        digest = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
        ident = derived.id or f"{config.name}:{derived.subject or ''}:{digest[:20]}"
        when = derived.time
        if when is None and version is not None:
            try:
                when = parse_time(version)
            except (ValueError, OverflowError, OSError):
                when = None
        try:
            return Envelope.new(source=config.envelope_source,
                                type=f"{config.system}.{derived.entity}.{derived.action}",
                                data=data, subject=derived.subject, id=ident, time=when)
        except FieldTooLong as exc:
            metrics.REJECTED.labels(self.name, "poll", "field_too_long").inc()
            log.error("poll record skipped", poller=self.name, subject=derived.subject,
                      error=str(exc))
            return None

    def _pages(self, watermark: str | None) -> Iterator[tuple[Any, list[Any]]]:
        """(page body, its records) page by page, following the pagination style."""
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
            yield body, records
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
            why = describe_tls_failure(exc) or type(exc).__name__
            raise PollFailed(f"poller {self.name!r}: GET failed ({why})") from exc
        if not response.is_success:
            raise PollFailed(f"poller {self.name!r}: GET answered HTTP "
                             f"{response.status_code}; the run will be repeated")
        try:
            return response.json(), response
        except ValueError:
            raise PollFailed(f"poller {self.name!r}: the answer is not JSON") from None
