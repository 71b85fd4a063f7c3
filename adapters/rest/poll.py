"""Scheduled polling: pull records page by page and publish one envelope per record.

A run reads the watermark from the state store, asks for records changed since then (inclusive,
so records sharing the boundary time are never skipped), publishes each page with confirms, and
stores the newest record watermark only after the whole run was confirmed. A run that fails
half-way leaves the watermark where it was; the next run fetches the same records again and skips
those already published (record ids are remembered in the idempotency store), so an interrupted
batch resumes without gaps and without duplicates. Record ids are stable: the derived id, or the
subject plus a digest of the record's content. One window stays: a process killed after a page's
confirm and before its ids were recorded leaves that page to be published again (a publish and a
database write cannot be one act), with the same envelope ids (the idempotency key a target
receives).

With ``emit: page`` a whole page becomes one envelope (for mappings that turn a price-list page
into one bulk upsert); its id is a digest of the page, so a resumed run re-sends only pages whose
content differs from what was sent (the target's upsert absorbs records seen twice then).

With several replicas (a PostgreSQL store) exactly one runs each tick: the one holding the
store lease ``poll:<name>`` (see ``poll_lease``). It checks the lease before every tick and every
page and commits the watermark only while it still holds it. A tick its holder did not finish
(it died) is run at once by the replica that takes the lease over.

``tls`` (a private CA, a client certificate) is loaded when the poller opens; a failed
handshake fails the run with what to set, and the next run tries again. While tracing is on,
each published envelope starts a trace of its own (a root ``publish`` span written into it).
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
from adapters.rest.poll_lease import PollLease
from adapters.rest.poll_retry import PollFailed, fetch_page
from middleware import metrics, tracing
from middleware.adapter import AdapterContext
from middleware.broker.ingest import publish_envelopes
from middleware.envelope import Envelope
from middleware.errors import FieldTooLong
from middleware.tls import describe_tls_failure, target_context

__all__ = ["PollBusy", "PollFailed", "PollResult", "Poller"]

log = structlog.get_logger(__name__)


class PollBusy(PollFailed):
    """Another replica holds the poller's lease, so this one does not run it."""


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
        self._tick_key = f"poll:{config.name}:tick"
        self._lease: PollLease | None = None
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
        self._lease = PollLease(context.stores.lease, config.name, config.lease.time,
                                config.lease.renew_interval)

    def start(self, context: AdapterContext) -> None:
        self.open(context)
        assert self._lease is not None
        self._lease.start()
        self._thread = threading.Thread(target=self._loop, name=f"poll-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the schedule, then give the lease up so another replica takes over at once."""
        self._stop.set()
        if self._lease is not None:
            self._lease.taken.set()  # wakes the schedule
        if self._thread is not None:
            self._thread.join(timeout=self._config.timeout + 5)
        if self._lease is not None:
            self._lease.stop()
        if self._client is not None:
            auth = self._client.auth
            self._client.close()
            if isinstance(auth, OAuth2ClientCredentials):
                auth.close()

    def _loop(self) -> None:
        config, lease = self._config, self._lease
        assert lease is not None
        zone = ZoneInfo(config.timezone)
        if config.run_on_start:
            self._tick(datetime.now(zone))
        while not self._stop.is_set():
            now = datetime.now(zone)
            due = croniter(config.schedule, now).get_next(datetime)
            taken = lease.taken.wait(max(0.0, (due - now).total_seconds()))
            if self._stop.is_set():
                return
            if taken:  # this replica just took the lease over
                lease.taken.clear()
                self._catch_up(zone)
            else:
                self._tick(due)

    def _tick(self, due: datetime) -> None:
        """Run if this replica holds the lease; record the tick as handled however the run
        ended (a failed run waits for the next tick, as without replicas)."""
        assert self._lease is not None
        try:
            self.run_once()
        except PollBusy:
            log.debug("poll tick left to the lease holder", poller=self.name)
            return
        except Exception as exc:  # the schedule must survive one bad run; the next repeats it
            log.error("poll run failed; watermark kept", poller=self.name, error=str(exc))
        try:
            self._lease.put_if_held(self._tick_key, repr(due.timestamp()))
        except Exception as exc:  # a store fault: at worst the next holder repeats this tick
            log.error("poll tick not recorded", poller=self.name, error=str(exc))

    def _catch_up(self, zone: ZoneInfo) -> None:
        """Run the last scheduled tick now if the previous holder died before finishing it."""
        assert self._context is not None
        try:
            last = self._context.stores.state.get(self._tick_key)
        except Exception as exc:  # a store fault: the next tick runs as usual
            log.error("poll tick check failed", poller=self.name, error=str(exc))
            return
        missed = croniter(self._config.schedule, datetime.now(zone)).get_prev(datetime)
        if last is not None and float(last) < missed.timestamp():
            log.info("poll tick not finished by the previous lease holder; running it now",
                     poller=self.name, tick=missed.isoformat())
            self._tick(missed)

    def run_once(self) -> PollResult:
        """One complete run under the lease; raise PollBusy when another replica holds it,
        PollFailed (watermark unchanged) if any page fails or the lease is lost half-way."""
        assert self._lease is not None, "open() or start() must run first"
        with self._running:
            if not self._lease.acquire():
                raise PollBusy(self._busy())
            self._lease.start()  # renewed during a long run (a no-op when already renewing)
            return self._run()

    def _busy(self) -> str:
        assert self._context is not None
        held = self._context.stores.lease.holder(f"poll:{self.name}")
        who = f"{held[0]}, for {held[1]:.0f}s more" if held else "another replica"
        return (f"poller {self.name!r} is run by {who} (its lease); this run is left to it. "
                f"Stop that replica, or wait for the lease to expire")

    def _run(self) -> PollResult:
        assert self._context is not None, "open() or start() must run first"
        context = self._context
        state, seen = context.stores.state, context.stores.idempotency
        mark = self._config.watermark
        before = state.get(self._state_key) or (mark.initial if mark else None)
        newest, fetched, published, skipped = before, 0, 0, 0
        for body, page in self._pages(before):
            self._check_lease()
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
                # tracing hook: each event a trace of its own, its publish span the root
                with tracing.starting(self.name, "poll", fresh) as publishing:
                    publish_envelopes(context.publisher, fresh, context.broker.publish_timeout)
                    publishing.confirmed([envelope.id for envelope in fresh])
                seen.record_many([(self._namespace, envelope.id) for envelope in fresh])
                published += len(fresh)
                self._received.inc(len(fresh))
        self._check_lease()
        assert self._lease is not None
        if (mark is not None and newest is not None and newest != before
                and not self._lease.put_if_held(self._state_key, newest)):
            raise PollFailed(self._lost())
        log.info("poll run done", poller=self.name, fetched=fetched, published=published,
                 skipped=skipped, watermark=newest)
        return PollResult(fetched, published, skipped, before, newest)

    def _check_lease(self) -> None:
        assert self._lease is not None
        if not self._lease.held:
            raise PollFailed(self._lost())

    def _lost(self) -> str:
        return (f"poller {self.name!r} lost its lease half-way (store unreachable or too slow "
                f"to renew); watermark not committed, the lease holder repeats the run")

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
        client = self._client
        assert client is not None, "open() or start() must run first"
        response = fetch_page(lambda: client.get(url, params=query or None),
                              self._config.retry, self._stop, self.name,
                              lambda exc: describe_tls_failure(exc) or type(exc).__name__)
        try:
            return response.json(), response
        except ValueError:
            raise PollFailed(f"poller {self.name!r}: the answer is not JSON") from None
