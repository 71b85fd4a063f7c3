"""One route's processing: decode -> filter -> validate -> map -> validate -> deliver -> ack.

This module takes a message as far as the target's answer; how the outcome is settled (ack,
retry tier, dead letter, a copy held while the broker cannot take it) is the base class's,
``middleware.settling``.

``handle`` runs on the consumer's connection thread and never blocks: delivery is started and
finished in a callback when the target's Future completes. A message is acked only after the
target accepted it, or after its retry-tier or DLQ copy was confirmed by the broker; when even
that fails the message waits unacked and the copy is published again (``middleware.copyretry``).

Store I/O never runs on the broker loop or on a target's event loop: a message that needs the
store before delivery (a redelivered or replayed one, or a mapping with xref lookups) is handed
to the route's own store threads (``middleware.storecalls``), and so are xref captures after
delivery and the commit of idempotency records before the acks. A store fault makes the
message wait there and retry until the store answers; it is never dead-lettered for it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import structlog

from middleware import headers, metrics, tracing
from middleware.adapter import Delivered, OutboundAdapter
from middleware.admission import Admitting
from middleware.audit import OutcomeListener
from middleware.broker.contract import Delivery, Publisher
from middleware.config.models import RetryPolicy, RouteConfig
from middleware.copyretry import CopyRetries
from middleware.enrich import Enrichment
from middleware.enrich.chain import then
from middleware.envelope import Envelope
from middleware.errors import DecodeError, SilobridgeError, StoreUnavailable, XrefMissing
from middleware.lineage import delivery_for
from middleware.mapping import Link, Mapping
from middleware.outcome import Outcome
from middleware.recent import RECENT_IDS, RecentIds
from middleware.routing import compile_filter, compile_patterns
from middleware.storecalls import GroupCommit, StoreCalls
from middleware.storehealth import StoreHealth
from middleware.stores.base import Stores
from middleware.twoway import SyncGate
from middleware.twoway.gate import Ticket

__all__ = ["RouteWorker"]

log = structlog.get_logger(__name__)

SYNC_STORE_THREADS = 16  # bench/ordering.py: 4 threads bounded an ordered route's rate


class RouteWorker(Admitting):
    """Processes the messages of one route queue (two-way admission: ``middleware.admission``;
    settling: ``middleware.settling``)."""

    def __init__(
        self,
        route: RouteConfig,
        policy: RetryPolicy,
        target: OutboundAdapter,
        publisher: Publisher,
        stores: Stores,
        mapping: Callable[[], Mapping | None],
        health: StoreHealth | None = None,
        listener: OutcomeListener | None = None,
        store_threads: int = 4,
        enrichment: Enrichment | None = None,
        paired: RouteConfig | None = None,
    ) -> None:
        self.route = route
        self._enrichment = enrichment  # the route's enrich steps (middleware/enrich), if any
        self._listener = listener  # the audit: told every outcome, must not block
        self._policy = policy
        self._deliver = delivery_for(route.name, target)
        self._target_name = route.target.type
        self._publisher = publisher
        self._stores = stores
        self._mapping = mapping
        self._matches = compile_patterns(route.bind)
        self._filter = compile_filter(route.filter) if route.filter else None
        self._recent = RecentIds(RECENT_IDS)
        # without a daemon's health (tests, tools) a store fault is still retried, unreported
        if route.sync is not None:  # a store round trip per message: more of them in flight
            store_threads = max(store_threads, SYNC_STORE_THREADS)
        self._calls = StoreCalls(route.name, health or StoreHealth(lambda: None), store_threads)
        self._copies = CopyRetries(route.name, lambda: publisher.connected)
        # -- two-way sync hook (middleware/twoway): None for routes without 'sync' --
        self._sync: SyncGate | None = None
        record_many = stores.idempotency.record_many
        if route.sync is not None:
            if stores.sync is None:
                raise ValueError(f"route {route.name!r} has 'sync' but no sync store was opened")
            self._sync = SyncGate(route, stores.sync, self._calls.call, paired)
            record_many = self._sync.commit  # applied versions with the records, before acks
        self._commits = GroupCommit(self._calls, record_many)
        self._batch = self._batches()
        self._in_flight = 0
        self._count_lock = threading.Lock()  # _finish may run on an adapter's own thread
        self._messages = {
            outcome: metrics.MESSAGES.labels(route.name, self._target_name, outcome.value)
            for outcome in Outcome
        }
        # read at scrape time: no gauge update per message
        metrics.IN_FLIGHT.labels(route.name).set_function(lambda: self._in_flight)
        self._processing = metrics.PROCESSING_SECONDS.labels(route.name)
        self._delivery = metrics.DELIVERY_SECONDS.labels(route.name, self._target_name)
        self._lag = metrics.SYNC_LAG.labels(route.name)
        # tracing hooks (middleware.tracing.worker): spans per stage, no-ops while tracing is off
        self._trace = tracing.route_tracer(route.name, self._target_name)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is in flight (graceful shutdown); False on timeout.

        Polls: shutdown happens once, while notifying a waiter would cost every message.
        """
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._busy()

    def _busy(self) -> bool:
        return bool(self._in_flight or self._commits.uncommitted)

    def commit(self, records: list[tuple[str, str]]) -> Future[None]:
        """Make idempotency records durable on the route's store threads (the consumer acks
        their messages when the Future completes); waits and retries while the store fails."""
        return self._commits.commit(records)

    def close(self) -> None:
        """After draining: stop waiting for a failing store or for the broker to take a failed
        message's copy (those go back to their queue), end the route's threads."""
        self._copies.close()
        self._calls.close()

    # -- consumer thread --------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        self._begin()
        try:
            self._trace.run(delivery, self._process, delivery)
        except Exception as exc:  # a bug must cost one message (to the DLQ), not the consumer
            log.exception("unexpected error while processing", route=self.route.name)
            self._guarded(delivery, functools.partial(self._fail, delivery, None, exc))

    def _process(self, delivery: Delivery) -> None:
        try:
            envelope = Envelope.from_json(delivery.body)
            if not self._matches(envelope.type):
                raise DecodeError(
                    f"event type {envelope.type!r} does not match the route's bindings "
                    f"{self.route.bind}; it reached the queue by other means"
                )
        except DecodeError as exc:
            self._fail(delivery, None, exc)
            return
        self._trace.consumed(delivery, envelope)
        if envelope.id in self._recent:
            self._finish(delivery, Outcome.DUPLICATE)
            return
        try:
            mapping = self._mapping()
        except SilobridgeError as exc:
            self._fail(delivery, envelope, exc)
            return
        if (self._batch is not None and self.batched(delivery)
                and not (mapping is not None and mapping.uses_xref)):
            self._batch.add((delivery, envelope, mapping))  # admitted with its I/O tick
            return
        check_seen = (delivery.redelivered or headers.REPLAYS in delivery.headers
                      or headers.HELD in delivery.headers)  # a held copy: a duplicate?
        if not (check_seen or self._sync is not None
                or (mapping is not None and mapping.uses_xref)):
            self._start(delivery, envelope, mapping, check_seen=False)
        elif not self._calls.submit(
                lambda: self._off_loop(delivery, envelope, mapping, check_seen)):
            self._finish(delivery, Outcome.REQUEUED)  # stopping: back to the queue

    def _off_loop(
        self, delivery: Delivery, envelope: Envelope, mapping: Mapping | None, check_seen: bool
    ) -> None:
        """``_start`` on a store thread, for messages that need the store before delivery."""
        try:
            self._trace.run(delivery, self._start, delivery, envelope, mapping, check_seen)
        except Exception as exc:  # a bug must cost one message (to the DLQ), not the thread
            log.exception("unexpected error while processing", route=self.route.name)
            self._fail(delivery, envelope, exc)

    # -- consumer thread, or a store thread when the store is needed ------------------------

    def _start(
        self, delivery: Delivery, envelope: Envelope, mapping: Mapping | None, check_seen: bool
    ) -> None:
        try:
            if check_seen and self._delivered_before(delivery, envelope.id):
                self._finish(delivery, Outcome.DUPLICATE)
                return
            if self._filter is not None and not self._filter(envelope):
                self._finish(delivery, Outcome.FILTERED)
                return
            ticket: Ticket | None = None
            if self._sync is not None:  # two-way sync hook: echo, stale, held
                admitted, ticket = self._admit(self._sync, delivery, envelope, check_seen)
                if not admitted:
                    return
        except SilobridgeError as exc:
            self._stopped(delivery, envelope, exc, None)
            return
        self._go(delivery, envelope, mapping, ticket)

    def _go(self, delivery: Delivery, envelope: Envelope, mapping: Mapping | None,
            ticket: Ticket | None) -> None:
        """An admitted message: map it and start its delivery (or its enrich steps)."""
        try:
            if self._enrichment is not None:  # enrich hook: steps, mapping, steps, delivery
                self._start_enriched(self._enrichment, delivery, envelope, mapping, ticket)
                return  # (admitted first: no enrich call for an echo, a stale or held event)
            with self._trace.stage(delivery, "map"):
                payload = self._map(mapping, envelope.data)
            if self._sync is not None and ticket is not None:
                payload = self._sync.shape(payload)
                self._sync.writing(envelope, ticket, payload)
            started = time.perf_counter()
            self._trace.delivering(delivery, envelope)  # the target gets the deliver span
            future = self._deliver(envelope, payload, mapping)
        except SilobridgeError as exc:
            self._stopped(delivery, envelope, exc, ticket)
            return
        future.add_done_callback(lambda done: self._guarded(
            delivery, lambda: self._delivered(delivery, envelope, mapping, done, started,
                                              ticket)))

    def _stopped(self, delivery: Delivery, envelope: Envelope, error: SilobridgeError,
                 ticket: Ticket | None) -> None:
        """A message that failed before its delivery started: back to its queue when the
        worker stopped while the store failed, else to a retry tier or the DLQ."""
        if isinstance(error, StoreUnavailable):
            self._finish(delivery, Outcome.REQUEUED)
        else:
            self._fail(delivery, envelope, error, ticket)

    def _delivered_before(self, delivery: Delivery, envelope_id: str) -> bool:
        """Was this envelope delivered already (so this copy must only be acked)?

        Only a message the broker redelivers, or one replayed from the DLQ, can have been
        delivered by this route before: only those get here and are looked up in the store
        (on a store thread). Any other copy is a new message; a duplicate of a recent delivery
        (a publisher that retried after a lost confirm) is caught by the in-memory set of
        recent ids. That keeps a database round trip, and the thread switch it costs, off the
        path of nearly every message.
        """
        return self._calls.call("idempotency", "seen", lambda: self._stores.idempotency.seen(
            self.route.name, envelope_id))

    def _lookup(self, from_ns: str, key: str, to_ns: str) -> str | None:
        """The mapping's xref lookup; runs on a store thread, waiting while the store fails."""
        return self._calls.call("xref", "lookup",
                                lambda: self._stores.xref.lookup(from_ns, key, to_ns))

    def _map(self, mapping: Mapping | None, data: Any) -> Any:
        if mapping is None:
            return data
        mapping.validate_source(data)
        try:
            result = mapping.apply(data, self._lookup)
        except XrefMissing:
            metrics.XREF_MISSES.labels(mapping.name).inc()
            raise
        mapping.validate_target(result)
        return result

    def _start_enriched(self, enrichment: Enrichment, delivery: Delivery, envelope: Envelope,
                        mapping: Mapping | None, ticket: Ticket | None) -> None:
        """The route's enrich steps around the mapping, then the delivery, chained through
        Futures (``middleware.enrich``): this thread only starts the first call. A two-way
        ``ticket`` is shaped and fingerprinted just before the write, as on the plain path."""
        sent: list[float] = []  # when the target was called: its histogram times only that
        enriched: list[Envelope] = []  # what the mapping read: its captures read it too
        spans = self._trace.enriching(delivery, enrichment)  # enrich, map, enrich, deliver

        def map_payload(data: Any) -> Future[Any]:
            enriched.append(envelope.model_copy(update={"data": data}))
            spans.mapping()
            mapped = self._map_later(mapping, data)
            mapped.add_done_callback(spans.mapped)
            return mapped

        def send(payload: Any) -> Future[Delivered]:
            sent.append(time.perf_counter())
            spans.delivering(envelope)  # the target gets the deliver span
            return self._deliver(envelope, payload, mapping)

        def deliver(payload: Any) -> Future[Delivered]:
            sync = self._sync
            if sync is None or ticket is None:
                return send(payload)
            return then(self._later(lambda: self._writing(sync, envelope, ticket, payload),
                                    on_store_thread=True), send)

        future = enrichment.process(envelope, map_payload, deliver, spans.carried)
        future.add_done_callback(lambda done: self._guarded(delivery, lambda: self._delivered(
            delivery, enriched[0] if enriched else envelope, mapping, done,
            sent[0] if sent else None, ticket)))

    @staticmethod
    def _writing(sync: SyncGate, envelope: Envelope, ticket: Ticket, payload: Any) -> Any:
        """The two-way hook just before a write: the payload to write, fingerprinted."""
        shaped = sync.shape(payload)
        sync.writing(envelope, ticket, shaped)
        return shaped

    def _map_later(self, mapping: Mapping | None, data: Any) -> Future[Any]:
        """Map an enriched payload; a mapping with xref lookups on a store thread."""
        return self._later(lambda: self._map(mapping, data),
                           on_store_thread=mapping is not None and mapping.uses_xref)

    def _later(self, job: Callable[[], Any], on_store_thread: bool) -> Future[Any]:
        """``job``'s result as a Future. An enrich answer arrives on the system's thread, which
        must not wait for the store: a job that calls the store runs on a store thread."""
        result: Future[Any] = Future()

        def run() -> None:
            try:
                result.set_result(job())
            except BaseException as exc:  # handed to _delivered like a failed delivery
                result.set_exception(exc)

        if not on_store_thread:
            run()
        elif not self._calls.submit(run):
            result.set_exception(StoreUnavailable("the worker is stopping"))
        return result

    # -- any thread -------------------------------------------------------------------------

    def _delivered(
        self,
        delivery: Delivery,
        envelope: Envelope,
        mapping: Mapping | None,
        done: Future[Delivered],
        started: float | None,
        ticket: Ticket | None = None,
    ) -> None:
        if started is not None:  # None: an enrich step or the mapping failed before delivery
            self._delivery.observe(time.perf_counter() - started)
        error = done.exception()
        self._trace.delivered(delivery, error)
        if isinstance(error, StoreUnavailable):  # an enriched mapping's lookups gave up
            self._finish(delivery, Outcome.REQUEUED)
            return
        if error is not None:
            self._fail(delivery, envelope, error, ticket)
            return
        if ticket is not None and self._sync is not None:
            self._sync.delivered(envelope, ticket)  # applied in the commit before the ack
        try:
            result = done.result()
            links = ([] if mapping is None or result.response is None
                     else mapping.capture(envelope.data, result.response))
        except Exception as exc:  # accepted, but its answer holds no usable link
            self._park_capture(delivery, envelope, exc)
            return
        if not links:
            self._accepted(delivery, envelope)
        elif not self._calls.submit(lambda: self._capture(delivery, envelope, links)):
            self._finish(delivery, Outcome.REQUEUED)  # stopping: a redelivery re-sends the key

    def _capture(self, delivery: Delivery, envelope: Envelope, links: list[Link]) -> None:
        """Store the cross-references a delivery returned, on a store thread (never on the
        target's event loop); the message is acked only once they are stored."""
        try:
            for link in links:
                self._calls.call("xref", "link", functools.partial(self._stores.xref.link, *link))
        except StoreUnavailable:
            self._finish(delivery, Outcome.REQUEUED)
            return
        except Exception as exc:  # e.g. a conflicting link: the delivery stands, the link waits
            self._park_capture(delivery, envelope, exc)
            return
        self._accepted(delivery, envelope)
